//! gather.wgsl: builds a normalized f32 batch on the GPU from raw u8 images kept there, picked
//! by a permutation and a GPU step counter.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// gather.wgsl's parameters: `rows` images of `image_len` pixels from `order[step · stride ..]`,
    /// normalized with `mean` and `std_dev`.
    pub struct GatherParams {
        pub rows: u32,
        pub image_len: u32,
        pub stride: u32,
        pub mean: f32,
        pub std_dev: f32,
    }
}

pub const GATHER_BATCH: KernelSpec = KernelSpec::new::<GatherParams>(
    "gather",
    "gather_batch",
    &[(1, Read), (2, Read), (3, Read), (4, Read), (5, ReadWrite), (6, ReadWrite)],
);

/// A split of a dataset on the GPU: raw pixels packed four to a u32, labels as u32.
pub struct GpuImages {
    pub pixels: Tensor,
    pub labels: Tensor,
    pub count: usize,
    pub image_len: usize,
}

impl GpuImages {
    /// Uploads `count` images of `image_len` u8 pixels and their labels. The pixel bytes go up
    /// as they are: four little-endian bytes are the u32 the shader unpacks (GPU buffers are
    /// little-endian), so no packed copy is made on the host.
    pub fn upload(ctx: &GpuContext, pixels: &[u8], labels: &[u8], image_len: usize) -> Result<GpuImages> {
        let count = labels.len();
        if pixels.len() != count * image_len {
            return Err(Error::Shape(format!("{} pixels for {count} images of {image_len}", pixels.len())));
        }
        let packed = ctx.zeros(pixels.len().div_ceil(4), "pixels")?;
        let whole = pixels.len() / 4 * 4;
        ctx.write_bytes(&packed, 0, &pixels[..whole]);
        if whole < pixels.len() {
            let mut last = [0u8; 4];
            last[..pixels.len() - whole].copy_from_slice(&pixels[whole..]);
            ctx.write_bytes(&packed, whole as u64, &last);
        }
        let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        Ok(GpuImages { pixels: packed, labels: ctx.upload(&labels, "labels")?, count, image_len })
    }
}

/// Per-pixel normalization: `value = (pixel / 255 - mean) / std`, with the data set's mean and
/// standard deviation of pixels scaled to 0..1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
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
    let params = GatherParams {
        rows: rows as u32,
        image_len: images.image_len as u32,
        stride: stride as u32,
        mean: norm.mean,
        std_dev: norm.std,
    };
    ctx.dispatch(
        &GATHER_BATCH,
        &params,
        &[&images.pixels, &images.labels, order, step, x, y],
        grid_1d(rows * images.image_len),
    )
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
