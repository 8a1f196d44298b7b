//! Training speed of each of the tutorial's networks on the GPU, and beside PyTorch:
//! `cargo run --release -p models --bin bench -- [--batch-size 64] [--steps 20] [--each]
//! [--vs-pytorch [--python python3]]`.
//!
//! Prints the adapter and its measured peak (register-only FMA GFLOP/s, copy GB/s), then one line
//! per network (the tutorial's three with its SGD, `fast_cnn` with AdamW under OneCycleLR):
//! `NAME: batch B, N dispatches a step, X ms a step, Y images/s, G GFLOP/s (P% of the FMA peak),
//! S submits an epoch, activation memory M MiB`, the steps recorded many to a submission as the
//! training loop records them. `--each` adds the GPU time of every dispatch and kernel of a step
//! with its GFLOP/s (products) or GB/s (the rest) and its share of the peak; `--vs-pytorch` then
//! trains each network for one epoch in PyTorch (tests/reference/pytorch_tutorial.py, fast_cnn.py)
//! on as many threads and prints the ratios, and times the whole `simple_cnn --epochs 1` process
//! beside the tutorial's own PyTorch recipe (tests/reference/pytorch_recipe.py: torchvision's
//! MNIST through a DataLoader).

use clap::Parser;
use engine::data::{GpuSplit, LabelledImages};
use engine::graph::plan::{Parameters, Plan, Training};
use engine::ops::matmul::{matmul_with, Matmul, MatmulKernel, Operands, View};
use engine::ops::optimizer::OptimizerState;
use engine::ops::peak::{self, Peak};
use engine::GpuContext;
use models::cli::Args as TrainingArgs;
use models::train::{steps_per_submit, MNIST_NORMALIZATION};
use models::Network;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Times training steps of each of the tutorial's networks on the GPU, optionally beside PyTorch.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Samples per training step.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch_size: u32,
    /// Steps timed for the images/s figure (after two warm-up steps).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    steps: u32,
    /// Also print the GPU time of every dispatch and kernel with its share of the adapter's peak,
    /// and compare the matmul kernels.
    #[arg(long)]
    each: bool,
    /// Then train each network for one epoch in PyTorch (tests/reference/pytorch_tutorial.py) on
    /// the same number of threads, and print this engine's images/s over PyTorch's; and time
    /// `simple_cnn --epochs 1` beside the tutorial's recipe (needs torchvision too).
    #[arg(long)]
    vs_pytorch: bool,
    /// The Python that runs PyTorch for --vs-pytorch.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Directory of the MNIST files for --vs-pytorch (default: $MNIST_DIR, else ./data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

const NETWORKS: [Network; 4] = [Network::SimpleCnn, Network::Resnet, Network::Inception, Network::FastCnn];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (batch, steps) = (args.batch_size as usize, args.steps as usize);
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.report);
    if let Some(advice) = ctx.report.newer_driver_advice() {
        println!("{advice}");
    }
    let peak = peak::measure(&ctx)?;
    println!("peak: {peak}");
    // Synthetic images, enough for the warm-up and timed steps: timing does not depend on pixel
    // values.
    let count = batch * (steps + 2);
    let pixels: Vec<u8> = (0..count * 784).map(|i| (i * 7 % 251) as u8).collect();
    let labels: Vec<u32> = (0..count).map(|i| (i % 10) as u32).collect();
    let images = LabelledImages::new([1, 28, 28], pixels, labels)?;
    let mut ours = Vec::new();
    for network in NETWORKS {
        ours.push((network, bench_network(&ctx, &args, &peak, network, &images, batch, steps)?));
    }
    if args.each {
        compare_matmul_kernels(&ctx)?;
    }
    if args.vs_pytorch {
        vs_pytorch(&args, &ours)?;
        vs_recipe(&args)?;
    }
    Ok(())
}

