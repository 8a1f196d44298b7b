//! The seed's three MNIST networks, their shared training loop and command line.

pub mod checkpoint;
pub mod cli;
pub mod curves;
pub mod files;
pub mod networks;
pub mod onnx;
pub mod predict;
pub mod run_dir;
pub mod state_dict;
pub mod train;

pub use networks::Network;
