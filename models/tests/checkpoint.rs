//! Checkpoints: a resumed run equals one that never stopped, and damaged or foreign checkpoint
//! files are refused with a clear error, never a panic or a huge allocation.

use clap::Parser;
use engine::graph::Graph;
use engine::ops::optimizer::{Adam, Optimizer, Sgd};
use models::checkpoint::{Checkpoint, Fingerprint};
use models::cli::Args;
use models::files::{Fault, FileError};
use models::state_dict::{self, state_prefix, TensorFile};
use models::train::Recipe;
use models::Network;
use std::path::{Path, PathBuf};

/// The digest of one 1×1×3 image labelled `label`.
fn digest(label: u32) -> String {
    let data = engine::data::LabelledImages::new([1, 1, 3], vec![1, 2, 3], vec![label]).unwrap();
    models::checkpoint::data_digest(&data)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("checkpoint-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fingerprint(seed: u64, batch_size: u64, train_count: u64, lr: f64, momentum: f64) -> Fingerprint {
    let normalization = ("0.1307".to_string(), "0.3081".to_string());
    let optimizer = Recipe { optimizer: Optimizer::Sgd(Sgd::new(lr, momentum)), ..Recipe::default() }.optimizer_text();
    Fingerprint { seed, batch_size, train_count, optimizer, normalization }
}

fn simple_cnn() -> Graph {
    Network::SimpleCnn.build([1, 28, 28], 10).unwrap()
}

fn sample(graph: &Graph) -> Checkpoint {
    Checkpoint {
        network: "simple_cnn".into(),
        epochs_done: 3,
        fingerprint: fingerprint(7, 64, 60000, 0.01, 0.5),
        values: graph.init_params(7),
        moments: vec![("momentum_buffer".into(), graph.init_params(8).iter().map(|v| v * 1e-3).collect())],
        data_md5: digest(4),
    }
}

fn load_error(path: &Path) -> String {
    match Checkpoint::load(path, "simple_cnn", &simple_cnn()) {
        Err(e @ FileError { fault: Fault::Invalid(_), .. }) => e.to_string(),
        other => panic!("expected an invalid-checkpoint error, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_round_trips_and_replaces_the_old_file_atomically() {
    let (dir, graph) = (scratch_dir("round-trip"), simple_cnn());
    let path = dir.join("run.ckpt");
    let mut first = sample(&graph);
    first.save(&path, &graph).unwrap();
    assert_eq!(Checkpoint::load(&path, "simple_cnn", &graph).unwrap(), first);
    first.epochs_done = 4;
    first.values[0] = f32::MIN_POSITIVE;
    first.save(&path, &graph).unwrap();
    assert_eq!(Checkpoint::load(&path, "simple_cnn", &graph).unwrap(), first);
    // Only the checkpoint itself is left: the temporary file was renamed over it.
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("run.ckpt")]);
    let unwritable = dir.join("no-such-dir").join("run.ckpt");
    let e = sample(&graph).save(&unwritable, &graph).expect_err("no directory");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    let e = Checkpoint::check_writable(&unwritable).expect_err("no directory");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    Checkpoint::check_writable(&path).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the check leaves nothing behind");
}

/// The weights keep their state_dict names (PyTorch's load_file and --init-from read them), the
/// optimizer's state sits apart under its own prefix: SGD's momentum buffers, Adam's two moments.
#[test]
fn a_checkpoint_holds_the_state_dict_and_the_optimizer_state_apart() {
    let (dir, graph) = (scratch_dir("layout"), simple_cnn());
    let path = dir.join("run.ckpt");
    let ck = sample(&graph);
    ck.save(&path, &graph).unwrap();
    let file = TensorFile::open(&path).unwrap();
    assert_eq!(file.params(&graph, "").unwrap(), ck.values);
    assert_eq!(file.params(&graph, &state_prefix("momentum_buffer")).unwrap(), ck.moments[0].1);
    assert_eq!(file.f32("conv1.weight").unwrap().0, vec![10, 1, 5, 5]);
    assert!(file.names().contains(&"optimizer.momentum_buffer.fc.bias".to_string()));
    let meta = file.metadata();
    assert_eq!(
        (meta["network"].as_str(), meta["epochs_done"].as_str(), meta["optimizer_steps"].as_str()),
        ("simple_cnn", "3", "2814")
    );
    assert!(meta["optimizer"].starts_with("sgd lr=0.01 momentum=0.5"), "{}", meta["optimizer"]);

    let mut adam = sample(&graph);
    adam.fingerprint.optimizer =
        Recipe { optimizer: Optimizer::Adam(Adam::adamw(0.001)), ..Recipe::default() }.optimizer_text();
    let second = graph.init_params(9).iter().map(|v| v * v).collect();
    adam.moments = vec![("exp_avg".into(), graph.init_params(8)), ("exp_avg_sq".into(), second)];
    adam.save(&path, &graph).unwrap();
    assert_eq!(Checkpoint::load(&path, "simple_cnn", &graph).unwrap(), adam);
    let names = TensorFile::open(&path).unwrap().names();
    assert!(names.contains(&"optimizer.exp_avg_sq.conv2.weight".to_string()), "{names:?}");
}

/// A checkpoint written before the optimizer flags (SGD's `lr` and `momentum` in its metadata,
/// no `optimizer`) reads as SGD at a constant learning rate, and resumes as such.
#[test]
fn a_checkpoint_from_before_the_optimizer_flags_reads_as_sgd() {
    let (dir, graph) = (scratch_dir("legacy"), simple_cnn());
    let path = dir.join("old.ckpt");
    let ck = sample(&graph);
    ck.save(&path, &graph).unwrap();
    let mut meta = TensorFile::open(&path).unwrap().metadata();
    for key in ["optimizer", "optimizer_state", "optimizer_steps"] {
        meta.remove(key);
    }
    meta.insert("lr".into(), "0.01".into());
    meta.insert("momentum".into(), "0.5".into());
    let mut tensors = state_dict::named(&graph, &ck.values, "");
    tensors.extend(state_dict::named(&graph, &ck.moments[0].1, &state_prefix("momentum_buffer")));
    state_dict::write(&path, &tensors, meta).unwrap();
    assert_eq!(Checkpoint::load(&path, "simple_cnn", &graph).unwrap(), ck);
}

#[test]
fn damaged_checkpoints_are_refused_with_the_reason() {
    let (dir, graph) = (scratch_dir("damaged"), simple_cnn());
    let good = dir.join("good.ckpt");
    let ck = sample(&graph);
    ck.save(&good, &graph).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    let at = bytes.len() - 100; // inside the last tensor's data
    flipped[at] ^= 0x10;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "not a usable safetensors file"),
        ("not safetensors", b"MNISTCKP and then some bytes".to_vec(), "not a usable safetensors file"),
        ("truncated", bytes[..bytes.len() - 5].to_vec(), "not a usable safetensors file"),
        ("flipped bit", flipped, "MD5 checksum does not match"),
    ];
    // Metadata edited (and so re-written) one key at a time.
    let meta = TensorFile::open(&good).unwrap().metadata();
    let mut tensors = state_dict::named(&graph, &ck.values, "");
    tensors.extend(state_dict::named(&graph, &ck.moments[0].1, &state_prefix("momentum_buffer")));
    for (what, key, value, says) in [
        ("zero epochs", "epochs_done", Some("0"), "claims 0 epochs done"),
        ("absurd epochs", "epochs_done", Some("18446744073709551615"), "epochs done"),
        ("seed not a number", "seed", Some("seven"), "`seed` is `seven`, not a number"),
        ("no md5", "md5", None, "lacks `md5`"),
        ("no data md5", "data_md5", None, "lacks `data_md5`"),
        ("steps", "optimizer_steps", Some("5"), "claims 5 optimizer steps in 3 epochs of 938 steps"),
    ] {
        let mut m = meta.clone();
        match value {
            Some(v) => m.insert(key.to_string(), v.to_string()),
            None => m.remove(key),
        };
        let path = dir.join(format!("{what}.ckpt"));
        state_dict::write(&path, &tensors, m).unwrap();
        cases.push((what, std::fs::read(&path).unwrap(), says));
    }
    let path = dir.join("no velocity.ckpt");
    state_dict::write(&path, &tensors[..tensors.len() - 1], meta.clone()).unwrap();
    cases.push(("no velocity", std::fs::read(&path).unwrap(), "no tensor `optimizer.momentum_buffer.fc.bias`"));
    for (what, data, says) in cases {
        let path = dir.join(format!("{what}.ckpt"));
        std::fs::write(&path, data).unwrap();
        let e = load_error(&path);
        assert!(e.contains(says) && e.contains(&format!("{what}.ckpt")), "{what}: {e}");
    }
    let missing = Checkpoint::load(&dir.join("absent.ckpt"), "simple_cnn", &graph).expect_err("absent");
    assert!(
        matches!(missing, FileError { fault: Fault::Io(_), .. }) && missing.to_string().contains("absent.ckpt"),
        "{missing}"
    );
}

