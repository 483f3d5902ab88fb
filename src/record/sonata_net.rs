//! The built network in SONATA's nodes and edges formats, so that connectivity, distances
//! and delays can be analysed with libsonata, bmtk or h5py:
//!
//! ```text
//! RUN.nodes.h5   /nodes/<population>/node_type_id (i64: the population's index),
//!                node_group_id (u32, 0), node_group_index (u64), and in group 0:
//!                x, y, z (f32, µm; when the population has positions; a grid is laid out
//!                x fastest, then y, then z), model_type (the neuron model)
//! RUN.edges.h5   /edges/<projection>/source_node_id, target_node_id (u64, population-local,
//!                attr node_population), edge_type_id (i64: the synapse type's index; the
//!                names are the group's attr edge_types), edge_group_id, edge_group_index,
//!                and in group 0: syn_weight (f32), delay (f32, ms, after rounding to steps);
//!                indices/source_to_target and indices/target_to_source (node_id_to_ranges,
//!                range_to_edge_id) for libsonata's afferent and efferent queries
//! ```
//! Edges are in creation order: edge k of a projection is its projection-local synapse k.

use hdf5::types::VarLenUnicode;
use hdf5::{File, Group};
use std::path::Path;

use crate::error::Error;
use crate::model::Model;
use crate::network::Network;

fn err(path: &Path) -> impl Fn(hdf5::Error) -> Error + '_ {
    move |e| Error::Hdf5 {
        message: e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        path: path.to_path_buf(),
    }
}

fn text_attr(g: &hdf5::Location, name: &str, v: &str, path: &Path) -> Result<(), Error> {
    let v: VarLenUnicode = v.replace('\0', " ").parse().expect("no NUL");
    g.new_attr::<VarLenUnicode>()
        .create(name)
        .and_then(|a| a.write_scalar(&v))
        .map_err(err(path))
}

/// SONATA's index of one side of an edge population: for every node, the ranges of
/// edge ids (row k of `node_id_to_ranges` = [first, end) rows of `range_to_edge_id`).
fn index(g: &Group, name: &str, nodes: usize, of_edge: &[u64], path: &Path) -> Result<(), Error> {
    let mut by_node: Vec<Vec<u64>> = vec![Vec::new(); nodes];
    for (e, &n) in of_edge.iter().enumerate() {
        by_node[n as usize].push(e as u64);
    }
    let mut node_ranges = Vec::with_capacity(nodes * 2);
    let mut ranges: Vec<u64> = Vec::new();
    for edges in &by_node {
        let first = (ranges.len() / 2) as u64;
        let mut k = 0;
        while k < edges.len() {
            let start = edges[k];
            let mut end = start + 1;
            while k + 1 < edges.len() && edges[k + 1] == end {
                end += 1;
                k += 1;
            }
            ranges.extend([start, end]);
            k += 1;
        }
        node_ranges.extend([first, (ranges.len() / 2) as u64]);
    }
    let ig = g.create_group(name).map_err(err(path))?;
    let a = ndarray::Array2::from_shape_vec((nodes, 2), node_ranges).expect("2 per node");
    ig.new_dataset_builder()
        .with_data(&a)
        .create("node_id_to_ranges")
        .map_err(err(path))?;
    let b = ndarray::Array2::from_shape_vec((ranges.len() / 2, 2), ranges).expect("pairs");
    ig.new_dataset_builder()
        .with_data(&b)
        .create("range_to_edge_id")
        .map_err(err(path))?;
    Ok(())
}

