// fill: the buffer helpers a graph needs: set every element to a value, or copy a buffer.
//
//   fill: out[i] = value        copy: out[i] = src[i]
//
// fill  bindings: 0 uniform Params, 2 out (read_write).
// copy  bindings: 0 uniform Params, 1 src (read), 2 out (read_write).
// Dispatch: one thread per element, workgroups of 256, folded into y past 65535 groups.

struct Params {
    total: u32, value: f32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn fill(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wg.y * groups.x + wg.x) * 256u + lid;
    if (idx < p.total) {
        out[idx] = p.value;
    }
}

@compute @workgroup_size(256)
fn copy(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wg.y * groups.x + wg.x) * 256u + lid;
    if (idx < p.total) {
        out[idx] = src[idx];
    }
}
