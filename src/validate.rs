//! `quantal validate`: the CPU reference and the GPU backend side by side from the same
//! device image. Reports, per buffer (named with the kernel that writes it), the largest
//! difference after one step from identical state (integers exactly, floats in ULP); the
//! first step at which the spike trains or the state differ over a whole run; and the rate
//! and CV of the inter-spike intervals per population on both backends, for hardware GPUs
//! that fuse multiply-adds, where identity may end at a horizon.

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::backend::Backend;
use crate::error::Error;
use crate::gpu::GpuContext;
use crate::model::Model;
use crate::network::Network;
use crate::state::State;
use std::sync::Arc;

/// Distance between two f32 in units in the last place (0 for equal bits; NaN against a
/// number is u64::MAX).
pub fn ulp_distance(a: f32, b: f32) -> u64 {
    if a.to_bits() == b.to_bits() || (a == b) {
        return 0;
    }
    if a.is_nan() || b.is_nan() {
        return u64::MAX;
    }
    // Map the floats onto a monotonic integer line.
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 {
            i64::from(i32::MIN) - i64::from(i)
        } else {
            i64::from(i)
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// The largest difference in one buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferDiff {
    /// Kernel that writes the buffer.
    pub kernel: &'static str,
    /// Buffer name.
    pub buffer: &'static str,
    /// Largest difference: ULP for floats, |a - b| for integers.
    pub max_diff: u64,
    /// Values compared (the most of any check; 0: the buffer was empty on both backends,
    /// a variable the network does not use or, such as the active synapses, had none).
    pub values: usize,
    /// Element of the largest difference, with the CPU and GPU values.
    pub worst: Option<(usize, String, String)>,
}

/// Per population: (name, CPU rate Hz, GPU rate Hz, CPU CV, GPU CV).
pub type PopStats = (String, f64, f64, f64, f64);

/// What `validate` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The adapter.
    pub adapter: String,
    /// Steps at which the one-step check ran.
    pub kernel_checks: Vec<u32>,
    /// Largest difference per buffer over all one-step checks.
    pub buffers: Vec<BufferDiff>,
    /// Steps of the whole run.
    pub steps: u32,
    /// First step whose spikes differ, if any.
    pub first_spike_difference: Option<u32>,
    /// Largest difference per buffer at the end of the whole run.
    pub final_buffers: Vec<BufferDiff>,
    /// Rates and CVs per population.
    pub stats: Vec<PopStats>,
}

impl Report {
    /// True when nothing differs by more than `tolerance_ulp` (integers exactly) and the
    /// spike trains are identical.
    pub fn passes(&self, tolerance_ulp: u64) -> bool {
        self.first_spike_difference.is_none()
            && self.buffers.iter().chain(&self.final_buffers).all(|b| {
                b.max_diff
                    <= if b.buffer.starts_with("u32 ") {
                        0
                    } else {
                        tolerance_ulp
                    }
            })
    }
}

/// The largest difference of one buffer by `dist` (a length mismatch is the largest).
fn diff_by<T>(
    kernel: &'static str,
    buffer: &'static str,
    x: &[T],
    y: &[T],
    dist: impl Fn(&T, &T) -> u64,
    show: impl Fn(&T) -> String,
) -> BufferDiff {
    let mut d = BufferDiff {
        kernel,
        buffer,
        max_diff: 0,
        values: x.len().max(y.len()),
        worst: None,
    };
    if x.len() != y.len() {
        d.max_diff = u64::MAX;
        d.worst = Some((
            0,
            format!("{} elements", x.len()),
            format!("{} elements", y.len()),
        ));
        return d;
    }
    for (i, (a, b)) in x.iter().zip(y.iter()).enumerate() {
        let u = dist(a, b);
        if u > d.max_diff {
            d.max_diff = u;
            d.worst = Some((i, show(a), show(b)));
        }
    }
    d
}

/// The largest difference of one f32 buffer, in ULP.
fn diff_f32(kernel: &'static str, buffer: &'static str, x: &[f32], y: &[f32]) -> BufferDiff {
    diff_by(
        kernel,
        buffer,
        x,
        y,
        |a, b| ulp_distance(*a, *b),
        |a| format!("{a:e}"),
    )
}

/// The largest difference of one integer buffer.
fn diff_u32(kernel: &'static str, buffer: &'static str, x: &[u32], y: &[u32]) -> BufferDiff {
    diff_by(
        kernel,
        buffer,
        x,
        y,
        |a, b| a.abs_diff(*b) as u64,
        u32::to_string,
    )
}

