//! relu.wgsl: y = max(x, 0); dx = dy where y > 0.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// relu.wgsl's parameters: elements of the tensor.
    pub struct ReluParams {
        /// Elements of the tensor.
        pub len: u32,
    }
}

/// Reads x, writes y.
pub const RELU_FORWARD: KernelSpec =
    KernelSpec::new::<ReluParams>("relu", "relu_forward", &[(1, Read), (2, ReadWrite)]);
/// Reads y and dy, writes dx.
pub const RELU_BACKWARD: KernelSpec =
    KernelSpec::new::<ReluParams>("relu", "relu_backward", &[(3, Read), (4, Read), (5, ReadWrite)]);

/// y = max(x, 0) over `len` elements.
pub fn relu_forward(ctx: &GpuContext, len: usize, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    x.check_len("relu input", len)?;
    y.check_len("relu output", len)?;
    ctx.dispatch(&RELU_FORWARD, &ReluParams { len: len as u32 }, &[x, y], grid_1d(len))
}

/// dx = dy · \[y > 0\], from the forward output y.
pub fn relu_backward(ctx: &GpuContext, len: usize, y: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    for (what, t) in [("relu output", y), ("relu output gradient", dy), ("relu input gradient", dx)] {
        t.check_len(what, len)?;
    }
    ctx.dispatch(&RELU_BACKWARD, &ReluParams { len: len as u32 }, &[y, dy, dx], grid_1d(len))
}

/// The CPU reference of relu.wgsl.
pub mod cpu {
    /// y = max(x, 0).
    pub fn relu_forward(x: &[f32], y: &mut [f32]) {
        for (o, i) in y.iter_mut().zip(x) {
            *o = i.max(0.0);
        }
    }

    /// dx = dy · \[y > 0\].
    pub fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, y), d) in dx.iter_mut().zip(y).zip(dy) {
            *o = if *y > 0.0 { *d } else { 0.0 };
        }
    }
}
