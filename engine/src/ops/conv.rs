//! A 2-D convolution as matrix products over its input's column matrix, and conv.wgsl's im2col
//! and col2im.
//!
//! Forward:  y\[n\] = W (OC × C·KH·KW) · cols\[n\] + bias, ReLU fused: one matmul dispatch whose B
//!           is read as im2col would write it (implicit GEMM, no column buffer).
//! Backward: dW = Σ_n dy\[n\] · cols\[n\]ᵀ, likewise implicit, with dbias = Σ dy as the same
//!           dispatch's row sums;  dx = the transposed convolution of dy, one implicit product
//!           (stride 1), else dcols\[n\] = Wᵀ · dy\[n\] then dx = col2im(dcols).
//! A one-channel input at stride 1 on a CPU driver is convolved directly instead (conv_direct).
//! im2col itself stays as the reference path the tests compare the implicit products with.

use super::add::sum_slices;
use super::matmul::{matmul, matmul_fused, BSource, BiasAlong, Matmul, Operands, View};
use super::window::ConvGeometry;
use crate::context::PARAM_ALIGN;
use crate::context::{GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// conv.wgsl's parameters: the [`ConvGeometry`] and its output size.
    pub struct ConvParams {
        /// Batch size.
        pub n: u32,
        /// Input channels.
        pub c: u32,
        /// Input height.
        pub h: u32,
        /// Input width.
        pub w: u32,
        /// Kernel height.
        pub kh: u32,
        /// Kernel width.
        pub kw: u32,
        /// Window step.
        pub stride: u32,
        /// Zeros on each side.
        pub pad: u32,
        /// Output height.
        pub oh: u32,
        /// Output width.
        pub ow: u32,
        /// Output channels (conv_direct; 0 for im2col and col2im).
        pub oc: u32,
        /// 1: ReLU after the bias (conv_direct).
        pub relu: u32,
    }
}

/// Reads x, writes cols; see [`im2col`].
pub const IM2COL: KernelSpec = KernelSpec::new::<ConvParams>("conv", "im2col", &[(1, Read), (2, ReadWrite)]);
/// Reads dcols, writes dx; see [`col2im`].
pub const COL2IM: KernelSpec = KernelSpec::new::<ConvParams>("conv", "col2im", &[(1, Read), (2, ReadWrite)]);
/// Reads x, writes y, reads the weight and bias; see [`conv_direct`].
pub const CONV_DIRECT: KernelSpec =
    KernelSpec::new::<ConvParams>("conv", "conv_direct", &[(1, Read), (2, ReadWrite), (3, Read), (4, Read)]);
/// Consecutive outputs of a row one conv_direct thread computes (DIRECT_COLS in conv.wgsl).
const DIRECT_COLS: usize = 8;

