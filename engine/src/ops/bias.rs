//! bias.wgsl: per-channel bias add over [n, c, s] (optionally fused with ReLU) and its gradient.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access, Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// bias.wgsl's and bias_subgroup.wgsl's parameters: y is [n, c, s]; `relu` fuses a ReLU
    /// into bias_add.
    pub struct BiasParams {
        pub n: u32,
        pub c: u32,
        pub s: u32,
        pub relu: u32,
    }
}

const IN_OUT: &[(u32, Access)] = &[(1, Read), (2, ReadWrite)];
pub const BIAS_ADD: KernelSpec = KernelSpec::new::<BiasParams>("bias", "bias_add", IN_OUT);
pub const BIAS_GRAD: KernelSpec = KernelSpec::new::<BiasParams>("bias", "bias_grad", IN_OUT);
/// The subgroup-reduction variant, chosen when the device has the SUBGROUP feature.
pub const BIAS_GRAD_SUBGROUP: KernelSpec = KernelSpec::new::<BiasParams>("bias_subgroup", "bias_grad_subgroup", IN_OUT);

/// y [n, c, s] += bias[c], then ReLU when `relu`; in place.
pub fn bias_add(
    ctx: &GpuContext,
    n: usize,
    c: usize,
    s: usize,
    relu: bool,
    bias: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    bias.check_len("bias", c)?;
    y.check_len("bias_add output", n * c * s)?;
    let params = BiasParams { n: n as u32, c: c as u32, s: s as u32, relu: relu as u32 };
    ctx.dispatch(&BIAS_ADD, &params, &[bias, y], grid_1d(n * c * s))
}

/// dbias[c] = Σ_{n,s} dy[n, c, s], reduced with subgroup operations where the device has them.
pub fn bias_grad(ctx: &GpuContext, n: usize, c: usize, s: usize, dy: &Tensor, dbias: &Tensor) -> Result<Dispatch> {
    let spec = if ctx.report.subgroups { &BIAS_GRAD_SUBGROUP } else { &BIAS_GRAD };
    bias_grad_with(ctx, spec, n, c, s, dy, dbias)
}

/// `bias_grad` with a chosen variant (the tests run both).
pub fn bias_grad_with(
    ctx: &GpuContext,
    spec: &'static KernelSpec,
    n: usize,
    c: usize,
    s: usize,
    dy: &Tensor,
    dbias: &Tensor,
) -> Result<Dispatch> {
    dy.check_len("bias_grad input", n * c * s)?;
    dbias.check_len("bias gradient", c)?;
    let params = BiasParams { n: n as u32, c: c as u32, s: s as u32, relu: 0 };
    ctx.dispatch(spec, &params, &[dy, dbias], [c as u32, 1, 1])
}

pub mod cpu {
    pub fn bias_add(n: usize, c: usize, s: usize, relu: bool, bias: &[f32], y: &mut [f32]) {
        for (i, v) in y[..n * c * s].iter_mut().enumerate() {
            *v += bias[(i / s) % c];
            if relu {
                *v = v.max(0.0);
            }
        }
    }

    pub fn bias_grad(n: usize, c: usize, s: usize, dy: &[f32], dbias: &mut [f32]) {
        dbias[..c].fill(0.0);
        for (i, d) in dy[..n * c * s].iter().enumerate() {
            dbias[(i / s) % c] += d;
        }
    }
}