/// Prints the network's summary line (and with --each its kernels); returns its images/s.
fn bench_network(
    ctx: &GpuContext,
    args: &Args,
    peak: &Peak,
    network: Network,
    images: &LabelledImages,
    batch: usize,
    steps: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let graph = network.build([1, 28, 28], 10)?;
    let params = Parameters::upload(ctx, &graph, &graph.init_params(1))?;
    let split = GpuSplit::upload(ctx, images, &[MNIST_NORMALIZATION], batch, false)?;
    let (optimizer, label_smoothing) = recipe(ctx, network, graph.trainable_len(), split.steps())?;
    let training = Training { optimizer: &optimizer, label_smoothing, seed: 1, augment: Default::default() };
    let plan = Plan::training(ctx, &graph, &params, &training, &split)?;
    if args.each {
        print_kernel_times(ctx, peak, &plan)?;
        split.restart(ctx);
    }
    // As the training loop does: one step warms up, one alone sizes the submissions.
    ctx.wait_for(plan.submit(ctx, None)?)?;
    let t = Instant::now();
    ctx.wait_for(plan.submit(ctx, None)?)?;
    let per_submit = steps_per_submit(t.elapsed().as_secs_f64());
    let t = Instant::now();
    for first in (0..steps).step_by(per_submit) {
        plan.submit_steps(ctx, per_submit.min(steps - first), None)?;
    }
    ctx.wait()?;
    let seconds = t.elapsed().as_secs_f64();
    let images_per_second = (batch * steps) as f64 / seconds;
    let gflops = plan.dispatches.iter().map(|d| d.flops as f64).sum::<f64>() * steps as f64 / seconds / 1e9;
    println!(
        "{}: batch {batch}, {} dispatches a step, {:.1} ms a step, {:.0} images/s, {gflops:.2} GFLOP/s ({:.1}% of the FMA peak), \
         {} submits an epoch, activation memory {:.1} MiB",
        network.name(),
        plan.dispatches.len(),
        1e3 * seconds / steps as f64,
        images_per_second,
        100.0 * gflops / peak.gflops,
        60_000usize.div_ceil(batch).div_ceil(per_submit),
        plan.activation_bytes as f64 / (1 << 20) as f64,
    );
    Ok(images_per_second)
}

/// The network's optimizer state for one epoch's steps and its label smoothing, from its
/// binary's defaults: the tutorial's SGD, or fast_cnn's recipe (AdamW under OneCycleLR, label
/// smoothing 0.1).
fn recipe(
    ctx: &GpuContext,
    network: Network,
    len: usize,
    steps: usize,
) -> Result<(OptimizerState, f32), Box<dyn std::error::Error>> {
    let defaults = TrainingArgs::try_parse_for(network, [network.name()])?;
    let state = OptimizerState::scheduled(ctx, defaults.optimizer()?, &defaults.schedule()?, len, steps)?;
    Ok((state, defaults.label_smoothing))
}

/// A dispatch's rate against the peak: GFLOP/s and share of the FMA peak for a product, else
/// GB/s over the views it binds and share of the copy bandwidth.
fn rate(peak: &Peak, flops: u64, bytes: u64, seconds: f64) -> String {
    if flops > 0 {
        let gflops = flops as f64 / seconds / 1e9;
        format!("{gflops:7.2} GFLOP/s {:5.1}% of FMA peak", 100.0 * gflops / peak.gflops)
    } else {
        let gbs = bytes as f64 / seconds / 1e9;
        format!("{gbs:7.2} GB/s    {:5.1}% of copy peak", 100.0 * gbs / peak.copy_gbs)
    }
}

