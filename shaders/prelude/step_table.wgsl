
// ---- prelude/step_table.wgsl, joined by shaders/src/lib.rs ----
// One training step's scheduled values (engine::ops::optimizer::OptimizerStep), in the host's
// f64 rounded to f32: optimizer.wgsl reads them all; dropout and the augmented gather read
// global_step, which seeds their draws.
struct OptimizerStep {
    lr: f32,
    momentum: f32,          // SGD's momentum; Adam's beta1
    one_minus_beta1: f32,
    step_size: f32,         // Adam: lr / (1 - beta1^t)
    bias_correction2_sqrt: f32,
    decay: f32,             // AdamW: 1 - lr * weight_decay
    global_step: f32,       // the step within the run, from 0 (exact to 2^24)
    _pad: f32,
}
