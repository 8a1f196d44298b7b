//! The static graph and autodiff, end to end: for each of the tutorial's networks, the GPU gradients
//! of every parameter match the CPU reference run through the same program, the CPU reference
//! matches finite differences, and one SGD step on the GPU equals the CPU step. Graph errors are
//! refused with messages that name the layer.

use engine::data::LabelledImages;
use engine::graph::cpu;
use engine::graph::program::{Pass, Program};
use engine::graph::Graph;
use engine::ops::gather;
use engine::ops::optimizer::{Optimizer, Sgd};
use engine::rng::Rng;
use engine::GpuContext;
use models::train::MNIST_NORMALIZATION;
use models::Network;
use test_support::gpu::{gpu, norm, Rig};

const BATCH: usize = 3; // odd on purpose: no tile or chunk divides it evenly

struct Batch {
    images: LabelledImages,
    x: Vec<f32>,
    y: Vec<u32>,
}

/// Random 28×28 images with a bright blob whose place depends on the label, so the gradient has
/// structure; and the normalized batch the CPU reference sees.
fn batch(seed: u64) -> Batch {
    let mut rng = Rng::new(seed);
    let labels: Vec<u32> = (0..BATCH).map(|_| rng.below(10)).collect();
    let mut pixels = vec![0u8; BATCH * 784];
    for (n, &l) in labels.iter().enumerate() {
        for (i, p) in pixels[n * 784..(n + 1) * 784].iter_mut().enumerate() {
            let (r, c) = (i / 28, i % 28);
            let blob = r.abs_diff(4 + 2 * l as usize) < 4 && c.abs_diff(14) < 6;
            *p = if blob { 200 + rng.below(55) as u8 } else { rng.below(40) as u8 };
        }
    }
    let order: Vec<u32> = (0..BATCH as u32).collect();
    let (x, y) = gather::cpu::gather_batch(&pixels, &labels, 784, &order, &[MNIST_NORMALIZATION]);
    Batch { images: LabelledImages::new([1, 28, 28], pixels, labels).unwrap(), x, y }
}

/// One GPU training step on `b` with a plan for `plan_batch` rows (more than BATCH: the last
/// batch of an epoch, padded); returns (gradients, parameters after the step).
fn gpu_step(
    ctx: &GpuContext,
    graph: &Graph,
    params: &[f32],
    b: &Batch,
    sgd: Optimizer,
    plan_batch: usize,
) -> (Vec<f32>, Vec<f32>) {
    let rig = Rig::new(ctx, graph, params, (&b.images, &[MNIST_NORMALIZATION]), plan_batch, sgd);
    rig.step(ctx);
    (ctx.read(&rig.params.grads).unwrap(), ctx.read(&rig.params.values).unwrap())
}

/// The CPU reference's gradients against finite differences (on any machine, GPU or not), then
/// the GPU's against the CPU reference.
fn check_network(network: Network) {
    let graph = network.build([1, 28, 28], 10).unwrap();
    let params = graph.init_params(7);
    let b = batch(11);
    let program = Program::build(&graph, BATCH, Pass::Training).unwrap();
    let reference = cpu::run(&graph, &program, &params, &b.x, &b.y);
    assert!(reference.loss.is_finite() && reference.loss > 0.5, "{}: loss {}", network.name(), reference.loss);

    // The CPU reference against finite differences, on two entries of every parameter tensor.
    let loss = |params: &[f32]| cpu::run(&graph, &program, params, &b.x, &b.y).loss as f64;
    for p in graph.params() {
        for i in [p.offset, p.offset + p.len() / 2 + 1] {
            let eps = 1e-3;
            let fd = test_support::gpu::finite_difference(&params, i, eps, loss);
            let analytic = reference.grads[i] as f64;
            assert!(
                (fd - analytic).abs() < 2e-3 + 0.05 * analytic.abs(),
                "{}: d loss / d {}[{}]: finite difference {fd:.6}, autodiff {analytic:.6}",
                network.name(),
                p.name,
                i - p.offset
            );
        }
    }

    let Some(ctx) = gpu() else { return };
    // GPU gradients against the CPU reference, parameter by parameter. Relative to each
    // tensor's norm: a ReLU or max-pool decision flipped by rounding moves a few entries.
    let lr = 0.01;
    let sgd = Optimizer::Sgd(Sgd::new(lr, 0.5));
    let (grads, stepped) = gpu_step(ctx, &graph, &params, &b, sgd, BATCH);
    // The same batch as the padded last batch of a plan for 5 rows: padding changes nothing.
    let (padded, _) = gpu_step(ctx, &graph, &params, &b, sgd, BATCH + 2);
    // A convolution's bias right before a batch norm has no gradient (the norm takes the mean
    // away): its CPU and GPU values are rounding, compared against a floor of 1e-4 of the whole.
    let floor = 1e-4 * norm(&reference.grads);
    for p in graph.params().iter().filter(|p| p.trainable) {
        let want = &reference.grads[p.offset..p.offset + p.len()];
        let before_norm = p.name.ends_with(".bias") && network == Network::FastCnn && p.name.starts_with("conv");
        assert!(before_norm || norm(want) > floor, "{}: {} has a zero gradient", network.name(), p.name);
        for (how, all) in [("", &grads), (" (padded batch)", &padded)] {
            let got = &all[p.offset..p.offset + p.len()];
            let diff: Vec<f32> = got.iter().zip(want).map(|(a, b)| a - b).collect();
            let rel = norm(&diff) / norm(want).max(floor);
            assert!(
                rel < 2e-3,
                "{}: gradient of {}{how} differs from the CPU reference by {rel:.2e} (relative)",
                network.name(),
                p.name
            );
        }
    }

    // One SGD step: the first step's velocity is the gradient, so p' = p - lr·g (PyTorch); a
    // batch norm's running statistics follow the batch, as the CPU's did (their g is 0).
    let want: Vec<f32> = reference.params.iter().zip(&reference.grads).map(|(p, g)| p - lr as f32 * g).collect();
    let diff: Vec<f32> = stepped.iter().zip(&want).map(|(a, b)| a - b).collect();
    let max = diff.iter().fold(0f32, |m, d| m.max(d.abs()));
    assert!(max < 1e-5, "{}: parameters after one SGD step differ from the CPU step by up to {max}", network.name());
}

