//! avg_pool.wgsl: average pooling with count_include_pad = true (always divide by k·k, as
//! PyTorch does by default), and its backward as a gather.

use super::max_pool::PoolParams;
use super::window::PoolGeometry;
use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

/// Reads x, writes y; one thread per output.
pub const AVG_POOL_FORWARD: KernelSpec =
    KernelSpec::new::<PoolParams>("avg_pool", "avg_pool_forward", &[(1, Read), (2, ReadWrite)]);
/// Reads dy, writes dx; one thread per input pixel.
pub const AVG_POOL_BACKWARD: KernelSpec =
    KernelSpec::new::<PoolParams>("avg_pool", "avg_pool_backward", &[(1, Read), (2, ReadWrite)]);

/// y = the mean of each k×k window of x, padding counted as zeros: x is `[planes, h, w]`, y is
/// `[planes, oh, ow]`.
pub fn avg_pool_forward(ctx: &GpuContext, g: &PoolGeometry, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    g.validate()?;
    x.check_len("avg_pool input", g.input_len())?;
    y.check_len("avg_pool output", g.output_len())?;
    ctx.dispatch(&AVG_POOL_FORWARD, &g.params(false), &[x, y], grid_1d(g.output_len()))
}

/// `dx[pixel] = Σ dy / (k·k)` over the windows that hold the pixel.
pub fn avg_pool_backward(ctx: &GpuContext, g: &PoolGeometry, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    g.validate()?;
    dy.check_len("avg_pool output gradient", g.output_len())?;
    dx.check_len("avg_pool input gradient", g.input_len())?;
    ctx.dispatch(&AVG_POOL_BACKWARD, &g.params(false), &[dy, dx], grid_1d(g.input_len()))
}

/// The CPU reference of avg_pool.wgsl.
pub mod cpu {
    use super::PoolGeometry;

    /// y = Σ window / (k·k).
    pub fn avg_pool_forward(g: &PoolGeometry, x: &[f32], y: &mut [f32]) {
        let divisor = (g.window.kh * g.window.kh) as f32;
        y[..g.output_len()].fill(0.0);
        g.taps(|o, i| y[o] += x[i]);
        y[..g.output_len()].iter_mut().for_each(|v| *v /= divisor);
    }

    /// `dx[pixel] = Σ dy / (k·k)` over the windows that hold the pixel.
    pub fn avg_pool_backward(g: &PoolGeometry, dy: &[f32], dx: &mut [f32]) {
        let divisor = (g.window.kh * g.window.kh) as f32;
        dx[..g.input_len()].fill(0.0);
        g.taps(|o, i| dx[i] += dy[o] / divisor);
    }
}
