//! matmul.wgsl: C\[b\] (+)= Σ_r A\[b,r\]·B\[b,r\] over strided views (see the shader header).
//! Transposes are swapped strides; a reduce index sums products over a batch in one dispatch.
//! B may be a convolution's column matrix read from its input (implicit GEMM), and the epilogue
//! adds a bias and applies ReLU, so a convolution or linear layer is one dispatch.

use super::window::ConvGeometry;
use crate::context::{GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access, Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// matmul.wgsl's and matmul_subgroup.wgsl's parameters: the [`Matmul`] with its strides named
    /// as in the shader header (`a_ms`: A's row stride, …), and the column-tile folds.
    pub struct MatmulParams {
        /// Rows of A and C.
        pub m: u32,
        /// Columns of B and C, all folds together.
        pub n: u32,
        /// Columns of A, rows of B.
        pub k: u32,
        /// Reduce slices r summed over.
        pub reduce: u32,
        /// A's row stride.
        pub a_ms: u32,
        /// A's column (k) stride.
        pub a_ks: u32,
        /// A's reduce stride.
        pub a_rs: u32,
        /// A's batch stride.
        pub a_bs: u32,
        /// B's row (k) stride.
        pub b_ks: u32,
        /// B's stride between columns ji within a fold.
        pub b_ns: u32,
        /// B's reduce stride.
        pub b_rs: u32,
        /// B's batch stride.
        pub b_bs: u32,
        /// C's row stride.
        pub c_ms: u32,
        /// C's batch stride.
        pub c_bs: u32,
        /// 1: add to C instead of overwriting it.
        pub accumulate: u32,
        /// Columns per fold (`n_inner == n`: no fold).
        pub n_inner: u32,
        /// B's stride between folds jo.
        pub b_no: u32,
        /// C's stride between folds jo.
        pub c_no: u32,
        /// Column tiles folded into z: ceil(tiles / 65535).
        pub col_folds: u32,
        /// B's source: 0 a view, 1 `ConvColumns`, 2 `ConvColumnsT`, 3 `ConvInputGrad`.
        pub b_view: u32,
        /// The convolution's input channels (0 when B is a view).
        pub c: u32,
        /// The convolution's input height.
        pub h: u32,
        /// The convolution's input width.
        pub w: u32,
        /// The convolution's kernel height.
        pub kh: u32,
        /// The convolution's kernel width.
        pub kw: u32,
        /// The convolution's stride.
        pub stride: u32,
        /// The convolution's padding on each side.
        pub pad: u32,
        /// The convolution's output width.
        pub ow: u32,
        /// 0 no bias, 1 along rows, 2 along columns ([`BiasAlong`]).
        pub bias_along: u32,
        /// 1: ReLU in the epilogue.
        pub relu: u32,
        /// 1: also write A's row sums.
        pub row_sums: u32,
        /// The convolution's output height.
        pub oh: u32,
        /// 1: add the residual tensor in the epilogue.
        pub residual: u32,
    }
}

const OPERANDS: &[(u32, Access)] = &[(1, Read), (2, Read), (3, ReadWrite), (4, Read), (5, ReadWrite), (6, Read)];
/// The tiled product: 32×64 tiles of C staged through workgroup memory.
pub const MATMUL: KernelSpec = KernelSpec::new::<MatmulParams>("matmul", "matmul", OPERANDS);
/// The same product for CPU drivers with 8-lane subgroups (see matmul_subgroup.wgsl).
pub const MATMUL_SUBGROUP: KernelSpec = KernelSpec::new::<MatmulParams>("matmul_subgroup", "matmul_subgroup", OPERANDS);

/// Which kernel computes a product: the workgroup-memory tiles of matmul.wgsl, or one lane per
/// invocation (matmul_subgroup.wgsl), only where `AdapterReport::cpu_lanes_8` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// [`MATMUL`].
    Tiled,
    /// [`MATMUL_SUBGROUP`].
    Subgroup,
}

impl MatmulKernel {
    /// The faster kernel for this device.
    pub fn for_device(ctx: &GpuContext) -> MatmulKernel {
        if ctx.report.cpu_lanes_8() {
            MatmulKernel::Subgroup
        } else {
            MatmulKernel::Tiled
        }
    }