/// Every buffer of the two states, named with the kernel that writes it (delay-ring
/// rows compared as sets, see `State::canonical`).
fn compare(c: &State, g: &State) -> Vec<BufferDiff> {
    let (c, g) = (c.canonical(), g.canonical());
    let flat = |rows: &Vec<Vec<u32>>| -> Vec<u32> {
        rows.iter()
            .flat_map(|r| std::iter::once(r.len() as u32).chain(r.iter().copied()))
            .collect()
    };
    let flat2 = |rows: &Vec<Vec<(u32, u32)>>| -> Vec<u32> {
        rows.iter()
            .flat_map(|r| {
                std::iter::once(r.len() as u32).chain(r.iter().flat_map(|&(a, b)| [a, b]))
            })
            .collect()
    };
    let minis = |m: &Vec<(u32, f32)>| -> Vec<u32> {
        m.iter().flat_map(|&(s, q)| [s, q.to_bits()]).collect()
    };
    vec![
        diff_f32("integrate", "v_mv", &c.v_mv, &g.v_mv),
        diff_f32("integrate", "g_rr_ns", &c.g_rr_ns, &g.g_rr_ns),
        diff_f32("integrate", "g_sfa_ns", &c.g_sfa_ns, &g.g_sfa_ns),
        diff_f32("integrate", "theta_mv", &c.theta_mv, &g.theta_mv),
        diff_f32("integrate", "hh_m", &c.hh_m, &g.hh_m),
        diff_f32("integrate", "hh_h", &c.hh_h, &g.hh_h),
        diff_f32("integrate", "hh_n", &c.hh_n, &g.hh_n),
        diff_f32("integrate", "i_ext_pa", &c.i_ext_pa, &g.i_ext_pa),
        diff_f32("gather", "g_active_ns", &c.g_active_ns, &g.g_active_ns),
        diff_f32("gather", "g_pool_ns", &c.g_pool_ns, &g.g_pool_ns),
        diff_u32("integrate", "u32 refr", &c.refr, &g.refr),
        diff_u32("integrate", "u32 spike_ptr", &c.spike_ptr, &g.spike_ptr),
        diff_f32("release", "x_f", &c.terminal_x_f(), &g.terminal_x_f()),
        diff_f32("release", "x_d", &c.terminal_x_d(), &g.terminal_x_d()),
        diff_u32(
            "release",
            "u32 t_last",
            &c.terminal_t_last(),
            &g.terminal_t_last(),
        ),
        diff_u32(
            "release",
            "u32 sites",
            &c.terminal_sites(),
            &g.terminal_sites(),
        ),
        diff_u32("release", "u32 committed", &c.committed, &g.committed),
        diff_u32("release", "u32 reserve", &c.reserve, &g.reserve),
        diff_u32("release", "u32 endo", &c.endo, &g.endo),
        diff_u32(
            "release",
            "u32 active synapses",
            &c.active.column(|s| s.syn),
            &g.active.column(|s| s.syn),
        ),
        diff_f32(
            "cleft",
            "cleft_mm",
            &c.active.column(|s| s.cleft_mm),
            &g.active.column(|s| s.cleft_mm),
        ),
        diff_f32(
            "release",
            "released",
            &c.active.column(|s| s.released),
            &g.active.column(|s| s.released),
        ),
        diff_f32(
            "cleft",
            "pulse_quanta",
            &c.active.column(|s| s.pulse_quanta),
            &g.active.column(|s| s.pulse_quanta),
        ),
        diff_u32(
            "cleft",
            "u32 pulse_left",
            &c.active.column(|s| s.pulse_left),
            &g.active.column(|s| s.pulse_left),
        ),
        diff_u32(
            "cleft",
            "u32 fresh",
            &c.active.column(|s| s.fresh),
            &g.active.column(|s| s.fresh),
        ),
        diff_f32("cleft", "receptor state r", &c.active.r(), &g.active.r()),
        diff_f32("cleft", "handoff_r", &c.handoff_r, &g.handoff_r),
        diff_u32(
            "cleft",
            "u32 handoff_step",
            &c.handoff_step,
            &g.handoff_step,
        ),
        diff_u32(
            "propagate",
            "u32 arrivals by due step",
            &flat(&c.ring),
            &flat(&g.ring),
        ),
        diff_u32(
            "release",
            "u32 async fusions by due step",
            &flat2(&c.ring_async),
            &flat2(&g.ring_async),
        ),
        diff_u32(
            "spontaneous",
            "u32 pending minis",
            &minis(&c.pending_minis),
            &minis(&g.pending_minis),
        ),
    ]
}

