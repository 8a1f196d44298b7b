//! Per-kernel timing of one training step of each network, and epoch throughput:
//! `cargo run --release -p models --bin bench -- [--batch-size 64] [--steps 20] [--each]`.
//! Prints the adapter and, for each network, the time of every dispatch of a step (each run
//! alone, submit and wait included) and the images/s of back-to-back recorded steps; then, where
//! the device runs both matmul kernels, the two side by side on the networks' products.

use clap::Parser;
use engine::graph::plan::{Feed, Parameters, Plan};
use engine::ops::gather::GpuImages;
use engine::ops::matmul::{matmul_with, Matmul, MatmulKernel, View};
use engine::ops::sgd::Sgd;
use engine::{Dispatch, GpuContext};
use models::train::MNIST_NORMALIZATION;
use models::Network;
use std::collections::BTreeMap;
use std::time::Instant;

/// Times a training step of each of the seed's networks, kernel by kernel, on the GPU.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Samples per training step.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch_size: u32,
    /// Steps recorded back to back for the images/s figure.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    steps: u32,
    /// Also print the GPU time of every dispatch of a step.
    #[arg(long)]
    each: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (batch, steps) = (args.batch_size as usize, args.steps as usize);
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.report);
    // One batch of synthetic images, gathered at every step: timing does not depend on pixel values.
    let count = batch * steps;
    let pixels: Vec<u8> = (0..batch * 784).map(|i| (i * 7 % 251) as u8).collect();
    let labels: Vec<u8> = (0..batch).map(|i| (i % 10) as u8).collect();
    let images = GpuImages::upload(&ctx, &pixels, &labels, 784)?;
    for network in [Network::SimpleCnn, Network::Inception, Network::Resnet] {
        let graph = network.build([1, 28, 28], 10)?;
        let params = Parameters::upload(&ctx, &graph, &graph.init_params(1))?;
        let order = ctx.upload(&(0..count).map(|i| (i % batch) as u32).collect::<Vec<_>>(), "order")?;
        let step = ctx.zeros(1, "step")?;
        let metrics = Feed::new_metrics(&ctx)?;
        let feed = Feed {
            images: &images,
            order: &order,
            step: &step,
            metrics: &metrics,
            predictions: None,
            samples: count,
            norm: MNIST_NORMALIZATION,
        };
        let sgd = Sgd { lr: 0.01, momentum: 0.5, weight_decay: 0.0 };
        let plan = Plan::training(&ctx, &graph, batch, &params, sgd, &feed)?;

        // Each dispatch's GPU time from timestamp queries where the device has them, else the
        // wall-clock time of running it alone (submit and wait included). The step counter
        // stays at 0: each gather reads batch 0.
        let refs: Vec<_> = plan.dispatches.iter().collect();
        ctx.run(&refs)?; // warm up: pipelines compiled, buffers touched
        let (times, how) = dispatch_times(&ctx, &refs)?;
        let mut per_kernel: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
        for (d, t) in refs.iter().zip(&times) {
            if args.each {
                println!("  {} {:?} {:.3} ms", d.kernel.name, d.workgroups, 1e3 * t);
            }
            let e = per_kernel.entry(d.kernel.name).or_default();
            e.0 += 1;
            e.1 += t;
        }
        // Whole steps, back to back, each its own command buffer.
        ctx.write(&step, &[0u32]);
        ctx.wait()?;
        let t = Instant::now();
        for _ in 0..steps {
            plan.submit(&ctx, None)?;
        }
        ctx.wait()?;
        let seconds = t.elapsed().as_secs_f64();
        println!(
            "\n{}: {} dispatches a step, {:.1} ms a step, {:.0} images/s (batch {batch}, {steps} steps); \
             activation memory {:.1} MiB shared by liveness ({:.1} MiB unshared)",
            network.name(),
            plan.dispatches.len(),
            1e3 * seconds / steps as f64,
            (batch * steps) as f64 / seconds,
            plan.activation_bytes as f64 / (1 << 20) as f64,
            plan.unshared_bytes as f64 / (1 << 20) as f64
        );
        let mut rows: Vec<_> = per_kernel.into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        for (name, (n, secs)) in rows {
            println!("  {name:24} x{n:3}  {:8.2} ms ({how})", 1e3 * secs);
        }
    }
    compare_matmul_kernels(&ctx)
}

/// Each dispatch's GPU time from timestamp queries where the device has them, else the
/// wall-clock time of running it alone (submit and wait included), and which of the two.
fn dispatch_times(ctx: &GpuContext, dispatches: &[&Dispatch]) -> engine::Result<(Vec<f64>, &'static str)> {
    if let Some(times) = ctx.time_dispatches(dispatches)? {
        return Ok((times, "GPU time, timestamp queries"));
    }
    let mut times = Vec::new();
    for d in dispatches {
        let start = Instant::now();
        ctx.run(&[d])?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok((times, "wall clock, each alone with submit and wait"))
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
            let d = matmul_with(ctx, kernel, &s, &a, &b, &c)?;
            ctx.run(&[&d])?;
            let (times, measured) = dispatch_times(ctx, &[&d, &d, &d])?;
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
