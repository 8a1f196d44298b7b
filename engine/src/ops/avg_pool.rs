//! avg_pool.wgsl: average pooling with count_include_pad = true (always divide by k·k, as
//! PyTorch does by default), and its backward as a gather.

use super::max_pool::PoolGeometry;
use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

pub const AVG_POOL_FORWARD: KernelSpec =
    KernelSpec { file: "avg_pool", entry: "avg_pool_forward", storage: &[(1, Read), (2, ReadWrite)] };
pub const AVG_POOL_BACKWARD: KernelSpec =
    KernelSpec { file: "avg_pool", entry: "avg_pool_backward", storage: &[(1, Read), (2, ReadWrite)] };

pub fn avg_pool_forward(ctx: &GpuContext, g: &PoolGeometry, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    g.validate()?;
    x.check_len("avg_pool input", g.input_len())?;
    y.check_len("avg_pool output", g.output_len())?;
    ctx.dispatch(&AVG_POOL_FORWARD, &g.params(), &[x, y], grid_1d(g.output_len()))
}

pub fn avg_pool_backward(ctx: &GpuContext, g: &PoolGeometry, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    g.validate()?;
    dy.check_len("avg_pool output gradient", g.output_len())?;
    dx.check_len("avg_pool input gradient", g.input_len())?;
    ctx.dispatch(&AVG_POOL_BACKWARD, &g.params(), &[dy, dx], grid_1d(g.input_len()))
}

pub mod cpu {
    use super::PoolGeometry;

    /// Calls `visit(output index, input index)` for every in-image pixel of every window.
    fn windows(g: &PoolGeometry, mut visit: impl FnMut(usize, usize)) {
        let (oh, ow) = (g.oh(), g.ow());
        for p in 0..g.planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..g.k {
                        for kx in 0..g.k {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                            if iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize {
                                visit((p * oh + oy) * ow + ox, (p * g.h + iy as usize) * g.w + ix as usize);
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn avg_pool_forward(g: &PoolGeometry, x: &[f32], y: &mut [f32]) {
        let divisor = (g.k * g.k) as f32;
        y[..g.output_len()].fill(0.0);
        windows(g, |o, i| y[o] += x[i]);
        y[..g.output_len()].iter_mut().for_each(|v| *v /= divisor);
    }

    pub fn avg_pool_backward(g: &PoolGeometry, dy: &[f32], dx: &mut [f32]) {
        let divisor = (g.k * g.k) as f32;
        dx[..g.input_len()].fill(0.0);
        windows(g, |o, i| dx[i] += dy[o] / divisor);
    }
}
