//! optimizer.wgsl: SGD (momentum, weight decay, Nesterov), Adam and AdamW as torch.optim
//! computes them, over all parameters at once, with the learning rate, momentum (or beta1) and
//! bias corrections of each step read from a table the host fills from a [`Schedule`].

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};
use crate::schedule::Schedule;

crate::gpu_params! {
    /// optimizer.wgsl's constant settings (what a schedule never changes).
    pub struct OptimizerParams {
        /// Elements to update.
        pub count: u32,
        /// The L2 penalty of SGD and Adam (0 for AdamW, whose decay is each step's `decay`).
        pub weight_decay: f32,
        /// 1 for Nesterov momentum (SGD).
        pub nesterov: u32,
        /// 1 for AdamW's decoupled weight decay.
        pub decoupled: u32,
        /// Adam's beta2.
        pub beta2: f32,
        /// `1 - beta2`, computed in f64 as PyTorch's Python floats are, then rounded.
        pub one_minus_beta2: f32,
        /// Adam's eps, added outside the square root.
        pub eps: f32,
        /// Padding to 16 bytes.
        pub _pad: u32,
    }
}

/// One step's scheduled values, as `shaders/prelude/step_table.wgsl`'s `OptimizerStep` (f64
/// rounded to f32).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptimizerStep {
    /// The learning rate.
    pub lr: f32,
    /// SGD's momentum, or Adam's beta1.
    pub momentum: f32,
    /// `1 - beta1` (Adam's `lerp` weight).
    pub one_minus_beta1: f32,
    /// Adam's `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// Adam's `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f32,
    /// AdamW's `1 - lr · weight_decay`.
    pub decay: f32,
    /// The step within the run (a whole number, exact to 2^24), which seeds dropout's draws and
    /// gives the augmented gather its epoch.
    pub global_step: f32,
    _pad: f32,
}

/// Words (f32) per [`OptimizerStep`].
pub const STEP_WORDS: usize = std::mem::size_of::<OptimizerStep>() / 4;

const STORAGE_SGD: &[(u32, crate::kernel::Access)] = &[(1, Read), (2, ReadWrite), (3, ReadWrite), (5, Read), (6, Read)];
const STORAGE_ADAM: &[(u32, crate::kernel::Access)] =
    &[(1, Read), (2, ReadWrite), (3, ReadWrite), (4, ReadWrite), (5, Read), (6, Read)];

/// SGD: reads grad, updates param and the momentum buffer in place.
pub const SGD_STEP: KernelSpec = KernelSpec::new::<OptimizerParams>("optimizer", "sgd_step", STORAGE_SGD);
/// Adam and AdamW: reads grad, updates param, exp_avg and exp_avg_sq in place.
pub const ADAM_STEP: KernelSpec = KernelSpec::new::<OptimizerParams>("optimizer", "adam_step", STORAGE_ADAM);

/// torch.optim.SGD's settings (dampening 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate (a schedule's base, or OneCycle's maximum).
    pub lr: f64,
    /// Momentum factor (0 for plain SGD; OneCycle cycles it).
    pub momentum: f64,
    /// L2 penalty added to the gradient as `weight_decay · param`.
    pub weight_decay: f64,
    /// Nesterov momentum (needs a momentum above 0, as in PyTorch).
    pub nesterov: bool,
}

impl Sgd {
    /// SGD at `lr` with `momentum`, no weight decay, no Nesterov (the tutorial's optimizer).
    pub const fn new(lr: f64, momentum: f64) -> Sgd {
        Sgd { lr, momentum, weight_decay: 0.0, nesterov: false }
    }
}

/// torch.optim.Adam's settings; with `decoupled` set, torch.optim.AdamW's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate (a schedule's base, or OneCycle's maximum).
    pub lr: f64,
    /// The moving averages' coefficients (OneCycle cycles beta1).
    pub betas: (f64, f64),
    /// Added to the denominator, outside the square root.
    pub eps: f64,
    /// Adam: L2 penalty added to the gradient; AdamW: the decoupled decay rate.
    pub weight_decay: f64,
    /// AdamW: the parameters decay by `1 - lr · weight_decay` before the update.
    pub decoupled: bool,
}

impl Adam {
    /// torch.optim.Adam's defaults at `lr`: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub const fn adam(lr: f64) -> Adam {
        Adam { lr, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }

    /// torch.optim.AdamW's defaults at `lr`: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    pub const fn adamw(lr: f64) -> Adam {
        Adam { lr, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.01, decoupled: true }
    }
}

/// An optimizer, as the training plan runs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// torch.optim.SGD.
    Sgd(Sgd),
    /// torch.optim.Adam or AdamW.
    Adam(Adam),
}

