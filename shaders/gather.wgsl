// gather: builds a training batch on the GPU from a dataset that lives there as raw bytes, so a
// step uploads nothing; and advances the step counter that picks the batch.
//
//   pixels: [count * image_len] u8, packed four to a u32 (little-endian); an image is
//           [channels, plane] (CHW, plane = h * w)
//   labels: [count] u32;  order: a permutation of sample indices (uploaded once an epoch)
//   norm:   [channels * 2] f32: each channel's mean, then its standard deviation
//   step[0]: the current step; this batch takes order[step * stride .. + rows]
//   gather_batch:  x[r, j] = (pixel / 255 - mean[c]) / std[c], c = j / plane   (x: [rows, image_len])
//                  y[r]    = labels[order[step * stride + r]]
//   (softmax_cross_entropy.wgsl advances the step counter when the step's loss is done)
//
// gather_batch  bindings: 0 uniform GatherParams, 1 pixels (read, u32), 2 labels (read, u32),
//               3 order (read, u32), 4 step (read, u32), 5 x (read_write), 6 y (read_write, u32),
//               7 norm (read, f32).
//               Dispatch: one thread per element of x, workgroups of 256, folded into y past 65535.

struct GatherParams {
    rows: u32, image_len: u32, stride: u32, plane: u32,
}

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> pixels: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<u32>;
@group(0) @binding(7) var<storage, read> norm: array<f32>;

@compute @workgroup_size(256)
fn gather_batch(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.rows * p.image_len) {
        return;
    }
    let row = idx / p.image_len;
    let j = idx - row * p.image_len;
    let sample = order[step[0] * p.stride + row];
    let byte_at = sample * p.image_len + j;
    let byte = (pixels[byte_at / 4u] >> ((byte_at % 4u) * 8u)) & 0xffu;
    let channel = j / p.plane;
    x[idx] = (f32(byte) / 255.0 - norm[2u * channel]) / norm[2u * channel + 1u];
    if (j == 0u) {
        y[row] = labels[sample];
    }
}
