//! gather.wgsl: builds a normalized f32 batch on the GPU from raw u8 images kept there, picked
//! by a permutation and a GPU step counter.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};

pub const GATHER_BATCH: KernelSpec = KernelSpec {
    file: "gather",
    entry: "gather_batch",
    storage: &[(1, Read), (2, Read), (3, Read), (4, Read), (5, ReadWrite), (6, ReadWrite)],
};
pub const ADVANCE_STEP: KernelSpec = KernelSpec { file: "gather", entry: "advance_step", storage: &[(7, ReadWrite)] };

/// A split of a dataset on the GPU: raw pixels packed four to a u32, labels as u32.
pub struct GpuImages {
    pub pixels: Tensor,
    pub labels: Tensor,
    pub count: usize,
    pub image_len: usize,
}

impl GpuImages {
    pub fn upload(ctx: &GpuContext, pixels: &[u8], labels: &[u8], image_len: usize) -> Result<GpuImages> {
        let count = labels.len();
        if pixels.len() != count * image_len {
            return Err(Error::Shape(format!("{} pixels for {count} images of {image_len}", pixels.len())));
        }
        let mut packed = vec![0u32; pixels.len().div_ceil(4)];
        for (i, &p) in pixels.iter().enumerate() {
            packed[i / 4] |= (p as u32) << ((i % 4) * 8);
        }
        let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        Ok(GpuImages {
            pixels: ctx.upload(&packed, "pixels")?,
            labels: ctx.upload(&labels, "labels")?,
            count,
            image_len,
        })
    }
}

/// Per-pixel normalization: `value = (pixel / 255 - mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

impl Default for Normalization {
    /// The mean and standard deviation of the MNIST training pixels, scaled to 0..1.
    fn default() -> Self {
        Normalization { mean: 0.1307, std: 0.3081 }
    }
}

impl Normalization {
    /// The normalized value of one pixel, as the kernel computes it.
    pub fn apply(self, pixel: u8) -> f32 {
        (f32::from(pixel) / 255.0 - self.mean) / self.std
    }
}

/// x [rows, image_len] = normalized images order[step·stride ..][..rows]; y = their labels.
#[allow(clippy::too_many_arguments)]
pub fn gather_batch(
    ctx: &GpuContext,
    images: &GpuImages,
    rows: usize,
    stride: usize,
    norm: Normalization,
    order: &Tensor,
    step: &Tensor,
    x: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    x.check_len("batch images", rows * images.image_len)?;
    y.check_len("batch labels", rows)?;
    step.check_len("step counter", 1)?;
    let params =
        [rows as u32, images.image_len as u32, stride as u32, 0, norm.mean.to_bits(), norm.std.to_bits(), 0, 0];
    ctx.dispatch(
        &GATHER_BATCH,
        &params,
        &[&images.pixels, &images.labels, order, step, x, y],
        grid_1d(rows * images.image_len),
    )
}

/// step[0] += 1, so the next recorded step gathers the next batch.
pub fn advance_step(ctx: &GpuContext, step: &Tensor) -> Result<Dispatch> {
    step.check_len("step counter", 1)?;
    ctx.dispatch(&ADVANCE_STEP, &[], &[step], [1, 1, 1])
}

pub mod cpu {
    use super::Normalization;

    pub fn gather_batch(
        pixels: &[u8],
        labels: &[u8],
        image_len: usize,
        indices: &[u32],
        norm: Normalization,
    ) -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::with_capacity(indices.len() * image_len);
        for &i in indices {
            let image = &pixels[i as usize * image_len..(i as usize + 1) * image_len];
            x.extend(image.iter().map(|&p| norm.apply(p)));
        }
        (x, indices.iter().map(|&i| labels[i as usize] as u32).collect())
    }
}
