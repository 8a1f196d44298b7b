//! `--out DIR`: the run directory a training run leaves, and how a resumed run continues it.

use clap::Parser;
use models::cli::Args;
use models::state_dict::TensorFile;
use models::Network;
use std::path::Path;

fn run(data: &Path, extra: &[&str]) {
    let mut argv = vec!["simple_cnn", "--no-download", "--limit-train", "640", "--limit-test", "200"];
    argv.extend(["--data-dir", data.to_str().unwrap()]);
    argv.extend(extra);
    models::cli::run(Network::SimpleCnn, &Args::try_parse_from(argv).unwrap()).unwrap();
}

fn csv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

#[test]
fn out_writes_weights_metrics_and_the_confusion_matrix_and_a_resume_continues_them() {
    if test_support::gpu::gpu().is_none() {
        return;
    }
    let Some(data) = test_support::real_mnist_dir() else { return };
    let root = std::env::temp_dir().join(format!("run-dir-test-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let (out, ckpt) = (root.join("nested/out"), root.join("run.ckpt"));
    let (out_s, ckpt_s) = (out.to_str().unwrap(), ckpt.to_str().unwrap());
    run(&data, &["--epochs", "1", "--out", out_s, "--checkpoint", ckpt_s]);
    run(&data, &["--epochs", "3", "--out", out_s, "--checkpoint", ckpt_s, "--resume", ckpt_s]);

    let metrics = csv(&out.join("metrics.csv"));
    assert_eq!(
        metrics[0].join(","),
        "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds,images_per_second"
    );
    let epochs: Vec<&str> = metrics[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(epochs, ["1", "2", "3"], "the resumed run appends");
    let accuracy = |row: &Vec<String>| row[4].parse::<f64>().unwrap();
    let best_row = metrics[1..].iter().max_by(|a, b| accuracy(a).total_cmp(&accuracy(b))).unwrap();

    let graph = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    let (model, best) = (
        TensorFile::open(&out.join("model.safetensors")).unwrap(),
        TensorFile::open(&out.join("best.safetensors")).unwrap(),
    );
    let checkpoint = TensorFile::open(&ckpt).unwrap();
    assert_eq!(model.params(&graph, "").unwrap(), checkpoint.params(&graph, "").unwrap(), "model is the last epoch's");
    assert_eq!(model.metadata()["epoch"], "3");
    assert_eq!(best.metadata()["epoch"], best_row[0], "best is the epoch with the best test accuracy");
    assert_eq!(best.metadata()["test_accuracy"].parse::<f64>().unwrap(), accuracy(best_row));
    best.params(&graph, "").unwrap();
    let onnx =
        <models::onnx::ModelProto as prost::Message>::decode(&std::fs::read(out.join("model.onnx")).unwrap()[..])
            .unwrap();
    let initializers = &onnx.graph.unwrap().initializer;
    let fc = initializers.iter().find(|t| t.name == "fc.bias").unwrap();
    let want: Vec<u8> = model.f32("fc.bias").unwrap().1.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(fc.raw_data, want, "model.onnx holds the last epoch's weights");

    // The curves: a 1200×480 picture with the blue training and red test series drawn on it.
    let curves = image::open(out.join("curves.png")).unwrap().to_rgb8();
    assert_eq!(curves.dimensions(), (1200, 480));
    let count = |f: &dyn Fn(&image::Rgb<u8>) -> bool| curves.pixels().filter(|p| f(p)).count();
    assert!(count(&|p| p.0 == [0, 0, 255]) > 200 && count(&|p| p.0 == [255, 0, 0]) > 200, "the series are drawn");
    assert!(count(&|p| p.0 == [0, 0, 0]) > 2000, "axes, ticks and text are drawn");

    let confusion = csv(&out.join("confusion.csv"));
    assert_eq!(confusion.len(), 11);
    let cells: Vec<Vec<u32>> =
        confusion[1..].iter().map(|r| r[1..].iter().map(|c| c.parse().unwrap()).collect()).collect();
    assert_eq!(cells.iter().flatten().sum::<u32>(), 200, "every test image once");
    let correct: u32 = (0..10).map(|i| cells[i][i]).sum();
    assert_eq!(100.0 * correct as f64 / 200.0, accuracy(metrics.last().unwrap()), "the diagonal is the accuracy");
    std::fs::remove_dir_all(root).unwrap();
}
