//! A GPU compute engine for training small neural networks on wgpu compute shaders.
//!
//! - [`context`]: adapter and device, buffers, submission.
//! - [`kernel`]: compiled kernels and recorded dispatches.
//! - [`functional`]: single layers applied to tensors (the tutorial's first lessons).
//! - [`ops`]: one module per WGSL file, each with GPU launchers and a CPU reference.

#![warn(missing_docs)]

pub mod context;
pub mod data;
/// The engine's [`Error`] and its [`Result`] alias.
pub mod error;
pub mod functional;
pub mod graph;
pub mod kernel;
pub mod ops;
pub mod rng;
pub mod schedule;
mod signal;

pub use context::{grid_1d, AdapterReport, AsyncRead, GpuContext, LimitsRequest, Submission, Tensor};
pub use error::{Error, Result};
pub use kernel::{Dispatch, Kernel, KernelSpec};
/// Runs a future to completion on this thread: how native code drives the async paths.
#[cfg(not(target_arch = "wasm32"))]
pub use pollster::block_on;
