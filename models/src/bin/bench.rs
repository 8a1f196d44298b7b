//! Per-kernel timing of one training step of each network, and epoch throughput:
//! `cargo run --release -p models --bin bench -- [--batch-size 64] [--steps 20]`.
//! Prints the adapter and, for each network, the time of every dispatch of a step (each run
//! alone, submit and wait included) and the images/s of back-to-back recorded steps.

use engine::graph::plan::{Feed, Parameters, Plan};
use engine::ops::gather::{GpuImages, Normalization};
use engine::ops::sgd::Sgd;
use engine::GpuContext;
use models::Network;
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| -> Result<usize, String> {
        match args.iter().position(|a| a == name) {
            Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a whole number")),
            None => Ok(default),
        }
    };
    let batch = flag("--batch-size", 64)?;
    let steps = flag("--steps", 20)?;
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.report);
    // Synthetic images: timing does not depend on pixel values.
    let count = batch * steps;
    let pixels: Vec<u8> = (0..count * 784).map(|i| (i * 7 % 251) as u8).collect();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    let images = GpuImages::upload(&ctx, &pixels, &labels, 784)?;
    for network in [Network::SimpleCnn, Network::Inception, Network::Resnet] {
        let graph = network.build([1, 28, 28], 10)?;
        let params = Parameters::upload(&ctx, &graph, &graph.init_params(1))?;
        let order = ctx.upload(&(0..count as u32).collect::<Vec<_>>(), "order")?;
        let step = ctx.zeros(1, "step")?;
        let metrics = Feed::new_metrics(&ctx)?;
        let feed = Feed {
            images: &images,
            order: &order,
            step: &step,
            metrics: &metrics,
            samples: count,
            norm: Normalization::default(),
        };
        let sgd = Sgd { lr: 0.01, momentum: 0.5, weight_decay: 0.0 };
        let plan = Plan::training(&ctx, &graph, batch, &params, sgd, &feed)?;

        // Each dispatch's GPU time from timestamp queries where the device has them, else the
        // wall-clock time of running it alone (submit and wait included). The step counter
        // stays at 0: each gather reads batch 0.
        let refs: Vec<_> = plan.dispatches.iter().collect();
        ctx.run(&refs)?; // warm up: pipelines compiled, buffers touched
        let (times, how) = match ctx.time_dispatches(&refs)? {
            Some(t) => (t, "GPU time, timestamp queries"),
            None => {
                let mut t = Vec::new();
                for d in &refs {
                    let start = Instant::now();
                    ctx.run(&[d])?;
                    t.push(start.elapsed().as_secs_f64());
                }
                (t, "wall clock, each alone with submit and wait")
            }
        };
        let mut per_kernel: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
        for (d, t) in refs.iter().zip(&times) {
            if std::env::var("BENCH_EACH").is_ok() {
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
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            plan.record(&mut encoder);
            ctx.submit(encoder)?;
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
    Ok(())
}
