// sgd: stochastic gradient descent with momentum, exactly as torch.optim.SGD computes it
// (dampening 0, no Nesterov), over every parameter of a network in one dispatch.
//
//   g = grad + weight_decay * param
//   velocity = momentum * velocity + g       (velocity starts at 0, so step 1 gives velocity = g,
//                                             PyTorch's "buffer = clone(grad)" on the first step)
//   param = param - lr * velocity
//   param, grad, velocity: [count], the network's parameters packed in one buffer.
//
// Bindings: 0 uniform SgdParams, 1 grad (read), 2 param (read_write), 3 velocity (read_write).
// Dispatch: one thread per parameter, workgroups of 256, folded into y past 65535 groups.

struct SgdParams {
    count: u32, lr: f32, momentum: f32, weight_decay: f32,
}

@group(0) @binding(0) var<uniform> p: SgdParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;

@compute @workgroup_size(256)
fn sgd_momentum(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.count) {
        return;
    }
    let g = grad[idx] + p.weight_decay * param[idx];
    let v = p.momentum * velocity[idx] + g;
    velocity[idx] = v;
    param[idx] = param[idx] - p.lr * v;
}
