//! Single layers applied to tensors, as `torch.nn.functional` applies them: upload an
//! [N, C, H, W] tensor, run one convolution, pool, ReLU, linear layer, concatenation or sum on
//! the GPU with the kernels the networks train with, and read the result back with its shape.
//! [`cpu`] holds the same functions on the host, the reference the GPU results are tested
//! against.
//!
//! ```no_run
//! use engine::functional::{self as F, GpuTensor};
//! # fn main() -> engine::Result<()> {
//! let ctx = engine::GpuContext::new()?;
//! let x = GpuTensor::from_slice(&ctx, &[1, 1, 4, 4], &(0..16).map(|v| v as f32).collect::<Vec<_>>())?;
//! let y = F::max_pool2d(&ctx, &x, 2, 2, 0)?;
//! assert_eq!(y.shape(), [1, 1, 2, 2]);
//! assert_eq!(y.to_vec(&ctx)?, [5.0, 7.0, 13.0, 15.0]);
//! # Ok(()) }
//! ```
//!
//! Shapes are checked before anything runs, and a shape a layer cannot take is refused naming
//! the layer and the shapes, as PyTorch refuses it.

use crate::context::{GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::ops::concat::ChannelCopy;
use crate::ops::conv;
use crate::ops::window::{ConvGeometry, PoolGeometry, Window};
use crate::ops::{add as add_op, avg_pool, concat as concat_op, matmul, max_pool, relu as relu_op};
use crate::rng::Rng;

/// What both tensor types share: a row-major shape.
pub trait Shaped {
    /// The tensor's shape, outermost dimension first (PyTorch's order: N, C, H, W).
    fn shape(&self) -> &[usize];
}

/// An f32 tensor on the GPU with its shape, stored row-major in a buffer of its own.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    buffer: Tensor,
    shape: Vec<usize>,
}

impl Shaped for GpuTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl GpuTensor {
    /// The tensor's shape, outermost dimension first (N, C, H, W).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Uploads `data` (row-major) as a tensor of `shape`.
    pub fn from_slice(ctx: &GpuContext, shape: &[usize], data: &[f32]) -> Result<GpuTensor> {
        check_data(shape, data.len())?;
        Ok(GpuTensor { buffer: ctx.upload(data, "tensor")?, shape: shape.to_vec() })
    }

    /// A tensor of `shape` filled with zeros.
    pub fn zeros(ctx: &GpuContext, shape: &[usize]) -> Result<GpuTensor> {
        check_data(shape, shape.iter().product())?;
        Ok(GpuTensor { buffer: ctx.zeros(shape.iter().product(), "tensor")?, shape: shape.to_vec() })
    }

    /// A tensor of `shape` drawn uniformly from [-bound, bound) with `seed`.
    pub fn uniform(ctx: &GpuContext, shape: &[usize], bound: f32, seed: u64) -> Result<GpuTensor> {
        let mut rng = Rng::new(seed);
        let data: Vec<f32> = (0..shape.iter().product()).map(|_| rng.uniform(bound)).collect();
        GpuTensor::from_slice(ctx, shape, &data)
    }

    /// Elements in the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor holds no element (never: every dimension is at least 1).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same elements under another shape of as many elements (no copy), as `reshape`.
    pub fn reshape(&self, shape: &[usize]) -> Result<GpuTensor> {
        check_data(shape, self.len())?;
        Ok(GpuTensor { buffer: self.buffer.clone(), shape: shape.to_vec() })
    }

    /// The buffer the elements live in, for the engine's kernels.
    pub fn buffer(&self) -> &Tensor {
        &self.buffer
    }

    /// Copies the elements back to the host once all queued work has finished.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        ctx.read(&self.buffer)
    }

    /// [`to_vec`](Self::to_vec) for callers that must not block (a web page).
    pub async fn to_vec_async(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        ctx.read_async(&self.buffer).await
    }

    /// Copies the tensor back to the host, shape included.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_cpu(&self, ctx: &GpuContext) -> Result<cpu::CpuTensor> {
        cpu::CpuTensor::new(&self.shape, self.to_vec(ctx)?)
    }

    fn new_like(ctx: &GpuContext, shape: Vec<usize>) -> Result<GpuTensor> {
        Ok(GpuTensor { buffer: ctx.zeros(shape.iter().product(), "tensor")?, shape })
    }
}

