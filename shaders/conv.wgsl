// conv: im2col and its adjoint col2im, the data movement of a 2-D convolution done as matmul.
//
//   x:    [N, C, H, W]                    (NCHW input, or its gradient for col2im)
//   cols: [N, C*KH*KW, OH*OW]             row = c*KH*KW + ky*KW + kx, column = oy*OW + ox
//   cols[n][row][col] = x[n, c, oy*stride + ky - pad, ox*stride + kx - pad], 0 outside the image.
// col2im is a gather: each input pixel sums every column entry that read it (no atomics, so it
// runs on DX12, which has no float atomics).
//
// conv_direct: y = conv(x) + bias, then ReLU when relu != 0, for a stride-1 convolution of a
// one-channel input (a first layer on grey images), computed directly instead of as a product:
// the implicit product gathers KH*KW scattered pixels per output, while here a thread holds
// DIRECT_COLS consecutive outputs of one row for 4 output channels, slides along each input row
// loading every pixel once per channel group, and reads the weights at addresses every lane
// shares. It adds the taps in the products' order, from zero, then the bias, so y is the
// product's bit for bit (where fma rounds once, as on lavapipe).
//   x: [N, 1, H, W], weight: [OC, 1, KH, KW], bias: [OC], y: [N, OC, OH, OW].
//
// Bindings: 0 uniform ConvParams, 1 source (read), 2 destination (read_write); conv_direct also
// 3 weight (read), 4 bias (read).
// Dispatch: workgroups of 64 threads in a grid (min(G, 65535), ceil(G / 65535), N): one image
// per z, one thread per destination element of that image, G = ceil(elements / 64) with
//   im2col: C*KH*KW*OH*OW elements (the image's column matrix), col2im: C*H*W (its pixels),
//   conv_direct: OH*ceil(OW / DIRECT_COLS) (its rows' strips of outputs).
// Threads write consecutive addresses; only the image index comes from the grid's z.
// Divisions are kept few: on a CPU driver each one of a per-thread value is a division per
// SIMD lane.

struct ConvParams {
    n: u32, c: u32, h: u32, w: u32,
    kh: u32, kw: u32, stride: u32, pad: u32,
    oh: u32, ow: u32, oc: u32, relu: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

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

const DIRECT_COLS: u32 = 8u;

// Pixel (iy, ix) of the one-channel image starting at src[image], 0 outside it (the padding).
fn pixel(image: u32, iy: i32, ix: i32) -> f32 {
    if (iy < 0 || iy >= i32(p.h) || ix < 0 || ix >= i32(p.w)) {
        return 0.0;
    }
    return src[image + u32(iy) * p.w + u32(ix)];
}

// Tap `tap` of output channels c..c+3, past the last channel clamped to it (never stored).
fn taps4(c: u32, tap: u32) -> vec4<f32> {
    let window = p.kh * p.kw;
    let last = p.oc - 1u;
    return vec4(
        weight[min(c, last) * window + tap],
        weight[min(c + 1u, last) * window + tap],
        weight[min(c + 2u, last) * window + tap],
        weight[min(c + 3u, last) * window + tap],
    );
}

// Writes channels c..c+3 (those below oc) of outputs ox0.. of row oy, after the epilogue.
fn store_direct(n: u32, c: u32, oy: u32, ox0: u32, sums: array<vec4<f32>, DIRECT_COLS>) {
    for (var i = 0u; i < 4u && c + i < p.oc; i++) {
        let row = ((n * p.oc + c + i) * p.oh + oy) * p.ow;
        for (var j = 0u; j < DIRECT_COLS && ox0 + j < p.ow; j++) {
            var v = sums[j][i] + bias[c + i];
            if (p.relu != 0u) {
                v = max(v, 0.0);
            }
            dst[row + ox0 + j] = v;
        }
    }
}

@compute @workgroup_size(64)
fn conv_direct(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let strips = (p.ow + DIRECT_COLS - 1u) / DIRECT_COLS;
    let idx = element_index(wg, groups, lid);
    if (idx >= p.oh * strips) {
        return;
    }
    let n = wg.z;
    let oy = idx / strips;
    let ox0 = (idx - oy * strips) * DIRECT_COLS;
    let image = n * p.h * p.w;
    let left = i32(ox0) - i32(p.pad);
    for (var c = 0u; c < p.oc; c += 4u) {
        var s0 = vec4(0.0);
        var s1 = vec4(0.0);
        var s2 = vec4(0.0);
        var s3 = vec4(0.0);
        var s4 = vec4(0.0);
        var s5 = vec4(0.0);
        var s6 = vec4(0.0);
        var s7 = vec4(0.0);
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = i32(oy + ky) - i32(p.pad);
            // x0..x7: the pixels under tap kx of outputs ox0..ox0+7, slid one pixel right a tap.
            var x0 = pixel(image, iy, left);
            var x1 = pixel(image, iy, left + 1);
            var x2 = pixel(image, iy, left + 2);
            var x3 = pixel(image, iy, left + 3);
            var x4 = pixel(image, iy, left + 4);
            var x5 = pixel(image, iy, left + 5);
            var x6 = pixel(image, iy, left + 6);
            for (var kx = 0u; kx < p.kw; kx++) {
                let x7 = pixel(image, iy, left + 7 + i32(kx));
                let w = taps4(c, ky * p.kw + kx);
                s0 = fma(vec4(x0), w, s0);
                s1 = fma(vec4(x1), w, s1);
                s2 = fma(vec4(x2), w, s2);
                s3 = fma(vec4(x3), w, s3);
                s4 = fma(vec4(x4), w, s4);
                s5 = fma(vec4(x5), w, s5);
                s6 = fma(vec4(x6), w, s6);
                s7 = fma(vec4(x7), w, s7);
                x0 = x1;
                x1 = x2;
                x2 = x3;
                x3 = x4;
                x4 = x5;
                x5 = x6;
                x6 = x7;
            }
        }
        store_direct(n, c, oy, ox0, array(s0, s1, s2, s3, s4, s5, s6, s7));
    }
}
