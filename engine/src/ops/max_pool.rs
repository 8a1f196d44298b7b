//! max_pool.wgsl: max pooling with saved argmax (a ReLU after it fused in), and its backward as
//! a gather.

use super::window::PoolGeometry;
use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// max_pool.wgsl's and avg_pool.wgsl's parameters: the [`PoolGeometry`] and its output size.
    pub struct PoolParams {
        /// N·C planes pooled.
        pub planes: u32,
        /// Input height.
        pub h: u32,
        /// Input width.
        pub w: u32,
        /// Window side.
        pub k: u32,
        /// Window step.
        pub stride: u32,
        /// Zeros on each side.
        pub pad: u32,
        /// Output height.
        pub oh: u32,
        /// Output width.
        pub ow: u32,
        /// 1 to fuse a ReLU into max_pool_forward, else 0.
        pub relu: u32,
    }
}

/// The argmax of a window whose output the fused ReLU clamped to 0: no pixel gets its gradient.
pub const NO_PIXEL: u32 = u32::MAX;

/// Reads x, writes y and argmax; one thread per output.
pub const MAX_POOL_FORWARD: KernelSpec =
    KernelSpec::new::<PoolParams>("max_pool", "max_pool_forward", &[(1, Read), (2, ReadWrite), (3, ReadWrite)]);
/// Reads dy and argmax, writes dx; one thread per input pixel.
pub const MAX_POOL_BACKWARD: KernelSpec =
    KernelSpec::new::<PoolParams>("max_pool", "max_pool_backward", &[(4, Read), (5, Read), (6, ReadWrite)]);
/// The same where windows do not overlap; one thread per window.
pub const MAX_POOL_BACKWARD_WINDOWS: KernelSpec =
    KernelSpec::new::<PoolParams>("max_pool", "max_pool_backward_windows", &[(4, Read), (5, Read), (6, ReadWrite)]);

impl PoolGeometry {
    /// The kernels' parameters; `relu` only for max_pool_forward.
    pub(crate) fn params(&self, relu: bool) -> PoolParams {
        let u = |v: usize| v as u32;
        PoolParams {
            planes: u(self.planes),
            h: u(self.window.h),
            w: u(self.window.w),
            k: u(self.window.kh),
            stride: u(self.window.stride),
            pad: u(self.window.pad),
            oh: u(self.oh()),
            ow: u(self.ow()),
            relu: relu as u32,
        }
    }
}

/// y = max over each window of x, then ReLU when `relu`; argmax (u32) = the winning pixel's
/// index within its plane, or NO_PIXEL where the ReLU clamped.
pub fn max_pool_forward(
    ctx: &GpuContext,
    g: &PoolGeometry,
    relu: bool,
    x: &Tensor,
    y: &Tensor,
    argmax: &Tensor,
) -> Result<Dispatch> {
    g.validate()?;
    x.check_len("max_pool input", g.input_len())?;
    y.check_len("max_pool output", g.output_len())?;
    argmax.check_len("max_pool argmax", g.output_len())?;
    ctx.dispatch(&MAX_POOL_FORWARD, &g.params(relu), &[x, y, argmax], grid_1d(g.output_len()))
}

/// dx\[pixel\] = Σ dy over the windows whose argmax is that pixel: a thread per window where the
/// windows tile the input (stride = kernel, no padding: every pool of the networks), else a thread
/// per pixel gathering from the windows that hold it.
pub fn max_pool_backward(
    ctx: &GpuContext,
    g: &PoolGeometry,
    dy: &Tensor,
    argmax: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    g.validate()?;
    dy.check_len("max_pool output gradient", g.output_len())?;
    argmax.check_len("max_pool argmax", g.output_len())?;
    dx.check_len("max_pool input gradient", g.input_len())?;
    if g.window.stride == g.window.kh && g.window.pad == 0 {
        ctx.dispatch(&MAX_POOL_BACKWARD_WINDOWS, &g.params(false), &[dy, argmax, dx], grid_1d(g.output_len()))
    } else {
        ctx.dispatch(&MAX_POOL_BACKWARD, &g.params(false), &[dy, argmax, dx], grid_1d(g.input_len()))
    }
}

/// The CPU reference of max_pool.wgsl.
pub mod cpu {
    use super::{PoolGeometry, NO_PIXEL};

    /// The first maximum of each window wins, except that a NaN always wins (as in PyTorch);
    /// argmax holds its index within the plane. With `relu`, a maximum that is not positive
    /// (nor NaN) becomes 0 with argmax NO_PIXEL.
    pub fn max_pool_forward(g: &PoolGeometry, relu: bool, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
        let mut best: Vec<Option<(f32, usize)>> = vec![None; g.output_len()];
        g.taps(|o, i| {
            if best[o].is_none_or(|(b, _)| x[i] > b || x[i].is_nan()) {
                best[o] = Some((x[i], i));
            }
        });
        let plane_len = g.window.h * g.window.w;
        for (o, b) in best.into_iter().enumerate() {
            let (v, i) = b.expect("validated geometry puts a pixel in every window");
            let clamped = relu && !(v > 0.0) && !v.is_nan();
            y[o] = if clamped { 0.0 } else { v };
            argmax[o] = if clamped { NO_PIXEL } else { (i % plane_len) as u32 };
        }
    }

    /// `dx[pixel] = Σ dy` over the windows whose argmax is that pixel.
    pub fn max_pool_backward(g: &PoolGeometry, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
        dx[..g.input_len()].fill(0.0);
        let outputs = g.oh() * g.ow();
        for o in (0..g.output_len()).filter(|&o| argmax[o] != NO_PIXEL) {
            let plane = o / outputs;
            dx[plane * g.window.h * g.window.w + argmax[o] as usize] += dy[o];
        }
    }
}