impl Optimizer {
    /// The learning rate the schedule starts from (OneCycle's maximum).
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd(s) => s.lr,
            Optimizer::Adam(a) => a.lr,
        }
    }

    /// Its name on the command line: `sgd`, `adam` or `adamw`.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd(_) => "sgd",
            Optimizer::Adam(a) if a.decoupled => "adamw",
            Optimizer::Adam(_) => "adam",
        }
    }

    /// Its per-parameter state, as PyTorch's optimizer state_dict names it.
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd(_) => &["momentum_buffer"],
            Optimizer::Adam(_) => &["exp_avg", "exp_avg_sq"],
        }
    }

    /// Refuses settings PyTorch refuses: a learning rate that is not above 0 and finite, betas
    /// outside [0, 1), eps not above 0, a negative weight decay or momentum, Nesterov without
    /// momentum. The message names the setting.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, v: f64, want: &str| Err(Error::Setting(format!("{what} {v}: {want}")));
        let lr = self.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad("learning rate", lr, "must be a finite number above 0");
        }
        match *self {
            Optimizer::Sgd(s) => {
                if !(s.momentum.is_finite() && s.momentum >= 0.0) {
                    return bad("momentum", s.momentum, "must be a finite number of at least 0");
                }
                if s.nesterov && s.momentum == 0.0 {
                    return bad("momentum", s.momentum, "Nesterov momentum needs a momentum above 0");
                }
                non_negative_decay(s.weight_decay)
            }
            Optimizer::Adam(a) => {
                for (what, beta) in [("beta1", a.betas.0), ("beta2", a.betas.1)] {
                    if !(0.0..1.0).contains(&beta) {
                        return bad(what, beta, "must be in [0, 1)");
                    }
                }
                if !(a.eps.is_finite() && a.eps > 0.0) {
                    return bad("eps", a.eps, "must be a finite number above 0");
                }
                non_negative_decay(a.weight_decay)
            }
        }
    }

    /// The table row of the step numbered `t` from 0 over the whole run, when the schedule gives
    /// it learning rate `lr` and, where it cycles one, momentum (or beta1) `momentum`.
    pub fn step_row(&self, t: u64, lr: f64, momentum: Option<f64>) -> OptimizerStep {
        match *self {
            Optimizer::Sgd(s) => {
                let momentum = momentum.unwrap_or(s.momentum);
                OptimizerStep { lr: lr as f32, momentum: momentum as f32, global_step: t as f32, ..Default::default() }
            }
            Optimizer::Adam(a) => {
                let beta1 = momentum.unwrap_or(a.betas.0);
                // PyTorch's step count starts at 1 and its bias corrections use the current beta1.
                let count = (t + 1) as f64;
                OptimizerStep {
                    lr: lr as f32,
                    momentum: beta1 as f32,
                    one_minus_beta1: (1.0 - beta1) as f32,
                    step_size: (lr / (1.0 - beta1.powf(count))) as f32,
                    bias_correction2_sqrt: (1.0 - a.betas.1.powf(count)).sqrt() as f32,
                    decay: (1.0 - lr * a.weight_decay) as f32,
                    global_step: t as f32,
                    _pad: 0.0,
                }
            }
        }
    }

    /// The rows of `count` steps from step `first` of a run of `total` steps under `schedule`.
    pub fn step_rows(&self, schedule: &Schedule, first: u64, count: usize, total: u64) -> Vec<OptimizerStep> {
        (first..first + count as u64)
            .map(|t| {
                let (lr, momentum) = schedule.at(self.lr(), t, total);
                self.step_row(t, lr, momentum)
            })
            .collect()
    }

    fn params(&self, count: usize) -> OptimizerParams {
        match *self {
            Optimizer::Sgd(s) => OptimizerParams {
                count: count as u32,
                weight_decay: s.weight_decay as f32,
                nesterov: s.nesterov as u32,
                ..Default::default()
            },
            Optimizer::Adam(a) => OptimizerParams {
                count: count as u32,
                weight_decay: if a.decoupled { 0.0 } else { a.weight_decay as f32 },
                decoupled: a.decoupled as u32,
                beta2: a.betas.1 as f32,
                one_minus_beta2: (1.0 - a.betas.1) as f32,
                eps: a.eps as f32,
                ..Default::default()
            },
        }
    }
}

fn non_negative_decay(weight_decay: f64) -> Result<()> {
    match weight_decay.is_finite() && weight_decay >= 0.0 {
        true => Ok(()),
        false => Err(Error::Setting(format!("weight decay {weight_decay}: must be a finite number of at least 0"))),
    }
}

