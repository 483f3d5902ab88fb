//! propagate: schedules every outgoing synapse of every spike of this step at
//! `step + delay_steps` (§7, DESIGN.md kernel 5). One invocation per spike × outgoing
//! synapse on the GPU. CPU twin of the future `shaders/propagate.wgsl`.

use super::prefetch;
use crate::network::Network;
use crate::state::State;

/// Pushes the arrivals of this step's spikes (`st.spikes`, ascending) into the ring.
/// `uniform_delay`: the delay of every synapse, when they all have the same (then the
/// spikes' outgoing synapses all go to one row, read from the outgoing lists alone).
pub fn propagate(net: &Network, st: &mut State, uniform_delay: Option<u16>) {
    let len = st.ring.len() as u64;
    if let Some(d) = uniform_delay {
        let slot = ((st.step as u64 + d as u64) % len) as usize;
        let row = &mut st.ring[slot];
        for &n in &st.spikes {
            let n = n as usize;
            let (o0, o1) = (net.out_offsets[n] as usize, net.out_offsets[n + 1] as usize);
            row.extend_from_slice(&net.out_syn[o0..o1]);
        }
        return;
    }
    for k in 0..st.spikes.len() {
        let n = st.spikes[k] as usize;
        let (o0, o1) = (net.out_offsets[n] as usize, net.out_offsets[n + 1] as usize);
        for o in o0..o1 {
            // A neuron's outgoing synapses lie anywhere in the delay array (synapse ids are
            // post-major): ask for the delay of the synapse 16 entries ahead, so the misses
            // overlap instead of following one another.
            if let Some(&ahead) = net.out_syn.get(o + 16) {
                prefetch(&net.syn_delay[ahead as usize]);
            }
            let syn = net.out_syn[o];
            // delay_steps ≥ 1 (§7), so nothing lands in the slot being processed.
            let slot = ((st.step as u64 + net.syn_delay[syn as usize] as u64) % len) as usize;
            st.ring[slot].push(syn);
        }
    }
}