#[test]
fn a_checkpoint_of_another_network_or_recipe_is_refused() {
    let (dir, graph) = (scratch_dir("mismatch"), simple_cnn());
    let path = dir.join("x.ckpt");
    let ck = sample(&graph);
    ck.save(&path, &graph).unwrap();
    let resnet = Network::Resnet.build([1, 28, 28], 10).unwrap();
    let e = Checkpoint::load(&path, "resnet", &resnet).expect_err("another network").to_string();
    assert!(e.contains("holds a simple_cnn network, not resnet") && e.contains("x.ckpt"), "{e}");
    let recipe = fingerprint(7, 64, 60000, 0.01, 0.5);
    ck.check_fits(&path, &recipe).unwrap();
    ck.check_data(&path, &digest(4)).unwrap();
    let e = ck.check_data(&path, &digest(5)).unwrap_err().to_string();
    assert!(e.contains("it was trained on other data") && e.contains("--data-dir") && e.contains("x.ckpt"), "{e}");
    for (recipe, says) in [
        (fingerprint(8, 64, 60000, 0.01, 0.5), "--seed 7, this run asks for 8"),
        (fingerprint(7, 32, 60000, 0.01, 0.5), "--batch-size 64"),
        (fingerprint(7, 64, 5000, 0.01, 0.5), "training images"),
        (fingerprint(7, 64, 60000, 0.02, 0.5), "--optimizer, --lr"),
        (fingerprint(7, 64, 60000, 0.02, 0.5), "sgd lr=0.01 momentum=0.5"),
        (fingerprint(7, 64, 60000, 0.01, 0.9), "this run asks for sgd lr=0.01 momentum=0.9"),
        (
            Fingerprint { normalization: ("0.5".into(), "0.3081".into()), ..recipe.clone() },
            "--mean 0.1307, this run asks for 0.5",
        ),
    ] {
        let e = ck.check_fits(&path, &recipe).expect_err(says).to_string();
        assert!(e.contains(says) && e.contains("x.ckpt"), "{e}");
    }
}

