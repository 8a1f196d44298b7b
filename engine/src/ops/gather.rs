//! gather.wgsl: builds a normalized f32 batch on the GPU from raw u8 images kept there, picked
//! by a permutation and a GPU step counter.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// gather.wgsl's parameters: `rows` images of `image_len` pixels (channel planes of `plane`
    /// pixels) from `order[step · stride ..]`.
    pub struct GatherParams {
        /// Images in the batch.
        pub rows: u32,
        /// Pixels of one image (channels · plane).
        pub image_len: u32,
        /// Samples the step counter advances the order by (the plan's batch).
        pub stride: u32,
        /// Pixels of one channel plane (h · w).
        pub plane: u32,
    }
}

/// gather.wgsl's `gather_batch`.
pub const GATHER_BATCH: KernelSpec = KernelSpec::new::<GatherParams>(
    "gather",
    "gather_batch",
    &[(1, Read), (2, Read), (3, Read), (4, Read), (5, ReadWrite), (6, ReadWrite), (7, Read)],
);

/// Images of one shape [channels, h, w] on the GPU: raw pixels packed four to a u32, labels as
/// u32.
pub struct GpuImages {
    /// The u8 pixels, image after image, four to a u32.
    pub pixels: Tensor,
    /// One class index per image.
    pub labels: Tensor,
    /// Number of images.
    pub count: usize,
    /// Each image's shape [channels, h, w].
    pub shape: [usize; 3],
}

impl GpuImages {
    /// Uploads `labels.len()` images of `shape` (u8 pixels, CHW, back to back) and their labels.
    /// The pixel bytes go up as they are: four little-endian bytes are the u32 the shader
    /// unpacks (GPU buffers are little-endian), so no packed copy is made on the host.
    pub fn upload(ctx: &GpuContext, pixels: &[u8], labels: &[u32], shape: [usize; 3]) -> Result<GpuImages> {
        let (count, image_len) = (labels.len(), shape.iter().product::<usize>());
        if pixels.len() != count * image_len {
            return Err(Error::Shape(format!("{} pixels for {count} images of shape {shape:?}", pixels.len())));
        }
        let packed = ctx.zeros(pixels.len().div_ceil(4), "pixels")?;
        let whole = pixels.len() / 4 * 4;
        ctx.write_bytes(&packed, 0, &pixels[..whole]);
        if whole < pixels.len() {
            let mut last = [0u8; 4];
            last[..pixels.len() - whole].copy_from_slice(&pixels[whole..]);
            ctx.write_bytes(&packed, whole as u64, &last);
        }
        Ok(GpuImages { pixels: packed, labels: ctx.upload(labels, "labels")?, count, shape })
    }

    /// Pixels of one image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One channel's normalization: `value = (pixel / 255 - mean) / std`, with the data set's mean
/// and standard deviation of that channel's pixels scaled to 0..1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// The channel's mean pixel, in 0..1.
    pub mean: f32,
    /// The channel's standard deviation, in 0..1.
    pub std: f32,
}

impl Normalization {
    /// The normalized value of one pixel, as the kernel computes it.
    pub fn apply(self, pixel: u8) -> f32 {
        (f32::from(pixel) / 255.0 - self.mean) / self.std
    }

    /// Each channel's mean and standard deviation, interleaved, as gather.wgsl reads them.
    pub fn upload(ctx: &GpuContext, channels: &[Normalization]) -> Result<Tensor> {
        let words: Vec<f32> = channels.iter().flat_map(|n| [n.mean, n.std]).collect();
        ctx.upload(&words, "normalization")
    }
}

/// x [rows, image_len] = normalized images order[step·stride ..]\[..rows\]; y = their labels.
/// `norm` holds each channel's [`Normalization`] as [`Normalization::upload`] writes it.
#[allow(clippy::too_many_arguments)]
pub fn gather_batch(
    ctx: &GpuContext,
    images: &GpuImages,
    rows: usize,
    stride: usize,
    norm: &Tensor,
    order: &Tensor,
    step: &Tensor,
    x: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    let [channels, h, w] = images.shape;
    x.check_len("batch images", rows * images.image_len())?;
    y.check_len("batch labels", rows)?;
    step.check_len("step counter", 1)?;
    norm.check_len("per-channel normalization", 2 * channels)?;
    let params = GatherParams {
        rows: rows as u32,
        image_len: images.image_len() as u32,
        stride: stride as u32,
        plane: (h * w) as u32,
    };
    ctx.dispatch(
        &GATHER_BATCH,
        &params,
        &[&images.pixels, &images.labels, order, step, x, y, norm],
        grid_1d(rows * images.image_len()),
    )
}

/// The CPU reference of the gather.
pub mod cpu {
    use super::Normalization;

    /// The normalized images `indices` of `pixels` (images of `image_len` pixels whose channel
    /// planes are `image_len / norm.len()` long, each normalized by its channel's entry of
    /// `norm`), and their labels.
    pub fn gather_batch(
        pixels: &[u8],
        labels: &[u32],
        image_len: usize,
        indices: &[u32],
        norm: &[Normalization],
    ) -> (Vec<f32>, Vec<u32>) {
        let plane = image_len / norm.len();
        let mut x = Vec::with_capacity(indices.len() * image_len);
        for &i in indices {
            let image = &pixels[i as usize * image_len..(i as usize + 1) * image_len];
            x.extend(image.iter().enumerate().map(|(j, &p)| norm[j / plane].apply(p)));
        }
        (x, indices.iter().map(|&i| labels[i as usize]).collect())
    }
}
