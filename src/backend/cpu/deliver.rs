//! deliver: pops the delay-ring slot of this step (§7, DESIGN.md kernel 1).
//! CPU twin of the future `shaders/deliver.wgsl`.
//!
//! Returns the events due now, sorted by (synapse, kind) so that the processing order
//! never depends on the order of insertion: asynchronous fusions of a synapse (kind =
//! site index) come before its spike arrival (kind = [`SPIKE`]).

use crate::state::State;

/// Event kind of a presynaptic spike arrival (asynchronous fusions use the site index).
pub const SPIKE: u32 = u32::MAX;

/// Takes the events of step `state.step` out of the rings into `events` (cleared first).
pub fn deliver(st: &mut State, events: &mut Vec<(u32, u32)>) {
    events.clear();
    let slot = st.step as usize % st.ring.len();
    let mut spikes = std::mem::take(&mut st.ring[slot]);
    let fusions = std::mem::take(&mut st.ring_async[slot]);
    // The stable sort finds the ascending runs (each spike's synapses, in `out_syn`
    // order) and merges them; equal events are identical, so any sort gives these bits.
    if fusions.is_empty() {
        // Spike arrivals only (the usual step): sort the synapse ids themselves.
        spikes.sort();
        events.extend(spikes.iter().map(|&s| (s, SPIKE)));
    } else {
        events.extend(fusions);
        events.extend(spikes.iter().map(|&s| (s, SPIKE)));
        events.sort();
    }
    // Give the buffers back to the ring to keep their capacity.
    spikes.clear();
    st.ring[slot] = spikes;
}
