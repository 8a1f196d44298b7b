//! fill.wgsl: set a buffer to a value, or copy one buffer into another.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

pub const FILL: KernelSpec = KernelSpec { file: "fill", entry: "fill", storage: &[(2, ReadWrite)] };
pub const COPY: KernelSpec = KernelSpec { file: "fill", entry: "copy", storage: &[(1, Read), (2, ReadWrite)] };

pub fn fill(ctx: &GpuContext, len: usize, value: f32, out: &Tensor) -> Result<Dispatch> {
    out.check_len("fill output", len)?;
    ctx.dispatch(&FILL, &[len as u32, value.to_bits()], &[out], grid_1d(len))
}

pub fn copy(ctx: &GpuContext, len: usize, src: &Tensor, out: &Tensor) -> Result<Dispatch> {
    src.check_len("copy input", len)?;
    out.check_len("copy output", len)?;
    ctx.dispatch(&COPY, &[len as u32], &[src, out], grid_1d(len))
}

pub mod cpu {
    pub fn fill(value: f32, out: &mut [f32]) {
        out.fill(value);
    }

    pub fn copy(src: &[f32], out: &mut [f32]) {
        out.copy_from_slice(&src[..out.len()]);
    }
}
