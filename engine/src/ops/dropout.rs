//! dropout.wgsl: inverted dropout in training (PyTorch's `nn.Dropout`), its mask drawn per
//! element from (seed, global step, element) by a counter-based hash, so nothing is stored and
//! a resumed run draws the same masks.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};
use crate::rng::fold_seed;

crate::gpu_params! {
    /// dropout.wgsl's parameters.
    pub struct DropoutParams {
        /// Elements.
        pub len: u32,
        /// The run's seed, folded to 32 bits.
        pub seed: u32,
        /// An element whose hash is below this is dropped: round(p · 2^32).
        pub drop_below: u32,
        /// 1 / (1 − p).
        pub scale: f32,
        /// 1 in the backward pass (the loss has advanced the step counter).
        pub backward: u32,
        /// Padding to 32 bytes.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

/// Reads the step table, the step counter and x (or dy); writes y (or dx).
pub const DROPOUT: KernelSpec =
    KernelSpec::new::<DropoutParams>("dropout", "dropout", &[(1, Read), (2, Read), (3, Read), (4, ReadWrite)]);

/// A dropout's probability and the run's seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// The probability of dropping an element, in [0, 1).
    pub p: f32,
    /// The run's seed.
    pub seed: u64,
}

impl Dropout {
    /// Refuses a probability outside [0, 1) (at 1 nothing would remain to scale up).
    pub fn check(p: f32) -> Result<()> {
        match (0.0..1.0).contains(&p) {
            true => Ok(()),
            false => Err(Error::Setting(format!("dropout probability {p}: must be in [0, 1)"))),
        }
    }

    fn params(&self, len: usize, backward: bool) -> DropoutParams {
        DropoutParams {
            len: len as u32,
            seed: fold_seed(self.seed),
            drop_below: drop_below(self.p),
            scale: (1.0 / (1.0 - self.p as f64)) as f32,
            backward: backward as u32,
            ..Default::default()
        }
    }
}

fn drop_below(p: f32) -> u32 {
    (p as f64 * 4294967296.0).round().min(u32::MAX as f64) as u32
}

/// `y = mask · x / (1 − p)` over `len` elements (`backward`: `dx` from `dy`, the same mask),
/// the global step read from the optimizer's `steps` table at the split's `step` counter.
pub fn dropout(
    ctx: &GpuContext,
    d: &Dropout,
    len: usize,
    (steps, step): (&Tensor, &Tensor),
    backward: bool,
    (x, y): (&Tensor, &Tensor),
) -> Result<Dispatch> {
    x.check_len("dropout input", len)?;
    y.check_len("dropout output", len)?;
    ctx.dispatch(&DROPOUT, &d.params(len, backward), &[steps, step, x, y], grid_1d(len))
}

/// The CPU reference of dropout.wgsl.
pub mod cpu {
    use super::{drop_below, Dropout};
    use crate::rng::{counter_hash, fold_seed};

    /// Whether element `i` is kept at `global_step`.
    pub fn keeps(d: &Dropout, global_step: u32, i: usize) -> bool {
        counter_hash(fold_seed(d.seed), global_step, i as u32) >= drop_below(d.p)
    }

    /// `y = mask · x / (1 − p)` (also the backward pass, from dy to dx).
    pub fn dropout(d: &Dropout, global_step: u32, x: &[f32], y: &mut [f32]) {
        let scale = (1.0 / (1.0 - d.p as f64)) as f32;
        for (i, (o, v)) in y.iter_mut().zip(x).enumerate() {
            *o = if keeps(d, global_step, i) { v * scale } else { 0.0 };
        }
    }
}