/// Two epochs in one run and two epochs with a stop and resume in between give the same
/// parameters and optimizer state, bit for bit: the resumed run sees the same batches in the
/// same order, at the same steps of its schedule. With SGD (the tutorial's recipe), and with
/// AdamW under a warm-up and a cosine schedule (its moments, bias corrections and learning rates
/// continue at step 10 of 20).
#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let Some(_) = test_support::gpu::gpu() else { return };
    let Some(data_dir) = test_support::real_mnist_dir() else { return };
    let dir = scratch_dir("resume");
    let run_network = |network: Network, extra: &[&str]| {
        let mut argv = vec![network.name(), "--no-download", "--limit-train", "640", "--limit-test", "64"];
        argv.extend(["--data-dir", data_dir.to_str().unwrap()]);
        argv.extend(extra);
        models::cli::run(network, &Args::try_parse_for(network, argv).unwrap())
    };
    let run = |extra: &[&str]| run_network(Network::SimpleCnn, extra);
    let adamw = ["--optimizer", "adamw", "--schedule", "cosine,t_max=20", "--warmup", "3"];
    // fast_cnn's own recipe (AdamW) with a schedule that does not span the run, so that a run
    // of one epoch may go on; its batch norms' running statistics and batch counts resume too,
    // and the resumed epoch's augmentation draws what the uninterrupted run's did.
    let fast = ["--schedule", "cosine,t_max=20", "--augment", "shift=2,rotate=10,scale=0.1"];
    for (name, network, recipe) in [
        ("sgd", Network::SimpleCnn, &[][..]),
        ("adamw", Network::SimpleCnn, &adamw[..]),
        ("fast", Network::FastCnn, &fast[..]),
    ] {
        let graph = network.build([1, 28, 28], 10).unwrap();
        let load = |path: &Path| Checkpoint::load(path, network.name(), &graph).unwrap();
        let run = |extra: &[&str]| run_network(network, extra);
        let (straight, stopped) = (dir.join(format!("{name}-straight.ckpt")), dir.join(format!("{name}-stopped.ckpt")));
        run(&[&["--epochs", "2", "--checkpoint", straight.to_str().unwrap()], recipe].concat()).unwrap();
        run(&[&["--epochs", "1", "--checkpoint", stopped.to_str().unwrap()], recipe].concat()).unwrap();
        let after_one = load(&stopped);
        assert_eq!(after_one.epochs_done, 1);
        let stopped_path = stopped.to_str().unwrap();
        run(&[&["--epochs", "2", "--resume", stopped_path, "--checkpoint", stopped_path], recipe].concat()).unwrap();
        let (a, b) = (load(&straight), load(&stopped));
        assert_eq!(b.epochs_done, 2);
        assert_ne!(after_one.values, b.values, "{name}: the resumed epoch trained");
        assert_eq!(a, b, "{name}: resumed run differs from the uninterrupted one");
        assert_eq!(a.moments.len(), if name == "sgd" { 1 } else { 2 });
        if network == Network::FastCnn {
            let batches = graph.params().iter().find(|p| p.name == "bn2.num_batches_tracked").unwrap();
            assert_eq!(a.values[batches.offset], 20.0, "two epochs of 10 steps (640 images, batch 64)");
        }
    }
    let stopped = dir.join("sgd-stopped.ckpt");

    // A checkpoint path that cannot be written is refused before the first epoch.
    let nowhere = dir.join("no-such-dir").join("x.ckpt");
    let e = run(&["--epochs", "1", "--checkpoint", nowhere.to_str().unwrap()]).expect_err("unwritable");
    assert!(e.to_string().contains("no-such-dir"), "{e}");

    // The same checkpoint with another recipe is refused before any training.
    let e = run(&["--epochs", "3", "--lr", "0.02", "--resume", stopped.to_str().unwrap()]).expect_err("lr differs");
    assert!(e.to_string().contains("this run asks for sgd lr=0.02 momentum=0.5"), "{e}");
    let e =
        run(&["--epochs", "3", "--augment", "shift=1", "--resume", stopped.to_str().unwrap()]).expect_err("augment");
    assert!(e.to_string().contains("; augment shift=1 rotate=0 scale=0"), "{e}");
    let e = run(&["--epochs", "3", "--optimizer", "adam", "--resume", stopped.to_str().unwrap()]).expect_err("adam");
    assert!(e.to_string().contains("this run asks for adam lr=0.001 betas=0.9,0.999"), "{e}");
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
