//! matmul.wgsl: C[b] (+)= Σ_r A[b,r]·B[b,r] over strided views (see the shader header).
//! Transposes are swapped strides; a reduce index sums products over a batch in one dispatch.

use crate::context::{GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access, Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// matmul.wgsl's and matmul_subgroup.wgsl's parameters: the [`Matmul`] with its strides named
    /// as in the shader header (`a_ms`: A's row stride, …), and the column-tile folds.
    pub struct MatmulParams {
        pub m: u32, pub n: u32, pub k: u32, pub reduce: u32,
        pub a_ms: u32, pub a_ks: u32, pub a_rs: u32, pub a_bs: u32,
        pub b_ks: u32, pub b_ns: u32, pub b_rs: u32, pub b_bs: u32,
        pub c_ms: u32, pub c_bs: u32, pub accumulate: u32, pub n_inner: u32,
        pub b_no: u32, pub c_no: u32, pub col_folds: u32,
    }
}

const OPERANDS: &[(u32, Access)] = &[(1, Read), (2, Read), (3, ReadWrite)];
pub const MATMUL: KernelSpec = KernelSpec::new::<MatmulParams>("matmul", "matmul", OPERANDS);
/// The same product for CPU drivers with 8-lane subgroups (see matmul_subgroup.wgsl).
pub const MATMUL_SUBGROUP: KernelSpec = KernelSpec::new::<MatmulParams>("matmul_subgroup", "matmul_subgroup", OPERANDS);

/// Which kernel computes a product: the workgroup-memory tiles of matmul.wgsl, or one lane per
/// invocation (matmul_subgroup.wgsl), only where `AdapterReport::cpu_lanes_8` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    Tiled,
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
    pub row_stride: usize,
    pub col_stride: usize,
    pub reduce_stride: usize,
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
    pub fn batched(self, batch_stride: usize) -> View {
        View { batch_stride, ..self }
    }
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
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub reduce: usize,
    pub batch: usize,
    pub a: View,
    pub b: View,
    pub c_row_stride: usize,
    pub c_batch_stride: usize,
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
    pub n_inner: usize,
    pub b_col_outer: usize,
    pub c_col_outer: usize,
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
        }
    }

    /// Column j of B and C: (offset in B, offset in C), before row and batch offsets.
    fn column(&self, j: usize) -> (usize, usize) {
        let (jo, ji) = (j / self.n_inner, j % self.n_inner);
        (ji * self.b.col_stride + jo * self.b_col_outer, ji + jo * self.c_col_outer)
    }

    fn check(&self, a: usize, b: usize, c: usize) -> Result<()> {
        if self.m == 0 || self.n == 0 || self.k == 0 || self.reduce == 0 || self.batch == 0 || self.n_inner == 0 {
            return Err(Error::Shape(format!("matmul with an empty dimension: {self:?}")));
        }
        // Offsets grow with both parts of a column index, so the largest is at the last column
        // or at the last column of the fold before it.
        let last_fold = (self.n - 1) / self.n_inner;
        let before = if last_fold > 0 { last_fold * self.n_inner - 1 } else { self.n - 1 };
        let last_columns = [self.column(before), self.column(self.n - 1)];
        let b_col = last_columns.iter().map(|c| c.0).max().unwrap();
        let c_col = last_columns.iter().map(|c| c.1).max().unwrap();
        let b_rest = View { col_stride: 0, ..self.b }.extent(self.k, 1, self.reduce, self.batch);
        let need = [
            ("A", self.a.extent(self.m, self.k, self.reduce, self.batch), a),
            ("B", b_rest + b_col, b),
            ("C", (self.batch - 1) * self.c_batch_stride + (self.m - 1) * self.c_row_stride + c_col + 1, c),
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
}

pub fn matmul(ctx: &GpuContext, s: &Matmul, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<Dispatch> {
    matmul_with(ctx, MatmulKernel::for_device(ctx), s, a, b, c)
}

/// `matmul` with the kernel chosen by the caller (tests run both where both can run).
pub fn matmul_with(
    ctx: &GpuContext,
    kernel: MatmulKernel,
    s: &Matmul,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Result<Dispatch> {
    s.check(a.len, b.len, c.len)?;
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
    };
    let groups = [tiles.min(65535) as u32, s.m.div_ceil(tile_rows) as u32, (s.batch * folds) as u32];
    ctx.dispatch(spec, &params, &[a, b, c], groups)
}

pub mod cpu {
    use super::Matmul;

    /// The plain triple loop the kernel must agree with.
    pub fn matmul(s: &Matmul, a: &[f32], b: &[f32], c: &mut [f32]) {
        s.check(a.len(), b.len(), c.len()).expect("cpu matmul shape");
        for bi in 0..s.batch {
            for m in 0..s.m {
                for n in 0..s.n {
                    let (b_col, c_col) = s.column(n);
                    let mut sum = 0.0f64;
                    for r in 0..s.reduce {
                        for k in 0..s.k {
                            let av = a[bi * s.a.batch_stride
                                + r * s.a.reduce_stride
                                + m * s.a.row_stride
                                + k * s.a.col_stride];
                            let bv = b[bi * s.b.batch_stride + r * s.b.reduce_stride + k * s.b.row_stride + b_col];
                            sum += av as f64 * bv as f64;
                        }
                    }
                    let at = bi * s.c_batch_stride + m * s.c_row_stride + c_col;
                    c[at] = if s.accumulate { c[at] + sum as f32 } else { sum as f32 };
                }
            }
        }
    }
}

/// Buffers of a fully connected layer: x [n, in], weight [out, in] (PyTorch's layout), bias [out].
pub struct Linear<'a> {
    pub n: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
}

/// y [n, out] = x · weightᵀ + bias.
pub fn linear_forward(ctx: &GpuContext, l: &Linear, y: &Tensor) -> Result<Vec<Dispatch>> {
    let product = Matmul { b: View::row_major(l.inputs).t(), ..Matmul::dense(l.n, l.outputs, l.inputs) };
    Ok(vec![matmul(ctx, &product, l.x, l.weight, y)?, super::bias::bias_add(ctx, l.n, l.outputs, 1, false, l.bias, y)?])
}

/// dweight = dyᵀ · x, dbias = Σ_n dy, and dx = dy · weight when `dx` is given.
pub fn linear_backward(
    ctx: &GpuContext,
    l: &Linear,
    dy: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
    dx: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let weight_grad = Matmul { a: View::row_major(l.outputs).t(), ..Matmul::dense(l.outputs, l.inputs, l.n) };
    let mut out =
        vec![matmul(ctx, &weight_grad, dy, l.x, dweight)?, super::bias::bias_grad(ctx, l.n, l.outputs, 1, dy, dbias)?];
    if let Some(dx) = dx {
        out.push(matmul(ctx, &Matmul::dense(l.n, l.inputs, l.outputs), dy, l.weight, dx)?);
    }
    Ok(out)
}
