//! batch_norm.wgsl: BatchNorm2d and BatchNorm1d as PyTorch computes them: batch statistics and
//! running-statistic updates in training (padding rows of a last batch excluded), the running
//! statistics in evaluation, and the training backward pass.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// batch_norm.wgsl's parameters.
    pub struct BatchNormParams {
        /// Rows of the plan (samples a step).
        pub batch: u32,
        /// Channels (features, after a linear layer).
        pub channels: u32,
        /// Elements of a channel's plane (h·w; 1 after a linear layer).
        pub plane: u32,
        /// Samples of the epoch: the rows of a step past them are padding.
        pub samples: u32,
        /// Added to the variance.
        pub eps: f32,
        /// The running statistics' update rate.
        pub momentum: f32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
    }
}

/// Reads x and the step counter; writes the saved statistics and updates the running ones and
/// the batch count.
pub const BATCH_NORM_STATISTICS: KernelSpec = KernelSpec::new::<BatchNormParams>(
    "batch_norm",
    "batch_norm_statistics",
    &[(1, Read), (2, Read), (3, ReadWrite), (4, ReadWrite), (5, ReadWrite), (14, ReadWrite)],
);
/// Writes the saved statistics from the running ones (evaluation).
pub const BATCH_NORM_RUNNING: KernelSpec = KernelSpec::new::<BatchNormParams>(
    "batch_norm",
    "batch_norm_running",
    &[(3, ReadWrite), (4, ReadWrite), (5, ReadWrite)],
);
/// Reads x, the saved statistics, gamma and beta; writes y.
pub const BATCH_NORM_APPLY: KernelSpec = KernelSpec::new::<BatchNormParams>(
    "batch_norm",
    "batch_norm_apply",
    &[(1, Read), (3, ReadWrite), (6, Read), (7, Read), (8, ReadWrite)],
);
/// Reads x, the saved statistics and dy; writes the sums, dgamma and dbeta.
pub const BATCH_NORM_BACKWARD_REDUCE: KernelSpec = KernelSpec::new::<BatchNormParams>(
    "batch_norm",
    "batch_norm_backward_reduce",
    &[(1, Read), (3, ReadWrite), (9, Read), (10, ReadWrite), (11, ReadWrite), (12, ReadWrite)],
);
/// Reads x, the saved statistics, dy, the sums and gamma; writes dx.
pub const BATCH_NORM_BACKWARD_INPUT: KernelSpec = KernelSpec::new::<BatchNormParams>(
    "batch_norm",
    "batch_norm_backward_input",
    &[(1, Read), (3, ReadWrite), (9, Read), (10, ReadWrite), (6, Read), (13, ReadWrite)],
);

/// PyTorch's defaults: eps 1e-5, momentum 0.1.
pub const EPS: f32 = 1e-5;
/// PyTorch's default update rate of the running statistics.
pub const MOMENTUM: f32 = 0.1;

/// A batch-norm layer over `[batch, channels, plane]`, with its tensors.
pub struct BatchNorm<'a> {
    /// Rows, channels and plane.
    pub shape: [usize; 3],
    /// The input.
    pub x: &'a Tensor,
    /// The scale, `[channels]`.
    pub gamma: &'a Tensor,
    /// The shift, `[channels]`.
    pub beta: &'a Tensor,
    /// The running mean and (unbiased) variance, `[channels]` each, and the count of training
    /// batches, `[1]` (a whole number in f32), updated in training.
    pub running: [&'a Tensor; 3],
    /// Each channel's mean, then 1/√(var + eps), then the count of values: `[2·channels + 1]`.
    pub saved: &'a Tensor,
}

/// What the backward pass reads of a training batch norm's forward pass.
pub struct Saved<'a> {
    /// Rows, channels and plane.
    pub shape: [usize; 3],
    /// The forward input.
    pub x: &'a Tensor,
    /// The scale, `[channels]`.
    pub gamma: &'a Tensor,
    /// The forward pass's saved statistics, `[2·channels + 1]`.
    pub saved: &'a Tensor,
}

