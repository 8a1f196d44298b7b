// add: elementwise sum for residual connections, the in-place accumulate that sums the
// gradients of a tensor read by several consumers (the Inception branches, the residual skip),
// and the sum of equal slices that finishes a split-K matmul.
//
//   add:        out[i] = first[i] + second[i]
//   add_assign: out[i] = out[i] + first[i]
//   sum_slices: out[i] = sum over s < slices of first[s * total + i], and
//               out2[i] = sum over s < slices of second[s * total2 + i] for i < total2: a
//               split-K weight gradient and its bias gradient in one dispatch
//
// add         bindings: 0 uniform AddParams, 1 first (read), 2 second (read), 3 out (read_write).
// add_assign  bindings: 0 uniform AddParams, 1 first (read), 3 out (read_write).
// sum_slices  bindings: 0 uniform AddParams, 1 first (read), 2 second (read), 3 out (read_write),
//             4 out2 (read_write); one thread per element of out, or of out2 if it is longer.
// Dispatch: one thread per element of out, workgroups of 256, folded into y past 65535 groups.

struct AddParams {
    total: u32, slices: u32, total2: u32,
}

@group(0) @binding(0) var<uniform> p: AddParams;
@group(0) @binding(1) var<storage, read> first: array<f32>;
@group(0) @binding(2) var<storage, read> second: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out2: array<f32>;

@compute @workgroup_size(256)
fn add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx < p.total) {
        out[idx] = first[idx] + second[idx];
    }
}

@compute @workgroup_size(256)
fn add_assign(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx < p.total) {
        out[idx] = out[idx] + first[idx];
    }
}

@compute @workgroup_size(256)
fn sum_slices(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx < p.total) {
        var sum = 0.0;
        for (var s = 0u; s < p.slices; s++) {
            sum += first[s * p.total + idx];
        }
        out[idx] = sum;
    }
    if (idx < p.total2) {
        var sum = 0.0;
        for (var s = 0u; s < p.slices; s++) {
            sum += second[s * p.total2 + idx];
        }
        out2[idx] = sum;
    }
}
