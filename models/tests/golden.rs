//! Golden tests against PyTorch: for each network, `tests/fixtures/<name>.safetensors` (written
//! by `tests/reference/make_golden.py`) holds PyTorch's initial weights under its state_dict
//! names, 16 real MNIST images, and PyTorch's logits, loss, every parameter's gradient and the
//! whole state_dict after three steps on that batch: SGD with momentum (lr 0.01, momentum 0.5)
//! for the tutorial's networks; for `fast_cnn`, AdamW (lr 0.003, weight decay 0.01) under
//! OneCycleLR over 10 steps, its batch norms' running statistics and batch counts included, and
//! the logits of the trained network in evaluation (the running statistics). The engine's CPU
//! executor and GPU plan must reproduce them: an independent check of the networks' wiring, the
//! autodiff, the batch norms and the optimizers, read through the same safetensors reader as the
//! binaries use.
//!
//! Tolerances, from f32 (ε ≈ 6e-8): a sum of K products taken in another order than PyTorch's
//! differs by about √K·ε relative, under 3e-6 for the K ≤ 2200 here; logits must agree to
//! 1e-4 absolute plus 1e-4 relative and the loss to 1e-5 relative. Gradients pass through more
//! sums, and a max-pool or ReLU decision flipped by rounding moves single entries, so each
//! gradient tensor must agree to 1e-3 of its norm and each entry to 1e-3 of the tensor's largest
//! entry. Parameters after three steps (p − lr·v, changes of about 1e-3) to 1e-6 plus 1e-5
//! relative; so are running statistics. Adam divides each gradient by its own size, so where a
//! gradient is rounding it moves the parameter by up to its learning rate a step whichever way
//! that rounding points: a convolution's bias right before a batch norm has no gradient at all
//! (the norm takes the mean away; its computed one is compared against a floor of 1e-5 of the
//! whole gradient's norm), and entries whose gradient is under 1e-6 are as sensitive. Under
//! Adam those are held within 3 steps of the largest learning rate; the running means that the
//! drifting biases feed, within momentum × 3 such drifts; and the evaluation logits after the
//! steps, to 1e-3. The mutation tests show these bounds catch a gradient halved, zeroed or
//! swapped, a batch norm's scale gradient halved, a running variance off by 1% and the evaluation
//! logits moved.

use engine::data::{GpuSplit, LabelledImages};
use engine::graph::plan::Plan;
use engine::graph::program::{Pass, Program};
use engine::graph::{cpu, Graph};
use engine::ops::gather;
use engine::ops::optimizer::{self, Adam, Optimizer, OptimizerStep, Sgd};
use engine::ops::softmax_cross_entropy::Metrics;
use engine::schedule::{OneCycle, Schedule};
use models::state_dict::TensorFile;
use models::train::MNIST_NORMALIZATION;
use models::Network;
use test_support::gpu::{gpu, norm, repeated, Rig};

const BATCH: usize = 16;
const STEPS: usize = 3;

/// The optimizer of a network's fixture and its table of STEPS steps.
fn recipe(network: Network) -> (Optimizer, Vec<OptimizerStep>) {
    match network {
        Network::FastCnn => {
            let adamw = Optimizer::Adam(Adam::adamw(0.003));
            (adamw, adamw.step_rows(&Schedule::OneCycle(OneCycle::default()), 0, STEPS, 10))
        }
        _ => {
            let sgd = Optimizer::Sgd(Sgd::new(0.01, 0.5));
            (sgd, sgd.step_rows(&Schedule::default(), 0, STEPS, STEPS as u64))
        }
    }
}

/// What a run produces, the engine's or PyTorch's. Parameters and gradients are packed.
#[derive(Clone)]
struct Outputs {
    /// The first step's logits (not read back from a GPU training step; see `gpu_outputs`).
    logits: Option<Vec<f32>>,
    loss: f32,
    grads: Vec<f32>,
    after_steps: Vec<f32>,
    /// Logits in evaluation after the steps (fixtures with batch norms).
    eval_logits: Option<Vec<f32>>,
}

struct Fixture {
    network: Network,
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
        logits: Some(file.f32("logits").unwrap().1),
        loss: file.f32("loss").unwrap().1[0],
        grads: file.trained(&graph, "grad.").unwrap_or_else(|e| panic!("{e}")),
        after_steps: params("step3."),
        eval_logits: file.names().contains(&"eval.logits".to_string()).then(|| file.f32("eval.logits").unwrap().1),
    };
    let (init, pixels, labels) = (params("init."), file.u8("images").unwrap().1, file.u8("labels").unwrap().1);
    let labels = labels.into_iter().map(u32::from).collect();
    Fixture { network, graph, init, images: LabelledImages::new([1, 28, 28], pixels, labels).unwrap(), want }
}

