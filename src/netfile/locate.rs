//! From a field path (`populations[2].lif.tau_rr_ms`) to a line and column of the file.

use std::fmt;
use toml::de::{DeTable, DeValue};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A path into the network file, e.g. `populations[2].lif.tau_rr_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecPath(pub Vec<PathSeg>);

impl SpecPath {
    /// The root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path plus a key.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(PathSeg::Key(k.to_string()));
        Self(v)
    }

    /// This path plus an index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(PathSeg::Index(i));
        Self(v)
    }

    /// Byte offset of the deepest part of the path present in `text`.
    pub fn offset_in(&self, text: &str) -> Option<usize> {
        let doc = DeTable::parse(text).ok()?;
        let mut best = doc.span().start;
        let root = DeValue::Table(doc.into_inner());
        let mut cur = &root;
        for seg in &self.0 {
            let next = match (seg, cur) {
                (PathSeg::Key(k), DeValue::Table(t)) => t
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                    .map(|(key, v)| (key.span().start, v)),
                (PathSeg::Index(i), DeValue::Array(a)) => a.get(*i).map(|v| (v.span().start, v)),
                _ => None,
            };
            match next {
                Some((start, v)) => {
                    best = start;
                    cur = v.get_ref();
                }
                None => break,
            }
        }
        Some(best)
    }
}

/// The path of the deepest key whose value contains byte `offset` (for serde errors).
pub fn path_at(text: &str, offset: usize) -> Option<SpecPath> {
    let doc = DeTable::parse(text).ok()?;
    let root = DeValue::Table(doc.into_inner());
    let mut cur = &root;
    let mut path = SpecPath::root();
    loop {
        // The entry that starts last at or before the offset (tables are written in order).
        let next = match cur {
            DeValue::Table(t) => t
                .iter()
                .filter(|(k, v)| k.span().start <= offset || v.span().start <= offset)
                .max_by_key(|(k, v)| {
                    k.span().start.max(if v.span().start <= offset {
                        v.span().start
                    } else {
                        0
                    })
                })
                .map(|(k, v)| (PathSeg::Key(k.get_ref().to_string()), v)),
            DeValue::Array(a) => a
                .iter()
                .enumerate()
                .filter(|(_, v)| v.span().start <= offset)
                .max_by_key(|(_, v)| v.span().start)
                .map(|(i, v)| (PathSeg::Index(i), v)),
            _ => None,
        };
        match next {
            Some((seg, v)) => {
                path.0.push(seg);
                cur = v.get_ref();
            }
            None => break,
        }
    }
    if path.0.is_empty() {
        None
    } else {
        Some(path)
    }
}

impl fmt::Display for SpecPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                PathSeg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                PathSeg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before[i + 1..].chars().count())
        .unwrap_or(before.chars().count())
        + 1;
    (line, col)
}