#[test]
fn simple_cnn_gradients_match_cpu_and_finite_differences() {
    check_network(Network::SimpleCnn);
}

#[test]
fn inception_gradients_match_cpu_and_finite_differences() {
    check_network(Network::Inception);
}

#[test]
fn resnet_gradients_match_cpu_and_finite_differences() {
    check_network(Network::Resnet);
}

/// Batch norms in training: batch statistics in the gradients, padding rows of a last batch in
/// no statistic (the padded plan's gradients equal the unpadded ones), running statistics updated
/// as the CPU updates them.
#[test]
fn fast_cnn_gradients_match_cpu_and_finite_differences() {
    check_network(Network::FastCnn);
}

#[test]
fn parameters_are_named_and_counted_as_pytorch_does() {
    let simple = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    let names: Vec<&str> = simple.params().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]);
    assert_eq!(simple.param_count(), 260 + 5020 + 3210);
    assert_eq!(simple.params()[4].shape, vec![10, 320]);

    let inception = Network::Inception.build([1, 28, 28], 10).unwrap();
    assert!(inception.params().iter().any(|p| p.name == "incep1.branch5x5_2.bias"));
    assert!(inception.params().iter().any(|p| p.name == "incep2.branch3x3_3.weight" && p.shape == vec![24, 24, 3, 3]));
    assert_eq!(inception.params().last().unwrap().shape, vec![10], "fc.bias");
    assert_eq!(
        inception.params()[inception.params().len() - 2].shape,
        vec![10, 1408],
        "fc.weight takes 88·4·4 features"
    );
    let conv2 = inception.params().iter().find(|p| p.name == "conv2.weight").unwrap();
    assert_eq!(conv2.shape, vec![20, 88, 5, 5]);

    let resnet = Network::Resnet.build([1, 28, 28], 10).unwrap();
    assert!(resnet.params().iter().any(|p| p.name == "rblock1.conv2.weight" && p.shape == vec![16, 16, 3, 3]));
    assert_eq!(resnet.params()[resnet.params().len() - 2].shape, vec![10, 512]);
}

#[test]
fn initialisation_is_pytorch_default_and_seeded() {
    let g = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    let a = g.init_params(3);
    assert_eq!(a, g.init_params(3), "same seed, same parameters");
    assert_ne!(a, g.init_params(4));
    for p in g.params() {
        let bound = 1.0 / (p.fan_in as f32).sqrt();
        let values = &a[p.offset..p.offset + p.len()];
        assert!(values.iter().all(|v| v.abs() <= bound), "{} outside ±1/√fan_in", p.name);
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.8 * bound, "{} does not fill ±1/√fan_in", p.name);
        assert_eq!(p.offset % engine::graph::PARAM_ALIGN, 0);
    }
}

