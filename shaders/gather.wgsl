// gather: builds a training batch on the GPU from a dataset that lives there as raw bytes, so a
// step uploads nothing; optionally augments each image with a random affine transform.
//
//   pixels: [count * image_len] u8, packed four to a u32 (little-endian); an image is
//           [channels, height, width] (CHW, plane = height * width)
//   labels: [count] u32;  order: a permutation of sample indices (uploaded once an epoch)
//   norm:   [channels * 2] f32: each channel's mean, then its standard deviation
//   step[0]: the current step; this batch takes order[step * stride .. + rows]
//   gather_batch:  x[r, j] = (pixel / 255 - mean[c]) / std[c], c = j / plane   (x: [rows, image_len])
//                  y[r]    = labels[order[step * stride + r]]
//   gather_augmented: the same, the pixel taken from the sample's image moved by a random
//     translation, rotation and scaling (torchvision's RandomAffine's distribution, bilinear,
//     a neighbour outside the image 0), drawn
//     from (seed, epoch, sample), so a resumed run and the CPU reference draw the same:
//       h = counter_hash(seed ^ AUGMENT_SALT, epoch, sample)   (prelude/hash.wgsl)
//       u_k = (pcg_hash(h + k) >> 8) / 2^23 - 1, k = 0..3            (uniform in [-1, 1), exact)
//       tx, ty = round(shift * u_0), round(shift * u_1) (half to even; whole pixels, as torchvision)
//       angle = rotate * u_2 (radians);  s = 1 + scale * u_3
//       output pixel (row i, column j), centre (cx, cy) = ((width - 1) / 2, (height - 1) / 2):
//         dx = j - cx - tx;  dy = i - cy - ty
//         source (sx, sy) = (cx + (cos * dx + sin * dy) / s, cy + (cos * dy - sin * dx) / s)
//         value = bilinear at (sx, sy) of the image's channel, pixels outside the image 0
//     epoch: the run's epoch from 0, (steps[step[0]].global_step - step[0]) / steps_per_epoch.
//   (softmax_cross_entropy.wgsl advances the step counter when the step's loss is done)
//
// Bindings: 0 uniform GatherParams, 1 pixels (read, u32), 2 labels (read, u32), 3 order (read,
//           u32), 4 step (read, u32), 5 x (read_write), 6 y (read_write, u32), 7 norm (read, f32),
//           8 steps (read, the optimizer's OptimizerStep table; gather_augmented only).
// Dispatch: one thread per element of x, workgroups of 256, folded into y past 65535.

struct GatherParams {
    rows: u32, image_len: u32, stride: u32, plane: u32,
    width: u32, steps_per_epoch: u32, seed: u32, _pad: u32,
    shift: f32, rotate: f32, scale: f32, _pad1: f32,
}

// Keeps augmentation's draws apart from dropout's, which hash the same seed.
const AUGMENT_SALT: u32 = 0x9e3779b9u;

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> pixels: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<u32>;
@group(0) @binding(7) var<storage, read> norm: array<f32>;
@group(0) @binding(8) var<storage, read> steps: array<OptimizerStep>;

// The byte at `at` of the packed pixels, as a float 0..255.
fn pixel(at: u32) -> f32 {
    return f32((pixels[at / 4u] >> ((at % 4u) * 8u)) & 0xffu);
}

fn normalized(value: f32, channel: u32) -> f32 {
    return (value / 255.0 - norm[2u * channel]) / norm[2u * channel + 1u];
}

// Element `idx` of x: its batch row, its place j within the image, and the sample it comes
// from; the row's first element also writes the row's label.
struct BatchElement { row: u32, j: u32, sample: u32 }

fn batch_element(idx: u32) -> BatchElement {
    let row = idx / p.image_len;
    let j = idx - row * p.image_len;
    let sample = order[step[0] * p.stride + row];
    if (j == 0u) {
        y[row] = labels[sample];
    }
    return BatchElement(row, j, sample);
}

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
    let e = batch_element(idx);
    x[idx] = normalized(pixel(e.sample * p.image_len + e.j), e.j / p.plane);
}

// A draw uniform in [-1, 1): 24 bits of a hash, exact in f32.
fn signed_unit(h: u32) -> f32 {
    return f32(h >> 8u) / 8388608.0 - 1.0;
}

// The pixel at whole coordinates (px, py) of the plane starting at byte `base`; 0 outside it.
fn pixel_or_zero(base: u32, px: f32, py: f32) -> f32 {
    let height = p.plane / p.width;
    if (px < 0.0 || py < 0.0 || px >= f32(p.width) || py >= f32(height)) {
        return 0.0;
    }
    return pixel(base + u32(py) * p.width + u32(px));
}

// The value at output pixel `at` (within the plane starting at byte `base`) of the image moved
// by the transform drawn from `h`.
fn augmented_pixel(base: u32, at: u32, h: u32) -> f32 {
    let u = vec4<f32>(
        signed_unit(pcg_hash(h)), signed_unit(pcg_hash(h + 1u)),
        signed_unit(pcg_hash(h + 2u)), signed_unit(pcg_hash(h + 3u)),
    );
    let t = round(p.shift * u.xy);
    let angle = p.rotate * u.z;
    let s = 1.0 + p.scale * u.w;
    let c = cos(angle);
    let sn = sin(angle);
    let height = p.plane / p.width;
    let centre = vec2<f32>(f32(p.width - 1u), f32(height - 1u)) * 0.5;
    let d = vec2<f32>(f32(at % p.width), f32(at / p.width)) - centre - t;
    let src = centre + vec2<f32>(c * d.x + sn * d.y, c * d.y - sn * d.x) / s;
    let corner = floor(src);
    let f = src - corner;
    let top = (1.0 - f.x) * pixel_or_zero(base, corner.x, corner.y)
        + f.x * pixel_or_zero(base, corner.x + 1.0, corner.y);
    let bottom = (1.0 - f.x) * pixel_or_zero(base, corner.x, corner.y + 1.0)
        + f.x * pixel_or_zero(base, corner.x + 1.0, corner.y + 1.0);
    return (1.0 - f.y) * top + f.y * bottom;
}

@compute @workgroup_size(256)
fn gather_augmented(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.rows * p.image_len) {
        return;
    }
    let e = batch_element(idx);
    let epoch = (u32(steps[step[0]].global_step) - step[0]) / p.steps_per_epoch;
    let h = counter_hash(p.seed ^ AUGMENT_SALT, epoch, e.sample);
    let channel = e.j / p.plane;
    let base = e.sample * p.image_len + channel * p.plane;
    x[idx] = normalized(augmented_pixel(base, e.j - channel * p.plane, h), channel);
}
