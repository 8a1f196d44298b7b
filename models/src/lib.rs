//! The tutorial's three MNIST networks, their shared training loop and command line.

pub mod checkpoint;
#[cfg(feature = "native")]
pub mod cli;
#[cfg(feature = "native")]
pub mod curves;
pub mod files;
pub mod flags;
#[cfg(feature = "native")]
pub mod image_folder;
pub mod networks;
pub mod onnx;
pub mod picture;
pub mod predict;
#[cfg(feature = "native")]
pub mod run_dir;
pub mod state_dict;
pub mod train;

pub use networks::Network;
