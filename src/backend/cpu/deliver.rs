//! deliver: pops the delay-ring slot of this step (§7, DESIGN.md kernel 1).
//! CPU twin of the future `shaders/deliver.wgsl`.
//!
//! Returns the events due now, sorted by (synapse, kind) so that the processing order
//! never depends on the order of insertion: asynchronous fusions of a synapse (kind =
//! site index) come before its spike arrival (kind = [`SPIKE`]).

use crate::state::State;

/// Event kind of a presynaptic spike arrival (asynchronous fusions use the site index).
pub const SPIKE: u32 = u32::MAX;

/// Takes the events of step `state.step` out of the rings into `events` (cleared first);
/// `scratch` is a buffer for the sort. With `sorted` false, spike arrivals stay in the
/// order `propagate` pushed them (for a caller that needs only each target's arrivals
/// in synapse order, where that order is already so: see `CpuBackend`).
pub fn deliver(st: &mut State, events: &mut Vec<(u32, u32)>, scratch: &mut Vec<u32>, sorted: bool) {
    events.clear();
    let slot = st.step as usize % st.ring.len();
    let mut spikes = std::mem::take(&mut st.ring[slot]);
    let fusions = std::mem::take(&mut st.ring_async[slot]);
    // Equal events are identical, so any sort gives these bits.
    if fusions.is_empty() && !sorted {
        events.extend(spikes.iter().map(|&s| (s, SPIKE)));
    } else if fusions.is_empty() {
        // Spike arrivals only (the usual step): sort the synapse ids themselves.
        radix_sort(&mut spikes, scratch);
        events.extend(spikes.iter().map(|&s| (s, SPIKE)));
    } else {
        events.extend(fusions);
        events.extend(spikes.iter().map(|&s| (s, SPIKE)));
        events.sort_unstable();
    }
    // Give the buffers back to the ring to keep their capacity.
    spikes.clear();
    st.ring[slot] = spikes;
}

/// Sorts `v` ascending: least-significant-digit radix sort in as few passes of at most 11
/// bits as the largest id needs (two of 10 bits below 2^20 synapses), each a count, a
/// prefix sum and a stable scatter into `tmp`; short lists go to `sort_unstable`. Measured
/// on brette_coba.toml (about 1000 arrivals a step): `deliver` takes 3.0-3.4 µs a step,
/// against 6.8 with the standard library's stable sort and 6.2 with its unstable sort.
pub fn radix_sort(v: &mut Vec<u32>, tmp: &mut Vec<u32>) {
    const SHORT: usize = 128;
    if v.len() < SHORT {
        v.sort_unstable();
        return;
    }
    let max = v.iter().fold(0, |m, &x| m.max(x));
    let bits = 32 - max.leading_zeros();
    let passes = bits.div_ceil(11).max(1);
    let digit = bits.div_ceil(passes);
    let mask = (1u32 << digit) - 1;
    let mut count = [0u32; 1 << 11];
    tmp.clear();
    tmp.resize(v.len(), 0);
    for p in 0..passes {
        let shift = p * digit;
        let count = &mut count[..=mask as usize];
        count.fill(0);
        for &x in v.iter() {
            count[((x >> shift) & mask) as usize] += 1;
        }
        let mut at = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = at;
            at += n;
        }
        for &x in v.iter() {
            let d = ((x >> shift) & mask) as usize;
            tmp[count[d] as usize] = x;
            count[d] += 1;
        }
        std::mem::swap(v, tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_sorts() {
        let mut rng = crate::philox::Stream::new(3, 0, 0);
        let mut tmp = Vec::new();
        for (n, max) in [
            (0, 10),
            (5, 10),
            (127, 1000),
            (128, 1000),
            (1000, 320_961),
            (5000, u32::MAX),
        ] {
            let mut v: Vec<u32> = (0..n)
                .map(|_| (rng.uniform_f64() * max as f64) as u32)
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            radix_sort(&mut v, &mut tmp);
            assert_eq!(v, want, "{n} ids below {max}");
        }
    }
}
