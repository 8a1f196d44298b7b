//! The training binary run as a user runs it, on hostile input: a decompression bomb (a 1.5 MB
//! gzip declaring 2,000,000 images, 1.5 GB of zeros, or more on a device that binds more) and
//! an absurd --batch-size are refused
//! from the headers and the device's limits before anything large is read or allocated; limits
//! above the dataset use all of it and say so; `bench --help` needs no GPU.
//!
//! Peak memory is that of the binaries, measured with getrusage(RUSAGE_CHILDREN): this file
//! starts no other processes, so the figure is the largest of these runs. Linux only (elsewhere
//! ru_maxrss has other units).

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use test_support::{children_peak_rss_kib, write_gzip_idx};

/// Peak resident memory allowed to any run, in KiB (ru_maxrss's unit on Linux): 300 MB.
const MAX_PEAK_RSS_KIB: i64 = 300_000_000 / 1024;
/// Time allowed to one refusal, GPU start-up included.
const MAX_REFUSAL_TIME: Duration = Duration::from_secs(30);

/// A data directory of 28×28 images: `train` and `test` images with `train_labels` and
/// `test_labels` labels (all zero, so any count is a valid file).
fn dataset(tag: &str, train: usize, train_labels: usize, test: usize, test_labels: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("models-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, images, labels) in [("train", train, train_labels), ("t10k", test, test_labels)] {
        let images_path = dir.join(format!("{name}-images-idx3-ubyte.gz"));
        write_gzip_idx(&images_path, &[0x803, images as u32, 28, 28], images * 784, 0);
        write_gzip_idx(&dir.join(format!("{name}-labels-idx1-ubyte.gz")), &[0x801, labels as u32], labels, 0);
    }
    dir
}

/// Runs the simple_cnn binary on `dir` with `args`; returns its output and how long it took.
fn simple_cnn(dir: &Path, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_simple_cnn"))
        .args(["--no-download", "--data-dir", dir.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (output, start.elapsed())
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[track_caller]
fn assert_refused(run: (Output, Duration), words: &[&str]) {
    let (output, took) = run;
    let said = text(&output);
    assert!(!output.status.success(), "expected a refusal, got success:\n{said}");
    assert!(!said.contains("panicked"), "{said}");
    for word in words {
        assert!(said.contains(word), "the refusal does not say `{word}`:\n{said}");
    }
    assert!(took < MAX_REFUSAL_TIME, "the refusal took {took:?}:\n{said}");
}

#[test]
fn bombs_and_absurd_flags_are_refused_quickly_in_bounded_memory() {
    let Some(ctx) = test_support::gpu::gpu() else {
        return; // skipped, and said so, by test_support::gpu::gpu
    };
    // Counts that agree: 1.5 GB of images (2,000,000), or just more than the device binds where
    // that is more (a real GPU binds 2 GiB); --limit-train reads 1000 of them.
    let images = 2_000_000.max(ctx.max_binding_bytes() as usize / 784 + 1);
    let bomb = dataset("bomb", images, images, 100, 100);
    assert_refused(
        simple_cnn(&bomb, &["--epochs", "0"]),
        &["too large for this device", "train images", "--limit-train"],
    );
    let (output, _) = simple_cnn(&bomb, &["--epochs", "0", "--limit-train", "1000"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("1000 training and 100 test images"), "{}", text(&output));

    // Counts that disagree: refused from the headers alone.
    let inconsistent = dataset("inconsistent", images, 60_000, 100, 100);
    assert_refused(simple_cnn(&inconsistent, &["--epochs", "0"]), &[&format!("{images} images but 60000 labels")]);

    // A batch of four billion: refused before the sample order (16 GB) is made.
    let small = dataset("small", 300, 300, 100, 100);
    assert_refused(simple_cnn(&small, &["--batch-size", "4000000000"]), &["too large for this device", "--batch-size"]);
    assert_refused(simple_cnn(&small, &["--batch-size", "100000"]), &["too large for this device", "--batch-size"]);

    let peak = children_peak_rss_kib();
    assert!(peak < MAX_PEAK_RSS_KIB, "a run peaked at {} MB of resident memory", peak / 1024);
    println!("peak resident memory of the runs: {} MB", peak / 1024);
    for dir in [bomb, inconsistent, small] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn limits_above_the_dataset_use_all_of_it_and_say_so() {
    if test_support::gpu::gpu().is_none() {
        return;
    }
    let dir = dataset("limits", 300, 300, 100, 100);
    let (output, _) = simple_cnn(&dir, &["--epochs", "1", "--limit-train", "5000", "--limit-test", "20000"]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    for note in [
        "--limit-train 5000 is more than the 300 train images; using all of them",
        "--limit-test 20000 is more than the 100 test images; using all of them",
        "300 training and 100 test images",
        "Accuracy on test set: ",
    ] {
        assert!(said.contains(note), "missing `{note}`:\n{said}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_prints_its_usage_without_a_gpu_and_refuses_unknown_flags() {
    // An adapter name that matches nothing: opening a GPU would fail.
    let bench = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bench"))
            .args(args)
            .env("WGPU_ADAPTER_NAME", "no such adapter")
            .output()
            .unwrap()
    };
    let help = bench(&["--help"]);
    assert!(help.status.success(), "{}", text(&help));
    assert!(text(&help).contains("--batch-size") && text(&help).contains("--steps"), "{}", text(&help));
    let bogus = bench(&["--colour"]);
    assert_eq!(bogus.status.code(), Some(2), "{}", text(&bogus));
    assert!(text(&bogus).contains("unexpected argument '--colour'"), "{}", text(&bogus));
    let zero = bench(&["--steps", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{}", text(&zero));
}
