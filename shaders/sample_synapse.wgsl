// sample_synapse: one invocation per probe of a synapse variable, at the start of a
// sampled step (DESIGN.md "Reports sample the state at the start of a step").
// CPU twin: backend::cpu::sample::sample_synapse (same statements, same names), except
// `released`, which the GPU reads from the synapse's sum since the last sample (the
// CPU backend keeps the same sum on the host) and then restarts.
//
// Writes the probe's column of row `sample_row` of the batch's sample ring.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read> syn_types: array<SynType>;
@group(0) @binding(3) var<storage, read> pow_tables: array<PowTable>;
@group(0) @binding(4) var<storage, read> syn_static: array<u32>;
@group(0) @binding(5) var<storage, read_write> syn_u32: array<u32>;
@group(0) @binding(6) var<storage, read_write> syn_f32: array<f32>;
@group(0) @binding(7) var<storage, read> receptors: array<Receptor>;
// Per probe: (code, synapse, column in the sample row, 1); a 0 in w marks the padding
// element of an empty list.
@group(0) @binding(8) var<storage, read> probes: array<vec4<u32>>;
@group(0) @binding(9) var<storage, read_write> samples: array<f32>;

const P_CA_RES: u32 = 1024u;
const P_X_F: u32 = 1025u;
const P_X_D: u32 = 1026u;
const P_DOCKED: u32 = 1027u;
const P_RESERVE: u32 = 1028u;
const P_ENDOSOME: u32 = 1029u;
const P_RELEASED: u32 = 1030u;
const P_CLEFT: u32 = 1031u;
const P_TM_U: u32 = 1032u;
const P_TM_X: u32 = 1033u;
const P_SYN_R: u32 = 1040u;
const P_SYN_G: u32 = 1048u;

@compute @workgroup_size(64)
fn sample_synapse(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let k = invocation_index(gid);
    if (k >= arrayLength(&probes)) {
        return;
    }
    let pr = probes[k];
    if (pr.w == 0u) {
        return;
    }
    let code = pr.x;
    let i = pr.y;
    let ty = syn_types[syn_type_of(i)];
    let since = params.step - su(S_T_LAST, i);
    let is_active = su(S_HANDOFF_STEP, i) == ACTIVE;
    var x = 0.0f;
    if (code == P_CA_RES) {
        x = ty.ca_rest_um + ty.delta_ca_um * sf(SF_X_F, i) * pow_decay(ty.tab_fac, since);
    } else if (code == P_X_F) {
        x = sf(SF_X_F, i) * pow_decay(ty.tab_fac, since);
    } else if (code == P_X_D) {
        if (ty.release == RELEASE_CA) {
            x = sf(SF_X_D, i) * pow_decay(ty.tab_rec, since);
        }
    } else if (code == P_DOCKED) {
        // A static terminal's sites are always docked (the image of a network of static
        // synapses keeps no sites).
        if (ty.release == RELEASE_STATIC) {
            x = f32(ty.n_sites);
        } else {
            x = f32(countOneBits(su(S_SITES, i)));
        }
    } else if (code == P_RESERVE) {
        x = f32(su(S_RESERVE, i));
    } else if (code == P_ENDOSOME) {
        x = f32(su(S_ENDO, i));
    } else if (code == P_RELEASED) {
        if (soff.f_at[SF_RELEASED_ACC / 4u][SF_RELEASED_ACC % 4u] != ABSENT) {
            // The quanta since the last sample (`Backend::watch`), restarting from 0.
            x = sf(SF_RELEASED_ACC, i);
            sf_set(SF_RELEASED_ACC, i, 0.0f);
        } else if (is_active) {
            // Not watched: this step's quanta at an active synapse, as the CPU's sampler.
            x = sf(SF_RELEASED, i);
        }
    } else if (code == P_CLEFT) {
        if (is_active) {
            x = sf(SF_CLEFT_MM, i);
        }
    } else if (code == P_TM_U) {
        if (ty.release != RELEASE_CA) {
            x = ty.tm_u + sf(SF_X_F, i) * pow_decay(ty.tab_fac, since);
        }
    } else if (code == P_TM_X) {
        if (ty.release == RELEASE_TM_MEAN) {
            x = relax(1.0f, sf(SF_X_D, i), pow_decay(ty.tab_rec, since));
        }
    } else if (code >= P_SYN_R) {
        let g_prot = code >= P_SYN_G;
        var j = code - P_SYN_R;
        if (g_prot) {
            j = code - P_SYN_G;
        }
        let slot = 2u * j + select(0u, 1u, g_prot);
        if (is_active && slot < soff.slot_stride) {
            x = syn_f32[soff.r + i * soff.slot_stride + slot];
        } else if (!g_prot && su(S_HANDOFF_STEP, i) != NO_HANDOFF && soff.handoff_stride > 0u) {
            let rc = receptors[ty.receptor_first + j];
            if (rc.kind == RECEPTOR_KINETIC) {
                let held = params.step - 1u - su(S_HANDOFF_STEP, i);
                x = syn_f32[soff.handoff_r + i * soff.handoff_stride + j] * pow_decay(rc.tab_beta, held);
            }
        }
    }
    samples[params.sample_row * params.probe_stride + pr.z] = x;
}
