//! The tutorial's three networks, the training loop every network trains through, weights files
//! (safetensors, ONNX, checkpoints), pictures and image folders, and the binaries' command line.

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
#[cfg(feature = "native")]
pub mod source;
pub mod state_dict;
pub mod train;

pub use networks::Network;
