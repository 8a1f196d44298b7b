//! One module per shader file, each with its launchers and a plain CPU reference (`cpu`).

use crate::kernel::KernelSpec;

pub mod add;
pub mod avg_pool;
pub mod batch_norm;
pub mod concat;
pub mod conv;
pub mod dropout;
pub mod gather;
pub mod matmul;
pub mod max_pool;
pub mod optimizer;
pub mod peak;
pub mod relu;
pub mod softmax_cross_entropy;
pub mod window;

/// Every kernel the engine launches (the shader tests check each against its WGSL module).
pub const KERNELS: &[&KernelSpec] = &[
    &add::ADD,
    &add::ADD_ASSIGN,
    &add::SUM_SLICES,
    &avg_pool::AVG_POOL_FORWARD,
    &avg_pool::AVG_POOL_BACKWARD,
    &batch_norm::BATCH_NORM_STATISTICS,
    &batch_norm::BATCH_NORM_RUNNING,
    &batch_norm::BATCH_NORM_APPLY,
    &batch_norm::BATCH_NORM_BACKWARD_REDUCE,
    &batch_norm::BATCH_NORM_BACKWARD_INPUT,
    &concat::COPY_CHANNELS,
    &conv::IM2COL,
    &conv::COL2IM,
    &conv::CONV_DIRECT,
    &dropout::DROPOUT,
    &gather::GATHER_BATCH,
    &gather::GATHER_AUGMENTED,
    &matmul::MATMUL,
    &matmul::MATMUL_SUBGROUP,
    &max_pool::MAX_POOL_FORWARD,
    &max_pool::MAX_POOL_BACKWARD,
    &max_pool::MAX_POOL_BACKWARD_WINDOWS,
    &optimizer::SGD_STEP,
    &optimizer::ADAM_STEP,
    &peak::FMA_PEAK,
    &peak::COPY_PEAK,
    &relu::RELU_FORWARD,
    &relu::RELU_BACKWARD,
    &softmax_cross_entropy::SOFTMAX_CROSS_ENTROPY,
];
