//! add.wgsl: out = a + b (residual connections) and out += a (summing the gradients of a tensor
//! with several consumers). The backward of `add` is a fan-out: both inputs receive dout.

use super::conv::check_len;
use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

pub const ADD: KernelSpec = KernelSpec { file: "add", entry: "add", storage: &[(1, Read), (2, Read), (3, ReadWrite)] };
pub const ADD_ASSIGN: KernelSpec =
    KernelSpec { file: "add", entry: "add_assign", storage: &[(1, Read), (3, ReadWrite)] };

pub fn add(ctx: &GpuContext, len: usize, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    for (what, t) in [("add input a", a), ("add input b", b), ("add output", out)] {
        check_len(what, t, len)?;
    }
    ctx.dispatch(&ADD, &[len as u32], &[a, b, out], grid_1d(len))
}

/// out += a.
pub fn add_assign(ctx: &GpuContext, len: usize, a: &Tensor, out: &Tensor) -> Result<Dispatch> {
    check_len("add_assign input", a, len)?;
    check_len("add_assign output", out, len)?;
    ctx.dispatch(&ADD_ASSIGN, &[len as u32], &[a, out], grid_1d(len))
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
}