/// The CPU executor's logits, loss and gradients, and its optimizer steps (the CPU reference of
/// the optimizer) on the same batch, the running statistics following each step.
fn cpu_outputs(f: &Fixture) -> Outputs {
    let order: Vec<u32> = (0..BATCH as u32).collect();
    let (x, y) = gather::cpu::gather_batch(f.images.pixels(), f.images.labels(), 784, &order, &[MNIST_NORMALIZATION]);
    let program = Program::build(&f.graph, BATCH, Pass::Training).unwrap();
    let (opt, rows) = recipe(f.network);
    let trained = f.graph.trainable_len();
    let mut moments = vec![vec![0.0; trained]; opt.state_names().len()];
    let (mut params, mut first) = (f.init.clone(), None);
    for row in &rows {
        let run = cpu::run(&f.graph, &program, &params, &x, &y);
        params = run.params.clone();
        optimizer::cpu::step(&opt, row, &run.grads[..trained], &mut params[..trained], &mut moments);
        first.get_or_insert(run);
    }
    let first = first.expect("three steps");
    let eval_logits = f.want.eval_logits.is_some().then(|| {
        cpu::run(&f.graph, &Program::build(&f.graph, BATCH, Pass::Evaluation).unwrap(), &params, &x, &y).logits
    });
    let grads = first.grads[..trained].to_vec();
    Outputs { logits: Some(first.logits), loss: first.loss, grads, after_steps: params, eval_logits }
}

/// The GPU plans' outputs: a training plan's first logits, loss and gradients, the state after
/// three steps, and an evaluation plan's logits then.
fn gpu_outputs(ctx: &engine::GpuContext, f: &Fixture) -> Outputs {
    let (opt, rows) = recipe(f.network);
    let rig = Rig::new(ctx, &f.graph, &f.init, (&repeated(&f.images, STEPS), &[MNIST_NORMALIZATION]), BATCH, opt);
    rig.optimizer.set_steps(ctx, &rows).unwrap();
    let eval_split = GpuSplit::upload(ctx, &f.images, &[MNIST_NORMALIZATION], BATCH, false).unwrap();
    let eval = Plan::evaluation(ctx, &f.graph, &rig.params, &eval_split).unwrap();
    // Without batch norms an evaluation plan computes the training step's logits. With them, the
    // training-mode logits are the training plan's, whose memory the backward pass reuses: there
    // the loss, the gradients and the evaluation logits after the steps check the forward pass.
    let logits = f.want.eval_logits.is_none().then(|| {
        eval.submit(ctx, None).unwrap();
        ctx.read(&eval.logits()).unwrap()
    });
    rig.step(ctx);
    let grads = ctx.read(&rig.params.grads).unwrap()[..f.graph.trainable_len()].to_vec();
    let loss = Metrics::from_words(&ctx.read::<u32>(rig.split.metrics()).unwrap()).loss_sum;
    for _ in 1..STEPS {
        rig.step(ctx);
    }
    let eval_logits = f.want.eval_logits.is_some().then(|| {
        eval_split.restart(ctx);
        eval.submit(ctx, None).unwrap();
        ctx.read(&eval.logits()).unwrap()
    });
    Outputs { logits, loss, grads, after_steps: ctx.read(&rig.params.values).unwrap(), eval_logits }
}