/// The bias's buffer, or `len` zeros for a layer without one (the kernels always add a bias).
fn bias_or_zeros(ctx: &GpuContext, bias: Option<&GpuTensor>, len: usize) -> Result<Tensor> {
    match bias {
        Some(b) => Ok(b.buffer.clone()),
        None => ctx.zeros(len, "no bias"),
    }
}

fn check_data(shape: &[usize], len: usize) -> Result<()> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::Shape(format!("a tensor of shape {shape:?}: every dimension must be at least 1")));
    }
    if shape.iter().product::<usize>() != len {
        return Err(Error::Shape(format!("{len} elements cannot be a tensor of shape {shape:?}")));
    }
    Ok(())
}

/// The tensor's shape as [N, C, H, W], or an error naming `layer`.
fn nchw(layer: &str, what: &str, t: &impl Shaped) -> Result<[usize; 4]> {
    t.shape()
        .try_into()
        .map_err(|_| Error::Shape(format!("{layer}: expected a 4-D {what} [N, C, H, W], got shape {:?}", t.shape())))
}

/// The geometry of `conv2d(x, weight, bias, stride, padding)` and its output channels, checked
/// as PyTorch checks them.
fn conv_geometry(
    x: &impl Shaped,
    weight: &impl Shaped,
    bias: Option<&impl Shaped>,
    stride: usize,
    padding: usize,
) -> Result<(ConvGeometry, usize)> {
    let [n, c, h, w] = nchw("conv2d", "input", x)?;
    let [oc, wc, kh, kw] = nchw("conv2d", "weight", weight)?;
    if wc != c {
        return Err(Error::Shape(format!(
            "conv2d: weight of shape {:?} expects an input with {wc} channels, but the input has shape {:?} ({c} channels)",
            weight.shape(),
            x.shape()
        )));
    }
    if let Some(b) = bias.filter(|b| b.shape() != [oc]) {
        return Err(Error::Shape(format!(
            "conv2d: bias of shape {:?} does not match weight of shape {:?}: expected [{oc}]",
            b.shape(),
            weight.shape()
        )));
    }
    let g = ConvGeometry { n, c, window: Window { h, w, kh, kw, stride, pad: padding } };
    if !g.window.fits() {
        return Err(Error::Shape(format!(
            "conv2d: a {kh}×{kw} kernel at stride {stride} with padding {padding} does not fit the input of shape {:?} \
             (the stride must be at least 1 and the kernel no larger than the padded input)",
            x.shape()
        )));
    }
    Ok((g, oc))
}

/// The geometry of a `layer` (max_pool2d, avg_pool2d) over x, checked as PyTorch checks it.
fn pool_geometry(layer: &str, x: &impl Shaped, kernel: usize, stride: usize, padding: usize) -> Result<PoolGeometry> {
    let [n, c, h, w] = nchw(layer, "input", x)?;
    let g = PoolGeometry::new(n * c, h, w, kernel, stride, padding);
    g.validate().map_err(|_| {
        Error::Shape(format!(
            "{layer}: a {kernel}×{kernel} window at stride {stride} with padding {padding} does not fit the input of shape \
             {:?} (the stride and window must be at least 1, the window no larger than the padded input, and the \
             padding at most half the window)",
            x.shape()
        ))
    })?;
    Ok(g)
}

/// `[n, inputs, outputs]` of `linear(x, weight, bias)`: x [N, F], weight [O, F], bias [O].
fn linear_shape(x: &impl Shaped, weight: &impl Shaped, bias: Option<&impl Shaped>) -> Result<[usize; 3]> {
    let (&[n, f], &[o, wf]) = (x.shape(), weight.shape()) else {
        return Err(Error::Shape(format!(
            "linear: expected an input [N, features] and a weight [outputs, features], got {:?} and {:?} \
             (flatten the input first)",
            x.shape(),
            weight.shape()
        )));
    };
    if f != wf {
        return Err(Error::Shape(format!(
            "linear: input of shape {:?} has {f} features, but the weight of shape {:?} expects {wf}",
            x.shape(),
            weight.shape()
        )));
    }
    if let Some(b) = bias.filter(|b| b.shape() != [o]) {
        return Err(Error::Shape(format!("linear: bias of shape {:?} does not match {o} outputs", b.shape())));
    }
    Ok([n, f, o])
}

