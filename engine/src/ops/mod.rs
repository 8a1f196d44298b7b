//! One module per shader file, each with its launchers and a plain CPU reference (`cpu`).

pub mod add;
pub mod avg_pool;
pub mod bias;
pub mod concat;
pub mod conv;
pub mod fill;
pub mod gather;
pub mod matmul;
pub mod max_pool;
pub mod relu;
pub mod sgd;
pub mod softmax_cross_entropy;
