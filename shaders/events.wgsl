// events: the to-do list and the release log, shared by the kernels that list synapses
// with events (`deliver`, `spontaneous`) and that log releases (`release`, `spontaneous`).
// Prepended after terminal.wgsl; a kernel that includes it declares `soff`, `syn_flags`,
// `queues` and `release_log` (a declaration that its entry point does not use is not part
// of its bind group).

// Lists synapse `syn` in the to-do list unless already listed (its claim bit; `release`
// clears it as it takes the synapse off the list), so every synapse is listed once,
// whatever the order of its events.
fn claim(syn: u32) {
    let bit = 1u << (syn & 31u);
    let old = atomicOr(&syn_flags[soff.claim + (syn >> 5u)], bit);
    if ((old & bit) == 0u) {
        let at = atomicAdd(&queues[Q_TODO_COUNT], 1u);
        atomicStore(&queues[soff.todo + at], syn);
    }
}

// True when synapse `syn`'s releases are logged one by one (its bit of the watch words).
fn watched(syn: u32) -> bool {
    return ((atomicLoad(&syn_flags[soff.watch + (syn >> 5u)]) >> (syn & 31u)) & 1u) != 0u;
}

// Appends a release of a watched synapse to the log: (step, global synapse id, code,
// quanta bits); past the capacity, the loss is counted (reported by the backend).
fn log_release(t: u32, syn: u32, code: u32, q: f32) {
    let at = atomicAdd(&release_log[0], 1u);
    if (at < soff.log_cap) {
        let w = 4u + at * 4u;
        atomicStore(&release_log[w], t);
        atomicStore(&release_log[w + 1u], soff.syn_base + syn);
        atomicStore(&release_log[w + 2u], code);
        atomicStore(&release_log[w + 3u], bitcast<u32>(q));
    } else {
        atomicAdd(&release_log[1], 1u);
    }
}