    fn spec(self) -> (&'static KernelSpec, usize, usize) {
        match self {
            MatmulKernel::Tiled => (&MATMUL, 32, 64),
            MatmulKernel::Subgroup => (&MATMUL_SUBGROUP, 16, 128),
        }
    }
}

/// Element (row, col) of reduce slice r of batch b sits at
/// `b*batch_stride + r*reduce_stride + row*row_stride + col*col_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
    /// Elements between consecutive reduce slices.
    pub reduce_stride: usize,
    /// Elements between consecutive batches.
    pub batch_stride: usize,
}

impl View {
    /// A dense row-major matrix with `cols` columns.
    pub fn row_major(cols: usize) -> View {
        View { row_stride: cols, col_stride: 1, reduce_stride: 0, batch_stride: 0 }
    }
    /// The transpose of this view.
    pub fn t(self) -> View {
        View { row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
    /// This view with batch stride `batch_stride`.
    pub fn batched(self, batch_stride: usize) -> View {
        View { batch_stride, ..self }
    }
    /// This view with reduce stride `reduce_stride`.
    pub fn reduced(self, reduce_stride: usize) -> View {
        View { reduce_stride, ..self }
    }
    /// One past the largest element index the view touches.
    fn extent(&self, rows: usize, cols: usize, reduce: usize, batch: usize) -> usize {
        (batch - 1) * self.batch_stride
            + (reduce - 1) * self.reduce_stride
            + (rows - 1) * self.row_stride
            + (cols - 1) * self.col_stride
            + 1
    }
}

/// C (m×n, row stride `c_row_stride`, batch stride `c_batch_stride`) = Σ_r A (m×k) · B (k×n).
///
/// Columns may be folded: column j = jo·n_inner + ji sits at `ji·col_stride + jo·b_col_outer`
/// in B and at `ji + jo·c_col_outer` in C, so the columns of several images (blocks of n_inner
/// positions) form one wide matrix. `n_inner == n` means no fold.
#[derive(Clone, Copy, Debug)]
pub struct Matmul {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C, all folds together.
    pub n: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Reduce slices r summed into each C.
    pub reduce: usize,
    /// Independent products b, each its own C.
    pub batch: usize,
    /// A's strides.
    pub a: View,
    /// B's strides, read only when `b_source` is `BSource::View`.
    pub b: View,
    /// Elements between C's rows.
    pub c_row_stride: usize,
    /// Elements between C's batches.
    pub c_batch_stride: usize,
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
    /// Columns per fold (`n` for no fold).
    pub n_inner: usize,
    /// B's stride between folds.
    pub b_col_outer: usize,
    /// C's stride between folds.
    pub c_col_outer: usize,
    /// Where B's elements come from.
    pub b_source: BSource,
    /// Which index of C the epilogue's bias follows.
    pub bias: BiasAlong,
    /// Apply ReLU last in the epilogue.
    pub relu: bool,
    /// Also write Σ_r Σ_k A(m, k) for each batch and row (a bias gradient beside a weight gradient).
    pub row_sums: bool,
    /// Add a tensor shaped like C in the epilogue, before the ReLU (a residual block's skip).
    pub residual: bool,
}

/// Where B's elements come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BSource {
    /// Stored as the view `b` describes.
    View,
    /// The column matrix of the convolution's input, as im2col would write it: B(k, j) is row k
    /// at position ji of image jo (n_inner = positions): the convolution's product.
    ConvColumns(ConvGeometry),
    /// Its transpose: B(k, j) is row ji at position k of image batch·reduce + r: the weight
    /// gradient's product.
    ConvColumnsT(ConvGeometry),
    /// The output gradient dy [images, reduce, oh, ow] of a stride-1 convolution read as the
    /// transposed convolution's columns: B\[r\](k, j) = dy[jo, r, iy + pad − ky, ix + pad − kx] for
    /// tap k = (ky, kx) and pixel ji = (iy, ix) (n_inner = h·w): the input gradient's product.
    ConvInputGrad(ConvGeometry),
}

/// Which index of C the epilogue's bias follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiasAlong {
    /// No bias.
    None,
    /// bias\[m\]: a convolution's output channels.
    Rows,
    /// bias\[ji\]: a linear layer's outputs.
    Columns,
}

