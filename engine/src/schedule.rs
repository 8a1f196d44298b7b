//! Learning-rate schedules, stepped once per training step with torch.optim.lr_scheduler's
//! formulas (closed forms, in f64), and a linear warm-up that multiplies any of them but
//! OneCycle (what PyTorch's `ChainedScheduler([LinearLR, main])` gives, exactly so where the
//! main schedule is multiplicative: StepLR, and CosineAnnealingLR with `eta_min` 0). The optimizer's step table ([`Optimizer::step_rows`](crate::ops::optimizer::Optimizer::step_rows))
//! carries each step's values to the GPU.

use crate::error::{Error, Result};
use std::f64::consts::PI;

/// How the learning rate moves over a run, as PyTorch's schedulers move it when stepped after
/// every `optimizer.step()`. Step `t` counts from 0 over the whole run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The learning rate stays the optimizer's, times the warm-up.
    Constant {
        /// Steps of linear warm-up (0 for none).
        warmup: u64,
    },
    /// StepLR: `lr · gamma^⌊t / step_size⌋`, times the warm-up.
    Step {
        /// Steps between decays (at least 1).
        step_size: u64,
        /// Factor of each decay.
        gamma: f64,
        /// Steps of linear warm-up (0 for none).
        warmup: u64,
    },
    /// CosineAnnealingLR: `eta_min + (lr − eta_min)(1 + cos(π t / t_max)) / 2`, times the warm-up.
    Cosine {
        /// The half period in steps; `None` for the whole run.
        t_max: Option<u64>,
        /// The learning rate at `t_max`.
        eta_min: f64,
        /// Steps of linear warm-up (0 for none).
        warmup: u64,
    },
    /// OneCycleLR over the whole run, with cosine annealing; the optimizer's learning rate is
    /// the maximum, and the momentum (SGD) or beta1 (Adam) cycles the other way.
    OneCycle(OneCycle),
}

/// OneCycleLR's settings (PyTorch's defaults from [`OneCycle::default`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycle {
    /// The share of the run spent raising the learning rate (0.3).
    pub pct_start: f64,
    /// The initial learning rate is the maximum over this (25).
    pub div_factor: f64,
    /// The final learning rate is the initial one over this (1e4).
    pub final_div_factor: f64,
    /// The momentum (or beta1) at the peak learning rate (0.85).
    pub base_momentum: f64,
    /// The momentum (or beta1) at the start and the end (0.95).
    pub max_momentum: f64,
}

impl Default for OneCycle {
    fn default() -> Self {
        OneCycle { pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4, base_momentum: 0.85, max_momentum: 0.95 }
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Constant { warmup: 0 }
    }
}

