//! Golden tests against PyTorch: for each of the tutorial's networks, `tests/fixtures/<name>.safetensors`
//! (written by `tests/reference/make_golden.py`) holds PyTorch's initial weights under its
//! state_dict names, 16 real MNIST images, and PyTorch's logits, loss, every parameter's gradient
//! and the parameters after three SGD-momentum steps (lr 0.01, momentum 0.5) on that batch. The
//! engine's CPU executor and GPU plan must reproduce them: an independent check of the networks'
//! wiring, the autodiff and the optimizer, read through the same safetensors reader as the
//! binaries use.
//!
//! Tolerances, from f32 (ε ≈ 6e-8): a sum of K products taken in another order than PyTorch's
//! differs by about √K·ε relative, under 3e-6 for the K ≤ 2200 here; logits must agree to
//! 1e-4 absolute plus 1e-4 relative and the loss to 1e-5 relative. Gradients pass through more
//! sums, and a max-pool or ReLU decision flipped by rounding moves single entries, so each
//! gradient tensor must agree to 1e-3 of its norm and each entry to 1e-3 of the tensor's largest
//! entry. Parameters after three steps (p − lr·v, changes of about 1e-3) to 1e-6 plus 1e-5
//! relative. The mutation test shows these bounds catch a gradient halved, zeroed or swapped.

use engine::data::{GpuSplit, LabelledImages};
use engine::graph::plan::Plan;
use engine::graph::program::{Pass, Program};
use engine::graph::{cpu, Graph};
use engine::ops::gather;
use engine::ops::optimizer::{self, Optimizer, Sgd};
use engine::ops::softmax_cross_entropy::Metrics;
use models::state_dict::TensorFile;
use models::train::MNIST_NORMALIZATION;
use models::Network;
use test_support::gpu::{gpu, norm, repeated, Rig};

const BATCH: usize = 16;
const STEPS: usize = 3;
const SGD: Optimizer = Optimizer::Sgd(Sgd::new(0.01, 0.5));

/// What a run produces, the engine's or PyTorch's. Parameters and gradients are packed.
#[derive(Clone)]
struct Outputs {
    logits: Vec<f32>,
    loss: f32,
    grads: Vec<f32>,
    after_steps: Vec<f32>,
}

struct Fixture {
    graph: Graph,
    init: Vec<f32>,
    images: LabelledImages,
    want: Outputs,
}

fn fixture(network: Network) -> Fixture {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/fixtures/{}.safetensors", network.name()));
    let file = TensorFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.metadata().get("network").map(String::as_str), Some(network.name()));
    let graph = network.build([1, 28, 28], 10).unwrap();
    let params = |prefix: &str| file.params(&graph, prefix).unwrap_or_else(|e| panic!("{e}"));
    let want = Outputs {
        logits: file.f32("logits").unwrap().1,
        loss: file.f32("loss").unwrap().1[0],
        grads: params("grad."),
        after_steps: params("step3."),
    };
    let (init, pixels, labels) = (params("init."), file.u8("images").unwrap().1, file.u8("labels").unwrap().1);
    let labels = labels.into_iter().map(u32::from).collect();
    Fixture { graph, init, images: LabelledImages::new([1, 28, 28], pixels, labels).unwrap(), want }
}

/// The CPU executor's logits, loss and gradients, and its SGD steps (the CPU reference of the
/// optimizer) on the same batch.
fn cpu_outputs(f: &Fixture) -> Outputs {
    let order: Vec<u32> = (0..BATCH as u32).collect();
    let (x, y) = gather::cpu::gather_batch(f.images.pixels(), f.images.labels(), 784, &order, &[MNIST_NORMALIZATION]);
    let program = Program::build(&f.graph, BATCH, Pass::Training).unwrap();
    let first = cpu::run(&f.graph, &program, &f.init, &x, &y);
    let (mut params, mut velocity) = (f.init.clone(), vec![vec![0.0; f.init.len()]]);
    let row = SGD.step_row(0, SGD.lr() as f64, None);
    let mut grads = first.grads.clone();
    for step in 0..STEPS {
        if step > 0 {
            grads = cpu::run(&f.graph, &program, &params, &x, &y).grads;
        }
        optimizer::cpu::step(&SGD, &row, &grads, &mut params, &mut velocity);
    }
    Outputs { logits: first.logits, loss: first.loss, grads: first.grads, after_steps: params }
}

