//! gather.wgsl: builds a normalized f32 batch on the GPU from raw u8 images kept there, picked
//! by a permutation and a GPU step counter.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};
use crate::ops::optimizer::STEP_WORDS;
use crate::rng::fold_seed;

crate::gpu_params! {
    /// gather.wgsl's parameters: `rows` images of `image_len` pixels (channel planes of `plane`
    /// pixels) from `order[step · stride ..]`; the rest only for `gather_augmented`.
    pub struct GatherParams {
        /// Images in the batch.
        pub rows: u32,
        /// Pixels of one image (channels · plane).
        pub image_len: u32,
        /// Samples the step counter advances the order by (the plan's batch).
        pub stride: u32,
        /// Pixels of one channel plane (h · w).
        pub plane: u32,
        /// Pixels of one image row (w).
        pub width: u32,
        /// Steps an epoch, from which the step table's step within the run gives the epoch.
        pub steps_per_epoch: u32,
        /// The run's seed, folded to 32 bits.
        pub seed: u32,
        /// Padding.
        pub _pad: u32,
        /// The largest translation, in pixels.
        pub shift: f32,
        /// The largest rotation, in radians.
        pub rotate: f32,
        /// The largest relative change of size.
        pub scale: f32,
        /// Padding to 48 bytes.
        pub _pad1: f32,
    }
}

/// gather.wgsl's `gather_batch`.
pub const GATHER_BATCH: KernelSpec = KernelSpec::new::<GatherParams>(
    "gather",
    "gather_batch",
    &[(1, Read), (2, Read), (3, Read), (4, Read), (5, ReadWrite), (6, ReadWrite), (7, Read)],
);

/// gather.wgsl's `gather_augmented`: `gather_batch`'s bindings and the optimizer's step table.
pub const GATHER_AUGMENTED: KernelSpec = KernelSpec::new::<GatherParams>(
    "gather",
    "gather_augmented",
    &[(1, Read), (2, Read), (3, Read), (4, Read), (5, ReadWrite), (6, ReadWrite), (7, Read), (8, Read)],
);

/// The ranges of a random affine augmentation of training images, drawn per image and epoch
/// from the distribution of torchvision's `RandomAffine(degrees=rotate, translate=(shift / w,
/// shift / h), scale=(1 - scale, 1 + scale), interpolation=BILINEAR, fill=0)`; at the border a
/// neighbour outside the image counts as 0 (torchvision's tensor path blends with a sampled mask
/// instead). All zero: no augmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augment {
    /// The largest translation each way, in pixels (drawn uniform, rounded to whole pixels).
    pub shift: f32,
    /// The largest rotation either way, in degrees.
    pub rotate: f32,
    /// The largest relative change of size: the factor is uniform in [1 − scale, 1 + scale].
    pub scale: f32,
}

impl Augment {
    /// Whether it changes nothing (every range 0).
    pub fn is_none(&self) -> bool {
        *self == Augment::default()
    }

    /// Refuses a range that is negative or not finite, a rotation beyond 180 degrees, and a
    /// scale of 1 or more (a factor of 0 or below has no inverse).
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, value: f32, rule: &str| Err(Error::Setting(format!("augment {what}={value}: {rule}")));
        for (what, value) in [("shift", self.shift), ("rotate", self.rotate), ("scale", self.scale)] {
            if !(value.is_finite() && value >= 0.0) {
                return bad(what, value, "must be a finite number of at least 0");
            }
        }
        if self.rotate > 180.0 {
            return bad("rotate", self.rotate, "must be at most 180 (degrees)");
        }
        if self.scale >= 1.0 {
            return bad("scale", self.scale, "must be below 1 (the size factor is drawn from [1 - scale, 1 + scale])");
        }
        Ok(())
    }

    /// The largest rotation in radians, as the shader reads it.
    fn rotate_radians(&self) -> f32 {
        (self.rotate as f64).to_radians() as f32
    }
}

/// What the augmented gather needs beyond the plain one.
#[derive(Clone, Copy, Debug)]
pub struct Augmented<'a> {
    /// The ranges (not all zero).
    pub augment: Augment,
    /// The run's seed.
    pub seed: u64,
    /// Steps an epoch (the split's).
    pub steps_per_epoch: usize,
    /// The optimizer's step table, whose rows give each step's place in the run.
    pub steps: &'a Tensor,
}

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
        self.apply_value(f32::from(pixel))
    }

    /// The normalized value of a pixel value in 0..255 (an interpolated one, after augmentation).
    pub fn apply_value(self, value: f32) -> f32 {
        (value / 255.0 - self.mean) / self.std
    }

    /// Each channel's mean and standard deviation, interleaved, as gather.wgsl reads them.
    pub fn upload(ctx: &GpuContext, channels: &[Normalization]) -> Result<Tensor> {
        let words: Vec<f32> = channels.iter().flat_map(|n| [n.mean, n.std]).collect();
        ctx.upload(&words, "normalization")
    }
}