/// PyTorch's cosine annealing from `start` to `end` at `pct` ∈ [0, 1].
fn anneal_cos(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

/// The warm-up factor at step `t`: `(t + 1) / warmup` until it reaches 1 (PyTorch's
/// `LinearLR(start_factor=1/warmup, total_iters=warmup-1)`).
fn warmup_factor(warmup: u64, t: u64) -> f64 {
    match warmup {
        0 => 1.0,
        w => ((t + 1) as f64 / w as f64).min(1.0),
    }
}

impl Schedule {
    /// The learning rate of step `t` (from 0) of a run of `total` steps whose optimizer's
    /// learning rate is `lr`, and the momentum (or beta1) where the schedule sets it.
    pub fn at(&self, lr: f64, t: u64, total: u64) -> (f64, Option<f64>) {
        match *self {
            Schedule::Constant { warmup } => (lr * warmup_factor(warmup, t), None),
            Schedule::Step { step_size, gamma, warmup } => {
                (lr * gamma.powi((t / step_size.max(1)) as i32) * warmup_factor(warmup, t), None)
            }
            Schedule::Cosine { t_max, eta_min, warmup } => {
                let t_max = t_max.unwrap_or(total).max(1) as f64;
                let cosine = eta_min + (lr - eta_min) * (1.0 + (PI * t as f64 / t_max).cos()) / 2.0;
                (cosine * warmup_factor(warmup, t), None)
            }
            Schedule::OneCycle(c) => {
                let (lr, momentum) = c.at(lr, t, total);
                (lr, Some(momentum))
            }
        }
    }

    /// Refuses settings PyTorch refuses, and warm-up with OneCycle (which warms up by itself).
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Setting(m));
        match *self {
            Schedule::Constant { .. } => Ok(()),
            Schedule::Step { step_size, gamma, .. } => match (step_size, gamma) {
                (0, _) => bad("the step schedule's step_size must be at least 1".into()),
                (_, g) if !(g.is_finite() && g > 0.0) => bad(format!("the step schedule's gamma {g} must be above 0")),
                _ => Ok(()),
            },
            Schedule::Cosine { t_max, eta_min, .. } => match (t_max, eta_min) {
                (Some(0), _) => bad("the cosine schedule's t_max must be at least 1".into()),
                (_, e) if !(e.is_finite() && e >= 0.0) => {
                    bad(format!("the cosine schedule's eta_min {e} must be at least 0"))
                }
                _ => Ok(()),
            },
            Schedule::OneCycle(c) => c.check(),
        }
    }

    /// The same schedule with `warmup` steps of linear warm-up; OneCycle refuses one (it warms
    /// up by itself, over `pct_start` of the run).
    pub fn with_warmup(self, warmup: u64) -> Result<Schedule> {
        Ok(match self {
            Schedule::Constant { .. } => Schedule::Constant { warmup },
            Schedule::Step { step_size, gamma, .. } => Schedule::Step { step_size, gamma, warmup },
            Schedule::Cosine { t_max, eta_min, .. } => Schedule::Cosine { t_max, eta_min, warmup },
            Schedule::OneCycle(_) if warmup > 0 => {
                return Err(Error::Setting(
                    "onecycle warms up by itself (over pct_start of the run); drop the warm-up".into(),
                ))
            }
            one_cycle => one_cycle,
        })
    }

    /// Refuses a schedule that a run of `total` steps breaks: a OneCycle whose rising phase
    /// ends at step 0 (`pct_start · total = 1`, where PyTorch divides by zero).
    pub fn check_run(&self, total: u64) -> Result<()> {
        match self {
            Schedule::OneCycle(c) if c.pct_start * total as f64 - 1.0 == 0.0 => Err(Error::Setting(format!(
                "the onecycle schedule's pct_start {} over a run of {total} steps leaves its rising phase no \
                 step; change pct_start or the number of epochs",
                c.pct_start
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the schedule's values depend on the run's length (a resumed run must keep it).
    pub fn depends_on_length(&self) -> bool {
        matches!(self, Schedule::OneCycle(_) | Schedule::Cosine { t_max: None, .. })
    }
}

impl OneCycle {
    /// PyTorch's OneCycleLR (two phases, cosine) at step `t` of `total`: (lr, momentum).
    pub fn at(&self, max_lr: f64, t: u64, total: u64) -> (f64, f64) {
        let initial = max_lr / self.div_factor;
        let min_lr = initial / self.final_div_factor;
        let rise_end = self.pct_start * total as f64 - 1.0;
        let end = total as f64 - 1.0;
        let t = t as f64;
        let ((start, stop), (lr_from, lr_to), (m_from, m_to)) = if t <= rise_end {
            ((0.0, rise_end), (initial, max_lr), (self.max_momentum, self.base_momentum))
        } else {
            ((rise_end, end), (max_lr, min_lr), (self.base_momentum, self.max_momentum))
        };
        let pct = (t - start) / (stop - start);
        (anneal_cos(lr_from, lr_to, pct), anneal_cos(m_from, m_to, pct))
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Setting(format!("the onecycle schedule's {m}")));
        if !(self.pct_start > 0.0 && self.pct_start < 1.0) {
            return bad(format!("pct_start {} must be between 0 and 1", self.pct_start));
        }
        for (name, v) in [("div_factor", self.div_factor), ("final_div_factor", self.final_div_factor)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} {v} must be above 0"));
            }
        }
        for (name, v) in [("base_momentum", self.base_momentum), ("max_momentum", self.max_momentum)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{name} {v} must be in [0, 1)"));
            }
        }
        Ok(())
    }
}
