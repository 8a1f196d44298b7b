//! conv.wgsl: im2col and col2im, which turn a 2-D convolution into matmul.
//!
//! Forward:  cols = im2col(x);  y[n] = W (OC × C·KH·KW) · cols[n]  (+ bias)
//! Backward: dW = Σ_n dy[n] · cols[n]ᵀ;  dcols[n] = Wᵀ · dy[n];  dx = col2im(dcols)

use super::add::sum_slices;
use super::bias::{bias_add, bias_grad};
use super::matmul::{matmul, Matmul, View};
use crate::context::{GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};

pub const IM2COL: KernelSpec = KernelSpec { file: "conv", entry: "im2col", storage: &[(1, Read), (2, ReadWrite)] };
pub const COL2IM: KernelSpec = KernelSpec { file: "conv", entry: "col2im", storage: &[(1, Read), (2, ReadWrite)] };

/// Input [n, c, h, w] convolved with a kh×kw kernel at `stride` with `pad` zeros each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// A 1×1 kernel at stride 1 without padding: the column matrix is the input itself.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
    /// Rows of one image's column matrix: C·KH·KW.
    pub fn col_rows(&self) -> usize {
        self.c * self.kh * self.kw
    }
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn cols_len(&self) -> usize {
        self.n * self.col_rows() * self.oh() * self.ow()
    }
    pub fn validate(&self) -> Result<()> {
        if self.stride == 0
            || self.kh == 0
            || self.kw == 0
            || self.h + 2 * self.pad < self.kh
            || self.w + 2 * self.pad < self.kw
        {
            return Err(Error::Shape(format!(
                "a {}×{} kernel at stride {} does not fit a padded {}×{} input",
                self.kh, self.kw, self.stride, self.h, self.w
            )));
        }
        Ok(())
    }
    fn params(&self) -> [u32; 12] {
        let u = |v: usize| v as u32;
        [
            u(self.n),
            u(self.c),
            u(self.h),
            u(self.w),
            u(self.kh),
            u(self.kw),
            u(self.stride),
            u(self.pad),
            u(self.oh()),
            u(self.ow()),
            0,
            0,
        ]
    }
}

/// cols [n, C·KH·KW, OH·OW] = im2col(x [n, c, h, w]).
pub fn im2col(ctx: &GpuContext, g: &ConvGeometry, x: &Tensor, cols: &Tensor) -> Result<Dispatch> {
    g.validate()?;
    x.check_len("im2col input", g.input_len())?;
    cols.check_len("im2col output", g.cols_len())?;
    let grid = image_grid(g.n, g.col_rows() * g.oh() * g.ow(), "im2col")?;
    ctx.dispatch(&IM2COL, &g.params(), &[x, cols], grid)
}

/// dx [n, c, h, w] = col2im(dcols): each pixel gathers every column entry it fed.
pub fn col2im(ctx: &GpuContext, g: &ConvGeometry, dcols: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    g.validate()?;
    dcols.check_len("col2im input", g.cols_len())?;
    dx.check_len("col2im output", g.input_len())?;
    let grid = image_grid(g.n, g.c * g.h * g.w, "col2im")?;
    ctx.dispatch(&COL2IM, &g.params(), &[dcols, dx], grid)
}

/// conv.wgsl's grid: one z slice per image, `elements` threads in each in workgroups of 64,
/// folded into y past 65535 workgroups.
fn image_grid(images: usize, elements: usize, kernel: &str) -> Result<[u32; 3]> {
    let groups = elements.div_ceil(64);
    let folds = groups.div_ceil(65535);
    if images > 65535 || folds > 65535 {
        return Err(Error::Shape(format!(
            "{kernel} of {images} images of {elements} elements needs too many workgroups"
        )));
    }
    Ok([groups.min(65535) as u32, folds as u32, images as u32])
}

pub mod cpu {
    use super::ConvGeometry;