/// The GPU time of every dispatch of a step, then of every kernel over the step, each with its
/// rate and share of the adapter's peak.
fn print_kernel_times(ctx: &GpuContext, peak: &Peak, plan: &Plan) -> engine::Result<()> {
    let refs: Vec<_> = plan.dispatches.iter().collect();
    ctx.run(&refs)?; // warm up: pipelines compiled, buffers touched
    let (times, how) = ctx.dispatch_seconds(&refs)?;
    let mut per_kernel: BTreeMap<&str, (usize, f64, u64, u64)> = BTreeMap::new();
    for (d, &t) in refs.iter().zip(&times) {
        let grid = format!("{:?}", d.workgroups);
        println!("  {:24} {grid:16} {:8.3} ms  {}", d.kernel.name, 1e3 * t, rate(peak, d.flops, d.bytes_bound, t));
        let e = per_kernel.entry(d.kernel.name).or_default();
        *e = (e.0 + 1, e.1 + t, e.2 + d.flops, e.3 + d.bytes_bound);
    }
    let mut rows: Vec<_> = per_kernel.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    for (name, (n, secs, flops, bytes)) in rows {
        println!("  {name:24} x{n:3}  {:8.2} ms  {}", 1e3 * secs, rate(peak, flops, bytes, secs));
    }
    let (flops, secs) = (refs.iter().map(|d| d.flops).sum::<u64>(), times.iter().sum::<f64>());
    println!("  the step: {:.2} ms, {} ({how})", 1e3 * secs, rate(peak, flops, 0, secs));
    Ok(())
}

/// A script of tests/reference: under the current directory when run from a checkout (as
/// tests/device-check.sh does on a machine where this one was not built), else in this source tree.
fn reference_script(name: &str) -> PathBuf {
    let here = PathBuf::from("tests/reference").join(name);
    if here.exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/reference").join(name)
}

/// Times, start to exit, this engine's `simple_cnn --epochs 1` (the binary beside this one) and
/// the tutorial's PyTorch recipe for one epoch with its test pass, one after the other.
fn vs_recipe(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let dir = mnist_loader::resolve_data_dir(args.data_dir.as_deref());
    let binary = std::env::current_exe()?.with_file_name(format!("simple_cnn{}", std::env::consts::EXE_SUFFIX));
    let script = reference_script("pytorch_recipe.py");
    let mut ours = Command::new(&binary);
    ours.args(["--epochs", "1", "--data-dir"]).arg(&dir);
    let mut theirs = Command::new(&args.python);
    theirs.arg(&script).arg(&dir);
    let mut seconds = Vec::new();
    for (what, command) in [(binary.display().to_string(), &mut ours), (script.display().to_string(), &mut theirs)] {
        let start = Instant::now();
        let output = command.output().map_err(|e| format!("{what}: {e} (build it with cargo build --release)"))?;
        seconds.push(start.elapsed().as_secs_f64());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().rfind(|l| l.contains("Accuracy on test set")).unwrap_or("");
        if !output.status.success() {
            return Err(format!("{what} failed: {}", String::from_utf8_lossy(&output.stderr)).into());
        }
        println!("  {what}: {last}");
    }
    println!(
        "vs the tutorial's PyTorch recipe, simple_cnn --epochs 1, start to exit: {:.1} s here, {:.1} s in PyTorch, {:.2}x",
        seconds[0],
        seconds[1],
        seconds[0] / seconds[1]
    );
    Ok(())
}

