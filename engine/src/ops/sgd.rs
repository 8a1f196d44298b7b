//! sgd.wgsl: SGD with momentum as torch.optim.SGD computes it, over all parameters at once.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// sgd.wgsl's parameters: elements to update and the [`Sgd`] settings.
    pub struct SgdParams {
        /// Elements to update.
        pub count: u32,
        /// [`Sgd::lr`].
        pub lr: f32,
        /// [`Sgd::momentum`].
        pub momentum: f32,
        /// [`Sgd::weight_decay`].
        pub weight_decay: f32,
    }
}

/// Reads grad, updates param and velocity in place.
pub const SGD_MOMENTUM: KernelSpec =
    KernelSpec::new::<SgdParams>("sgd", "sgd_momentum", &[(1, Read), (2, ReadWrite), (3, ReadWrite)]);

/// The settings of SGD with momentum, as torch.optim.SGD names them (no dampening or Nesterov).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 for plain SGD).
    pub momentum: f32,
    /// L2 penalty added to the gradient as `weight_decay · param`.
    pub weight_decay: f32,
}

/// param −= lr · (velocity = momentum · velocity + grad + weight_decay · param). `velocity`
/// must start at zero, which makes the first step use velocity = grad as PyTorch does.
pub fn sgd_momentum(
    ctx: &GpuContext,
    len: usize,
    sgd: &Sgd,
    grad: &Tensor,
    param: &Tensor,
    velocity: &Tensor,
) -> Result<Dispatch> {
    for (what, t) in [("gradients", grad), ("parameters", param), ("velocity", velocity)] {
        t.check_len(what, len)?;
    }
    let params = SgdParams { count: len as u32, lr: sgd.lr, momentum: sgd.momentum, weight_decay: sgd.weight_decay };
    ctx.dispatch(&SGD_MOMENTUM, &params, &[grad, param, velocity], grid_1d(len))
}

/// The CPU reference of sgd.wgsl.
pub mod cpu {
    use super::Sgd;

    /// One step of [`sgd_momentum`](super::sgd_momentum) over all of `param`.
    pub fn sgd_momentum(sgd: &Sgd, grad: &[f32], param: &mut [f32], velocity: &mut [f32]) {
        for ((p, v), g) in param.iter_mut().zip(velocity.iter_mut()).zip(grad) {
            let g = g + sgd.weight_decay * *p;
            *v = sgd.momentum * *v + g;
            *p -= sgd.lr * *v;
        }
    }
}
