//! add.wgsl: out = a + b (residual connections) and out += a (summing the gradients of a tensor
//! with several consumers). The backward of `add` is a fan-out: both inputs receive dout.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

pub const ADD: KernelSpec = KernelSpec { file: "add", entry: "add", storage: &[(1, Read), (2, Read), (3, ReadWrite)] };
pub const SUM_SLICES: KernelSpec =
    KernelSpec { file: "add", entry: "sum_slices", storage: &[(1, Read), (3, ReadWrite)] };
pub const ADD_ASSIGN: KernelSpec =
    KernelSpec { file: "add", entry: "add_assign", storage: &[(1, Read), (3, ReadWrite)] };

pub fn add(ctx: &GpuContext, len: usize, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    for (what, t) in [("add input a", a), ("add input b", b), ("add output", out)] {
        t.check_len(what, len)?;
    }
    ctx.dispatch(&ADD, &[len as u32], &[a, b, out], grid_1d(len))
}

/// out += a.
pub fn add_assign(ctx: &GpuContext, len: usize, a: &Tensor, out: &Tensor) -> Result<Dispatch> {
    a.check_len("add_assign input", len)?;
    out.check_len("add_assign output", len)?;
    ctx.dispatch(&ADD_ASSIGN, &[len as u32], &[a, out], grid_1d(len))
}

/// out[i] = Σ_s slices[s·len + i] over `count` slices of `len` elements.
pub fn sum_slices(ctx: &GpuContext, len: usize, count: usize, slices: &Tensor, out: &Tensor) -> Result<Dispatch> {
    slices.check_len("sum_slices input", len * count)?;
    out.check_len("sum_slices output", len)?;
    ctx.dispatch(&SUM_SLICES, &[len as u32, count as u32], &[slices, out], grid_1d(len))
}

pub mod cpu {
    pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
            *o = a + b;
        }
    }

    pub fn add_assign(a: &[f32], out: &mut [f32]) {
        for (o, a) in out.iter_mut().zip(a) {
            *o += a;
        }
    }

    pub fn sum_slices(len: usize, slices: &[f32], out: &mut [f32]) {
        out[..len].fill(0.0);
        for slice in slices.chunks(len) {
            add_assign(slice, &mut out[..len]);
        }
    }
}
