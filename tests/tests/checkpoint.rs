//! Checkpoints: a resumed run equals one that never stopped, and damaged or foreign checkpoint
//! files are refused with a clear error, never a panic or a huge allocation.

use clap::Parser;
use models::checkpoint::{Checkpoint, CheckpointError, Fingerprint};
use models::cli::Args;
use models::Network;
use std::path::{Path, PathBuf};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("checkpoint-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fingerprint(seed: u64, batch_size: u64, train_count: u64, lr: f32, momentum: f32) -> Fingerprint {
    Fingerprint { seed, batch_size, train_count, lr, momentum }
}

fn sample() -> Checkpoint {
    Checkpoint {
        network: "simple_cnn".into(),
        epochs_done: 3,
        fingerprint: fingerprint(7, 64, 60000, 0.01, 0.5),
        values: (0..100).map(|i| i as f32 * 0.25 - 3.0).collect(),
        velocity: (0..100).map(|i| -(i as f32) * 1e-3).collect(),
    }
}

fn load_error(path: &Path) -> String {
    match Checkpoint::load(path) {
        Err(e @ CheckpointError::Invalid { .. }) => e.to_string(),
        other => panic!("expected an invalid-checkpoint error, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_round_trips_and_replaces_the_old_file_atomically() {
    let dir = scratch_dir("round-trip");
    let path = dir.join("run.ckpt");
    let mut first = sample();
    first.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), first);
    first.epochs_done = 4;
    first.values[0] = f32::MIN_POSITIVE;
    first.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), first);
    // Only the checkpoint itself is left: the temporary file was renamed over it.
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("run.ckpt")]);
    let unwritable = dir.join("no-such-dir").join("run.ckpt");
    let e = sample().save(&unwritable).expect_err("no directory");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    let e = Checkpoint::check_writable(&unwritable).expect_err("no directory");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    Checkpoint::check_writable(&path).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the check leaves nothing behind");
}

#[test]
fn damaged_checkpoints_are_refused_with_the_reason() {
    let dir = scratch_dir("damaged");
    let good = dir.join("good.ckpt");
    sample().save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let n_offset = bytes.len() - 16 - 800 - 8; // the parameter count precedes 2×100 floats and the MD5
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "ends early"),
        ("magic", b"NOTACKPT".iter().chain(&bytes[8..]).copied().collect(), "magic"),
        ("truncated header", bytes[..30].to_vec(), "ends early"),
        ("truncated body", bytes[..bytes.len() - 5].to_vec(), "but the file has"),
        ("extra bytes", bytes.iter().chain(&[0u8; 8]).copied().collect(), "but the file has"),
    ];
    let mut version = bytes.clone();
    version[8] = 9;
    cases.push(("version", version, "format version 9"));
    let mut huge = bytes.clone();
    huge[n_offset..n_offset + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(("huge count", huge, "claims 18446744073709551615 parameters (more than 2^64 bytes"));
    let epochs_offset = 8 + 4 + 4 + "simple_cnn".len();
    for (what, epochs) in [("zero epochs", 0u64), ("absurd epochs", u64::MAX)] {
        let mut e = bytes.clone();
        e[epochs_offset..epochs_offset + 8].copy_from_slice(&epochs.to_le_bytes());
        cases.push((what, e, "epochs done"));
    }
    let mut name = bytes.clone();
    name[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("name length", name, "network name claims"));
    let mut flipped = bytes.clone();
    flipped[n_offset + 8 + 40] ^= 0x10;
    cases.push(("flipped bit", flipped, "MD5 checksum does not match"));
    for (what, data, says) in cases {
        let path = dir.join(format!("{what}.ckpt"));
        std::fs::write(&path, data).unwrap();
        let e = load_error(&path);
        assert!(e.contains(says) && e.contains(&format!("{what}.ckpt")), "{what}: {e}");
    }
    let missing = Checkpoint::load(&dir.join("absent.ckpt")).expect_err("absent");
    assert!(matches!(missing, CheckpointError::Io { .. }) && missing.to_string().contains("absent.ckpt"), "{missing}");
}

