//! add.wgsl: out = a + b (residual connections), out += a (summing the gradients of a tensor
//! with several consumers) and the split-K sum. The backward of `add` is a fan-out: both inputs
//! share dout as their gradient (autodiff then adds further contributions out of place).

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access, Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// add.wgsl's parameters: elements of the output; for `sum_slices`, the slices summed and
    /// the elements of its second output.
    pub struct AddParams {
        /// Elements of the output.
        pub total: u32,
        /// Slices summed by `sum_slices` (0 otherwise).
        pub slices: u32,
        /// Elements of `sum_slices`' second output (0 when it has none).
        pub total2: u32,
    }
}

/// Reads `first`, writes `out`.
const ONE_INPUT: &[(u32, Access)] = &[(1, Read), (3, ReadWrite)];
/// `out = a + b`.
pub const ADD: KernelSpec = KernelSpec::new::<AddParams>("add", "add", &[(1, Read), (2, Read), (3, ReadWrite)]);
/// `out += a`.
pub const ADD_ASSIGN: KernelSpec = KernelSpec::new::<AddParams>("add", "add_assign", ONE_INPUT);
/// Sums the slices of one or two inputs; see [`sum_slices`].
pub const SUM_SLICES: KernelSpec =
    KernelSpec::new::<AddParams>("add", "sum_slices", &[(1, Read), (2, Read), (3, ReadWrite), (4, ReadWrite)]);

fn elements(len: usize) -> AddParams {
    AddParams { total: len as u32, slices: 0, total2: 0 }
}

/// out = a + b over `len` elements.
pub fn add(ctx: &GpuContext, len: usize, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    for (what, t) in [("add input a", a), ("add input b", b), ("add output", out)] {
        t.check_len(what, len)?;
    }
    ctx.dispatch(&ADD, &elements(len), &[a, b, out], grid_1d(len))
}

/// out += a.
pub fn add_assign(ctx: &GpuContext, len: usize, a: &Tensor, out: &Tensor) -> Result<Dispatch> {
    a.check_len("add_assign input", len)?;
    out.check_len("add_assign output", len)?;
    ctx.dispatch(&ADD_ASSIGN, &elements(len), &[a, out], grid_1d(len))
}

/// Sums `count` slices into one, for one or two (slices, out) pairs: out\[i\] = Σ_s slices[s·len + i]
/// over slices of `len = out.len` elements.
pub fn sum_slices(
    ctx: &GpuContext,
    count: usize,
    first: [&Tensor; 2],
    second: Option<[&Tensor; 2]>,
) -> Result<Dispatch> {
    let [slices, out] = first;
    let (len, len2) = (out.len, second.map_or(0, |[_, out2]| out2.len));
    slices.check_len("sum_slices input", len * count)?;
    if let Some([slices2, _]) = second {
        slices2.check_len("sum_slices second input", len2 * count)?;
    }
    let params = AddParams { total: len as u32, slices: count as u32, total2: len2 as u32 };
    // Without a second pair, its input is the first one again and its output the placeholder
    // (a second writable binding of `out` would alias it).
    let [slices2, out2] = second.unwrap_or([slices, ctx.placeholder()]);
    ctx.dispatch(&SUM_SLICES, &params, &[slices, slices2, out, out2], grid_1d(len.max(len2)))
}

/// The CPU reference of add.wgsl.
pub mod cpu {
    /// out = a + b.
    pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
            *o = a + b;
        }
    }

    /// out += a.
    pub fn add_assign(a: &[f32], out: &mut [f32]) {
        for (o, a) in out.iter_mut().zip(a) {
            *o += a;
        }
    }

    /// `out[i] = Σ_s slices[s·len + i]` for i < len.
    pub fn sum_slices(len: usize, slices: &[f32], out: &mut [f32]) {
        out[..len].fill(0.0);
        for slice in slices.chunks(len) {
            add_assign(slice, &mut out[..len]);
        }
    }
}