/// Writes `nodes` and `edges` (each under a temporary name first, renamed when done).
pub fn write_network(
    model: &Model,
    net: &Network,
    nodes: &Path,
    edges: &Path,
) -> Result<(), Error> {
    let tmp = |p: &Path| super::hdf5::partial_path(p);
    {
        let f = File::create(tmp(nodes)).map_err(err(nodes))?;
        let root = f.create_group("nodes").map_err(err(nodes))?;
        for (pi, p) in model.pops.iter().enumerate() {
            let g = root.create_group(&p.name).map_err(err(nodes))?;
            let n = p.size as usize;
            g.new_dataset_builder()
                .with_data(&vec![pi as i64; n])
                .create("node_type_id")
                .map_err(err(nodes))?;
            g.new_dataset_builder()
                .with_data(&vec![0u32; n])
                .create("node_group_id")
                .map_err(err(nodes))?;
            g.new_dataset_builder()
                .with_data(&(0..n as u64).collect::<Vec<u64>>())
                .create("node_group_index")
                .map_err(err(nodes))?;
            let g0 = g.create_group("0").map_err(err(nodes))?;
            if let Some(pos) = &net.positions[pi] {
                for (k, axis) in ["x", "y", "z"].iter().enumerate() {
                    let v: Vec<f32> = pos.iter().map(|q| q.to_array()[k] as f32).collect();
                    g0.new_dataset_builder()
                        .with_data(&v)
                        .create(*axis)
                        .map_err(err(nodes))?;
                }
            }
            let model_type: VarLenUnicode = format!("{:?}", p.model)
                .to_lowercase()
                .parse()
                .expect("no NUL");
            g0.new_dataset_builder()
                .with_data(&vec![model_type; n])
                .create("model_type")
                .map_err(err(nodes))?;
        }
        f.close().map_err(err(nodes))?;
    }
    {
        let f = File::create(tmp(edges)).map_err(err(edges))?;
        let root = f.create_group("edges").map_err(err(edges))?;
        let sources = net.sources();
        for (pi, pr) in net.projections.iter().enumerate() {
            let (sp, tp) = (&model.pops[pr.source], &model.pops[pr.target]);
            let g = root.create_group(&pr.name).map_err(err(edges))?;
            let ids = net.projection_synapses(pi);
            let src: Vec<u64> = ids
                .iter()
                .map(|&i| (sources[i as usize] - sp.first) as u64)
                .collect();
            let tgt: Vec<u64> = ids
                .iter()
                .map(|&i| (net.syn_post[i as usize] - tp.first) as u64)
                .collect();
            let d = g
                .new_dataset_builder()
                .with_data(&src)
                .create("source_node_id")
                .map_err(err(edges))?;
            text_attr(&d, "node_population", &sp.name, edges)?;
            let d = g
                .new_dataset_builder()
                .with_data(&tgt)
                .create("target_node_id")
                .map_err(err(edges))?;
            text_attr(&d, "node_population", &tp.name, edges)?;
            g.new_dataset_builder()
                .with_data(&vec![pr.syn_type as i64; ids.len()])
                .create("edge_type_id")
                .map_err(err(edges))?;
            g.new_dataset_builder()
                .with_data(&vec![0u32; ids.len()])
                .create("edge_group_id")
                .map_err(err(edges))?;
            g.new_dataset_builder()
                .with_data(&(0..ids.len() as u64).collect::<Vec<u64>>())
                .create("edge_group_index")
                .map_err(err(edges))?;
            let names: Vec<&str> = model.syn_types.iter().map(|t| t.name.as_str()).collect();
            text_attr(&g, "edge_types", &names.join(","), edges)?;
            let g0 = g.create_group("0").map_err(err(edges))?;
            let w: Vec<f32> = ids.iter().map(|&i| net.syn_weight[i as usize]).collect();
            let dl: Vec<f32> = ids
                .iter()
                .map(|&i| (net.syn_delay[i as usize] as f64 * model.dt_ms) as f32)
                .collect();
            g0.new_dataset_builder()
                .with_data(&w)
                .create("syn_weight")
                .map_err(err(edges))?;
            let d = g0
                .new_dataset_builder()
                .with_data(&dl)
                .create("delay")
                .map_err(err(edges))?;
            text_attr(&d, "units", "ms", edges)?;
            let ig = g.create_group("indices").map_err(err(edges))?;
            index(&ig, "source_to_target", sp.size as usize, &src, edges)?;
            index(&ig, "target_to_source", tp.size as usize, &tgt, edges)?;
        }
        f.close().map_err(err(edges))?;
    }
    for p in [nodes, edges] {
        std::fs::rename(tmp(p), p).map_err(|e| Error::Io {
            cause: e,
            path: p.to_path_buf(),
        })?;
    }
    Ok(())
}

/// One edge population read from a SONATA edges file.
#[derive(Debug, Clone, Default)]
pub struct SonataEdges {
    /// Source node ids (population-local).
    pub source: Vec<u64>,
    /// Target node ids (population-local).
    pub target: Vec<u64>,
    /// `0/syn_weight`, when the file has it.
    pub weight: Option<Vec<f32>>,
    /// `0/delay` in ms, when the file has it.
    pub delay_ms: Option<Vec<f32>>,
}

/// Reads edge population `population` of `path` (source, target, and the weights and
/// delays of group 0 when present).
pub fn read_edges(path: &Path, population: &str) -> Result<SonataEdges, Error> {
    let e = err(path);
    let f = File::open(path).map_err(&e)?;
    let edges = f.group("edges").map_err(&e)?;
    let g = edges.group(population).map_err(|_| Error::Hdf5 {
        message: format!(
            "no edge population `{population}`; the file has {}",
            edges.member_names().unwrap_or_default().join(", ")
        ),
        path: path.to_path_buf(),
    })?;
    let source = g
        .dataset("source_node_id")
        .and_then(|d| d.read_raw::<u64>())
        .map_err(&e)?;
    let target = g
        .dataset("target_node_id")
        .and_then(|d| d.read_raw::<u64>())
        .map_err(&e)?;
    if source.len() != target.len() {
        return Err(Error::Hdf5 {
            message: format!("{} sources but {} targets", source.len(), target.len()),
            path: path.to_path_buf(),
        });
    }
    let attr = |name: &str| -> Result<Option<Vec<f32>>, Error> {
        match g.group("0").and_then(|g0| g0.dataset(name)) {
            Ok(d) => {
                let v = d.read_raw::<f32>().map_err(&e)?;
                if v.len() != source.len() {
                    return Err(Error::Hdf5 {
                        message: format!(
                            "0/{name} has {} values for {} edges",
                            v.len(),
                            source.len()
                        ),
                        path: path.to_path_buf(),
                    });
                }
                Ok(Some(v))
            }
            Err(_) => Ok(None),
        }
    };
    let weight = attr("syn_weight")?;
    let delay_ms = attr("delay")?;
    Ok(SonataEdges {
        source,
        target,
        weight,
        delay_ms,
    })
}

/// The number of edges of `population` in `path`, without reading them.
pub fn count_edges(path: &Path, population: &str) -> Option<u64> {
    let f = File::open(path).ok()?;
    let d = f
        .dataset(&format!("edges/{population}/source_node_id"))
        .ok()?;
    Some(d.size() as u64)
}
