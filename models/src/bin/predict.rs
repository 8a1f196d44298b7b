//! Classifies pictures with a trained network:
//! `cargo run --release -p models --bin predict -- --model DIR/model.safetensors IMAGE...`
//! prints `IMAGE: 7 (p=0.973)` for each picture, in order; for a network trained on an image
//! folder, the class's name: `IMAGE: cat (p=0.910)`.

use clap::Parser;
use models::predict::{classify, describe, mnist_digit, network_of, picture_input, InputSpec};
use models::state_dict::TensorFile;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Classifies each picture with a network trained by this engine or by PyTorch: the digit for an
/// MNIST network, the class's name for one trained on an image folder.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The weights: a state_dict in safetensors (`--out`'s model.safetensors or best.safetensors,
    /// PyTorch's save_file) or a `--checkpoint` file.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Pictures: PNG, JPEG, BMP or PGM/PPM, any size (digits dark on light or light on dark).
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
    /// List this many of the most probable classes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=10))]
    top: u8,
    /// Predict the MNIST test image at this index too (repeatable), from --data-dir.
    #[arg(long, value_name = "N")]
    test_index: Vec<usize>,
    /// Directory of the MNIST files, for --test-index (default: $MNIST_DIR, else ./data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
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
    if args.images.is_empty() && args.test_index.is_empty() {
        return Err("nothing to predict: give IMAGE paths or --test-index N".into());
    }
    let file = TensorFile::open(&args.model)?;
    let spec = InputSpec::from_metadata(&file.metadata()).map_err(|why| format!("{}: {why}", args.model.display()))?;
    let (network, graph) = network_of(&file, &spec).ok_or_else(|| {
        format!(
            "{}: its tensors are not the weights of simple_cnn, inception or resnet for {:?} images and {} classes",
            args.model.display(),
            spec.shape,
            spec.class_count()
        )
    })?;
    let params = file.params(&graph, "")?;
    let (mut names, mut images) = (Vec::new(), Vec::new());
    for image in &args.images {
        let path = Path::new(image);
        let pixels = if spec.is_mnist() { mnist_digit(path) } else { picture_input(path, spec.shape) };
        images.extend(pixels.map_err(|why| format!("{image}: {why}"))?);
        names.push(image.clone());
    }
    if !args.test_index.is_empty() {
        if !spec.is_mnist() {
            return Err(format!("--test-index: {} is not an MNIST network", args.model.display()).into());
        }
        test_images(args, &mut names, &mut images)?;
    }
    let ctx = match engine::GpuContext::new() {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            eprintln!("note: classifying on the CPU ({e})");
            None
        }
    };
    eprintln!(
        "{}: {} from {}",
        network.name(),
        ctx.as_ref().map_or("CPU".into(), |c| c.report.to_string()),
        args.model.display()
    );
    let probabilities = classify(ctx.as_ref(), &graph, &params, &images, &spec.norm)?;
    for (name, probabilities) in names.iter().zip(probabilities) {
        println!("{name}: {}", describe(&probabilities, args.top as usize, spec.classes.as_deref()));
    }
    Ok(())
}

/// Adds the MNIST test images `--test-index` names.
fn test_images(args: &Args, names: &mut Vec<String>, images: &mut Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
    let Some(&last) = args.test_index.iter().max() else { return Ok(()) };
    let dir = mnist_loader::resolve_data_dir(args.data_dir.as_deref());
    let test = mnist_loader::inspect(&dir, false)?.test;
    if last >= test.count {
        return Err(format!("--test-index {last}: the test set has {} images", test.count).into());
    }
    let split = test.read(Some(last + 1))?;
    for &i in &args.test_index {
        images.extend_from_slice(&split.images[i * 784..(i + 1) * 784]);
        names.push(format!("test image {i} (label {})", split.labels[i]));
    }
    Ok(())
}