/// The copies that concatenate `xs` along channels, and the output shape.
fn concat_plan(xs: &[&impl Shaped]) -> Result<(Vec<ChannelCopy>, [usize; 4])> {
    let shapes: Vec<[usize; 4]> = xs.iter().map(|x| nchw("concat", "input", *x)).collect::<Result<_>>()?;
    let Some(&[n, _, h, w]) = shapes.first() else {
        return Err(Error::Shape("concat: nothing to concatenate".into()));
    };
    if let Some(s) = shapes.iter().find(|s| [s[0], s[2], s[3]] != [n, h, w]) {
        return Err(Error::Shape(format!(
            "concat: tensors of shapes {:?} and {s:?} differ outside the channel dimension",
            shapes[0]
        )));
    }
    let total = shapes.iter().map(|s| s[1]).sum();
    let mut offset = 0;
    let copies = shapes
        .iter()
        .map(|s| {
            offset += s[1];
            ChannelCopy::concat(n, h * w, s[1], total, offset - s[1])
        })
        .collect();
    Ok((copies, [n, total, h, w]))
}

fn same_shape(layer: &str, a: &impl Shaped, b: &impl Shaped) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::Shape(format!("{layer}: shapes {:?} and {:?} differ", a.shape(), b.shape())));
    }
    Ok(())
}

/// 2-D convolution of x [N, C, H, W] with weight [O, C, KH, KW] and an optional bias \[O\], at
/// `stride` with `padding` zeros on each side: [N, O, OH, OW].
pub fn conv2d(
    ctx: &GpuContext,
    x: &GpuTensor,
    weight: &GpuTensor,
    bias: Option<&GpuTensor>,
    stride: usize,
    padding: usize,
) -> Result<GpuTensor> {
    let (g, oc) = conv_geometry(x, weight, bias, stride, padding)?;
    let y = GpuTensor::new_like(ctx, vec![g.n, oc, g.oh(), g.ow()])?;
    let bias = &bias_or_zeros(ctx, bias, oc)?;
    let layer = conv::Conv2d { g, out_channels: oc, x: &x.buffer, weight: &weight.buffer, bias };
    let dispatches = conv::conv2d_forward(ctx, &layer, false, None, &y.buffer)?;
    ctx.submit(&dispatches, None)?;
    Ok(y)
}

/// Max pooling of x [N, C, H, W] with a kernel×kernel window (PyTorch's floor mode).
pub fn max_pool2d(ctx: &GpuContext, x: &GpuTensor, kernel: usize, stride: usize, padding: usize) -> Result<GpuTensor> {
    let g = pool_geometry("max_pool2d", x, kernel, stride, padding)?;
    let y = GpuTensor::new_like(ctx, vec![x.shape[0], x.shape[1], g.oh(), g.ow()])?;
    let argmax = ctx.zeros(g.output_len(), "argmax")?;
    ctx.submit([&max_pool::max_pool_forward(ctx, &g, false, &x.buffer, &y.buffer, &argmax)?], None)?;
    Ok(y)
}

/// Average pooling of x [N, C, H, W], padding counted in the average (PyTorch's default).
pub fn avg_pool2d(ctx: &GpuContext, x: &GpuTensor, kernel: usize, stride: usize, padding: usize) -> Result<GpuTensor> {
    let g = pool_geometry("avg_pool2d", x, kernel, stride, padding)?;
    let y = GpuTensor::new_like(ctx, vec![x.shape[0], x.shape[1], g.oh(), g.ow()])?;
    ctx.submit([&avg_pool::avg_pool_forward(ctx, &g, &x.buffer, &y.buffer)?], None)?;
    Ok(y)
}

/// max(x, 0), elementwise, any shape.
pub fn relu(ctx: &GpuContext, x: &GpuTensor) -> Result<GpuTensor> {
    let y = GpuTensor::new_like(ctx, x.shape.clone())?;
    ctx.submit([&relu_op::relu_forward(ctx, x.len(), &x.buffer, &y.buffer)?], None)?;
    Ok(y)
}

/// x [N, F] · weightᵀ [F, O] + bias \[O\]: [N, O].
pub fn linear(ctx: &GpuContext, x: &GpuTensor, weight: &GpuTensor, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
    let [n, inputs, outputs] = linear_shape(x, weight, bias)?;
    let y = GpuTensor::new_like(ctx, vec![n, outputs])?;
    let bias = &bias_or_zeros(ctx, bias, outputs)?;
    let layer = matmul::Linear { n, inputs, outputs, x: &x.buffer, weight: &weight.buffer, bias };
    let dispatches = matmul::linear_forward(ctx, &layer, &y.buffer)?;
    ctx.submit(&dispatches, None)?;
    Ok(y)
}