/// Every way `got` misses PyTorch's `want` beyond the tolerances above, naming the tensor.
fn mismatches(f: &Fixture, got: &Outputs, want: &Outputs) -> Vec<String> {
    let mut out = Vec::new();
    let close = |g: f32, w: f32, atol: f32, rtol: f32| (g - w).abs() <= atol + rtol * w.abs();
    let logits =
        [("logits", &got.logits, &want.logits, 1e-4), ("evaluation logits", &got.eval_logits, &want.eval_logits, 1e-3)];
    for (what, got, want, tol) in logits {
        let (Some(got), Some(want)) = (got, want) else { continue };
        if let Some(i) = (0..want.len()).find(|&i| !close(got[i], want[i], tol, tol)) {
            out.push(format!("{what}[{i}]: {} vs PyTorch's {}", got[i], want[i]));
        }
    }
    if !close(got.loss, want.loss, 0.0, 1e-5) {
        out.push(format!("loss: {} vs PyTorch's {}", got.loss, want.loss));
    }
    let floor = 1e-5 * norm(&want.grads);
    let adam = matches!(recipe(f.network).0, Optimizer::Adam(_));
    // The most a parameter moved by rounding drifts under Adam over the steps.
    let drift = if adam { STEPS as f32 * recipe(f.network).1.iter().map(|r| r.lr).fold(0.0, f32::max) } else { 0.0 };
    for p in f.graph.params() {
        let range = p.offset..p.offset + p.len();
        let mut rounding = false;
        if p.trainable {
            let (g, w) = (&got.grads[range.clone()], &want.grads[range.clone()]);
            let diff: Vec<f32> = g.iter().zip(w).map(|(a, b)| a - b).collect();
            let largest = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = diff.iter().fold(0f32, |m, d| m.max(d.abs()));
            rounding = norm(w) < floor;
            let (bound, entry_bound) = match rounding {
                true => (floor, floor as f32),
                false => (1e-3 * norm(w), 1e-3 * largest),
            };
            if norm(&diff) > bound || worst > entry_bound {
                out.push(format!(
                    "gradient of {}: off by {:.2e} of its norm, {worst:.2e} at worst (largest entry {largest:.2e})",
                    p.name,
                    norm(&diff) / norm(w).max(1e-30)
                ));
            }
        }
        let atol = |i: usize| match () {
            _ if rounding || (p.trainable && want.grads[p.offset + i].abs() < 1e-6) => 1e-6 + drift,
            _ if p.name.ends_with(".running_mean") => 1e-6 + engine::ops::batch_norm::MOMENTUM * STEPS as f32 * drift,
            _ => 1e-6,
        };
        let (g, w) = (&got.after_steps[range.clone()], &want.after_steps[range]);
        if let Some(i) = (0..w.len()).find(|&i| !close(g[i], w[i], atol(i), 1e-5)) {
            out.push(format!("{}[{i}] after {STEPS} steps: {} vs PyTorch's {}", p.name, g[i], w[i]));
        }
    }
    out
}

fn check(network: Network) {
    let f = fixture(network);
    let cpu = mismatches(&f, &cpu_outputs(&f), &f.want);
    assert!(cpu.is_empty(), "{}: the CPU executor differs from PyTorch:\n{}", network.name(), cpu.join("\n"));
    let Some(ctx) = gpu() else { return };
    let on_gpu = mismatches(&f, &gpu_outputs(ctx, &f), &f.want);
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

#[test]
fn fast_cnn_matches_pytorch() {
    check(Network::FastCnn);
}

/// fast_cnn's bounds bite too: a batch norm's scale gradient halved, a shift gradient zeroed,
/// a running variance 1% off after the steps, the evaluation logits moved by 0.01.
#[test]
fn a_wrong_batch_norm_fails_the_golden_comparison() {
    let f = fixture(Network::FastCnn);
    let good = cpu_outputs(&f);
    assert!(mismatches(&f, &good, &f.want).is_empty(), "{:?}", mismatches(&f, &good, &f.want));
    let param = |name: &str| f.graph.params().iter().find(|p| p.name == name).unwrap().clone();
    let (scale, shift, var) = (param("bn1.weight"), param("bn2.bias"), param("bn2.running_var"));
    let mutations: [(&str, Box<dyn Fn(&mut Outputs)>); 4] = [
        (
            "gradient of bn1.weight",
            Box::new(|o| o.grads[scale.offset..][..scale.len()].iter_mut().for_each(|v| *v *= 0.5)),
        ),
        ("gradient of bn2.bias", Box::new(|o| o.grads[shift.offset..][..shift.len()].fill(0.0))),
        (
            "bn2.running_var[",
            Box::new(|o| o.after_steps[var.offset..][..var.len()].iter_mut().for_each(|v| *v *= 1.01)),
        ),
        ("evaluation logits", Box::new(|o| o.eval_logits.as_mut().unwrap()[3] += 1e-2)),
    ];
    for (named, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        let found = mismatches(&f, &bad, &f.want).join("\n");
        assert!(found.contains(named), "mutating {named} went unnoticed: {found:?}");
    }
}

/// Changes packed gradients in place.
type Mutation<'a> = Box<dyn Fn(&mut Vec<f32>) + 'a>;

/// The tolerances are tight enough: a gradient halved, zeroed, or two same-shaped gradient
/// tensors swapped fails the comparison, naming the tensor.
#[test]
fn a_wrong_gradient_fails_the_golden_comparison() {
    let f = fixture(Network::Resnet);
    let good = cpu_outputs(&f);
    assert!(mismatches(&f, &good, &f.want).is_empty());
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
        let found = mismatches(&f, &bad, &f.want).join("\n");
        assert!(found.contains(&format!("gradient of {named}")), "mutating {named} went unnoticed: {found:?}");
    }
}