#[test]
fn memory_is_shared_by_liveness() {
    let Some(ctx) = gpu() else { return };
    let graph = Network::Resnet.build([1, 28, 28], 10).unwrap();
    let b = batch(1);
    let sgd = Optimizer::Sgd(Sgd::new(0.01, 0.0));
    let plan = Rig::new(ctx, &graph, &graph.init_params(1), (&b.images, &[MNIST_NORMALIZATION]), 3, sgd).plan;
    assert!(
        plan.activation_bytes * 10 < plan.unshared_bytes * 7,
        "sharing saves under 30%: {} of {} bytes",
        plan.activation_bytes,
        plan.unshared_bytes
    );
}

// ---------------------------------------------------------------- graph errors

fn error_of<T>(r: engine::Result<T>) -> String {
    match r {
        Ok(_) => panic!("the graph was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mismatched_shapes_are_refused_naming_the_layer_and_both_shapes() {
    let mut g = Graph::new();
    let x = g.input([1, 28, 28]);
    let a = g.conv2d("conv1", x, 10, 5, 1, 0).unwrap();
    let b = g.conv2d("conv2", x, 10, 3, 1, 0).unwrap();
    let e = error_of(g.add("skip", a, b));
    assert!(e.contains("`skip`") && e.contains("[10, 24, 24]") && e.contains("[10, 26, 26]"), "{e}");
    let e = error_of(g.concat("cat", &[a, b]));
    assert!(e.contains("`cat`") && e.contains("spatial sizes differ"), "{e}");
    let e = error_of(g.linear("fc", a, 10));
    assert!(e.contains("`fc`") && e.contains("[10, 24, 24]") && e.contains("flattened"), "{e}");
    let e = error_of(g.conv2d("big", x, 4, 31, 1, 0));
    assert!(e.contains("`big`") && e.contains("31×31") && e.contains("[1, 28, 28]"), "{e}");
    let e = error_of(g.max_pool2d("pool", x, 2, 0, 0));
    assert!(e.contains("`pool`") && e.contains("stride 0"), "{e}");
}

#[test]
fn an_input_from_another_graph_is_refused() {
    let mut other = Graph::new();
    let foreign = other.input([1, 28, 28]);
    let mut g = Graph::new();
    g.input([1, 28, 28]);
    let e = error_of(g.relu("relu1", foreign));
    assert!(e.contains("`relu1`") && e.contains("not a node of this graph"), "{e}");
}

#[test]
fn a_parameter_that_never_reaches_the_loss_is_refused() {
    let mut g = Graph::new();
    let x = g.input([1, 8, 8]);
    let labels = g.labels();
    let used = g.conv2d("conv1", x, 2, 3, 1, 0).unwrap();
    g.conv2d("dead", x, 2, 3, 1, 0).unwrap();
    let flat = g.flatten("flatten", used).unwrap();
    let logits = g.linear("fc", flat, 10).unwrap();
    g.softmax_cross_entropy(logits, labels).unwrap();
    let e = error_of(Program::build(&g, 4, Pass::Training));
    assert!(e.contains("`dead`") && e.contains("dead.weight") && e.contains("never used"), "{e}");
}

#[test]
fn a_graph_without_a_loss_or_with_a_zero_batch_is_refused() {
    let mut g = Graph::new();
    let x = g.input([1, 8, 8]);
    let flat = g.flatten("flatten", x).unwrap();
    g.linear("fc", flat, 10).unwrap();
    assert!(error_of(Program::build(&g, 4, Pass::Training)).contains("exactly one loss"));
    let graph = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    assert!(error_of(Program::build(&graph, 0, Pass::Training)).contains("batch size must be at least 1"));
}

#[test]
fn simple_cnn_logits_match_a_hand_composed_cpu_forward() {
    // Independent of the graph and its program: the tutorial's forward written out with the CPU
    // reference ops, so a wrong layer order or a missing layer would show.
    use engine::ops::conv::cpu::conv2d_forward;
    use engine::ops::max_pool::cpu::max_pool_forward;
    use engine::ops::window::{ConvGeometry, PoolGeometry, Window};
    let graph = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    let params = graph.init_params(5);
    let p = |name: &str| {
        let q = graph.params().iter().find(|p| p.name == name).unwrap();
        &params[q.offset..q.offset + q.len()]
    };
    let b = batch(3);
    let n = BATCH;
    let conv_pool_relu = |x: &[f32], c: usize, hw: usize, oc: usize, layer: &str| {
        let g = ConvGeometry { n, c, window: Window { h: hw, w: hw, kh: 5, kw: 5, stride: 1, pad: 0 } };
        let mut y = vec![0.0; n * oc * g.oh() * g.ow()];
        conv2d_forward(&g, oc, x, p(&format!("{layer}.weight")), p(&format!("{layer}.bias")), &mut y);
        let pool = PoolGeometry::new(n * oc, g.oh(), g.ow(), 2, 2, 0);
        let (mut out, mut arg) = (vec![0.0; pool.output_len()], vec![0; pool.output_len()]);
        max_pool_forward(&pool, false, &y, &mut out, &mut arg);
        out.iter().map(|v| v.max(0.0)).collect::<Vec<f32>>()
    };
    let h1 = conv_pool_relu(&b.x, 1, 28, 10, "conv1");
    let h2 = conv_pool_relu(&h1, 10, 12, 20, "conv2");
    let (w, bias) = (p("fc.weight"), p("fc.bias"));
    let want: Vec<f32> = (0..n * 10)
        .map(|i| {
            let (s, o) = (i / 10, i % 10);
            bias[o] + (0..320).map(|j| w[o * 320 + j] * h2[s * 320 + j]).sum::<f32>()
        })
        .collect();
    let program = Program::build(&graph, n, Pass::Evaluation).unwrap();
    let got = cpu::run(&graph, &program, &params, &b.x, &b.y).logits;
    test_support::gpu::assert_close("simple_cnn logits", &got, &want, 1e-4, 1e-5);
}

/// A network with a dropout: the CPU reference against finite differences (its mask is fixed by
/// seed 0 at step 0), the GPU's gradients against the CPU's (the same draw), about half the
/// features dropped; in evaluation the dropout is the identity and runs no kernel.
#[test]
fn dropout_trains_with_the_cpus_mask_and_is_the_identity_in_evaluation() {
    let build = |p: Option<f32>| {
        let mut g = Graph::new();
        let (x, labels) = (g.input([1, 28, 28]), g.labels());
        let x = g.conv2d("conv", x, 4, 5, 2, 0).unwrap();
        let x = g.relu("relu", x).unwrap();
        let mut x = g.flatten("flatten", x).unwrap();
        if let Some(p) = p {
            x = g.dropout("drop", x, p).unwrap();
        }
        let logits = g.linear("fc", x, 10).unwrap();
        g.softmax_cross_entropy(logits, labels).unwrap();
        g
    };
    let (graph, plain) = (build(Some(0.5)), build(None));
    let params = graph.init_params(3);
    let b = batch(21);
    let program = Program::build(&graph, BATCH, Pass::Training).unwrap();
    let reference = cpu::run(&graph, &program, &params, &b.x, &b.y);
    let loss = |params: &[f32]| cpu::run(&graph, &program, params, &b.x, &b.y).loss as f64;
    let fc = graph.params().iter().find(|p| p.name == "fc.weight").unwrap();
    let fc_grad = &reference.grads[fc.offset..fc.offset + fc.len()];
    let zero_columns = (0..fc.shape[1]).filter(|&j| (0..10).all(|o| fc_grad[o * fc.shape[1] + j] == 0.0)).count();
    let share = zero_columns as f64 / fc.shape[1] as f64;
    assert!((0.4..0.6).contains(&share), "dropped features get no gradient: {share} of them, p = 0.5");
    for p in graph.params() {
        for i in [p.offset, p.offset + p.len() / 2 + 1] {
            let fd = test_support::gpu::finite_difference(&params, i, 1e-3, loss);
            let analytic = reference.grads[i] as f64;
            assert!((fd - analytic).abs() < 2e-3 + 0.05 * analytic.abs(), "{}: fd {fd}, autodiff {analytic}", p.name);
        }
    }
    // Evaluation: no dropout kernel, the logits of the same network without it.
    let eval = Program::build(&graph, BATCH, Pass::Evaluation).unwrap();
    assert!(!eval.instrs.iter().any(|i| matches!(i, engine::graph::program::Instr::Dropout { .. })));
    let without = cpu::run(&plain, &Program::build(&plain, BATCH, Pass::Evaluation).unwrap(), &params, &b.x, &b.y);
    assert_eq!(cpu::run(&graph, &eval, &params, &b.x, &b.y).logits, without.logits);
    for p in [1.0, -0.1, f32::NAN] {
        let mut g = Graph::new();
        let x = g.input([1, 28, 28]);
        let e = g.dropout("drop", x, p).err().expect("refused").to_string();
        assert!(e.contains("layer `drop`") && e.contains("must be in [0, 1)"), "{e}");
    }

    let Some(ctx) = gpu() else { return };
    let (grads, _) = gpu_step(ctx, &graph, &params, &b, Optimizer::Sgd(Sgd::new(0.01, 0.5)), BATCH);
    for p in graph.params() {
        let (got, want) = (&grads[p.offset..p.offset + p.len()], &reference.grads[p.offset..p.offset + p.len()]);
        let diff: Vec<f32> = got.iter().zip(want).map(|(a, b)| a - b).collect();
        assert!(norm(&diff) < 2e-3 * norm(want), "{}: GPU and CPU dropout gradients differ", p.name);
    }
}
