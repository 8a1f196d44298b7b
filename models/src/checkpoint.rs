//! Training checkpoints: the parameters and optimizer state after a whole epoch, with the recipe that
//! produced them, so that a long run can stop and resume exactly where it was. Each epoch's
//! shuffle depends only on `--seed` and the epoch number, so a resumed run trains on the same
//! batches, in the same order, as one that never stopped.
//!
//! The file is safetensors: the weights under their state_dict names (so PyTorch's `load_file`
//! and `--init-from` read them; `load_state_dict` wants the optimizer's tensors left out), the
//! optimizer's state under [`state_prefix`] (`optimizer.exp_avg.conv1.weight`), and in the
//! metadata the network, the epochs and optimizer steps done, the recipe (the optimizer and
//! schedule in words), an MD5 of the training data (so a resume on other data is refused) and an MD5 of
//! the tensors (names and bytes, in name order), which catches damage that leaves the file's
//! structure intact.

use crate::files::{Fault, FileError};
use crate::state_dict::{self, state_prefix, TensorFile};
use crate::train::{optimizer_schedule_text, Moments};
use engine::data::LabelledImages;
use engine::graph::Graph;
use engine::ops::optimizer::{Optimizer, Sgd};
use engine::schedule::Schedule;
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::path::Path;

/// More epochs than any run makes (and small enough for a 32-bit usize plus one): a file
/// claiming more is damaged.
const MAX_EPOCHS: u64 = 1 << 31;

/// What a resumed run must share with the run that saved the checkpoint: anything else would
/// train on other batches or take other steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Fingerprint {
    /// `--seed`: the initialisation, every epoch's shuffle, dropout's masks and augmentation.
    pub seed: u64,
    /// `--batch-size`: samples a step.
    pub batch_size: u64,
    /// Training images (fewer than the split's with --limit-train).
    pub train_count: u64,
    /// The optimizer and schedule with all their settings, as
    /// [`Recipe::optimizer_text`](crate::train::Recipe::optimizer_text) writes them.
    pub optimizer: String,
    /// `--mean` and `--std`, as the weights' metadata writes them (`0.1307` and `0.3081`).
    pub normalization: (String, String),
}

/// A run's state after a whole epoch, and what it takes to resume it exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The network's name, as [`Network::name`](crate::Network::name) spells it.
    pub network: String,
    /// Epochs completed; training resumes at `epochs_done + 1`.
    pub epochs_done: u64,
    /// The recipe that trained it.
    pub fingerprint: Fingerprint,
    /// The packed parameter buffer, as `Graph::init_params` lays it out.
    pub values: Vec<f32>,
    /// The optimizer's state, each buffer under its PyTorch name and packed like `values`.
    pub moments: Moments,
    /// [`data_digest`] of the training images and labels.
    pub data_md5: String,
}

/// The MD5 of a run's training data: its pixels, then its labels (a byte each where every label
/// fits one, as MNIST's files store them, else four bytes little-endian).
pub fn data_digest(data: &LabelledImages) -> String {
    let mut md5 = Md5::new();
    md5.update(data.pixels());
    match data.labels().iter().map(|&l| u8::try_from(l)).collect::<Result<Vec<u8>, _>>() {
        Ok(bytes) => md5.update(bytes),
        Err(_) => md5.update(data.labels().iter().flat_map(|l| l.to_le_bytes()).collect::<Vec<u8>>()),
    }
    hex(&md5.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MD5 of tensors, by name order: each name, then its values' little-endian bytes.
fn digest<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [f32])>) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by_key(|(name, _)| *name);
    let mut md5 = Md5::new();
    for (name, values) in sorted {
        md5.update(name.as_bytes());
        values.iter().for_each(|v| md5.update(v.to_le_bytes()));
    }
    hex(&md5.finalize())
}

impl Fingerprint {
    /// Optimizer steps an epoch (at least 1).
    pub fn steps_per_epoch(&self) -> u64 {
        self.train_count.div_ceil(self.batch_size.max(1)).max(1)
    }
}

/// The weights under their names, then each optimizer state buffer under its prefix.
fn tensors<'a>(graph: &Graph, values: &'a [f32], moments: &'a Moments) -> Vec<state_dict::Named<'a>> {
    let mut tensors = state_dict::named(graph, values, "");
    for (name, packed) in moments {
        tensors.extend(state_dict::named_trained(graph, packed, &state_prefix(name)));
    }
    tensors
}

impl Checkpoint {
    /// Checks, before any training, that a checkpoint can be written at `path`, so that a typo
    /// in the path does not cost the first epoch.
    pub fn check_writable(path: &Path) -> Result<(), FileError> {
        crate::files::check_writable(path).map_err(|error| FileError::checkpoint(path.to_path_buf(), Fault::Io(error)))
    }