/// Runs tests/reference/pytorch_tutorial.py for one epoch of each network on as many threads as
/// this machine has (the GPU driver's, where it is a CPU driver) and prints the ratios.
fn vs_pytorch(args: &Args, ours: &[(Network, f64)]) -> Result<(), Box<dyn std::error::Error>> {
    let python = &args.python;
    let has_torch = Command::new(python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        return Err(format!(
            "--vs-pytorch: {} cannot import torch. Install it in a virtual environment \
             (python3 -m venv venv && venv/bin/pip install torch) and pass --python venv/bin/python",
            python.display()
        )
        .into());
    }
    let dir = mnist_loader::resolve_data_dir(args.data_dir.as_deref());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
    let batch = args.batch_size.to_string();
    println!("PyTorch, one epoch of each network on {threads} threads ({}):", dir.display());
    let tutorial: Vec<&str> = ours.iter().filter(|(n, _)| *n != Network::FastCnn).map(|(n, _)| n.name()).collect();
    let mut lines = run_reference(
        python,
        "pytorch_tutorial.py",
        &[
            &dir.display().to_string(),
            "--epochs",
            "1",
            "--batch-size",
            &batch,
            "--threads",
            &threads,
            "--nets",
            &tutorial.join(","),
        ],
    )?;
    // fast_cnn's own recipe (AdamW, OneCycleLR, label smoothing), its lines named like the others.
    let fast = run_reference(
        python,
        "fast_cnn.py",
        &[&dir.display().to_string(), "--batch-size", &batch, "--threads", &threads],
    )?;
    lines.extend(fast.into_iter().map(|l| format!("fast_cnn: {l}")));
    for (network, images_per_second) in ours {
        let theirs = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{}: ", network.name())))
            .find_map(|l| l.rsplit_once(" images/s")?.0.rsplit([' ', '(']).next()?.parse::<f64>().ok())
            .ok_or_else(|| format!("no images/s for {} in the PyTorch output", network.name()))?;
        println!(
            "vs PyTorch, {}: {images_per_second:.0} images/s here, {theirs:.0} in PyTorch, ratio {:.3}",
            network.name(),
            images_per_second / theirs
        );
    }
    Ok(())
}

/// Runs a script of tests/reference with `args`, prints its output indented and returns its lines.
fn run_reference(
    python: &std::path::Path,
    name: &str,
    args: &[&str],
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let script = reference_script(name);
    let output = Command::new(python).arg(&script).args(args).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        println!("  {line}");
    }
    if !output.status.success() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(stdout.lines().map(String::from).collect())
}

/// Both matmul kernels on products the networks compute at batch 64, where the device runs
/// both (a CPU driver with 8-lane subgroups): the figures behind choosing matmul_subgroup there.
fn compare_matmul_kernels(ctx: &GpuContext) -> Result<(), Box<dyn std::error::Error>> {
    if !ctx.report.cpu_lanes_8() {
        println!("\nmatmul kernels: only the tiled kernel runs on this device");
        return Ok(());
    }
    println!("\nmatmul kernels, best of 3 runs (C = A·B, A m×k, B k×n):");
    let products = [
        ("inception conv2 forward", 20, 4096, 2200, false),
        ("inception conv2 input gradient", 2200, 4096, 20, false),
        ("inception conv2 weight gradient (B transposed)", 20, 2200, 4096, true),
        ("InceptionA(10) 5x5 forward", 24, 9216, 400, false),
        ("InceptionA(10) 5x5 input gradient", 400, 9216, 24, false),
        ("simple_cnn conv1 forward", 10, 36864, 25, false),
    ];
    for (what, m, n, k, b_transposed) in products {
        let mut s = Matmul::dense(m, n, k);
        if b_transposed {
            s.b = View::row_major(k).t();
        }
        let a = ctx.upload(&(0..m * k).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(), "a")?;
        let b = ctx.upload(&(0..k * n).map(|i| (i % 5) as f32 - 2.0).collect::<Vec<_>>(), "b")?;
        let c = ctx.zeros(m * n, "c")?;
        let (mut best, mut how) = (Vec::new(), "");
        for kernel in [MatmulKernel::Tiled, MatmulKernel::Subgroup] {
            let d = matmul_with(ctx, kernel, &s, &Operands::abc(&a, &b, &c))?;
            ctx.run(&[&d])?;
            let (times, measured) = ctx.dispatch_seconds(&[&d, &d, &d])?;
            best.push(times.into_iter().fold(f64::MAX, f64::min));
            how = measured;
        }
        let gflops = |t: f64| 2.0 * (m * n * k) as f64 / t / 1e9;
        println!(
            "  {what:48} {m:5}x{n:5}x{k:5}: tiled {:7.2} ms ({:4.1} GFLOP/s), subgroup {:7.2} ms ({:4.1} GFLOP/s), {:.2}x ({how})",
            1e3 * best[0],
            gflops(best[0]),
            1e3 * best[1],
            gflops(best[1]),
            best[0] / best[1]
        );
    }
    Ok(())
}
