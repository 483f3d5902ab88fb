//! propagate: schedules every outgoing synapse of every spike of this step at
//! `step + delay_steps` (§7, DESIGN.md kernel 5). One invocation per spike × outgoing
//! synapse on the GPU. CPU twin of the future `shaders/propagate.wgsl`.

use crate::network::Network;
use crate::state::State;

/// Pushes the arrivals of this step's spikes (`st.spikes`, ascending) into the ring.
pub fn propagate(net: &Network, st: &mut State) {
    let len = st.ring.len() as u64;
    for k in 0..st.spikes.len() {
        let n = st.spikes[k] as usize;
        for o in net.out_offsets[n]..net.out_offsets[n + 1] {
            let syn = net.out_syn[o as usize];
            // delay_steps ≥ 1 (§7), so nothing lands in the slot being processed.
            let slot = ((st.step as u64 + net.syn_delay[syn as usize] as u64) % len) as usize;
            st.ring[slot].push(syn);
        }
    }
}