/// x [rows, image_len] = normalized images order[step·stride ..]\[..rows\]; y = their labels.
/// `norm` holds each channel's [`Normalization`] as [`Normalization::upload`] writes it. With
/// `augmented`, each image is first moved by its random affine transform.
#[allow(clippy::too_many_arguments)]
pub fn gather_batch(
    ctx: &GpuContext,
    images: &GpuImages,
    rows: usize,
    stride: usize,
    norm: &Tensor,
    order: &Tensor,
    step: &Tensor,
    (x, y): (&Tensor, &Tensor),
    augmented: Option<&Augmented>,
) -> Result<Dispatch> {
    let [channels, h, w] = images.shape;
    x.check_len("batch images", rows * images.image_len())?;
    y.check_len("batch labels", rows)?;
    step.check_len("step counter", 1)?;
    norm.check_len("per-channel normalization", 2 * channels)?;
    let mut params = GatherParams {
        rows: rows as u32,
        image_len: images.image_len() as u32,
        stride: stride as u32,
        plane: (h * w) as u32,
        width: w as u32,
        ..Default::default()
    };
    let mut buffers = vec![&images.pixels, &images.labels, order, step, x, y, norm];
    let spec = match augmented {
        None => &GATHER_BATCH,
        Some(a) => {
            a.augment.check()?;
            if a.steps_per_epoch == 0 {
                return Err(Error::Shape("an augmented gather needs at least one step an epoch".into()));
            }
            a.steps.check_len("the optimizer's step table", a.steps_per_epoch * STEP_WORDS)?;
            params.steps_per_epoch = a.steps_per_epoch as u32;
            params.seed = fold_seed(a.seed);
            (params.shift, params.rotate, params.scale) =
                (a.augment.shift, a.augment.rotate_radians(), a.augment.scale);
            buffers.push(a.steps);
            &GATHER_AUGMENTED
        }
    };
    ctx.dispatch(spec, &params, &buffers, grid_1d(rows * images.image_len()))
}

/// The CPU reference of the gather.
pub mod cpu {
    use super::{Augment, Normalization};
    use crate::rng::{counter_hash, fold_seed, pcg_hash};

    /// gather.wgsl's AUGMENT_SALT.
    const AUGMENT_SALT: u32 = 0x9e37_79b9;

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

    /// The hash from which sample `sample`'s transform in epoch `epoch` (from 0) is drawn.
    pub fn augment_hash(seed: u64, epoch: u32, sample: u32) -> u32 {
        counter_hash(fold_seed(seed) ^ AUGMENT_SALT, epoch, sample)
    }

    fn signed_unit(h: u32) -> f32 {
        (h >> 8) as f32 / 8_388_608.0 - 1.0
    }

    /// One channel plane of `width` columns moved by the transform drawn from `h`: each output
    /// pixel's value in 0..255, bilinear, zero outside (gather.wgsl's formulas, in its order).
    pub fn augment_plane(plane: &[u8], width: usize, augment: &Augment, h: u32) -> Vec<f32> {
        let height = plane.len() / width;
        let u: [f32; 4] = std::array::from_fn(|k| signed_unit(pcg_hash(h.wrapping_add(k as u32))));
        let (tx, ty) = ((augment.shift * u[0]).round_ties_even(), (augment.shift * u[1]).round_ties_even());
        let angle = augment.rotate_radians() * u[2];
        let s = 1.0 + augment.scale * u[3];
        let (c, sn) = (angle.cos(), angle.sin());
        let (cx, cy) = ((width - 1) as f32 * 0.5, (height - 1) as f32 * 0.5);
        let at = |x: f32, y: f32| match x >= 0.0 && y >= 0.0 && x < width as f32 && y < height as f32 {
            true => f32::from(plane[y as usize * width + x as usize]),
            false => 0.0,
        };
        (0..plane.len())
            .map(|i| {
                let (dx, dy) = ((i % width) as f32 - cx - tx, (i / width) as f32 - cy - ty);
                let (sx, sy) = (cx + (c * dx + sn * dy) / s, cy + (c * dy - sn * dx) / s);
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let top = (1.0 - fx) * at(x0, y0) + fx * at(x0 + 1.0, y0);
                let bottom = (1.0 - fx) * at(x0, y0 + 1.0) + fx * at(x0 + 1.0, y0 + 1.0);
                (1.0 - fy) * top + fy * bottom
            })
            .collect()
    }

    /// [`gather_batch`]'s images (its labels are the same), each moved by its transform for
    /// `epoch` (from 0) of a run seeded with `seed`; images of `shape` [channels, h, w].
    pub fn gather_augmented(
        pixels: &[u8],
        shape: [usize; 3],
        indices: &[u32],
        norm: &[Normalization],
        augment: &Augment,
        (seed, epoch): (u64, u32),
    ) -> Vec<f32> {
        let (plane, width) = (shape[1] * shape[2], shape[2]);
        let mut x = Vec::with_capacity(indices.len() * plane * shape[0]);
        for &i in indices {
            let h = augment_hash(seed, epoch, i);
            let image = &pixels[i as usize * plane * shape[0]..(i as usize + 1) * plane * shape[0]];
            for (channel, values) in image.chunks(plane).enumerate() {
                x.extend(augment_plane(values, width, augment, h).into_iter().map(|v| norm[channel].apply_value(v)));
            }
        }
        x
    }
}