impl Matmul {
    /// Dense row-major C = A·B.
    pub fn dense(m: usize, n: usize, k: usize) -> Matmul {
        Matmul {
            m,
            n,
            k,
            reduce: 1,
            batch: 1,
            a: View::row_major(k),
            b: View::row_major(n),
            c_row_stride: n,
            c_batch_stride: 0,
            accumulate: false,
            n_inner: n,
            b_col_outer: 0,
            c_col_outer: 0,
            b_source: BSource::View,
            bias: BiasAlong::None,
            relu: false,
            row_sums: false,
            residual: false,
        }
    }

    /// B's length, and the number of (ConvColumns) or a check on (ConvColumnsT) its images.
    fn b_extent(&self) -> Result<usize> {
        let mismatch = |what: &str| Err(Error::Shape(format!("matmul over a convolution's columns: {what}: {self:?}")));
        match self.b_source {
            BSource::View => {
                // Offsets grow with both parts of a column index, so the largest is at the last
                // column or at the last column of the fold before it.
                let last_fold = (self.n - 1) / self.n_inner;
                let before = if last_fold > 0 { last_fold * self.n_inner - 1 } else { self.n - 1 };
                let b_col = self.column(before).0.max(self.column(self.n - 1).0);
                Ok(View { col_stride: 0, ..self.b }.extent(self.k, 1, self.reduce, self.batch) + b_col)
            }
            BSource::ConvColumns(g) => {
                let positions = g.oh() * g.ow();
                if self.k != g.col_rows() || self.n_inner != positions || self.n % positions != 0 {
                    return mismatch("k must be the column matrix's rows and n whole images of positions");
                }
                Ok(ConvGeometry { n: self.n / positions, ..g }.input_len())
            }
            BSource::ConvColumnsT(g) => {
                if self.k != g.oh() * g.ow() || self.n != g.col_rows() || self.n_inner != self.n {
                    return mismatch("k must be the positions and n the column matrix's rows");
                }
                Ok(ConvGeometry { n: self.batch * self.reduce, ..g }.input_len())
            }
            BSource::ConvInputGrad(g) => {
                let pixels = g.window.h * g.window.w;
                if g.window.stride != 1
                    || self.k != g.window.kh * g.window.kw
                    || self.n_inner != pixels
                    || self.n % pixels != 0
                {
                    return mismatch("a stride-1 convolution, k its taps and n whole images of pixels");
                }
                Ok(self.n / pixels * self.reduce * g.oh() * g.ow())
            }
        }
    }

    /// Column j of B and C: (offset in B, offset in C), before row and batch offsets.
    fn column(&self, j: usize) -> (usize, usize) {
        let (jo, ji) = (j / self.n_inner, j % self.n_inner);
        (ji * self.b.col_stride + jo * self.b_col_outer, ji + jo * self.c_col_outer)
    }

    fn check(&self, a: usize, b: usize, c: usize, bias: usize) -> Result<()> {
        if self.m == 0 || self.n == 0 || self.k == 0 || self.reduce == 0 || self.batch == 0 || self.n_inner == 0 {
            return Err(Error::Shape(format!("matmul with an empty dimension: {self:?}")));
        }
        let last_fold = (self.n - 1) / self.n_inner;
        let before = if last_fold > 0 { last_fold * self.n_inner - 1 } else { self.n - 1 };
        let c_col = self.column(before).1.max(self.column(self.n - 1).1);
        let bias_need = match self.bias {
            BiasAlong::None => 0,
            BiasAlong::Rows => self.m,
            BiasAlong::Columns => self.n_inner,
        };
        let need = [
            ("A", self.a.extent(self.m, self.k, self.reduce, self.batch), a),
            ("B", self.b_extent()?, b),
            ("C", (self.batch - 1) * self.c_batch_stride + (self.m - 1) * self.c_row_stride + c_col + 1, c),
            ("the bias", bias_need, bias),
        ];
        for (name, extent, len) in need {
            if extent > len {
                return Err(Error::Shape(format!(
                    "matmul reads {name} up to element {extent} but it holds {len}: {self:?}"
                )));
            }
        }
        Ok(())
    }

    /// The shader's encoding of the B source, and the convolution it reads.
    fn b_view_params(&self) -> (u32, Option<ConvGeometry>) {
        match self.b_source {
            BSource::View => (0, None),
            BSource::ConvColumns(g) => (1, Some(g)),
            BSource::ConvColumnsT(g) => (2, Some(g)),
            BSource::ConvInputGrad(g) => (3, Some(g)),
        }
    }
}