fn merge(into: &mut Vec<BufferDiff>, new: Vec<BufferDiff>) {
    if into.is_empty() {
        *into = new;
        return;
    }
    for (a, b) in into.iter_mut().zip(new) {
        let values = a.values.max(b.values);
        if b.max_diff > a.max_diff {
            *a = b;
        }
        a.values = values;
    }
}

/// Runs the comparison over `steps` steps, with a one-step kernel check every
/// `check_every` steps (at least at step 0).
pub fn validate(
    ctx: GpuContext,
    model: Arc<Model>,
    net: Arc<Network>,
    steps: u32,
    check_every: u32,
) -> Result<Report, Error> {
    let adapter = ctx.adapter_name();
    let mut gpu = GpuBackend::new(ctx, Arc::clone(&model), Arc::clone(&net))?;
    // One-step checks from the CPU's state.
    let mut cpu = CpuBackend::new(Arc::clone(&model), Arc::clone(&net));
    let mut buffers = Vec::new();
    let mut kernel_checks = Vec::new();
    let check_every = check_every.max(1);
    while cpu.step_index() < steps {
        let st = cpu.state_ref().clone();
        gpu.load_state(&st)?;
        cpu.step()?;
        gpu.step()?;
        kernel_checks.push(st.step);
        let g = gpu.state()?.clone();
        merge(&mut buffers, compare(cpu.state_ref(), &g));
        let next = (st.step / check_every + 1) * check_every;
        while cpu.step_index() < next.min(steps) {
            cpu.step()?;
        }
    }
    // Whole runs from the initial state.
    let mut cpu = CpuBackend::new(Arc::clone(&model), Arc::clone(&net));
    gpu.load_state(&State::new(&model, &net))?;
    let a = cpu.advance(steps, &[], 1)?;
    let b = gpu.advance(steps, &[], 1)?;
    let first_spike_difference = (0..steps).find(|&k| a.spikes(k) != b.spikes(k));
    let g = gpu.state()?.clone();
    let final_buffers = compare(cpu.state_ref(), &g);
    // Rates and CV of the ISIs per population.
    let dt = model.dt_ms;
    let stats = model
        .pops
        .iter()
        .map(|p| {
            let s = |batch: &crate::backend::Batch| {
                let mut last = vec![None::<u32>; p.size as usize];
                let mut isis: Vec<f64> = Vec::new();
                let mut count = 0usize;
                for k in 0..batch.n_steps {
                    for &n in batch.spikes(k) {
                        if n >= p.first && n < p.first + p.size {
                            count += 1;
                            let i = (n - p.first) as usize;
                            if let Some(prev) = last[i] {
                                isis.push((k - prev) as f64 * dt);
                            }
                            last[i] = Some(k);
                        }
                    }
                }
                let rate = count as f64 / p.size as f64 / (steps as f64 * dt / 1000.0).max(1e-12);
                let cv = if isis.len() > 1 {
                    let m = isis.iter().sum::<f64>() / isis.len() as f64;
                    let v = isis.iter().map(|x| (x - m) * (x - m)).sum::<f64>()
                        / (isis.len() - 1) as f64;
                    v.sqrt() / m
                } else {
                    f64::NAN
                };
                (rate, cv)
            };
            let ((rc, cc), (rg, cg)) = (s(&a), s(&b));
            (p.name.clone(), rc, rg, cc, cg)
        })
        .collect();
    Ok(Report {
        adapter,
        kernel_checks,
        buffers,
        steps,
        first_spike_difference,
        final_buffers,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::ulp_distance;

    #[test]
    fn ulp_distances() {
        assert_eq!(ulp_distance(1.0, 1.0), 0);
        assert_eq!(ulp_distance(0.0, -0.0), 0);
        assert_eq!(ulp_distance(1.0, f32::from_bits(1.0f32.to_bits() + 3)), 3);
        assert_eq!(ulp_distance(-f32::from_bits(1), f32::from_bits(1)), 2);
        assert_eq!(ulp_distance(f32::NAN, 1.0), u64::MAX);
    }
}
