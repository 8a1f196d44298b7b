//! max_pool.wgsl: max pooling with saved argmax, and its backward as a gather.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};

pub const MAX_POOL_FORWARD: KernelSpec =
    KernelSpec { file: "max_pool", entry: "max_pool_forward", storage: &[(1, Read), (2, ReadWrite), (3, ReadWrite)] };
pub const MAX_POOL_BACKWARD: KernelSpec =
    KernelSpec { file: "max_pool", entry: "max_pool_backward", storage: &[(4, Read), (5, Read), (6, ReadWrite)] };

/// `planes` = N·C planes of h×w pooled by a k×k window at `stride` with `pad` (floor mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PoolGeometry {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn input_len(&self) -> usize {
        self.planes * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.planes * self.oh() * self.ow()
    }
    pub fn validate(&self) -> Result<()> {
        if self.k == 0
            || self.stride == 0
            || self.h + 2 * self.pad < self.k
            || self.w + 2 * self.pad < self.k
            || 2 * self.pad > self.k
        {
            return Err(Error::Shape(format!(
                "a {0}×{0} pool at stride {1} with padding {2} does not fit a {3}×{4} input (padding may be at most half the window)",
                self.k, self.stride, self.pad, self.h, self.w
            )));
        }
        Ok(())
    }
    pub(crate) fn params(&self) -> [u32; 8] {
        let u = |v: usize| v as u32;
        [u(self.planes), u(self.h), u(self.w), u(self.k), u(self.stride), u(self.pad), u(self.oh()), u(self.ow())]
    }
}

/// y = max over each window of x; argmax (u32) = the winning pixel's index within its plane.
pub fn max_pool_forward(
    ctx: &GpuContext,
    g: &PoolGeometry,
    x: &Tensor,
    y: &Tensor,
    argmax: &Tensor,
) -> Result<Dispatch> {
    g.validate()?;
    x.check_len("max_pool input", g.input_len())?;
    y.check_len("max_pool output", g.output_len())?;
    argmax.check_len("max_pool argmax", g.output_len())?;
    ctx.dispatch(&MAX_POOL_FORWARD, &g.params(), &[x, y, argmax], grid_1d(g.output_len()))
}

/// dx[pixel] = Σ dy over the windows whose argmax is that pixel.
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
    ctx.dispatch(&MAX_POOL_BACKWARD, &g.params(), &[dy, argmax, dx], grid_1d(g.input_len()))
}

pub mod cpu {
    use super::PoolGeometry;

    pub fn max_pool_forward(g: &PoolGeometry, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
        let (oh, ow) = (g.oh(), g.ow());
        for p in 0..g.planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best: Option<(f32, u32)> = None;
                    for ky in 0..g.k {
                        for kx in 0..g.k {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                            if iy < 0 || iy >= g.h as isize || ix < 0 || ix >= g.w as isize {
                                continue;
                            }
                            let at = iy as usize * g.w + ix as usize;
                            let v = x[p * g.h * g.w + at];
                            if best.is_none_or(|(b, _)| v > b || v.is_nan()) {
                                best = Some((v, at as u32));
                            }
                        }
                    }
                    let (v, at) = best.expect("validated geometry puts a pixel in every window");
                    let o = (p * oh + oy) * ow + ox;
                    y[o] = v;
                    argmax[o] = at;
                }
            }
        }
    }

    pub fn max_pool_backward(g: &PoolGeometry, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
        dx[..g.input_len()].fill(0.0);
        let outputs = g.oh() * g.ow();
        for o in 0..g.output_len() {
            let plane = o / outputs;
            dx[plane * g.h * g.w + argmax[o] as usize] += dy[o];
        }
    }
}