/// C = A·B as `s` describes, without a bias (`s.bias` must be None).
pub fn matmul(ctx: &GpuContext, s: &Matmul, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<Dispatch> {
    matmul_fused(ctx, s, &Operands::abc(a, b, c))
}

/// The tensors of a product: A, B, C, the epilogue's bias (given exactly when `Matmul::bias` is
/// set) and residual (exactly when `Matmul::residual`, as long as C), and the row sums' output
/// (exactly when `Matmul::row_sums`, `batch · m` elements).
#[derive(Clone, Copy)]
pub struct Operands<'a> {
    /// The left operand.
    pub a: &'a Tensor,
    /// The right operand (a convolution's input where B is its column matrix).
    pub b: &'a Tensor,
    /// The product.
    pub c: &'a Tensor,
    /// The epilogue's bias.
    pub bias: Option<&'a Tensor>,
    /// The row sums' output, `[batch, m]`.
    pub sums: Option<&'a Tensor>,
    /// Added to C before the ReLU, shaped like C.
    pub residual: Option<&'a Tensor>,
}

impl<'a> Operands<'a> {
    /// A, B and C alone.
    pub fn abc(a: &'a Tensor, b: &'a Tensor, c: &'a Tensor) -> Operands<'a> {
        Operands { a, b, c, bias: None, sums: None, residual: None }
    }
}

/// C = A·B + bias (along `s.bias`), then ReLU when `s.relu`; and A's row sums when `s.row_sums`.
pub fn matmul_fused(ctx: &GpuContext, s: &Matmul, ops: &Operands) -> Result<Dispatch> {
    matmul_with(ctx, MatmulKernel::for_device(ctx), s, ops)
}

/// `matmul_fused` with the kernel chosen by the caller (tests run both where both can run).
pub fn matmul_with(ctx: &GpuContext, kernel: MatmulKernel, s: &Matmul, ops: &Operands) -> Result<Dispatch> {
    let &Operands { a, b, c, bias, sums, residual } = ops;
    let given = (bias.is_some(), sums.is_some(), residual.is_some());
    if given != (s.bias != BiasAlong::None, s.row_sums, s.residual) {
        return Err(Error::Shape(format!("matmul given (bias, row sums, residual) {given:?} for {s:?}")));
    }
    s.check(a.len, b.len, c.len, bias.map_or(0, |t| t.len))?;
    if let Some(sums) = sums {
        sums.check_len("matmul row sums", s.batch * s.m)?;
    }
    if let Some(residual) = residual {
        residual.check_len("matmul residual", c.len)?;
    }
    if kernel == MatmulKernel::Subgroup && !ctx.report.cpu_lanes_8() {
        // Lanes of other subgroup sizes would broadcast the wrong rows.
        return Err(Error::Kernel {
            kernel: MATMUL_SUBGROUP.entry.into(),
            message: format!("needs a CPU driver with 8-lane subgroups, not {}", ctx.report),
        });
    }
    let (spec, tile_rows, tile_cols) = kernel.spec();
    // Column tiles past 65535 fold into z beside the batch.
    let tiles = s.n.div_ceil(tile_cols);
    let folds = tiles.div_ceil(65535);
    if s.batch * folds > 65535 {
        return Err(Error::Shape(format!("matmul batch {} of {} columns needs too many workgroups", s.batch, s.n)));
    }
    let u = |v: usize| v as u32;
    let (b_view, g) = s.b_view_params();
    let conv = |field: fn(&ConvGeometry) -> usize| g.as_ref().map_or(0, |g| field(g) as u32);
    let params = MatmulParams {
        m: u(s.m),
        n: u(s.n),
        k: u(s.k),
        reduce: u(s.reduce),
        a_ms: u(s.a.row_stride),
        a_ks: u(s.a.col_stride),
        a_rs: u(s.a.reduce_stride),
        a_bs: u(s.a.batch_stride),
        b_ks: u(s.b.row_stride),
        b_ns: u(s.b.col_stride),
        b_rs: u(s.b.reduce_stride),
        b_bs: u(s.b.batch_stride),
        c_ms: u(s.c_row_stride),
        c_bs: u(s.c_batch_stride),
        accumulate: s.accumulate as u32,
        n_inner: u(s.n_inner),
        b_no: u(s.b_col_outer),
        c_no: u(s.c_col_outer),
        col_folds: u(folds),
        b_view,
        c: conv(|g| g.c),
        h: conv(|g| g.window.h),
        w: conv(|g| g.window.w),
        kh: conv(|g| g.window.kh),
        kw: conv(|g| g.window.kw),
        stride: conv(|g| g.window.stride),
        pad: conv(|g| g.window.pad),
        ow: conv(ConvGeometry::ow),
        oh: conv(ConvGeometry::oh),
        bias_along: match s.bias {
            BiasAlong::None => 0,
            BiasAlong::Rows => 1,
            BiasAlong::Columns => 2,
        },
        relu: s.relu as u32,
        row_sums: s.row_sums as u32,
        residual: s.residual as u32,
    };
    let groups = [tiles.min(65535) as u32, s.m.div_ceil(tile_rows) as u32, (s.batch * folds) as u32];
    // Unused bindings get A (read-only) and C (read-write) again: a buffer may back several
    // bindings of one access.
    let operands = [a, b, c, bias.unwrap_or(a), sums.unwrap_or(ctx.placeholder()), residual.unwrap_or(a)];
    Ok(ctx.dispatch(spec, &params, &operands, groups)?.with_multiply_adds(&[s.m, s.n, s.k, s.reduce, s.batch]))
}

/// The CPU reference of matmul.wgsl.
pub mod cpu {
    use super::{BSource, BiasAlong, Matmul, View};
    use crate::ops::conv;
    use crate::ops::window::ConvGeometry;

