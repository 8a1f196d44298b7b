// batch_norm: BatchNorm2d (and BatchNorm1d, a plane of 1) as PyTorch computes it on the CPU.
//
//   x, y, dy, dx: [batch, channels, plane] (plane = h * w; 1 after a linear layer)
//   Training: the statistics of each channel over the valid rows of the batch (the last batch of
//   an epoch is padded; its padding rows count in no statistic and get a zero input gradient):
//     valid = min(batch, samples - step * batch), count = valid * plane
//     mean = sum(x) / count, var = sum((x - mean)^2) / count  (biased)
//     running_mean = momentum * mean + (1 - momentum) * running_mean
//     running_var  = momentum * var * count / (count - 1) + (1 - momentum) * running_var
//     num_batches_tracked += 1   (an f32 holding a whole number; the state_dict writes it as int64)
//   Evaluation: mean and var are the running ones.
//   saved: [2 * channels + 1]: each channel's mean, then its 1 / sqrt(var + eps), then count.
//   y = x * alpha + (beta - mean * alpha), alpha = gamma / sqrt(var + eps)   (PyTorch's order)
//   Backward (training): sums = [sum(dy) per channel, then sum((x - mean) * dy)] over valid rows,
//     dgamma = sums[C + c] * inv_std, dbeta = sums[c],
//     dx = (dy - sum(dy) / count - (x - mean) * sum((x - mean) dy) * inv_std^2 / count) * inv_std * gamma
//
// Bindings (each entry point binds the ones it reads or writes):
//   0 uniform BatchNormParams, 1 x (read), 2 step (read, u32), 3 saved (read_write),
//   4 running_mean (read_write), 5 running_var (read_write), 6 gamma (read), 7 beta (read),
//   8 y (read_write), 9 dy (read), 10 sums (read_write), 11 dgamma (read_write),
//   12 dbeta (read_write), 13 dx (read_write), 14 num_batches_tracked (read_write, [1]).
// Dispatch: batch_norm_statistics and batch_norm_backward_reduce: one workgroup of 256 a channel
//   ([channels, 1, 1]); batch_norm_running: one thread a channel, workgroups of 256;
//   batch_norm_apply and batch_norm_backward_input: one thread an element of x, workgroups of 256
//   folded into y past 65535.

struct BatchNormParams {
    batch: u32, channels: u32, plane: u32, samples: u32,
    eps: f32, momentum: f32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: BatchNormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> step: array<u32>;
@group(0) @binding(3) var<storage, read_write> saved: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(9) var<storage, read> dy: array<f32>;
@group(0) @binding(10) var<storage, read_write> sums: array<f32>;
@group(0) @binding(11) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(12) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(13) var<storage, read_write> dx: array<f32>;
@group(0) @binding(14) var<storage, read_write> num_batches_tracked: array<f32>;

const THREADS: u32 = 256u;

var<workgroup> partial: array<vec2<f32>, THREADS>;

// The index in x of element e of channel c's valid elements (row-major over rows, then plane).
fn element(e: u32, c: u32) -> u32 {
    let row = e / p.plane;
    return (row * p.channels + c) * p.plane + (e - row * p.plane);
}

// The sum over the workgroup of each thread's v; every thread gets it.
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    workgroupBarrier(); // earlier readers of `partial` are done
    partial[lid] = v;
    workgroupBarrier();
    for (var half = THREADS / 2u; half > 0u; half >>= 1u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    return partial[0];
}

@compute @workgroup_size(THREADS)
fn batch_norm_statistics(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wg.x;
    let done = min(p.samples, step[0] * p.batch);
    let count = min(p.batch, p.samples - done) * p.plane;
    let n = f32(count);
    var s = 0.0;
    for (var e = lid; e < count; e += THREADS) {
        s += x[element(e, c)];
    }
    let mean = workgroup_sum(lid, vec2(s, 0.0)).x / n;
    var q = 0.0;
    for (var e = lid; e < count; e += THREADS) {
        let d = x[element(e, c)] - mean;
        q += d * d;
    }
    let var_sum = workgroup_sum(lid, vec2(q, 0.0)).x;
    if (lid == 0u) {
        saved[c] = mean;
        saved[p.channels + c] = 1.0 / sqrt(var_sum / n + p.eps);
        if (c == 0u) {
            saved[2u * p.channels] = n;
            num_batches_tracked[0] += 1.0;
        }
        running_mean[c] = p.momentum * mean + (1.0 - p.momentum) * running_mean[c];
        running_var[c] = p.momentum * (var_sum / (n - 1.0)) + (1.0 - p.momentum) * running_var[c];
    }
}

@compute @workgroup_size(THREADS)
fn batch_norm_running(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) {
        return;
    }
    saved[c] = running_mean[c];
    saved[p.channels + c] = 1.0 / sqrt(running_var[c] + p.eps);
    if (c == 0u) {
        saved[2u * p.channels] = f32(p.batch * p.plane);
    }
}

@compute @workgroup_size(THREADS)
fn batch_norm_apply(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.batch * p.channels * p.plane) {
        return;
    }
    let c = (idx / p.plane) % p.channels;
    let alpha = saved[p.channels + c] * gamma[c];
    y[idx] = x[idx] * alpha + (beta[c] - saved[c] * alpha);
}

@compute @workgroup_size(THREADS)
fn batch_norm_backward_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wg.x;
    let count = u32(saved[2u * p.channels]);
    let mean = saved[c];
    var acc = vec2(0.0, 0.0);
    for (var e = lid; e < count; e += THREADS) {
        let i = element(e, c);
        acc += vec2(dy[i], (x[i] - mean) * dy[i]);
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u) {
        sums[c] = total.x;
        sums[p.channels + c] = total.y;
        dgamma[c] = total.y * saved[p.channels + c];
        dbeta[c] = total.x;
    }
}

@compute @workgroup_size(THREADS)
fn batch_norm_backward_input(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.batch * p.channels * p.plane) {
        return;
    }
    let n = saved[2u * p.channels];
    let row = idx / (p.channels * p.plane);
    if (row >= u32(n) / p.plane) {
        dx[idx] = 0.0; // a padding row
        return;
    }
    let c = (idx / p.plane) % p.channels;
    let inv_std = saved[p.channels + c];
    let k = sums[p.channels + c] * inv_std * inv_std / n;
    dx[idx] = (dy[idx] - sums[c] / n - (x[idx] - saved[c]) * k) * inv_std * gamma[c];
}
