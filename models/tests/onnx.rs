//! The ONNX export, run in a second, independent runtime (tract): for each of the tutorial's
//! networks, real MNIST test images give the logits the engine's forward pass gives, at two
//! batch sizes (the batch dimension is dynamic), and the model's interface is the documented one.

use engine::graph::cpu;
use engine::graph::program::{Pass, Program};
use models::onnx::{export, ModelProto};
use models::train::MNIST_NORMALIZATION;
use models::Network;
use prost::Message;
use tract_onnx::prelude::*;

/// Logits agree to 1e-4 plus 1e-4 relative: f32 sums in another order (see golden.rs).
fn assert_logits_close(network: Network, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
            "{}: logits[{i}] {g} in tract, {w} in the engine",
            network.name()
        );
    }
}

#[test]
fn tract_runs_the_exported_networks_and_gets_the_engines_logits() {
    let Some(data) = test_support::real_mnist_dir() else { return };
    let test = mnist_loader::inspect(&data, false).unwrap().test.read(Some(8)).unwrap();
    for network in Network::ALL {
        let graph = network.build([1, 28, 28], 10).unwrap();
        let mut values = graph.init_params(5);
        // Batch norms with statistics and an affine map of their own, not the identity they start as.
        let mut rng = engine::rng::Rng::new(9);
        for p in graph.params().iter().filter(|p| p.name.contains(".running_") || p.name.starts_with("bn")) {
            let shift = if p.name.ends_with("running_var") || p.name.ends_with("weight") { 1.0 } else { 0.0 };
            for v in &mut values[p.offset..p.offset + p.len()] {
                *v = shift + rng.uniform(0.5);
            }
        }
        let bytes = export(&graph, &values, network.name(), "(x / 255 - 0.1307) / 0.3081");

        let model = ModelProto::decode(&bytes[..]).unwrap();
        let g = model.graph.as_ref().unwrap();
        assert_eq!((g.input[0].name.as_str(), g.output[0].name.as_str()), ("input", "logits"));
        let dims = |v: &models::onnx::ValueInfoProto| v.r#type.clone().unwrap().tensor_type.unwrap().shape.unwrap().dim;
        assert_eq!(dims(&g.input[0])[0].dim_param.as_deref(), Some("N"));
        assert_eq!(dims(&g.output[0])[1].dim_value, Some(10));
        assert_eq!(model.opset_import[0].version, 13);

        for n in [1, 8] {
            let x: Vec<f32> = test.images[..n * 784].iter().map(|&p| MNIST_NORMALIZATION.apply(p)).collect();
            let want = cpu::run(&graph, &Program::build(&graph, n, Pass::Inference).unwrap(), &values, &x, &[]).logits;
            let runnable = tract_onnx::onnx()
                .model_for_read(&mut &bytes[..])
                .unwrap()
                .with_input_fact(0, f32::fact([n, 1, 28, 28]).into())
                .unwrap()
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let input = Tensor::from_shape(&[n, 1, 28, 28], &x).unwrap();
            let output = runnable.run(tvec!(input.into())).unwrap();
            let got: Vec<f32> = output[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
            assert_logits_close(network, &got, &want);
        }
    }
}

/// A batch norm after a linear layer (BatchNorm1d) exports as ONNX's BatchNormalization on an
/// [N, C] input, with its running statistics, a dropout as the identity, and tract gets the
/// engine's logits.
#[test]
fn a_batch_norm_after_a_linear_layer_and_a_dropout_export_too() {
    let mut graph = engine::graph::Graph::new();
    let (x, labels) = (graph.input([1, 4, 4]), graph.labels());
    let x = graph.flatten("flatten", x).unwrap();
    let x = graph.linear("fc1", x, 6).unwrap();
    let x = graph.batch_norm1d("bn", x).unwrap();
    let x = graph.dropout("drop", x, 0.3).unwrap();
    let logits = graph.linear("fc2", x, 3).unwrap();
    graph.softmax_cross_entropy(logits, labels).unwrap();
    let mut values = graph.init_params(3);
    let mut rng = engine::rng::Rng::new(4);
    for name in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] {
        let p = graph.params().iter().find(|p| p.name == name).unwrap();
        let base = if name.ends_with("var") || name.ends_with("weight") { 1.0 } else { 0.0 };
        values[p.offset..p.offset + p.len()].iter_mut().for_each(|v| *v = base + rng.uniform(0.5));
    }
    let bytes = export(&graph, &values, "bn1d", "x");
    let n = 5;
    let x: Vec<f32> = (0..n * 16).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
    let want = cpu::run(&graph, &Program::build(&graph, n, Pass::Inference).unwrap(), &values, &x, &[]).logits;
    let runnable = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .with_input_fact(0, f32::fact([n, 1, 4, 4]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let output = runnable.run(tvec!(Tensor::from_shape(&[n, 1, 4, 4], &x).unwrap().into())).unwrap();
    let got: Vec<f32> = output[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs(), "tract {got:?} against the engine's {want:?}");
    }
}
