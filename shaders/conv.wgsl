// conv: im2col and its adjoint col2im, the data movement of a 2-D convolution done as matmul.
//
//   x:    [N, C, H, W]                    (NCHW input, or its gradient for col2im)
//   cols: [N, C*KH*KW, OH*OW]             row = c*KH*KW + ky*KW + kx, column = oy*OW + ox
//   cols[n][row][col] = x[n, c, oy*stride + ky - pad, ox*stride + kx - pad], 0 outside the image.
// col2im is a gather: each input pixel sums every column entry that read it (no atomics, so it
// runs on DX12, which has no float atomics).
//
// Bindings: 0 uniform Params, 1 source (read), 2 destination (read_write).
// Dispatch: one thread per destination element, workgroups of 256, folded into
// (min(groups, 65535), ceil(groups / 65535), 1) when there are more than 65535 groups.

struct Params {
    n: u32, c: u32, h: u32, w: u32,
    kh: u32, kw: u32, stride: u32, pad: u32,
    oh: u32, ow: u32, total: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn flat_index(wg: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * groups.x + wg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn im2col(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.total) {
        return;
    }
    let ox = idx % p.ow;
    var t = idx / p.ow;
    let oy = t % p.oh;
    t = t / p.oh;
    let kx = t % p.kw;
    t = t / p.kw;
    let ky = t % p.kh;
    t = t / p.kh;
    let ci = t % p.c;
    let n = t / p.c;
    let iy = i32(oy * p.stride + ky) - i32(p.pad);
    let ix = i32(ox * p.stride + kx) - i32(p.pad);
    var v = 0.0;
    if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
        v = src[((n * p.c + ci) * p.h + u32(iy)) * p.w + u32(ix)];
    }
    dst[idx] = v;
}

@compute @workgroup_size(256)
fn col2im(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.total) {
        return;
    }
    let x = idx % p.w;
    var t = idx / p.w;
    let y = t % p.h;
    t = t / p.h;
    let ci = t % p.c;
    let n = t / p.c;
    let rows = p.c * p.kh * p.kw;
    let cols = p.oh * p.ow;
    var sum = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        // oy * stride = y + pad - ky must be a whole, in-range output row.
        let sy = i32(y + p.pad) - i32(ky);
        if (sy < 0 || u32(sy) % p.stride != 0u || u32(sy) / p.stride >= p.oh) {
            continue;
        }
        let oy = u32(sy) / p.stride;
        for (var kx = 0u; kx < p.kw; kx++) {
            let sx = i32(x + p.pad) - i32(kx);
            if (sx < 0 || u32(sx) % p.stride != 0u || u32(sx) / p.stride >= p.ow) {
                continue;
            }
            let ox = u32(sx) / p.stride;
            let row = (ci * p.kh + ky) * p.kw + kx;
            sum += src[(n * rows + row) * cols + oy * p.ow + ox];
        }
    }
    dst[idx] = sum;
}