/// An optimizer's buffers on the GPU: its per-parameter state (zero at the start, as PyTorch's
/// lazily created state is) and the current epoch's table of scheduled step values.
pub struct OptimizerState {
    /// The optimizer.
    pub optimizer: Optimizer,
    /// Each state buffer under its PyTorch name ([`Optimizer::state_names`]), packed like the
    /// parameters.
    pub moments: Vec<(&'static str, Tensor)>,
    /// One [`OptimizerStep`] per step of an epoch, indexed by the split's step counter.
    pub steps: Tensor,
}

impl OptimizerState {
    /// Zero state for `len` packed parameters and room for `steps` steps an epoch.
    pub fn new(ctx: &GpuContext, optimizer: Optimizer, len: usize, steps: usize) -> Result<OptimizerState> {
        optimizer.check()?;
        let moments = optimizer
            .state_names()
            .iter()
            .map(|&name| Ok((name, ctx.zeros(len, name)?)))
            .collect::<Result<Vec<_>>>()?;
        let steps = ctx.zeros(steps.max(1) * STEP_WORDS, "optimizer steps")?;
        Ok(OptimizerState { optimizer, moments, steps })
    }

    /// [`new`](Self::new), with the table filled for a run of `steps` steps under `schedule`
    /// (for benchmarks and tests that run one epoch's steps).
    pub fn scheduled(
        ctx: &GpuContext,
        optimizer: Optimizer,
        schedule: &Schedule,
        len: usize,
        steps: usize,
    ) -> Result<OptimizerState> {
        let state = OptimizerState::new(ctx, optimizer, len, steps)?;
        state.set_steps(ctx, &optimizer.step_rows(schedule, 0, steps, steps as u64))?;
        Ok(state)
    }

    /// [`scheduled`](Self::scheduled) at a constant learning rate.
    pub fn constant(ctx: &GpuContext, optimizer: Optimizer, len: usize, steps: usize) -> Result<OptimizerState> {
        OptimizerState::scheduled(ctx, optimizer, &Schedule::default(), len, steps)
    }

    /// Writes an epoch's step table (at most as many rows as [`new`](Self::new) made room for).
    pub fn set_steps(&self, ctx: &GpuContext, rows: &[OptimizerStep]) -> Result<()> {
        self.steps.check_len("optimizer steps", rows.len() * STEP_WORDS)?;
        ctx.write(&self.steps, rows);
        Ok(())
    }

    /// The update of `param` from `grad`, at the table row `step[0] - 1` (the loss kernel has
    /// advanced the split's step counter by the time the optimizer runs).
    pub fn dispatch(&self, ctx: &GpuContext, grad: &Tensor, param: &Tensor, step: &Tensor) -> Result<Dispatch> {
        let len = param.len;
        grad.check_len("gradients", len)?;
        for (name, t) in &self.moments {
            t.check_len(name, len)?;
        }
        let params = self.optimizer.params(len);
        let moments: Vec<&Tensor> = self.moments.iter().map(|(_, t)| t).collect();
        let (spec, buffers) = match self.optimizer {
            Optimizer::Sgd(_) => (&SGD_STEP, vec![grad, param, moments[0], &self.steps, step]),
            Optimizer::Adam(_) => (&ADAM_STEP, vec![grad, param, moments[0], moments[1], &self.steps, step]),
        };
        ctx.dispatch(spec, &params, &buffers, grid_1d(len))
    }
}

/// The CPU reference of optimizer.wgsl, in the same f32 operations.
pub mod cpu {
    use super::{Optimizer, OptimizerStep};

    /// One step of the optimizer over all of `param`; `moments` as [`Optimizer::state_names`].
    pub fn step(opt: &Optimizer, row: &OptimizerStep, grad: &[f32], param: &mut [f32], moments: &mut [Vec<f32>]) {
        match (opt, moments) {
            (Optimizer::Sgd(s), [buf]) => {
                let weight_decay = s.weight_decay as f32;
                for i in 0..param.len() {
                    let d = grad[i] + weight_decay * param[i];
                    buf[i] = row.momentum * buf[i] + d;
                    let update = if s.nesterov { d + row.momentum * buf[i] } else { buf[i] };
                    param[i] -= row.lr * update;
                }
            }
            (Optimizer::Adam(a), [m, v]) => {
                let (beta2, one_minus_beta2) = (a.betas.1 as f32, (1.0 - a.betas.1) as f32);
                let (weight_decay, eps) = (a.weight_decay as f32, a.eps as f32);
                for i in 0..param.len() {
                    let (mut x, mut g) = (param[i], grad[i]);
                    if a.decoupled {
                        x *= row.decay;
                    } else {
                        g += weight_decay * x;
                    }
                    let w = row.one_minus_beta1;
                    m[i] = if w < 0.5 { m[i] + w * (g - m[i]) } else { g - (g - m[i]) * (1.0 - w) };
                    v[i] = v[i] * beta2 + one_minus_beta2 * g * g;
                    let denom = v[i].sqrt() / row.bias_correction2_sqrt + eps;
                    param[i] = x - row.step_size * m[i] / denom;
                }
            }
            _ => panic!("moments must be as many as Optimizer::state_names"),
        }
    }
}