/// x [N, ...] as [N, everything else] (no copy), as `torch.flatten(x, 1)`.
pub fn flatten(x: &GpuTensor) -> Result<GpuTensor> {
    x.reshape(&[x.shape[0], x.len() / x.shape[0]])
}

/// The tensors [N, Cᵢ, H, W] side by side along channels: [N, ΣCᵢ, H, W].
pub fn concat(ctx: &GpuContext, xs: &[&GpuTensor]) -> Result<GpuTensor> {
    let (copies, shape) = concat_plan(xs)?;
    let y = GpuTensor::new_like(ctx, shape.to_vec())?;
    let dispatches: Vec<_> = copies
        .iter()
        .zip(xs)
        .map(|(copy, x)| concat_op::copy_channels(ctx, copy, &x.buffer, &y.buffer))
        .collect::<Result<_>>()?;
    ctx.submit(&dispatches, None)?;
    Ok(y)
}

/// a + b, elementwise, of two tensors of one shape.
pub fn add(ctx: &GpuContext, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    same_shape("add", a, b)?;
    let y = GpuTensor::new_like(ctx, a.shape.clone())?;
    ctx.submit([&add_op::add(ctx, a.len(), &a.buffer, &b.buffer, &y.buffer)?], None)?;
    Ok(y)
}

/// A convolution layer with its parameters, as `torch.nn.Conv2d` holds them. Its fields are
/// public: set `stride`, `padding`, the weight or the bias (`None` for `bias=False`) as needed.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// [out_channels, in_channels, kernel, kernel].
    pub weight: GpuTensor,
    /// \[out_channels\], or None for a convolution without bias.
    pub bias: Option<GpuTensor>,
    /// The step between windows (1 by default).
    pub stride: usize,
    /// Zeros added on each side of the input (0 by default).
    pub padding: usize,
}

impl Conv2d {
    /// A square `kernel` convolution, initialised as PyTorch initialises one (weight and bias
    /// uniform in ±1/√(in_channels·kernel²)), drawn from `seed`.
    pub fn new(ctx: &GpuContext, in_channels: usize, out_channels: usize, kernel: usize, seed: u64) -> Result<Conv2d> {
        let bound = 1.0 / ((in_channels * kernel * kernel) as f32).sqrt();
        Ok(Conv2d {
            weight: GpuTensor::uniform(ctx, &[out_channels, in_channels, kernel, kernel], bound, seed)?,
            bias: Some(GpuTensor::uniform(ctx, &[out_channels], bound, seed.wrapping_add(1))?),
            stride: 1,
            padding: 0,
        })
    }

    /// The layer applied to x [N, C, H, W].
    pub fn forward(&self, ctx: &GpuContext, x: &GpuTensor) -> Result<GpuTensor> {
        conv2d(ctx, x, &self.weight, self.bias.as_ref(), self.stride, self.padding)
    }
}

/// A fully connected layer with its parameters, as `torch.nn.Linear` holds them.
#[derive(Clone, Debug)]
pub struct Linear {
    /// [outputs, inputs], PyTorch's layout.
    pub weight: GpuTensor,
    /// \[outputs\], or None for a layer without bias.
    pub bias: Option<GpuTensor>,
}

impl Linear {
    /// A layer initialised as PyTorch initialises one (uniform in ±1/√inputs), drawn from `seed`.
    pub fn new(ctx: &GpuContext, inputs: usize, outputs: usize, seed: u64) -> Result<Linear> {
        let bound = 1.0 / (inputs as f32).sqrt();
        Ok(Linear {
            weight: GpuTensor::uniform(ctx, &[outputs, inputs], bound, seed)?,
            bias: Some(GpuTensor::uniform(ctx, &[outputs], bound, seed.wrapping_add(1))?),
        })
    }

    /// The layer applied to x [N, inputs].
    pub fn forward(&self, ctx: &GpuContext, x: &GpuTensor) -> Result<GpuTensor> {
        linear(ctx, x, &self.weight, self.bias.as_ref())
    }
}

/// The same functions on the host, through the ops' CPU references: what the GPU results are
/// tested against.
pub mod cpu {
    use super::{check_data, concat_plan, conv_geometry, linear_shape, pool_geometry, same_shape, Shaped};
    use crate::error::Result;
    use crate::ops::{add as add_op, avg_pool, concat as concat_op, conv, max_pool, relu as relu_op};

