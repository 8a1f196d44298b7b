//! The tutorial's three networks and `fast_cnn`, the training loop every network trains through,
//! weights files (safetensors, ONNX, checkpoints), pictures and image folders, and the binaries'
//! command line.
//!
//! A network of one's own is a [`Graph`](engine::graph::Graph) of named layers, trained by a
//! [`Trainer`](train::Trainer) on [`LabelledImages`](engine::data::LabelledImages) with a
//! [`Recipe`](train::Recipe): an optimizer (SGD, Adam, AdamW), a learning-rate schedule, label
//! smoothing. Here a tiny one with a batch norm learns, with AdamW under OneCycleLR, whether the
//! light half of an 8×8 picture is the top or the bottom:
//!
//! ```
//! use engine::data::LabelledImages;
//! use engine::graph::Graph;
//! use engine::ops::optimizer::{Adam, Optimizer};
//! use engine::schedule::{OneCycle, Schedule};
//! use models::train::{Recipe, Trainer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 64 pictures: label 0 has its light half on top, label 1 at the bottom.
//! let labels: Vec<u32> = (0..64).map(|i| i % 2).collect();
//! let pixels = labels.iter().flat_map(|&l| (0..64).map(move |p| if (p < 32) == (l == 0) { 200 } else { 20 })).collect();
//! let pictures = LabelledImages::new([1, 8, 8], pixels, labels)?;
//!
//! let mut g = Graph::new();
//! let x = g.input([1, 8, 8]);
//! let labels = g.labels();
//! let x = g.conv2d("conv", x, 4, 3, 1, 1)?; // 4 channels, kernel 3, stride 1, padding 1
//! let x = g.batch_norm2d("bn", x)?;
//! let x = g.relu("relu", x)?;
//! let x = g.max_pool2d("pool", x, 2, 2, 0)?;
//! let x = g.flatten("flatten", x)?;
//! let logits = g.linear("fc", x, 2)?;
//! g.softmax_cross_entropy(logits, labels)?;
//!
//! let ctx = match engine::GpuContext::new() {
//!     Ok(ctx) => ctx,
//! #   // Skipped, and said so, where the GPU tests are (ENGINE_SKIP_GPU_TESTS=1, no adapter).
//! #   Err(e) if std::env::var("ENGINE_SKIP_GPU_TESTS").as_deref() == Ok("1") => {
//! #       return Ok(test_support::skipped("the models crate doctest", &e.to_string()));
//! #   }
//!     Err(e) => return Err(e.into()), // says how to install a driver
//! };
//! let recipe = Recipe {
//!     epochs: 5,
//!     batch_size: 8,
//!     optimizer: Optimizer::Adam(Adam::adamw(0.01)),
//!     schedule: Schedule::OneCycle(OneCycle::default()),
//!     norm: pictures.channel_statistics(),
//!     ..Recipe::default()
//! };
//! let mut trainer = Trainer::new(&ctx, &g, &pictures, Some(&pictures), recipe)?;
//! let mut report = trainer.epoch(1, |_, _, _, _| {})?;
//! for epoch in 2..=5 {
//!     report = trainer.epoch(epoch, |_, _, _, _| {})?;
//! }
//! assert!(report.test_accuracy() > 90.0, "{}", report.line(5));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

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
