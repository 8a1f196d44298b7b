// dropout: inverted dropout in training, with a counter-based random draw per element, so that a
// run and its resume (and the CPU reference) draw the same masks without storing them:
//
//   h = counter_hash(seed, global_step, element)   (prelude/hash.wgsl: PCG's output permutation)
//   keep = h >= drop_below,   drop_below = round(p * 2^32)
//   forward:  y = keep ? x * scale : 0        scale = 1 / (1 - p), rounded from f64
//   backward: dx = keep ? dy * scale : 0      (the same draw, recomputed)
//   global_step: the run's step, from the optimizer's step table: steps[step[0] + offset]
//   (offset 0 in the forward pass; -1 in the backward, after the loss advanced the counter).
//   x, y, dy, dx: [len].  In evaluation a dropout is the identity and runs no kernel.
//
// Bindings: 0 uniform DropoutParams, 1 steps (read, the optimizer's OptimizerStep table), 2 step
//           (read, u32), 3 x (read; dropout_backward: dy), 4 y (read_write; backward: dx).
// Dispatch: one thread per element, workgroups of 256, folded into y past 65535 groups.

struct DropoutParams {
    len: u32, seed: u32, drop_below: u32, scale: f32, backward: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: DropoutParams;
@group(0) @binding(1) var<storage, read> steps: array<OptimizerStep>;
@group(0) @binding(2) var<storage, read> step: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn dropout(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.len) {
        return;
    }
    let row = max(step[0], p.backward) - p.backward;
    let global_step = u32(steps[row].global_step);
    let h = counter_hash(p.seed, global_step, idx);
    y[idx] = select(0.0, x[idx] * p.scale, h >= p.drop_below);
}
