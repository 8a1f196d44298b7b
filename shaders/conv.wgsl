// conv: im2col and its adjoint col2im, the data movement of a 2-D convolution done as matmul.
//
//   x:    [N, C, H, W]                    (NCHW input, or its gradient for col2im)
//   cols: [N, C*KH*KW, OH*OW]             row = c*KH*KW + ky*KW + kx, column = oy*OW + ox
//   cols[n][row][col] = x[n, c, oy*stride + ky - pad, ox*stride + kx - pad], 0 outside the image.
// col2im is a gather: each input pixel sums every column entry that read it (no atomics, so it
// runs on DX12, which has no float atomics).
//
// Bindings: 0 uniform ConvParams, 1 source (read), 2 destination (read_write).
// Dispatch: workgroups of 64 threads in a grid (min(G, 65535), ceil(G / 65535), N): one image
// per z, one thread per destination element of that image, G = ceil(elements / 64) with
//   im2col: C*KH*KW*OH*OW elements (the image's column matrix), col2im: C*H*W (its pixels).
// Threads write consecutive addresses; only the image index comes from the grid's z.
// Divisions are kept few: on a CPU driver each one of a per-thread value is a division per
// SIMD lane.

struct ConvParams {
    n: u32, c: u32, h: u32, w: u32,
    kh: u32, kw: u32, stride: u32, pad: u32,
    oh: u32, ow: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// The thread's element within its image.
fn element_index(wg: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * groups.x + wg.x) * 64u + lid;
}

@compute @workgroup_size(64)
fn im2col(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let positions = p.oh * p.ow;
    let window = p.kh * p.kw;
    let idx = element_index(wg, groups, lid);
    if (idx >= p.c * window * positions) {
        return;
    }
    let n = wg.z;
    let row = idx / positions; // c*KH*KW + ky*KW + kx
    let pos = idx - row * positions;
    let oy = pos / p.ow;
    let ox = pos - oy * p.ow;
    let ci = row / window;
    let tap = row - ci * window;
    let ky = tap / p.kw;
    let kx = tap - ky * p.kw;
    let iy = i32(oy * p.stride + ky) - i32(p.pad);
    let ix = i32(ox * p.stride + kx) - i32(p.pad);
    var v = 0.0;
    if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
        v = src[((n * p.c + ci) * p.h + u32(iy)) * p.w + u32(ix)];
    }
    dst[n * p.c * window * positions + idx] = v;
}

@compute @workgroup_size(64)
fn col2im(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let pixels = p.h * p.w;
    let idx = element_index(wg, groups, lid);
    if (idx >= p.c * pixels) {
        return;
    }
    let n = wg.z;
    let ci = idx / pixels;
    let pix = idx - ci * pixels;
    let y = pix / p.w;
    let x = pix - y * p.w;
    let rows = p.c * p.kh * p.kw;
    let cols = p.oh * p.ow;
    // Kernel row ky read pixel row y from output row oy = (y + pad - ky) / stride when that
    // divides evenly: ky runs over (y + pad) mod stride, + stride, ... while oy counts down.
    let ty = y + p.pad;
    let tx = x + p.pad;
    var sum = 0.0;
    var oy = i32(ty / p.stride);
    for (var ky = ty % p.stride; ky < p.kh && oy >= 0; ky += p.stride) {
        if (u32(oy) < p.oh) {
            var ox = i32(tx / p.stride);
            for (var kx = tx % p.stride; kx < p.kw && ox >= 0; kx += p.stride) {
                if (u32(ox) < p.ow) {
                    let row = (ci * p.kh + ky) * p.kw + kx;
                    sum += src[(n * rows + row) * cols + u32(oy) * p.ow + u32(ox)];
                }
                ox -= 1;
            }
        }
        oy -= 1;
    }
    dst[n * p.c * pixels + idx] = sum;
}
