// relu: y = max(x, 0) and its backward dx = dy where y > 0, else 0.
// The backward reads the forward output y (y > 0 exactly where x > 0), so x need not be kept.
//
// relu_forward   bindings: 0 uniform Params, 1 x (read), 3 y (read_write).
// relu_backward  bindings: 0 uniform Params, 1 y (read), 2 dy (read), 3 dx (read_write).
// Dispatch: one thread per element, workgroups of 256, folded into y past 65535 groups.

struct Params {
    total: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> first: array<f32>;
@group(0) @binding(2) var<storage, read> second: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn relu_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wg.y * groups.x + wg.x) * 256u + lid;
    if (idx < p.total) {
        out[idx] = max(first[idx], 0.0);
    }
}

@compute @workgroup_size(256)
fn relu_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wg.y * groups.x + wg.x) * 256u + lid;
    if (idx < p.total) {
        out[idx] = select(0.0, second[idx], first[idx] > 0.0);
    }
}