    /// B of `BSource::ConvInputGrad` written out: [reduce][tap][image · h·w + pixel], from dy
    /// [images, reduce, oh, ow].
    fn transposed_columns(g: &ConvGeometry, channels: usize, images: usize, dy: &[f32]) -> Vec<f32> {
        let (taps, pixels, n) = (g.window.kh * g.window.kw, g.window.h * g.window.w, images * g.window.h * g.window.w);
        let mut out = vec![0.0; channels * taps * n];
        for (o, t, image, pixel) in
            (0..channels * taps * images * pixels).map(|i| (i / (taps * n), i / n % taps, i % n / pixels, i % pixels))
        {
            let (y, x) = (
                (pixel / g.window.w + g.window.pad) as isize - (t / g.window.kw) as isize,
                (pixel % g.window.w + g.window.pad) as isize - (t % g.window.kw) as isize,
            );
            if (0..g.oh() as isize).contains(&y) && (0..g.ow() as isize).contains(&x) {
                let at = ((image * channels + o) * g.oh() + y as usize) * g.ow() + x as usize;
                out[(o * taps + t) * n + image * pixels + pixel] = dy[at];
            }
        }
        out
    }

    /// Σ_r Σ_k A[b, r](m, k) for each batch b and row m (`Matmul::row_sums`), summed in f64.
    pub fn row_sums(s: &Matmul, a: &[f32]) -> Vec<f32> {
        let at = |b, r, m, k| a[b * s.a.batch_stride + r * s.a.reduce_stride + m * s.a.row_stride + k * s.a.col_stride];
        let sum = |b, m| {
            (0..s.reduce).flat_map(|r| (0..s.k).map(move |k| (r, k))).map(|(r, k)| at(b, r, m, k) as f64).sum::<f64>()
        };
        (0..s.batch).flat_map(|b| (0..s.m).map(move |m| (b, m))).map(|(b, m)| sum(b, m) as f32).collect()
    }

