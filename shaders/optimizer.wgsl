// optimizer: one optimizer step over every parameter of a network in one dispatch, exactly as
// torch.optim.SGD and torch.optim.Adam / AdamW (single-tensor path) compute it in f32. What
// changes from step to step (the scheduled learning rate, momentum or beta1, Adam's bias
// corrections) comes from a table the host computes in f64 for each step of the epoch, indexed by
// the split's step counter, so a schedule needs no plan rebuild and no host round trip.
//
//   sgd_step (torch.optim.SGD, dampening 0; the momentum buffer starts at 0, so step 1 gives
//   buf = d, PyTorch's "buf = clone(d_p)"):
//     d = grad + weight_decay * param
//     buf = momentum * buf + d
//     d = nesterov ? d + momentum * buf : buf
//     param = param - lr * d
//   adam_step (torch.optim.Adam; AdamW is Adam with decoupled weight decay):
//     AdamW: param = param * (1 - lr * weight_decay)      Adam: g = grad + weight_decay * param
//     m = lerp(m, g, 1 - beta1)          (PyTorch's lerp: two formulas either side of weight 0.5)
//     v = v * beta2 + (1 - beta2) * g * g
//     param = param - step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)   (PyTorch's order)
//     with step_size = lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t), t = step + 1
//
//   grad, param, moment1 (SGD's momentum buffer, Adam's exp_avg), moment2 (Adam's exp_avg_sq):
//     [count], the network's parameters packed in one buffer.
//   steps: [epoch's steps] OptimizerStep;  step[0]: the split's step counter, which the loss
//     kernel has already advanced, so this step's row is steps[step[0] - 1].
//
// Bindings: 0 uniform OptimizerParams, 1 grad (read), 2 param (read_write), 3 moment1
// (read_write), 4 moment2 (read_write; adam_step only), 5 steps (read), 6 step (read, u32).
// Dispatch: one thread per parameter, workgroups of 256, folded into y past 65535 groups.

struct OptimizerParams {
    count: u32, weight_decay: f32, nesterov: u32, decoupled: u32,
    beta2: f32, one_minus_beta2: f32, eps: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: OptimizerParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> moment1: array<f32>;
@group(0) @binding(4) var<storage, read_write> moment2: array<f32>;
@group(0) @binding(5) var<storage, read> steps: array<OptimizerStep>;
@group(0) @binding(6) var<storage, read> step: array<u32>;

// This step's scheduled values (the loss kernel has advanced the counter past it).
fn current_step() -> OptimizerStep {
    return steps[max(step[0], 1u) - 1u];
}

@compute @workgroup_size(256)
fn sgd_step(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.count) {
        return;
    }
    let s = current_step();
    let d = grad[idx] + p.weight_decay * param[idx];
    let buf = s.momentum * moment1[idx] + d;
    moment1[idx] = buf;
    var update = buf;
    if (p.nesterov != 0u) {
        update = d + s.momentum * buf;
    }
    param[idx] = param[idx] - s.lr * update;
}

@compute @workgroup_size(256)
fn adam_step(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.count) {
        return;
    }
    let s = current_step();
    var x = param[idx];
    var g = grad[idx];
    if (p.decoupled != 0u) {
        x = x * s.decay;
    } else {
        g = g + p.weight_decay * x;
    }
    let m0 = moment1[idx];
    var m = m0 + s.one_minus_beta1 * (g - m0);
    if (s.one_minus_beta1 >= 0.5) {
        m = g - (g - m0) * (1.0 - s.one_minus_beta1);
    }
    let v = moment2[idx] * p.beta2 + p.one_minus_beta2 * g * g;
    moment1[idx] = m;
    moment2[idx] = v;
    let denom = sqrt(v) / s.bias_correction2_sqrt + p.eps;
    param[idx] = x - s.step_size * m / denom;
}