/// The GPU plans' outputs: an evaluation plan's logits, then three training steps.
fn gpu_outputs(ctx: &engine::GpuContext, f: &Fixture) -> Outputs {
    let rig = Rig::new(ctx, &f.graph, &f.init, (&repeated(&f.images, STEPS), &[MNIST_NORMALIZATION]), BATCH, SGD);
    let eval_split = GpuSplit::upload(ctx, &f.images, &[MNIST_NORMALIZATION], BATCH, false).unwrap();
    let eval = Plan::evaluation(ctx, &f.graph, &rig.params, &eval_split).unwrap();
    eval.submit(ctx, None).unwrap();
    let logits = ctx.read(&eval.logits()).unwrap();

    rig.step(ctx);
    let grads = ctx.read(&rig.params.grads).unwrap();
    let loss = Metrics::from_words(&ctx.read::<u32>(rig.split.metrics()).unwrap()).loss_sum;
    for _ in 1..STEPS {
        rig.step(ctx);
    }
    Outputs { logits, loss, grads, after_steps: ctx.read(&rig.params.values).unwrap() }
}

/// Every way `got` misses PyTorch's `want` beyond the tolerances above, naming the tensor.
fn mismatches(graph: &Graph, got: &Outputs, want: &Outputs) -> Vec<String> {
    let mut out = Vec::new();
    let close = |g: f32, w: f32, atol: f32, rtol: f32| (g - w).abs() <= atol + rtol * w.abs();
    if let Some(i) = (0..want.logits.len()).find(|&i| !close(got.logits[i], want.logits[i], 1e-4, 1e-4)) {
        out.push(format!("logits[{i}]: {} vs PyTorch's {}", got.logits[i], want.logits[i]));
    }
    if !close(got.loss, want.loss, 0.0, 1e-5) {
        out.push(format!("loss: {} vs PyTorch's {}", got.loss, want.loss));
    }
    for p in graph.params() {
        let range = p.offset..p.offset + p.len();
        let (g, w) = (&got.grads[range.clone()], &want.grads[range.clone()]);
        let diff: Vec<f32> = g.iter().zip(w).map(|(a, b)| a - b).collect();
        let largest = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = diff.iter().fold(0f32, |m, d| m.max(d.abs()));
        if norm(&diff) > 1e-3 * norm(w) || worst > 1e-3 * largest {
            out.push(format!(
                "gradient of {}: off by {:.2e} of its norm, {worst:.2e} at worst (largest entry {largest:.2e})",
                p.name,
                norm(&diff) / norm(w).max(1e-30)
            ));
        }
        let (g, w) = (&got.after_steps[range.clone()], &want.after_steps[range]);
        if let Some(i) = (0..w.len()).find(|&i| !close(g[i], w[i], 1e-6, 1e-5)) {
            out.push(format!("{}[{i}] after {STEPS} steps: {} vs PyTorch's {}", p.name, g[i], w[i]));
        }
    }
    out
}

fn check(network: Network) {
    let f = fixture(network);
    let cpu = mismatches(&f.graph, &cpu_outputs(&f), &f.want);
    assert!(cpu.is_empty(), "{}: the CPU executor differs from PyTorch:\n{}", network.name(), cpu.join("\n"));
    let Some(ctx) = gpu() else { return };
    let on_gpu = mismatches(&f.graph, &gpu_outputs(ctx, &f), &f.want);
    assert!(on_gpu.is_empty(), "{}: the GPU plan differs from PyTorch:\n{}", network.name(), on_gpu.join("\n"));
}

#[test]
fn simple_cnn_matches_pytorch() {
    check(Network::SimpleCnn);
}

#[test]
fn inception_matches_pytorch() {
    check(Network::Inception);
}

#[test]
fn resnet_matches_pytorch() {
    check(Network::Resnet);
}

/// Changes packed gradients in place.
type Mutation<'a> = Box<dyn Fn(&mut Vec<f32>) + 'a>;

/// The tolerances are tight enough: a gradient halved, zeroed, or two same-shaped gradient
/// tensors swapped fails the comparison, naming the tensor.
#[test]
fn a_wrong_gradient_fails_the_golden_comparison() {
    let f = fixture(Network::Resnet);
    let good = cpu_outputs(&f);
    assert!(mismatches(&f.graph, &good, &f.want).is_empty());
    let param = |name: &str| f.graph.params().iter().find(|p| p.name == name).unwrap().clone();
    let (fc, a, b) = (param("fc.weight"), param("rblock1.conv1.weight"), param("rblock1.conv2.weight"));
    let mutations: [(&str, Mutation); 3] = [
        ("fc.weight", Box::new(|g| g[fc.offset..fc.offset + fc.len()].iter_mut().for_each(|v| *v *= 0.5))),
        ("rblock1.conv1.weight", Box::new(|g| g[a.offset..a.offset + a.len()].fill(0.0))),
        (
            "rblock1.conv2.weight",
            Box::new(|g| {
                let first: Vec<f32> = g[a.offset..a.offset + a.len()].to_vec();
                g.copy_within(b.offset..b.offset + b.len(), a.offset);
                g[b.offset..b.offset + b.len()].copy_from_slice(&first);
            }),
        ),
    ];
    for (named, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad.grads);
        let found = mismatches(&f.graph, &bad, &f.want).join("\n");
        assert!(found.contains(&format!("gradient of {named}")), "mutating {named} went unnoticed: {found:?}");
    }
}