impl Saved<'_> {
    fn check(&self) -> Result<()> {
        let [batch, channels, plane] = self.shape;
        self.x.check_len("batch norm input", batch * channels * plane)?;
        self.gamma.check_len("gamma", channels)?;
        self.saved.check_len("saved statistics", 2 * channels + 1)
    }
}

/// The launch parameters of a layer of `shape` over `samples` samples an epoch.
fn params([batch, channels, plane]: [usize; 3], samples: usize) -> BatchNormParams {
    BatchNormParams {
        batch: batch as u32,
        channels: channels as u32,
        plane: plane as u32,
        samples: samples.min(u32::MAX as usize) as u32,
        eps: EPS,
        momentum: MOMENTUM,
        ..Default::default()
    }
}

impl BatchNorm<'_> {
    fn params(&self, samples: usize) -> BatchNormParams {
        params(self.shape, samples)
    }

    fn check(&self) -> Result<()> {
        Saved { shape: self.shape, x: self.x, gamma: self.gamma, saved: self.saved }.check()?;
        self.beta.check_len("beta", self.shape[1])
    }
}

/// The forward pass into `y`: in training (`step` given, the split's step counter, with the
/// epoch's `samples`) with the batch's statistics, updating the running ones; else with the
/// running statistics.
pub fn batch_norm_forward(
    ctx: &GpuContext,
    layer: &BatchNorm,
    training: Option<(&Tensor, usize)>,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    layer.check()?;
    let [batch, channels, plane] = layer.shape;
    y.check_len("batch norm output", batch * channels * plane)?;
    for t in &layer.running[..2] {
        t.check_len("running statistics", channels)?;
    }
    layer.running[2].check_len("batch count", 1)?;
    let [mean, var, batches] = layer.running;
    let statistics = match training {
        Some((step, samples)) => ctx.dispatch(
            &BATCH_NORM_STATISTICS,
            &layer.params(samples),
            &[layer.x, step, layer.saved, mean, var, batches],
            [channels as u32, 1, 1],
        )?,
        None => ctx.dispatch(
            &BATCH_NORM_RUNNING,
            &layer.params(batch),
            &[layer.saved, mean, var],
            [channels.div_ceil(256) as u32, 1, 1],
        )?,
    };
    let apply = ctx.dispatch(
        &BATCH_NORM_APPLY,
        &layer.params(batch),
        &[layer.x, layer.saved, layer.gamma, layer.beta, y],
        grid_1d(batch * channels * plane),
    )?;
    Ok(vec![statistics, apply])
}

/// The training backward pass from `dy`: dgamma, dbeta, and dx when given (zero on padding
/// rows); `sums` is scratch of `2·channels`.
pub fn batch_norm_backward(
    ctx: &GpuContext,
    layer: &Saved,
    dy: &Tensor,
    sums: &Tensor,
    (dgamma, dbeta): (&Tensor, &Tensor),
    dx: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    layer.check()?;
    let [batch, channels, plane] = layer.shape;
    let len = batch * channels * plane;
    dy.check_len("batch norm output gradient", len)?;
    sums.check_len("batch norm sums", 2 * channels)?;
    dgamma.check_len("gamma gradient", channels)?;
    dbeta.check_len("beta gradient", channels)?;
    let params = params(layer.shape, batch);
    let mut out = vec![ctx.dispatch(
        &BATCH_NORM_BACKWARD_REDUCE,
        &params,
        &[layer.x, layer.saved, dy, sums, dgamma, dbeta],
        [channels as u32, 1, 1],
    )?];
    if let Some(dx) = dx {
        dx.check_len("batch norm input gradient", len)?;
        out.push(ctx.dispatch(
            &BATCH_NORM_BACKWARD_INPUT,
            &params,
            &[layer.x, layer.saved, dy, sums, layer.gamma, dx],
            grid_1d(len),
        )?);
    }
    Ok(out)
}

