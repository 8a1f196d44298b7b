// bias: per-channel bias add (optionally fused with the ReLU that follows) and its gradient.
//
//   y: [N, C, S] (S = H*W, or 1 for a linear layer), bias: [C]
//   bias_add:  y[n, c, s] = y[n, c, s] + bias[c], then max(·, 0) when relu != 0 (in place)
//   bias_grad: dbias[c] = sum over n, s of dy[n, c, s]
//
// bias_add   bindings: 0 uniform BiasParams, 1 bias (read), 2 y (read_write).
//            Dispatch: one thread per element of y, workgroups of 256, folded into y past 65535.
// bias_grad  bindings: 0 uniform BiasParams, 1 dy (read), 2 dbias (read_write).
//            Dispatch: (C, 1, 1) workgroups of 256; each reduces one channel in workgroup memory.
//            (bias_subgroup.wgsl does the same with subgroup operations where the device has them.)
// Params and bindings are declared in prelude/bias_params.wgsl (shared with bias_subgroup.wgsl).

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn bias_add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.n * p.c * p.s) {
        return;
    }
    var v = dst[idx] + src[(idx / p.s) % p.c];
    if (p.relu != 0u) {
        v = max(v, 0.0);
    }
    dst[idx] = v;
}

@compute @workgroup_size(256)
fn bias_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let channel = wg.x;
    var sum = 0.0;
    for (var i = lid; i < p.n * p.s; i += 256u) {
        let n = i / p.s;
        let s = i - n * p.s;
        sum += src[(n * p.c + channel) * p.s + s];
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var width = 128u; width > 0u; width = width / 2u) {
        if (lid < width) {
            partial[lid] += partial[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        dst[channel] = partial[0];
    }
}
