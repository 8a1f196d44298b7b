//! Datasets: labelled u8 images of any one shape [C, H, W] in host memory
//! ([`LabelledImages`]), and a split of them on the GPU with what a plan reads and writes as it
//! steps through them ([`GpuSplit`]): the images, each channel's normalization, the sample
//! order, the step counter, the loss and accuracy sums, and each sample's predicted class.

use crate::context::{GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::graph::Shape;
use crate::ops::gather::GpuImages;
pub use crate::ops::gather::Normalization;
use crate::ops::softmax_cross_entropy::METRICS_WORDS;

/// Labelled images of one shape [C, H, W] in host memory: u8 pixels, image after image, each
/// image's channel planes in order (CHW, as PyTorch stores a batch), and a class index each.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledImages {
    shape: Shape,
    pixels: Vec<u8>,
    labels: Vec<u32>,
}

impl LabelledImages {
    /// `labels.len()` images of `shape` whose pixels are `pixels`, back to back.
    pub fn new(shape: Shape, pixels: Vec<u8>, labels: Vec<u32>) -> Result<LabelledImages> {
        if shape.contains(&0) {
            return Err(Error::Shape(format!("images of shape {shape:?}: every dimension must be at least 1")));
        }
        let image_len: usize = shape.iter().product();
        if pixels.len() != labels.len() * image_len {
            return Err(Error::Shape(format!(
                "{} pixels are not {} images of shape {shape:?} ({image_len} pixels each)",
                pixels.len(),
                labels.len()
            )));
        }
        Ok(LabelledImages { shape, pixels, labels })
    }

    /// Each image's shape [channels, height, width].
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Every image's pixels, back to back.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Each image's class.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of one image (C·H·W).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.image_len()..][..self.image_len()]
    }

    /// The images at `indices`, in that order (an index may repeat): a subset, a validation
    /// split, a first N.
    pub fn select(&self, indices: &[usize]) -> Result<LabelledImages> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::Shape(format!("image {bad} of a set of {}", self.len())));
        }
        let pixels = indices.iter().flat_map(|&i| self.image(i)).copied().collect();
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(LabelledImages { shape: self.shape, pixels, labels })
    }

    /// The number of classes the labels name: the largest label plus one (0 when empty).
    pub fn classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |&l| l as usize + 1)
    }

    /// Each channel's mean and standard deviation (over all images, pixels scaled to 0..1, the
    /// population deviation): the normalization torchvision's recipes compute from a training
    /// set. A channel of one value everywhere gets a deviation of 1, so normalizing it only
    /// centres it.
    pub fn channel_statistics(&self) -> Vec<Normalization> {
        let (channels, plane) = (self.shape[0], self.shape[1] * self.shape[2]);
        let mut sums = vec![(0u128, 0u128); channels];
        for image in self.pixels.chunks(self.image_len()) {
            for (c, sum) in sums.iter_mut().enumerate() {
                for &p in &image[c * plane..][..plane] {
                    let p = u128::from(p);
                    (sum.0, sum.1) = (sum.0 + p, sum.1 + p * p);
                }
            }
        }
        let count = (self.len() * plane).max(1) as u128;
        sums.into_iter()
            .map(|(sum, squares)| {
                // count² · variance, exactly: zero only for a channel of one value everywhere.
                let spread = count * squares - sum * sum;
                let scale = count as f64 * 255.0;
                let std = if spread == 0 { 1.0 } else { (spread as f64).sqrt() / scale };
                Normalization { mean: (sum as f64 / scale) as f32, std: std as f32 }
            })
            .collect()
    }
}

/// One split of a dataset on the GPU, for plans of `batch` samples a step: the images and
/// labels, each channel's normalization, the sample order (padded to whole batches: the last
/// partial batch runs through the same plan, whose loss masks the padding rows), the GPU step
/// counter, the metrics the loss accumulates, and, when asked for, each sample's predicted class.
pub struct GpuSplit {
    images: GpuImages,
    norm: Tensor,
    order: Tensor,
    step: Tensor,
    metrics: Tensor,
    predictions: Option<Tensor>,
    batch: usize,
}

impl GpuSplit {
    /// Uploads `set`, normalized with one entry of `norm` per channel, in its stored order, for
    /// steps of `batch` samples; with `predictions`, evaluation plans record each sample's
    /// predicted class.
    pub fn upload(
        ctx: &GpuContext,
        set: &LabelledImages,
        norm: &[Normalization],
        batch: usize,
        predictions: bool,
    ) -> Result<GpuSplit> {
        if norm.len() != set.shape[0] {
            return Err(Error::Shape(format!(
                "{} channel normalizations for images of {} channels",
                norm.len(),
                set.shape[0]
            )));
        }
        if batch == 0 || set.is_empty() {
            return Err(Error::Shape(format!("a split of {} images in batches of {batch}", set.len())));
        }
        let split = GpuSplit {
            images: GpuImages::upload(ctx, &set.pixels, &set.labels, set.shape)?,
            norm: Normalization::upload(ctx, norm)?,
            order: ctx.zeros(set.len().div_ceil(batch) * batch, "order")?,
            step: ctx.zeros(1, "step")?,
            metrics: ctx.zeros(METRICS_WORDS, "metrics")?,
            predictions: if predictions { Some(ctx.zeros(set.len(), "predictions")?) } else { None },
            batch,
        };
        split.set_order(ctx, &(0..set.len() as u32).collect::<Vec<_>>())?;
        Ok(split)
    }

    /// Sets the order in which the steps visit the samples (a permutation of them, or any list
    /// of as many sample indices).
    pub fn set_order(&self, ctx: &GpuContext, order: &[u32]) -> Result<()> {
        if order.len() != self.samples() || order.iter().any(|&i| i as usize >= self.samples()) {
            return Err(Error::Shape(format!(
                "an order of {} samples must index the split's {}",
                order.len(),
                self.samples()
            )));
        }
        let mut padded = order.to_vec();
        padded.resize(self.order.len, 0);
        ctx.write(&self.order, &padded);
        Ok(())
    }

    /// Rewinds to the first step and clears the metrics, before a pass over the split.
    pub fn restart(&self, ctx: &GpuContext) {
        ctx.write(&self.step, &[0u32]);
        ctx.write(&self.metrics, &[0u32; METRICS_WORDS]);
    }

    /// Samples a step.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Samples in the split.
    pub fn samples(&self) -> usize {
        self.images.count
    }

    /// Steps a pass over the split takes (the last one partial).
    pub fn steps(&self) -> usize {
        self.samples().div_ceil(self.batch)
    }

    /// Each image's shape.
    pub fn shape(&self) -> Shape {
        self.images.shape
    }

    /// The images and labels.
    pub fn images(&self) -> &GpuImages {
        &self.images
    }

    /// Each channel's mean and standard deviation, interleaved.
    pub fn normalization(&self) -> &Tensor {
        &self.norm
    }

    /// The sample order, padded to whole batches.
    pub fn order(&self) -> &Tensor {
        &self.order
    }

    /// The step counter (u32), which the loss kernel advances.
    pub fn step(&self) -> &Tensor {
        &self.step
    }

    /// The loss and accuracy sums ([`METRICS_WORDS`] words, read by
    /// [`Metrics::from_words`](crate::ops::softmax_cross_entropy::Metrics::from_words)).
    pub fn metrics(&self) -> &Tensor {
        &self.metrics
    }

    /// Each sample's predicted class (u32, in the order's order), when the split keeps them.
    pub fn predictions(&self) -> Option<&Tensor> {
        self.predictions.as_ref()
    }
}