impl ConvGeometry {
    /// conv.wgsl's parameters.
    fn params(&self) -> ConvParams {
        let u = |v: usize| v as u32;
        ConvParams {
            n: u(self.n),
            c: u(self.c),
            h: u(self.window.h),
            w: u(self.window.w),
            kh: u(self.window.kh),
            kw: u(self.window.kw),
            stride: u(self.window.stride),
            pad: u(self.window.pad),
            oh: u(self.oh()),
            ow: u(self.ow()),
            oc: 0,
            relu: 0,
        }
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
    let grid = image_grid(g.n, g.c * g.window.h * g.window.w, "col2im")?;
    ctx.dispatch(&COL2IM, &g.params(), &[dcols, dx], grid)
}

/// Whether `conv2d_forward` computes this convolution with [`conv_direct`]: a stride-1 convolution
/// of a one-channel input, on a CPU driver with 8-lane subgroups (lavapipe) of Mesa 24 or newer,
/// where the implicit product's gathered loads cost most (resnet's conv1: 10.2 ms as a product,
/// 6.6 ms direct on Mesa 25). On Mesa 22.3, whose every per-lane load is a scalar loop, the direct
/// convolution ties or loses (28.9 against 32.5 ms), and real GPUs keep the product, whose loads
/// coalesce (docs/performance.md).
pub fn direct_applies(ctx: &GpuContext, g: &ConvGeometry) -> bool {
    let newer_mesa = ctx.report.mesa_version().is_none_or(|(major, _)| major >= 24);
    g.c == 1 && g.window.stride == 1 && ctx.report.cpu_lanes_8() && newer_mesa
}

/// y [n, oc, oh, ow] = conv(x) + bias, then ReLU when `relu`, computed directly (conv.wgsl's
/// conv_direct) for a stride-1 convolution of a one-channel input: bit for bit the forward
/// product's where fma rounds once.
pub fn conv_direct(ctx: &GpuContext, c: &Conv2d, relu: bool, y: &Tensor) -> Result<Dispatch> {
    let g = &c.g;
    g.validate()?;
    if g.c != 1 || g.window.stride != 1 {
        return Err(Error::Shape(format!("conv_direct takes a one-channel input at stride 1, not {g:?}")));
    }
    let taps = g.window.kh * g.window.kw;
    c.x.check_len("conv_direct input", g.input_len())?;
    c.weight.check_len("conv_direct weight", c.out_channels * taps)?;
    c.bias.check_len("conv_direct bias", c.out_channels)?;
    y.check_len("conv_direct output", g.n * c.out_channels * g.oh() * g.ow())?;
    let params = ConvParams { oc: c.out_channels as u32, relu: relu as u32, ..g.params() };
    let grid = image_grid(g.n, g.oh() * g.ow().div_ceil(DIRECT_COLS), "conv_direct")?;
    let d = ctx.dispatch(&CONV_DIRECT, &params, &[c.x, y, c.weight, c.bias], grid)?;
    Ok(d.with_multiply_adds(&[g.n, c.out_channels, g.oh(), g.ow(), taps]))
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

/// The CPU reference of conv.wgsl, and a direct convolution to check the GPU path against.
pub mod cpu {
    use super::ConvGeometry;

    /// Visits every tap of every window of every (image, input channel) plane of x:
    /// `visit(plane, oy, ox, ky, kx, pixel)`, pixel the tap's index in x (None on padding).
    fn taps(g: &ConvGeometry, visit: impl FnMut(usize, usize, usize, usize, usize, Option<usize>)) {
        g.window.for_each_tap(g.n * g.c, visit);
    }

    /// Where tap (ky, kx) of output (oy, ox) of a plane sits in the column matrix.
    /// Where each tap sits in the column matrix: `index(plane, oy, ox, ky, kx)`.
    fn col_index(g: &ConvGeometry) -> impl Fn(usize, usize, usize, usize, usize) -> usize {
        let (kh, kw, ow, positions) = (g.window.kh, g.window.kw, g.ow(), g.oh() * g.ow());
        move |plane, oy, ox, ky, kx| ((plane * kh + ky) * kw + kx) * positions + oy * ow + ox
    }

    /// cols [n, C·KH·KW, OH·OW] = im2col(x [n, c, h, w]), zeros where a tap falls on padding.
    pub fn im2col(g: &ConvGeometry, x: &[f32], cols: &mut [f32]) {
        let at = col_index(g);
        taps(g, |plane, oy, ox, ky, kx, pixel| cols[at(plane, oy, ox, ky, kx)] = pixel.map_or(0.0, |p| x[p]));
    }

    /// The adjoint of im2col: scatter-add every column entry back to the pixel it came from.
    pub fn col2im(g: &ConvGeometry, dcols: &[f32], dx: &mut [f32]) {
        dx[..g.input_len()].fill(0.0);
        let at = col_index(g);
        taps(g, |plane, oy, ox, ky, kx, pixel| {
            if let Some(p) = pixel {
                dx[p] += dcols[at(plane, oy, ox, ky, kx)];
            }
        });
    }

    /// Direct convolution, y [n, oc, oh, ow] = Σ w[oc, c, ky, kx] · x[n, c, …] + bias\[oc\]: an
    /// independent reference for the im2col + matmul path (sums in f64).
    pub fn conv2d_forward(g: &ConvGeometry, oc: usize, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        let (ow, positions) = (g.ow(), g.oh() * g.ow());
        let mut sums: Vec<f64> = (0..g.n * oc * positions).map(|i| bias[(i / positions) % oc] as f64).collect();
        taps(g, |plane, oy, ox, ky, kx, pixel| {
            let (n, c) = (plane / g.c, plane % g.c);
            if let Some(p) = pixel {
                for o in 0..oc {
                    let wv = w[((o * g.c + c) * g.window.kh + ky) * g.window.kw + kx];
                    sums[(n * oc + o) * positions + oy * ow + ox] += x[p] as f64 * wv as f64;
                }
            }
        });
        for (y, sum) in y.iter_mut().zip(sums) {
            *y = sum as f32;
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
        let (ow, positions) = (g.ow(), g.oh() * g.ow());
        dx.fill(0.0);
        dw.fill(0.0);
        dbias.fill(0.0);
        for (i, d) in dy[..g.n * oc * positions].iter().enumerate() {
            dbias[(i / positions) % oc] += d;
        }
        taps(g, |plane, oy, ox, ky, kx, pixel| {
            let (n, c) = (plane / g.c, plane % g.c);
            if let Some(p) = pixel {
                for o in 0..oc {
                    let d = dy[(n * oc + o) * positions + oy * ow + ox];
                    let wi = ((o * g.c + c) * g.window.kh + ky) * g.window.kw + kx;
                    dw[wi] += d * x[p];
                    dx[p] += d * w[wi];
                }
            }
        });
    }
}

/// Buffers of a convolution layer.
pub struct Conv2d<'a> {
    /// The input's shape and the window.
    pub g: ConvGeometry,
    /// Output channels (oc).
    pub out_channels: usize,
    /// Input, `[n, c, h, w]`.
    pub x: &'a Tensor,
    /// Weight, `[oc, c, kh, kw]`.
    pub weight: &'a Tensor,
    /// Bias, `[oc]`.
    pub bias: &'a Tensor,
}

/// The forward product y = W · cols(x) + bias (ReLU when `relu`) over every image at once:
/// column j = image · positions + position. A pointwise convolution's column matrix is x itself.
pub fn forward_product(g: &ConvGeometry, out_channels: usize, relu: bool) -> Matmul {
    let (p, rows) = (g.oh() * g.ow(), g.col_rows());
    let b_source = if g.is_pointwise() { BSource::View } else { BSource::ConvColumns(*g) };
    Matmul {
        n: g.n * p,
        n_inner: p,
        b_col_outer: rows * p,
        c_col_outer: out_channels * p,
        b_source,
        bias: BiasAlong::Rows,
        relu,
        ..Matmul::dense(out_channels, p, rows)
    }
}

/// The weight gradient's product dW = Σ_n dy\[n\] · cols\[n\]ᵀ, the batch split into `chunks` (a
/// divisor of n) summed separately.
pub fn weight_grad_product(g: &ConvGeometry, out_channels: usize, chunks: usize) -> Matmul {
    let (p, rows, per_chunk) = (g.oh() * g.ow(), g.col_rows(), g.n / chunks);
    let b_source = if g.is_pointwise() { BSource::View } else { BSource::ConvColumnsT(*g) };
    Matmul {
        reduce: per_chunk,
        batch: chunks,
        a: View::row_major(p).reduced(out_channels * p).batched(per_chunk * out_channels * p),
        b: View::row_major(p).t().reduced(rows * p).batched(per_chunk * rows * p),
        c_batch_stride: out_channels * rows,
        b_source,
        ..Matmul::dense(out_channels, rows, p)
    }
}

/// The input gradient's product for a stride-1 convolution: dx\[n\](c, pixel) = Σ_o Σ_tap
/// W[o, c, tap] · dy[n, o, pixel + pad − tap], the taps as k and the output channels as the
/// reduction.
pub fn input_grad_product(g: &ConvGeometry, out_channels: usize) -> Matmul {
    let (pixels, taps) = (g.window.h * g.window.w, g.window.kh * g.window.kw);
    Matmul {
        reduce: out_channels,
        a: View::row_major(taps).reduced(g.c * taps),
        n: g.n * pixels,
        n_inner: pixels,
        c_col_outer: g.c * pixels,
        b_source: BSource::ConvInputGrad(*g),
        ..Matmul::dense(g.c, pixels, taps)
    }
}

/// Elements of the input gradient's scratch (`conv2d_backward`'s `dcols`): the column matrix's
/// gradient where col2im needs it (stride above 1), else none.
pub fn input_grad_scratch_len(g: &ConvGeometry) -> usize {
    if g.window.stride > 1 && !g.is_pointwise() {
        g.cols_len()
    } else {
        1
    }
}

/// y [n, oc, oh, ow] = conv(x) + bias (+ residual, shaped like y), then ReLU when `relu`: one
/// dispatch, the product or, where [`direct_applies`], [`conv_direct`].
pub fn conv2d_forward(
    ctx: &GpuContext,
    c: &Conv2d,
    relu: bool,
    residual: Option<&Tensor>,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    if residual.is_none() && direct_applies(ctx, &c.g) {
        return Ok(vec![conv_direct(ctx, c, relu, y)?]);
    }
    let ops = Operands { bias: Some(c.bias), residual, ..Operands::abc(c.weight, c.x, y) };
    let product = Matmul { residual: residual.is_some(), ..forward_product(&c.g, c.out_channels, relu) };
    Ok(vec![matmul_fused(ctx, &product, &ops)?])
}

/// The weight gradient sums over the batch; a small weight (few output tiles) would leave the
/// GPU idle, so the batch is split into this many chunks (a divisor of n), reduced separately
/// into `chunks` partial gradients and then summed (split-K). A chunk keeps at least
/// MIN_CHUNK_REDUCTION products (images × positions) per weight: below that the extra dispatch
/// costs more than the parallelism gains, so small layers take one dispatch.
pub fn weight_grad_chunks(g: &ConvGeometry, out_channels: usize) -> usize {
    const TARGET_WORKGROUPS: usize = 256;
    const MIN_CHUNK_REDUCTION: usize = 16384;
    let tiles = out_channels.div_ceil(32) * g.col_rows().div_ceil(64);
    let worth = (g.n * g.oh() * g.ow() / MIN_CHUNK_REDUCTION).max(1);
    let want = TARGET_WORKGROUPS.div_ceil(tiles).min(g.n).min(worth);
    (1..=want).rev().find(|d| g.n.is_multiple_of(*d)).unwrap_or(1)
}

/// Elements of the split gradients' scratch (`conv2d_backward`'s `partials`): each chunk's
/// weight gradient, then, from an aligned offset, each chunk's bias gradient.
pub fn weight_grad_partials_len(g: &ConvGeometry, out_channels: usize) -> usize {
    match weight_grad_chunks(g, out_channels) {
        1 => 1,
        chunks => bias_partials_at(g, out_channels, chunks) + chunks * out_channels,
    }
}

fn bias_partials_at(g: &ConvGeometry, out_channels: usize, chunks: usize) -> usize {
    (chunks * out_channels * g.col_rows()).next_multiple_of(PARAM_ALIGN)
}

/// From dy (already through the fused ReLU's backward): dweight = Σ_n dy\[n\] · cols\[n\]ᵀ and
/// dbias = Σ dy in one dispatch (with a second summing the chunks' `partials` when split), and
/// when `dx` is given, dx in one more (two at a stride above 1: col2im(Wᵀ · dy\[n\]) with `dcols`
/// as scratch).
pub fn conv2d_backward(
    ctx: &GpuContext,
    c: &Conv2d,
    dy: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
    partials: &Tensor,
    dx: Option<InputGrad>,
) -> Result<Vec<Dispatch>> {
    let (g, oc, rows) = (&c.g, c.out_channels, c.g.col_rows());
    let chunks = weight_grad_chunks(g, oc);
    let weight_grad = Matmul { row_sums: true, ..weight_grad_product(g, oc, chunks) };
    let mut out = Vec::new();
    if chunks == 1 {
        out.push(matmul_fused(ctx, &weight_grad, &Operands { sums: Some(dbias), ..Operands::abc(dy, c.x, dweight) })?);
    } else {
        partials.check_len("weight gradient partials", weight_grad_partials_len(g, oc))?;
        let weights = partials.slice(0, chunks * oc * rows);
        let biases = partials.slice(bias_partials_at(g, oc, chunks), chunks * oc);
        let ops = Operands { sums: Some(&biases), ..Operands::abc(dy, c.x, &weights) };
        out.push(matmul_fused(ctx, &weight_grad, &ops)?);
        out.push(sum_slices(ctx, chunks, [&weights, dweight], Some([&biases, dbias]))?);
    }
    if let Some(dx) = dx {
        out.extend(input_grad(ctx, c, dy, &dx)?);
    }
    Ok(out)
}

/// Where a convolution's input gradient goes: into `dx`, added to it when `accumulate`, with
/// `dcols` as col2im's scratch at a stride above 1 (where it cannot accumulate).
pub struct InputGrad<'a> {
    /// The input gradient, `[n, c, h, w]`.
    pub dx: &'a Tensor,
    /// Add into `dx` instead of overwriting it.
    pub accumulate: bool,
    /// Scratch of [`input_grad_scratch_len`] elements.
    pub dcols: &'a Tensor,
}

/// dx from dy: the transposed convolution (stride 1), Wᵀ · dy (pointwise), else col2im(Wᵀ · dy).
fn input_grad(ctx: &GpuContext, c: &Conv2d, dy: &Tensor, to: &InputGrad) -> Result<Vec<Dispatch>> {
    let (g, oc, p, rows) = (&c.g, c.out_channels, c.g.oh() * c.g.ow(), c.g.col_rows());
    let accumulate = to.accumulate;
    if g.window.stride == 1 && !g.is_pointwise() {
        return Ok(vec![matmul(ctx, &Matmul { accumulate, ..input_grad_product(g, oc) }, c.weight, dy, to.dx)?]);
    }
    let col_grad = Matmul {
        a: View::row_major(rows).t(),
        n: g.n * p,
        n_inner: p,
        b_col_outer: oc * p,
        c_col_outer: rows * p,
        accumulate,
        ..Matmul::dense(rows, p, oc)
    };
    if g.is_pointwise() {
        return Ok(vec![matmul(ctx, &col_grad, c.weight, dy, to.dx)?]);
    }
    if accumulate {
        return Err(Error::Shape("col2im cannot add into an input gradient; give it its own buffer".into()));
    }
    Ok(vec![matmul(ctx, &col_grad, c.weight, dy, to.dcols)?, col2im(ctx, g, to.dcols, to.dx)?])
}