    /// Writes the checkpoint of `graph`'s parameters atomically: a crash leaves either the old
    /// checkpoint or the new one, never half of one.
    pub fn save(&self, path: &Path, graph: &Graph) -> Result<(), FileError> {
        let tensors = tensors(graph, &self.values, &self.moments);
        let f = &self.fingerprint;
        let names: Vec<&str> = self.moments.iter().map(|(n, _)| n.as_str()).collect();
        let metadata: BTreeMap<String, String> = [
            ("format", "pt".to_string()),
            ("network", self.network.clone()),
            ("epochs_done", self.epochs_done.to_string()),
            ("seed", f.seed.to_string()),
            ("batch_size", f.batch_size.to_string()),
            ("train_count", f.train_count.to_string()),
            ("optimizer", f.optimizer.clone()),
            ("optimizer_state", names.join(",")),
            ("optimizer_steps", (self.epochs_done * f.steps_per_epoch()).to_string()),
            ("mean", f.normalization.0.clone()),
            ("std", f.normalization.1.clone()),
            ("data_md5", self.data_md5.clone()),
            ("md5", digest(tensors.iter().map(|t| (t.name.as_str(), t.values)))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        state_dict::write(path, &tensors, metadata).map_err(FileError::of_checkpoint)
    }

    /// Reads and checks a checkpoint of `network` (built as `graph`): the file's structure, the
    /// network it holds (before any tensor is read), every tensor's name and shape, the epochs
    /// and recipe in its metadata, and its MD5.
    pub fn load(path: &Path, network: &str, graph: &Graph) -> Result<Checkpoint, FileError> {
        let invalid = |why: String| FileError::checkpoint(path.to_path_buf(), Fault::Invalid(why));
        let file = TensorFile::open(path).map_err(FileError::of_checkpoint)?;
        let meta = file.metadata();
        let field = |key: &str| meta.get(key).ok_or_else(|| invalid(format!("its metadata lacks `{key}`")));
        let saved = field("network")?;
        if saved != network {
            return Err(FileError::checkpoint(
                path.to_path_buf(),
                Fault::Mismatch(format!("it holds a {saved} network, not {network}")),
            ));
        }
        fn number<T: std::str::FromStr>(key: &str, text: &str) -> Result<T, String> {
            text.parse().map_err(|_| format!("its metadata `{key}` is `{text}`, not a number"))
        }
        let num = |key: &str| field(key).and_then(|t| number::<u64>(key, t).map_err(invalid));
        let real = |key: &str| field(key).and_then(|t| number::<f64>(key, t).map_err(invalid));
        // Checkpoints from before the optimizer flags were SGD at a constant learning rate.
        let optimizer = match meta.get("optimizer") {
            Some(text) => text.clone(),
            None => {
                let sgd = Sgd::new(real("lr")?, real("momentum")?);
                optimizer_schedule_text(&Optimizer::Sgd(sgd), &Schedule::default(), 0)
            }
        };
        let state_names = meta.get("optimizer_state").map_or("momentum_buffer", String::as_str);
        let epochs_done = num("epochs_done")?;
        if epochs_done == 0 || epochs_done > MAX_EPOCHS {
            return Err(invalid(format!("it claims {epochs_done} epochs done")));
        }
        let fingerprint = Fingerprint {
            seed: num("seed")?,
            batch_size: num("batch_size")?,
            train_count: num("train_count")?,
            optimizer,
            // Checkpoints older than per-channel normalization were all MNIST's.
            normalization: (
                meta.get("mean").cloned().unwrap_or_else(|| "0.1307".into()),
                meta.get("std").cloned().unwrap_or_else(|| "0.3081".into()),
            ),
        };
        if let Some(steps) = meta.get("optimizer_steps") {
            let want = epochs_done.saturating_mul(fingerprint.steps_per_epoch());
            if number::<u64>("optimizer_steps", steps).map_err(invalid)? != want {
                return Err(invalid(format!(
                    "it claims {steps} optimizer steps in {epochs_done} epochs of {} steps",
                    want / epochs_done
                )));
            }
        }
        let values = file.params(graph, "").map_err(FileError::of_checkpoint)?;
        let mut moments = Vec::new();
        for name in state_names.split(',') {
            let packed = file.trained(graph, &state_prefix(name)).map_err(FileError::of_checkpoint)?;
            moments.push((name.to_string(), packed));
        }
        let tensors = tensors(graph, &values, &moments);
        if digest(tensors.iter().map(|t| (t.name.as_str(), t.values))) != *field("md5")? {
            return Err(invalid("its MD5 checksum does not match its contents: the file is damaged".into()));
        }
        let data_md5 = field("data_md5")?.clone();
        Ok(Checkpoint { network: saved.clone(), epochs_done, fingerprint, values, moments, data_md5 })
    }

    /// Refuses to resume on other training data than the checkpoint's (`data_digest` of this
    /// run's): its epochs would not continue the saved ones.
    pub fn check_data(&self, path: &Path, data_md5: &str) -> Result<(), FileError> {
        if self.data_md5 == data_md5 {
            return Ok(());
        }
        Err(FileError::checkpoint(
            path.to_path_buf(),
            Fault::Mismatch(format!(
                "it was trained on other data (training images and labels with MD5 {}, this run's have {data_md5}); \
                 check --data-dir",
                self.data_md5
            )),
        ))
    }

    /// Refuses to resume a run whose recipe differs from the checkpoint's: the result would
    /// match neither.
    pub fn check_fits(&self, path: &Path, asked: &Fingerprint) -> Result<(), FileError> {
        let saved = &self.fingerprint;
        let fields = [
            ("--seed", saved.seed.to_string(), asked.seed.to_string()),
            ("--batch-size", saved.batch_size.to_string(), asked.batch_size.to_string()),
            ("training images (--limit-train)", saved.train_count.to_string(), asked.train_count.to_string()),
            (
                "the optimizer (--optimizer, --lr, their settings, --schedule, --warmup, --label-smoothing, and \
                 --epochs where the schedule spans the run)",
                saved.optimizer.clone(),
                asked.optimizer.clone(),
            ),
            ("--mean", saved.normalization.0.clone(), asked.normalization.0.clone()),
            ("--std", saved.normalization.1.clone(), asked.normalization.1.clone()),
        ];
        for (flag, saved, asked) in fields {
            if saved != asked {
                return Err(FileError::checkpoint(
                    path.to_path_buf(),
                    Fault::Mismatch(format!("it was trained with {flag} {saved}, this run asks for {asked}")),
                ));
            }
        }
        Ok(())
    }
}
