//! softmax_cross_entropy.wgsl: fused, stable softmax + cross-entropy (mean over the batch), its
//! gradient, and running loss / accuracy / non-finite-loss metrics kept on the GPU.

use crate::context::{GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// softmax_cross_entropy.wgsl's parameters: `rows` a step, of which the first `samples` of
    /// the epoch count; `write_grad` as a bool.
    pub struct SoftmaxCrossEntropyParams {
        /// Rows of the logits (the batch size).
        pub rows: u32,
        /// Columns of the logits.
        pub classes: u32,
        /// 1: write dlogits.
        pub write_grad: u32,
        /// Samples in the epoch; rows past them are padding.
        pub samples: u32,
        /// 1: write each valid row's predicted class.
        pub write_predictions: u32,
        /// PyTorch's `label_smoothing`: the target is `(1 − s)·onehot + s / classes`.
        pub label_smoothing: f32,
    }
}

/// Reads logits and labels; updates the step counter, dlogits, metrics and predictions. One
/// workgroup.
pub const SOFTMAX_CROSS_ENTROPY: KernelSpec = KernelSpec::new::<SoftmaxCrossEntropyParams>(
    "softmax_cross_entropy",
    "softmax_cross_entropy",
    &[(1, Read), (2, Read), (3, ReadWrite), (4, ReadWrite), (5, ReadWrite), (6, ReadWrite)],
);

/// Words in the metrics buffer.
pub const METRICS_WORDS: usize = 4;

/// The metrics buffer, read back.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Sum over steps of each batch's mean loss.
    pub loss_sum: f32,
    /// Rows whose argmax (first maximum) is the label.
    pub correct: u32,
    /// Rows counted (padding excluded).
    pub rows: u32,
    /// The step (from the step counter) of the first batch whose loss was NaN or infinite.
    pub first_nonfinite_step: Option<u32>,
}

impl Metrics {
    /// Decodes the [`METRICS_WORDS`] words of the metrics buffer.
    pub fn from_words(w: &[u32]) -> Metrics {
        Metrics { loss_sum: f32::from_bits(w[0]), correct: w[1], rows: w[2], first_nonfinite_step: w[3].checked_sub(1) }
    }
}

/// What the loss writes besides its metrics: the logits' gradient when training, each sample's
/// predicted class (u32, in the epoch's order) when evaluating; `false` leaves a buffer
/// untouched (it may then be any tensor).
pub struct LossOutputs<'a> {
    /// The logits' gradient, `[rows, classes]`.
    pub dlogits: &'a Tensor,
    /// Write `dlogits`.
    pub write_grad: bool,
    /// Each sample's predicted class, `[samples]` (u32).
    pub predictions: &'a Tensor,
    /// Write `predictions`.
    pub write_predictions: bool,
    /// The running metrics, [`METRICS_WORDS`] u32 words (see [`Metrics`]).
    pub metrics: &'a Tensor,
}

/// Loss and metrics of `logits` [rows, classes] against `labels` (u32), the target smoothed by
/// `label_smoothing` (PyTorch's; 0 for none); writes dlogits = (softmax − target) / valid when
/// `write_grad`. `step` is the step counter (u32),
/// which the loss advances, closing the step; rows past `samples` (counting `rows` a step) are
/// padding: no loss, no metrics, zero gradient.
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy(
    ctx: &GpuContext,
    rows: usize,
    classes: usize,
    label_smoothing: f32,
    samples: usize,
    logits: &Tensor,
    labels: &Tensor,
    step: &Tensor,
    out: &LossOutputs,
) -> Result<Dispatch> {
    let LossOutputs { dlogits, write_grad, predictions, write_predictions, metrics } = *out;
    logits.check_len("logits", rows * classes)?;
    labels.check_len("labels", rows)?;
    step.check_len("step counter", 1)?;
    if write_grad {
        dlogits.check_len("logit gradient", rows * classes)?;
    }
    if write_predictions {
        predictions.check_len("predictions", samples)?;
    }
    metrics.check_len("metrics", METRICS_WORDS)?;
    let params = SoftmaxCrossEntropyParams {
        rows: rows as u32,
        classes: classes as u32,
        write_grad: write_grad as u32,
        samples: samples.min(u32::MAX as usize) as u32,
        write_predictions: write_predictions as u32,
        label_smoothing,
    };
    let buffers = [logits, labels, step, dlogits, metrics, predictions];
    ctx.dispatch(&SOFTMAX_CROSS_ENTROPY, &params, &buffers, [1, 1, 1])
}

/// The CPU reference of softmax_cross_entropy.wgsl (one batch, every row valid).
pub mod cpu {
    /// Returns (mean loss, correct predictions) with the target smoothed by `label_smoothing`;
    /// fills `dlogits` and each row's predicted class (`predictions`) when given.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_cross_entropy(
        rows: usize,
        classes: usize,
        logits: &[f32],
        labels: &[u32],
        label_smoothing: f32,
        mut dlogits: Option<&mut [f32]>,
        mut predictions: Option<&mut [u32]>,
    ) -> (f32, u32) {
        let mut loss = 0.0f64;
        let mut correct = 0;
        for r in 0..rows {
            let row = &logits[r * classes..(r + 1) * classes];
            let label = labels[r] as usize;
            // First maximum wins, as torch.argmax does.
            let (arg, max) =
                row.iter().enumerate().fold((0, row[0]), |(ai, am), (i, &v)| if v > am { (i, v) } else { (ai, am) });
            let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
            let s = label_smoothing as f64;
            // −log p_j = ln(sum) + max − logit_j; the smoothed target spreads s over the classes.
            let nll = |j: usize| sum.ln() + (max - row[j]) as f64;
            loss += (1.0 - s) * nll(label) + s / classes as f64 * (0..classes).map(nll).sum::<f64>();
            correct += (arg == label) as u32;
            if let Some(p) = predictions.as_deref_mut() {
                p[r] = arg as u32;
            }
            if let Some(d) = dlogits.as_deref_mut() {
                for (j, &v) in row.iter().enumerate() {
                    let prob = ((v - max) as f64).exp() / sum;
                    let target = (1.0 - s) * (j == label) as u8 as f64 + s / classes as f64;
                    d[r * classes + j] = ((prob - target) / rows as f64) as f32;
                }
            }
        }
        ((loss / rows as f64) as f32, correct)
    }
}