    /// Visits every column-matrix entry in order with the input pixel it reads (None where it
    /// reads padding).
    fn patches(g: &ConvGeometry, mut visit: impl FnMut(usize, Option<usize>)) {
        let (oh, ow) = (g.oh(), g.ow());
        let mut i = 0;
        for n in 0..g.n {
            for c in 0..g.c {
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                let inside = iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize;
                                visit(i, inside.then(|| ((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize));
                                i += 1;
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn im2col(g: &ConvGeometry, x: &[f32], cols: &mut [f32]) {
        patches(g, |i, pixel| cols[i] = pixel.map_or(0.0, |p| x[p]));
    }

    /// The adjoint of im2col: scatter-add every column entry back to the pixel it came from.
    pub fn col2im(g: &ConvGeometry, dcols: &[f32], dx: &mut [f32]) {
        dx[..g.input_len()].fill(0.0);
        patches(g, |i, pixel| {
            if let Some(p) = pixel {
                dx[p] += dcols[i];
            }
        });
    }

    /// Direct convolution, y [n, oc, oh, ow] = Σ w[oc, c, ky, kx] · x[n, c, …] + bias[oc]: an
    /// independent reference for the im2col + matmul path.
    pub fn conv2d_forward(g: &ConvGeometry, oc: usize, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        let (oh, ow) = (g.oh(), g.ow());
        for n in 0..g.n {
            for o in 0..oc {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = bias[o] as f64;
                        for c in 0..g.c {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                    if iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize {
                                        let xv = x[((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize];
                                        sum += xv as f64 * w[((o * g.c + c) * g.kh + ky) * g.kw + kx] as f64;
                                    }
                                }
                            }
                        }
                        y[((n * oc + o) * oh + oy) * ow + ox] = sum as f32;
                    }
                }
            }
        }
    }

    /// Direct convolution backward: (dx, dw, dbias) from dy [n, oc, oh, ow].
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_backward(
        g: &ConvGeometry,
        oc: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        dw: &mut [f32],
        dbias: &mut [f32],
    ) {
        let (oh, ow) = (g.oh(), g.ow());
        dx.fill(0.0);
        dw.fill(0.0);
        dbias.fill(0.0);
        for n in 0..g.n {
            for o in 0..oc {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let d = dy[((n * oc + o) * oh + oy) * ow + ox];
                        dbias[o] += d;
                        for c in 0..g.c {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                    if iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize {
                                        let xi = ((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize;
                                        let wi = ((o * g.c + c) * g.kh + ky) * g.kw + kx;
                                        dw[wi] += d * x[xi];
                                        dx[xi] += d * w[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Buffers of a convolution layer. `cols` is unused (may be any tensor) for a 1×1 kernel at
/// stride 1 without padding, whose column matrix is the input itself.
pub struct Conv2d<'a> {
    pub g: ConvGeometry,
    pub out_channels: usize,
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
    pub cols: &'a Tensor,
}

impl Conv2d<'_> {
    fn cols(&self) -> &Tensor {
        if self.g.is_pointwise() {
            self.x
        } else {
            self.cols
        }
    }
    fn positions(&self) -> usize {
        self.g.oh() * self.g.ow()
    }
}

/// y [n, oc, oh, ow] = conv(x) + bias, then ReLU when `relu`: im2col, one batched matmul
/// (W · cols[n] for every image), bias add.
pub fn conv2d_forward(ctx: &GpuContext, c: &Conv2d, relu: bool, y: &Tensor) -> Result<Vec<Dispatch>> {
    let (g, oc, p, rows) = (&c.g, c.out_channels, c.positions(), c.g.col_rows());
    let mut out = Vec::new();
    if !c.g.is_pointwise() {
        out.push(im2col(ctx, g, c.x, c.cols)?);
    }
    // One wide matmul over every image: column j = image · P + position.
    let product = Matmul {
        batch: 1,
        n: g.n * p,
        n_inner: p,
        b_col_outer: rows * p,
        c_col_outer: oc * p,
        ..Matmul::dense(oc, p, rows)
    };
    out.push(matmul(ctx, &product, c.weight, c.cols(), y)?);
    out.push(bias_add(ctx, g.n, oc, p, relu, c.bias, y)?);
    Ok(out)
}

/// The weight gradient sums over the batch; a small weight (few output tiles) would leave the
/// GPU idle, so the batch is split into this many chunks (a divisor of n), reduced separately
/// into `chunks` partial gradients and then summed (split-K).
pub fn weight_grad_chunks(g: &ConvGeometry, out_channels: usize) -> usize {
    const TARGET_WORKGROUPS: usize = 256;
    let tiles = out_channels.div_ceil(32) * g.col_rows().div_ceil(64);
    let want = TARGET_WORKGROUPS.div_ceil(tiles).min(g.n);
    (1..=want).rev().find(|d| g.n.is_multiple_of(*d)).unwrap_or(1)
}

/// Elements of the partial weight gradients scratch (`conv2d_backward`'s `partials`).
pub fn weight_grad_partials_len(g: &ConvGeometry, out_channels: usize) -> usize {
    match weight_grad_chunks(g, out_channels) {
        1 => 1,
        chunks => chunks * out_channels * g.col_rows(),
    }
}

/// From dy (already through the fused ReLU's backward): dweight = Σ_n dy[n] · cols[n]ᵀ (via
/// `partials` scratch when split), dbias = Σ dy, and when `dx` is given,
/// dx = col2im(Wᵀ · dy[n]) using `dcols` as scratch.
pub fn conv2d_backward(
    ctx: &GpuContext,
    c: &Conv2d,
    dy: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
    partials: &Tensor,
    dx: Option<(&Tensor, &Tensor)>,
) -> Result<Vec<Dispatch>> {
    let (g, oc, p, rows) = (&c.g, c.out_channels, c.positions(), c.g.col_rows());
    let mut out = vec![bias_grad(ctx, g.n, oc, p, dy, dbias)?];
    let chunks = weight_grad_chunks(g, oc);
    let per_chunk = g.n / chunks;
    let weight_grad = Matmul {
        reduce: per_chunk,
        batch: chunks,
        a: View::row_major(p).reduced(oc * p).batched(per_chunk * oc * p),
        b: View::row_major(p).t().reduced(rows * p).batched(per_chunk * rows * p),
        c_batch_stride: oc * rows,
        ..Matmul::dense(oc, rows, p)
    };
    if chunks == 1 {
        out.push(matmul(ctx, &weight_grad, dy, c.cols(), dweight)?);
    } else {
        out.push(matmul(ctx, &weight_grad, dy, c.cols(), partials)?);
        out.push(sum_slices(ctx, oc * rows, chunks, partials, dweight)?);
    }
    if let Some((dx, dcols)) = dx {
        let dcols = if c.g.is_pointwise() { dx } else { dcols };
        let col_grad = Matmul {
            a: View::row_major(rows).t(),
            n: g.n * p,
            n_inner: p,
            b_col_outer: oc * p,
            c_col_outer: rows * p,
            ..Matmul::dense(rows, p, oc)
        };
        out.push(matmul(ctx, &col_grad, c.weight, dy, dcols)?);
        if !c.g.is_pointwise() {
            out.push(col2im(ctx, g, dcols, dx)?);
        }
    }
    Ok(out)
}
