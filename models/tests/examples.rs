//! The examples run as a user runs them: `tutorial_tensors` prints the tutorial's shapes and
//! numbers, and `lenet` trains LeNet-5 on real MNIST through the library's training loop, writes
//! weights that load back under PyTorch's names, and classifies a test image with them.
//! (`cargo test` builds the examples beside the test binaries, in `target/<profile>/examples`.)

#[path = "../examples/lenet/network.rs"]
mod network;

use models::state_dict::TensorFile;
use std::path::PathBuf;
use std::process::Command;

/// The built example `name`, beside this test binary's directory.
fn example(name: &str) -> Command {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(path.is_file(), "{} is not built (cargo test builds the examples)", path.display());
    Command::new(path)
}

fn stdout_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[test]
fn tutorial_tensors_prints_the_tutorials_shapes_and_numbers() {
    if test_support::gpu::gpu().is_none() {
        return;
    }
    let out = stdout_of(&mut example("tutorial_tensors"));
    let expected = [
        "  input shape:  [1, 5, 100, 100]",
        "  output shape: [1, 10, 98, 98]",
        "  weight shape: [10, 5, 3, 3]",
        "  [[91, 224, 127], [192, 282, 122], [96, 110, 31]]",
        "  [[4, 8], [9, 8]]",
    ];
    let lines: Vec<&str> = out.lines().collect();
    let mut at = 0;
    for want in expected {
        at +=
            lines[at..].iter().position(|l| *l == want).unwrap_or_else(|| panic!("no line `{want}` in order:\n{out}"));
    }
}

#[test]
fn lenet_trains_saves_loads_and_predicts() {
    if test_support::gpu::gpu().is_none() {
        return;
    }
    let Some(data) = test_support::real_mnist_dir() else { return };
    let out_dir = std::env::temp_dir().join(format!("lenet-example-{}", std::process::id()));
    let out = stdout_of(example("lenet").args(["--epochs", "1", "--limit-train", "4000", "--lr", "0.05"]).args([
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
    ]));
    let accuracy: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Accuracy on test set: "))
        .and_then(|rest| rest.split('%').next())
        .unwrap_or_else(|| panic!("no accuracy line:\n{out}"))
        .parse()
        .unwrap();
    // 77.62% measured on lavapipe (2026-12-07); chance is 10%.
    assert!(accuracy > 60.0, "LeNet-5 after 4000 images: {accuracy}%\n{out}");
    let weights: PathBuf = out_dir.join("model.safetensors");
    let graph = network::lenet(10).unwrap();
    TensorFile::open(&weights).unwrap().params(&graph, "").unwrap();
    assert!(out.lines().any(|l| l.starts_with("test image 0 (label 7): ")), "{out}");
    std::fs::remove_dir_all(out_dir).unwrap();
}