    /// An f32 tensor in host memory with its shape (row-major).
    #[derive(Clone, Debug, PartialEq)]
    pub struct CpuTensor {
        shape: Vec<usize>,
        data: Vec<f32>,
    }

    impl Shaped for CpuTensor {
        fn shape(&self) -> &[usize] {
            &self.shape
        }
    }

    impl CpuTensor {
        /// The tensor's shape, outermost dimension first (N, C, H, W).
        pub fn shape(&self) -> &[usize] {
            &self.shape
        }

        /// `data` (row-major) as a tensor of `shape`.
        pub fn new(shape: &[usize], data: Vec<f32>) -> Result<CpuTensor> {
            check_data(shape, data.len())?;
            Ok(CpuTensor { shape: shape.to_vec(), data })
        }

        /// The elements, row-major.
        pub fn data(&self) -> &[f32] {
            &self.data
        }

        fn zeros(shape: Vec<usize>) -> CpuTensor {
            CpuTensor { data: vec![0.0; shape.iter().product()], shape }
        }
    }

    /// [`super::conv2d`] on the host.
    pub fn conv2d(
        x: &CpuTensor,
        weight: &CpuTensor,
        bias: Option<&CpuTensor>,
        stride: usize,
        padding: usize,
    ) -> Result<CpuTensor> {
        let (g, oc) = conv_geometry(x, weight, bias, stride, padding)?;
        let mut y = CpuTensor::zeros(vec![g.n, oc, g.oh(), g.ow()]);
        let zeros = vec![0.0; oc];
        let bias = bias.map_or(&zeros[..], |b| &b.data);
        conv::cpu::conv2d_forward(&g, oc, &x.data, &weight.data, bias, &mut y.data);
        Ok(y)
    }

    /// [`super::max_pool2d`] on the host.
    pub fn max_pool2d(x: &CpuTensor, kernel: usize, stride: usize, padding: usize) -> Result<CpuTensor> {
        let g = pool_geometry("max_pool2d", x, kernel, stride, padding)?;
        let mut y = CpuTensor::zeros(vec![x.shape[0], x.shape[1], g.oh(), g.ow()]);
        let mut argmax = vec![0; g.output_len()];
        max_pool::cpu::max_pool_forward(&g, false, &x.data, &mut y.data, &mut argmax);
        Ok(y)
    }

    /// [`super::avg_pool2d`] on the host.
    pub fn avg_pool2d(x: &CpuTensor, kernel: usize, stride: usize, padding: usize) -> Result<CpuTensor> {
        let g = pool_geometry("avg_pool2d", x, kernel, stride, padding)?;
        let mut y = CpuTensor::zeros(vec![x.shape[0], x.shape[1], g.oh(), g.ow()]);
        avg_pool::cpu::avg_pool_forward(&g, &x.data, &mut y.data);
        Ok(y)
    }

    /// [`super::relu`] on the host.
    pub fn relu(x: &CpuTensor) -> CpuTensor {
        let mut y = CpuTensor::zeros(x.shape.clone());
        relu_op::cpu::relu_forward(&x.data, &mut y.data);
        y
    }

    /// [`super::linear`] on the host (sums in f64).
    pub fn linear(x: &CpuTensor, weight: &CpuTensor, bias: Option<&CpuTensor>) -> Result<CpuTensor> {
        let [n, f, o] = linear_shape(x, weight, bias)?;
        let data = (0..n * o)
            .map(|i| {
                let (row, out) = (&x.data[i / o * f..][..f], &weight.data[i % o * f..][..f]);
                let dot: f64 = row.iter().zip(out).map(|(a, b)| *a as f64 * *b as f64).sum();
                dot as f32 + bias.map_or(0.0, |b| b.data[i % o])
            })
            .collect();
        CpuTensor::new(&[n, o], data)
    }

    /// [`super::concat`] on the host.
    pub fn concat(xs: &[&CpuTensor]) -> Result<CpuTensor> {
        let (copies, shape) = concat_plan(xs)?;
        let mut y = CpuTensor::zeros(shape.to_vec());
        for (copy, x) in copies.iter().zip(xs) {
            concat_op::cpu::copy_channels(copy, &x.data, &mut y.data);
        }
        Ok(y)
    }

    /// [`super::add`] on the host.
    pub fn add(a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        same_shape("add", a, b)?;
        let mut y = CpuTensor::zeros(a.shape.clone());
        add_op::cpu::add(&a.data, &b.data, &mut y.data);
        Ok(y)
    }
}
