// peak: the adapter's attainable arithmetic and memory throughput, the yardstick against which
// the bench reports every kernel of a step (docs/performance.md). Neither is used in training.
//
// fma_peak: invocation i runs p.iterations steps of 8 independent vec4 chains held in registers,
// acc = fma(acc, scale, offset) (64 FLOP a step, no memory access in the loop: 8 chains hide
// the FMA's latency), then writes the sum of its accumulators to dst[i] so that the loop is kept.
// copy_peak: dst[j] = src[j] for j < p.len (vec4s), each invocation copying every
// (groups · 256)-th vec4 from its own index (a grid-stride loop: any length from a fixed grid).
//
// fma_peak   bindings: 0 uniform PeakParams, 2 dst (read_write, one vec4 per invocation).
// copy_peak  bindings: 0 uniform PeakParams, 1 src (read), 2 dst (read_write), p.len vec4s each.
// Dispatch: fma_peak (groups, 1, 1) workgroups of 64; copy_peak (groups, 1, 1) workgroups of 256.

struct PeakParams {
    iterations: u32,
    len: u32,
    scale: f32,
    offset: f32,
}

@group(0) @binding(0) var<uniform> p: PeakParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(64)
fn fma_peak(@builtin(global_invocation_id) id: vec3<u32>) {
    // Starting values that differ between invocations and chains, so nothing folds to a constant.
    let start = f32(id.x % 8u) * 0.125;
    var a0 = vec4(start, start + 1.0, start + 2.0, start + 3.0);
    var a1 = a0 + 4.0;
    var a2 = a0 + 8.0;
    var a3 = a0 + 12.0;
    var a4 = a0 + 16.0;
    var a5 = a0 + 20.0;
    var a6 = a0 + 24.0;
    var a7 = a0 + 28.0;
    let s = vec4(p.scale);
    let o = vec4(p.offset);
    for (var i = 0u; i < p.iterations; i++) {
        a0 = fma(a0, s, o);
        a1 = fma(a1, s, o);
        a2 = fma(a2, s, o);
        a3 = fma(a3, s, o);
        a4 = fma(a4, s, o);
        a5 = fma(a5, s, o);
        a6 = fma(a6, s, o);
        a7 = fma(a7, s, o);
    }
    dst[id.x] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}

@compute @workgroup_size(256)
fn copy_peak(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    for (var j = id.x; j < p.len; j += stride) {
        dst[j] = src[j];
    }
}
