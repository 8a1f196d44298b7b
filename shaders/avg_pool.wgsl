// avg_pool: 2-D average pooling over every (n, c) plane with zero padding and
// count_include_pad = true (PyTorch's default): every window divides by k*k, padding included.
//
//   x: [N, C, H, W] -> y: [N, C, OH, OW], OH = (H + 2*pad - k) / stride + 1
//   avg_pool_backward: dx[n, c, iy, ix] = sum over the windows containing (iy, ix) of dy / (k*k),
//   a gather, so no atomics are needed.
//
// Bindings (both): 0 uniform PoolParams, 1 source (read), 2 destination (read_write).
// PoolParams is declared in prelude/pool_params.wgsl (shared with max_pool.wgsl).
// Dispatch: one thread per destination element, workgroups of 256, folded into y past 65535 groups.

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn avg_pool_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.planes * p.oh * p.ow) {
        return;
    }
    let pos = output_pixel(idx);
    var sum = 0.0;
    for (var ky = 0u; ky < p.k; ky++) {
        let iy = i32(pos.oy * p.stride + ky) - i32(p.pad);
        for (var kx = 0u; kx < p.k; kx++) {
            let ix = i32(pos.ox * p.stride + kx) - i32(p.pad);
            if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
                sum += src[pos.base + u32(iy) * p.w + u32(ix)];
            }
        }
    }
    dst[idx] = sum / f32(p.k * p.k);
}

@compute @workgroup_size(256)
fn avg_pool_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.planes * p.h * p.w) {
        return;
    }
    let ix = idx % p.w;
    let iy = (idx / p.w) % p.h;
    let plane = idx / (p.w * p.h);
    var sum = 0.0;
    for (var ky = 0u; ky < p.k; ky++) {
        let sy = i32(iy + p.pad) - i32(ky);
        if (sy < 0 || u32(sy) % p.stride != 0u || u32(sy) / p.stride >= p.oh) {
            continue;
        }
        for (var kx = 0u; kx < p.k; kx++) {
            let sx = i32(ix + p.pad) - i32(kx);
            if (sx < 0 || u32(sx) % p.stride != 0u || u32(sx) / p.stride >= p.ow) {
                continue;
            }
            sum += src[(plane * p.oh + u32(sy) / p.stride) * p.ow + u32(sx) / p.stride];
        }
    }
    dst[idx] = sum / f32(p.k * p.k);
}
