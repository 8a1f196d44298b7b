// relu: y = max(x, 0) and its backward dx = dy where y > 0, else 0.
// The backward reads the forward output y (y > 0 exactly where x > 0), so x need not be kept.
//
// relu_forward   bindings: 0 uniform ReluParams, 1 x (read), 2 y (read_write).
// relu_backward  bindings: 0 uniform ReluParams, 3 y_saved (read: the forward output y),
//                4 dy (read), 5 dx (read_write).
// Dispatch: one thread per element, workgroups of 256, folded into y past 65535 groups.

struct ReluParams {
    len: u32,
}

@group(0) @binding(0) var<uniform> p: ReluParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> y_saved: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn relu_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx < p.len) {
        y[idx] = max(x[idx], 0.0);
    }
}

@compute @workgroup_size(256)
fn relu_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx < p.len) {
        dx[idx] = select(0.0, dy[idx], y_saved[idx] > 0.0);
    }
}
