// bias_subgroup: the bias gradient reduced with subgroup operations, used when the device has
// the SUBGROUP feature (bias.wgsl's bias_grad, a workgroup-memory tree, is the fallback).
// No `enable subgroups;` directive: naga 30 rejects it, so shaders::browser_source adds it for
// browsers (whose compiler requires it); natively the feature is requested on the device.
//
//   bias_grad_subgroup: dbias[c] = sum over n, s of dy[n, c, s],  dy: [N, C, S]
//
// Bindings: 0 uniform BiasParams, 1 dy (read), 2 dbias (read_write), declared in
// prelude/bias_params.wgsl (shared with bias.wgsl).
// Dispatch: (C, 1, 1) workgroups of 256: each sums one channel, first within each subgroup
// (subgroupAdd), then across the subgroups through workgroup memory.

// One slot per subgroup: subgroups have at least 4 invocations, so 256 / 4 slots suffice.
var<workgroup> subgroup_sums: array<f32, 64>;

@compute @workgroup_size(256)
fn bias_grad_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let channel = wg.x;
    var sum = 0.0;
    for (var i = lid; i < p.n * p.s; i += 256u) {
        let n = i / p.s;
        sum += src[(n * p.c + channel) * p.s + (i - n * p.s)];
    }
    let subgroup_sum = subgroupAdd(sum);
    if (lane == 0u) {
        subgroup_sums[subgroup] = subgroup_sum;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var g = 0u; g < subgroups; g++) {
            total += subgroup_sums[g];
        }
        dst[channel] = total;
    }
}
