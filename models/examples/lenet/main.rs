//! A network of one's own: LeNet-5 declared in a few lines, trained on MNIST with the library's
//! training loop (the one the binaries use), saved as a safetensors state_dict that PyTorch loads
//! with `strict=True`, loaded back, and used to classify one test image.
//!
//! `cargo run --release -p models --example lenet -- --data-dir DIR --epochs 1 --out OUT`

mod network;

use clap::Parser;
use engine::ops::optimizer::{Optimizer, Sgd};
use engine::GpuContext;
use models::predict::{classify, describe};
use models::state_dict::{self, TensorFile};
use models::train::{mnist_images, Recipe, Trainer, MNIST_NORMALIZATION};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Trains LeNet-5 on MNIST and writes OUT/model.safetensors.
#[derive(Parser)]
struct Args {
    /// Directory of the MNIST IDX files (default: $MNIST_DIR, else ./data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of epochs.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Train on the first N training images only.
    #[arg(long, value_parser = models::flags::at_least_one)]
    limit_train: Option<usize>,
    /// SGD learning rate (the tutorial's 0.01 by default).
    #[arg(long, default_value_t = 0.01, value_parser = models::flags::above_zero)]
    lr: f64,
    /// Where model.safetensors goes (created with its parents).
    #[arg(long, default_value = "runs/lenet")]
    out: PathBuf,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let dir = mnist_loader::resolve_data_dir(args.data_dir.as_deref());
    let info = mnist_loader::inspect(&dir, false)?;
    let train = mnist_images(&info.train.read(args.limit_train)?);
    let test = mnist_images(&info.test.read(None)?);
    let graph = network::lenet(info.num_classes)?;
    let ctx = GpuContext::new()?;
    println!("lenet: {} parameters, {} training images, adapter {}", graph.param_count(), train.len(), ctx.report);

    // The tutorial's recipe: batch 64, SGD momentum 0.5, seed 1.
    let mut recipe = Recipe { epochs: args.epochs, ..Recipe::default() };
    recipe.optimizer = Optimizer::Sgd(Sgd::new(args.lr, 0.5));
    let mut trainer = Trainer::new(&ctx, &graph, &train, Some(&test), recipe)?;
    for epoch in 1..=args.epochs {
        println!("{}", trainer.epoch(epoch, |_, _, _, _| {})?.line(args.epochs));
    }

    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("model.safetensors");
    let metadata = BTreeMap::from([("network".to_string(), "lenet".to_string())]);
    state_dict::write(&path, &state_dict::named(&graph, &trainer.parameters()?, ""), metadata)?;
    println!("wrote {}", path.display());

    let weights = TensorFile::open(&path)?.params(&graph, "")?;
    let probabilities = classify(Some(&ctx), &graph, &weights, test.image(0), &[MNIST_NORMALIZATION])?;
    println!("test image 0 (label {}): {}", test.labels()[0], describe(&probabilities[0], 3, None));
    Ok(())
}