    /// The plain triple loop the kernel must agree with (sums in f64). A convolution's column
    /// matrix is written out by the CPU im2col first.
    /// `residual` is read only when `s.residual`.
    pub fn matmul(s: &Matmul, a: &[f32], b: &[f32], bias: &[f32], residual: &[f32], c: &mut [f32]) {
        s.check(a.len(), b.len(), c.len(), bias.len()).expect("cpu matmul shape");
        let columns = |g: ConvGeometry, images: usize| {
            let g = ConvGeometry { n: images, ..g };
            let mut cols = vec![0.0; g.cols_len()];
            conv::cpu::im2col(&g, b, &mut cols);
            cols
        };
        // Each source as a stored matrix with its view.
        let (b, view) = match s.b_source {
            BSource::View => (b.to_vec(), *s),
            BSource::ConvColumns(g) => {
                let p = g.oh() * g.ow();
                (columns(g, s.n / p), Matmul { b: View::row_major(p), b_col_outer: g.col_rows() * p, ..*s })
            }
            BSource::ConvColumnsT(g) => {
                let p = g.oh() * g.ow();
                let b_view = View::row_major(p).t().reduced(g.col_rows() * p).batched(s.reduce * g.col_rows() * p);
                (columns(g, s.batch * s.reduce), Matmul { b: b_view, ..*s })
            }
            BSource::ConvInputGrad(g) => {
                let stored = transposed_columns(&g, s.reduce, s.n / (g.window.h * g.window.w), b);
                let b_view = View::row_major(s.n).reduced(g.window.kh * g.window.kw * s.n);
                (stored, Matmul { b: b_view, b_col_outer: g.window.h * g.window.w, ..*s })
            }
        };
        for bi in 0..s.batch {
            for m in 0..s.m {
                for n in 0..s.n {
                    let (b_col, c_col) = view.column(n);
                    let mut sum = 0.0f64;
                    for r in 0..s.reduce {
                        for k in 0..s.k {
                            let av = a[bi * s.a.batch_stride
                                + r * s.a.reduce_stride
                                + m * s.a.row_stride
                                + k * s.a.col_stride];
                            let bv =
                                b[bi * view.b.batch_stride + r * view.b.reduce_stride + k * view.b.row_stride + b_col];
                            sum += av as f64 * bv as f64;
                        }
                    }
                    let at = bi * s.c_batch_stride + m * s.c_row_stride + c_col;
                    let mut v = if s.accumulate { c[at] + sum as f32 } else { sum as f32 };
                    v += match s.bias {
                        BiasAlong::None => 0.0,
                        BiasAlong::Rows => bias[m],
                        BiasAlong::Columns => bias[n % s.n_inner],
                    };
                    if s.residual {
                        v += residual[at];
                    }
                    c[at] = if s.relu { v.max(0.0) } else { v };
                }
            }
        }
    }
}

/// Buffers of a fully connected layer: x [n, in], weight [out, in] (PyTorch's layout), bias \[out\].
pub struct Linear<'a> {
    /// Batch size.
    pub n: usize,
    /// Input features (in).
    pub inputs: usize,
    /// Output features (out).
    pub outputs: usize,
    /// Input, `[n, in]`.
    pub x: &'a Tensor,
    /// Weight, `[out, in]`.
    pub weight: &'a Tensor,
    /// Bias, `[out]`.
    pub bias: &'a Tensor,
}

/// The product of a linear layer's forward pass, y [n, out] = x · weightᵀ + bias.
pub fn linear_product(n: usize, inputs: usize, outputs: usize) -> Matmul {
    Matmul { b: View::row_major(inputs).t(), bias: BiasAlong::Columns, ..Matmul::dense(n, outputs, inputs) }
}

/// y [n, out] = x · weightᵀ + bias, one dispatch.
pub fn linear_forward(ctx: &GpuContext, l: &Linear, y: &Tensor) -> Result<Vec<Dispatch>> {
    let ops = Operands { bias: Some(l.bias), ..Operands::abc(l.x, l.weight, y) };
    Ok(vec![matmul_fused(ctx, &linear_product(l.n, l.inputs, l.outputs), &ops)?])
}

/// The weight gradient's product dweight = dyᵀ · x, with dbias = Σ_n dy as its row sums.
pub fn linear_weight_grad_product(n: usize, inputs: usize, outputs: usize) -> Matmul {
    Matmul { a: View::row_major(outputs).t(), row_sums: true, ..Matmul::dense(outputs, inputs, n) }
}

/// dweight = dyᵀ · x and dbias = Σ_n dy in one dispatch, and dx = dy · weight when `dx` is
/// given (added into it when its flag is set).
pub fn linear_backward(
    ctx: &GpuContext,
    l: &Linear,
    dy: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
    dx: Option<(&Tensor, bool)>,
) -> Result<Vec<Dispatch>> {
    let weight_grad = linear_weight_grad_product(l.n, l.inputs, l.outputs);
    let ops = Operands { sums: Some(dbias), ..Operands::abc(dy, l.x, dweight) };
    let mut out = vec![matmul_fused(ctx, &weight_grad, &ops)?];
    if let Some((dx, accumulate)) = dx {
        out.push(matmul(ctx, &Matmul { accumulate, ..Matmul::dense(l.n, l.inputs, l.outputs) }, dy, l.weight, dx)?);
    }
    Ok(out)
}
