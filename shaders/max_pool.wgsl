// max_pool: 2-D max pooling over every (n, c) plane, any kernel, stride and zero padding
// (padding never wins: it counts as -inf, as in PyTorch), floor output size.
//
//   x: [N, C, H, W] -> y: [N, C, OH, OW], OH = (H + 2*pad - k) / stride + 1
//   argmax[n, c, oy, ox] = iy*W + ix of the first maximum in the window (saved for backward)
//   With relu != 0, y = max(max, 0), the ReLU that follows the pool fused in; where the ReLU
//   clamps, argmax = NO_PIXEL, so the backward pass gives that window no gradient (ReLU's).
//   max_pool_backward: dx[n, c, iy, ix] = sum of dy over the windows whose argmax is (iy, ix),
//   a gather over the windows that contain the pixel, so no atomics are needed.
//   max_pool_backward_windows: the same dx where the windows tile the input without overlap
//   (stride == k, no padding): a thread per window writes its k*k pixels, dy where the pixel is
//   the window's argmax and 0 elsewhere, and the last window of a row or column also zeroes the
//   pixels past it that no window covers. A thread's divisions then serve k*k pixels instead of
//   one (on a CPU driver each division of a per-thread value is a division per SIMD lane).
//
// max_pool_forward   bindings: 0 uniform PoolParams, 1 x (read), 2 y (read_write), 3 argmax (read_write, u32).
// max_pool_backward, max_pool_backward_windows
//                    bindings: 0 uniform PoolParams, 4 dy (read), 5 argmax (read, u32), 6 dx (read_write).
// PoolParams is declared in prelude/pool_params.wgsl (shared with avg_pool.wgsl).
// Dispatch: one thread per output element (forward, backward_windows) or input element
// (backward), workgroups of 256, folded into y past 65535 groups.

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax_out: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

const NO_PIXEL: u32 = 0xffffffffu;

@compute @workgroup_size(256)
fn max_pool_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.planes * p.oh * p.ow) {
        return;
    }
    let pos = output_pixel(idx);
    // The lowest finite f32, written as bits: Tint refuses the decimal literal -3.4028235e38.
    var best = bitcast<f32>(0xff7fffffu);
    var best_at = 0u;
    var found = false;
    for (var ky = 0u; ky < p.k; ky++) {
        let iy = i32(pos.oy * p.stride + ky) - i32(p.pad);
        for (var kx = 0u; kx < p.k; kx++) {
            let ix = i32(pos.ox * p.stride + kx) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.h) || ix < 0 || ix >= i32(p.w)) {
                continue;
            }
            let at = u32(iy) * p.w + u32(ix);
            let v = x[pos.base + at];
            // A NaN wins, as in PyTorch, so a diverging network is noticed; a bit test, since
            // `v != v` may be folded away by compilers that assume finite math.
            let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
            if (!found || v > best || nan) {
                best = v;
                best_at = at;
                found = true;
            }
        }
    }
    let nan = (bitcast<u32>(best) & 0x7fffffffu) > 0x7f800000u;
    if (p.relu != 0u && !(best > 0.0) && !nan) {
        best = 0.0;
        best_at = NO_PIXEL;
    }
    y[idx] = best;
    argmax_out[idx] = best_at;
}

@compute @workgroup_size(256)
fn max_pool_backward(
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
    let here = iy * p.w + ix;
    // The windows that hold the pixel: oy from ceil((iy + pad - k + 1) / stride) to
    // (iy + pad) / stride, within the output (a few divisions a thread, none a tap).
    let ty = iy + p.pad;
    let tx = ix + p.pad;
    let oy_end = min(ty / p.stride + 1u, p.oh);
    let ox_end = min(tx / p.stride + 1u, p.ow);
    let oy_start = select(0u, (ty + p.stride - p.k) / p.stride, ty + p.stride > p.k);
    let ox_start = select(0u, (tx + p.stride - p.k) / p.stride, tx + p.stride > p.k);
    var sum = 0.0;
    for (var oy = oy_start; oy < oy_end; oy++) {
        for (var ox = ox_start; ox < ox_end; ox++) {
            let o = (plane * p.oh + oy) * p.ow + ox;
            if (argmax_in[o] == here) {
                sum += dy[o];
            }
        }
    }
    dx[idx] = sum;
}

@compute @workgroup_size(256)
fn max_pool_backward_windows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.planes * p.oh * p.ow) {
        return;
    }
    let pos = output_pixel(idx);
    let grad = dy[idx];
    let winner = argmax_in[idx];
    let y_end = select(pos.oy * p.k + p.k, p.h, pos.oy + 1u == p.oh);
    let x_end = select(pos.ox * p.k + p.k, p.w, pos.ox + 1u == p.ow);
    for (var iy = pos.oy * p.k; iy < y_end; iy++) {
        for (var ix = pos.ox * p.k; ix < x_end; ix++) {
            let here = iy * p.w + ix;
            dx[pos.base + here] = select(0.0, grad, here == winner);
        }
    }
}