/// The CPU reference of batch_norm.wgsl (sums in f64, as PyTorch's CPU kernels accumulate).
pub mod cpu {
    /// Training statistics over the first `valid` rows of `x` `[batch, channels, plane]`: writes
    /// `saved` and updates `running` (mean, then unbiased variance, then the batch count).
    pub fn statistics(
        [_, channels, plane]: [usize; 3],
        valid: usize,
        x: &[f32],
        saved: &mut [f32],
        running: [&mut [f32]; 3],
    ) {
        let [running_mean, running_var, batches] = running;
        batches[0] += 1.0;
        let count = (valid * plane) as f64;
        let (eps, momentum) = (super::EPS as f64, super::MOMENTUM as f64);
        for c in 0..channels {
            let values = || (0..valid).flat_map(move |r| x[(r * channels + c) * plane..][..plane].iter().copied());
            let mean = values().map(f64::from).sum::<f64>() / count;
            let var_sum: f64 = values().map(|v| (v as f64 - mean).powi(2)).sum();
            saved[c] = mean as f32;
            saved[channels + c] = (1.0 / (var_sum / count + eps).sqrt()) as f32;
            running_mean[c] = (momentum * mean + (1.0 - momentum) * running_mean[c] as f64) as f32;
            running_var[c] = (momentum * var_sum / (count - 1.0) + (1.0 - momentum) * running_var[c] as f64) as f32;
        }
        saved[2 * channels] = count as f32;
    }

    /// Evaluation statistics from the running ones, for `batch` rows.
    pub fn running([batch, channels, plane]: [usize; 3], running: [&[f32]; 2], saved: &mut [f32]) {
        for c in 0..channels {
            saved[c] = running[0][c];
            saved[channels + c] = (1.0 / (running[1][c] as f64 + super::EPS as f64).sqrt()) as f32;
        }
        saved[2 * channels] = (batch * plane) as f32;
    }

    /// y = x·alpha + (beta − mean·alpha), alpha = gamma / √(var + eps).
    pub fn apply(
        [_, channels, plane]: [usize; 3],
        x: &[f32],
        saved: &[f32],
        gamma: &[f32],
        beta: &[f32],
        y: &mut [f32],
    ) {
        for (i, (o, v)) in y.iter_mut().zip(x).enumerate() {
            let c = (i / plane) % channels;
            let alpha = saved[channels + c] * gamma[c];
            *o = v * alpha + (beta[c] - saved[c] * alpha);
        }
    }

    /// The training backward pass: dgamma, dbeta and dx (zero on rows past the saved count).
    pub fn backward(
        [batch, channels, plane]: [usize; 3],
        (x, dy, saved, gamma): (&[f32], &[f32], &[f32], &[f32]),
        dgamma: &mut [f32],
        dbeta: &mut [f32],
        dx: &mut [f32],
    ) {
        let count = saved[2 * channels] as f64;
        let valid = count as usize / plane;
        for c in 0..channels {
            let (mean, inv_std) = (saved[c] as f64, saved[channels + c] as f64);
            let at = |r: usize, i: usize| (r * channels + c) * plane + i;
            let (mut sum, mut dotp) = (0.0f64, 0.0f64);
            for (r, i) in (0..valid).flat_map(|r| (0..plane).map(move |i| (r, i))) {
                sum += dy[at(r, i)] as f64;
                dotp += (x[at(r, i)] as f64 - mean) * dy[at(r, i)] as f64;
            }
            dgamma[c] = (dotp * inv_std) as f32;
            dbeta[c] = sum as f32;
            let k = dotp * inv_std * inv_std / count;
            for (r, i) in (0..batch).flat_map(|r| (0..plane).map(move |i| (r, i))) {
                dx[at(r, i)] = match r < valid {
                    true => {
                        ((dy[at(r, i)] as f64 - sum / count - (x[at(r, i)] as f64 - mean) * k)
                            * inv_std
                            * gamma[c] as f64) as f32
                    }
                    false => 0.0,
                };
            }
        }
    }
}