#[test]
fn a_checkpoint_of_another_network_or_recipe_is_refused() {
    let path = Path::new("x.ckpt");
    let ck = sample();
    let recipe = fingerprint(7, 64, 60000, 0.01, 0.5);
    ck.check_fits(path, "simple_cnn", 100, &recipe).unwrap();
    for (network, len, recipe, says) in [
        ("resnet", 100, recipe, "holds a simple_cnn network, not resnet"),
        ("simple_cnn", 101, recipe, "holds 100 packed parameter values, simple_cnn has 101"),
        ("simple_cnn", 100, fingerprint(8, 64, 60000, 0.01, 0.5), "--seed 7, this run asks for 8"),
        ("simple_cnn", 100, fingerprint(7, 32, 60000, 0.01, 0.5), "--batch-size 64"),
        ("simple_cnn", 100, fingerprint(7, 64, 5000, 0.01, 0.5), "training images"),
        ("simple_cnn", 100, fingerprint(7, 64, 60000, 0.02, 0.5), "--lr 0.01, this run asks for 0.02"),
        ("simple_cnn", 100, fingerprint(7, 64, 60000, 0.01, 0.9), "--momentum 0.5"),
    ] {
        let e = ck.check_fits(path, network, len, &recipe).expect_err(says).to_string();
        assert!(e.contains(says) && e.contains("x.ckpt"), "{e}");
    }
}

/// Two epochs in one run and two epochs with a stop and resume in between give the same
/// parameters and velocity, bit for bit: the resumed run sees the same batches in the same order.
#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let Some(_) = tests::gpu() else { return };
    let Some(data_dir) = tests::real_mnist_dir() else { return };
    let dir = scratch_dir("resume");
    let run = |extra: &[&str]| {
        let mut argv = vec!["simple_cnn", "--no-download", "--limit-train", "640", "--limit-test", "64"];
        argv.extend(["--data-dir", data_dir.to_str().unwrap()]);
        argv.extend(extra);
        models::cli::run(Network::SimpleCnn, &Args::try_parse_from(argv).unwrap())
    };
    let (straight, stopped) = (dir.join("straight.ckpt"), dir.join("stopped.ckpt"));
    run(&["--epochs", "2", "--checkpoint", straight.to_str().unwrap()]).unwrap();
    run(&["--epochs", "1", "--checkpoint", stopped.to_str().unwrap()]).unwrap();
    let after_one = Checkpoint::load(&stopped).unwrap();
    assert_eq!(after_one.epochs_done, 1);
    let resume = ["--epochs", "2", "--resume", stopped.to_str().unwrap(), "--checkpoint", stopped.to_str().unwrap()];
    run(&resume).unwrap();
    let (a, b) = (Checkpoint::load(&straight).unwrap(), Checkpoint::load(&stopped).unwrap());
    assert_eq!(b.epochs_done, 2);
    assert_ne!(after_one.values, b.values, "the resumed epoch trained");
    assert_eq!(a, b, "resumed run differs from the uninterrupted one");

    // A checkpoint path that cannot be written is refused before the first epoch.
    let nowhere = dir.join("no-such-dir").join("x.ckpt");
    let e = run(&["--epochs", "1", "--checkpoint", nowhere.to_str().unwrap()]).expect_err("unwritable");
    assert!(e.to_string().contains("no-such-dir"), "{e}");

    // The same checkpoint with another recipe is refused before any training.
    let e = run(&["--epochs", "3", "--lr", "0.02", "--resume", stopped.to_str().unwrap()]).expect_err("lr differs");
    assert!(e.to_string().contains("--lr 0.01, this run asks for 0.02"), "{e}");
    let e = models::cli::run(
        Network::Resnet,
        &Args::try_parse_from([
            "resnet",
            "--no-download",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--limit-train",
            "640",
            "--resume",
            stopped.to_str().unwrap(),
        ])
        .unwrap(),
    )
    .expect_err("another network");
    assert!(e.to_string().contains("holds a simple_cnn network, not resnet"), "{e}");
}
