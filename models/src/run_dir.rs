//! `--out DIR`: what a run leaves for the tools its users already have, updated after every
//! epoch: `model.safetensors` (the latest weights) and `best.safetensors` (the epoch with the
//! best test accuracy, chosen on the test set as the tutorial does), both state_dicts that PyTorch's
//! `load_state_dict(strict=True)` takes; `model.onnx`, the latest weights as an ONNX model;
//! `metrics.csv`, one row per epoch, flushed as it goes; `confusion.csv`, the latest epoch's
//! test confusion matrix.

use crate::curves::EpochPoint;
use crate::files::FileError;
use crate::state_dict::{self, TensorFile};
use crate::train::EpochReport;
use engine::graph::Graph;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const METRICS_HEADER: &str = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds,images_per_second";

/// The run's output directory and the best test accuracy written to it so far.
pub struct RunDir {
    dir: PathBuf,
    best: Option<f64>,
    /// This process's training losses over steps: (epoch as a fraction, running loss).
    steps: Vec<(f64, f64)>,
}

/// Why the output directory cannot be written or read: the message to print.
#[derive(Debug)]
pub struct RunDirError(String);

impl std::fmt::Display for RunDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunDirError {}

impl From<FileError> for RunDirError {
    fn from(e: FileError) -> Self {
        RunDirError(e.to_string())
    }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> RunDirError + '_ {
    move |e| RunDirError(format!("--out: cannot write {}: {e}", path.display()))
}

impl RunDir {
    /// Creates `dir` with its parents. A resumed run appends to `metrics.csv` and keeps the
    /// best epoch of both runs; a new run starts `metrics.csv` afresh.
    pub fn open(dir: &Path, resumed: bool) -> Result<RunDir, RunDirError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let metrics = dir.join("metrics.csv");
        if !resumed || !metrics.exists() {
            fs::write(&metrics, format!("{METRICS_HEADER}\n")).map_err(io_error(&metrics))?;
        }
        let best_path = dir.join("best.safetensors");
        let best = match resumed && best_path.exists() {
            true => TensorFile::open(&best_path)?.metadata().get("test_accuracy").and_then(|a| a.parse().ok()),
            false => None,
        };
        Ok(RunDir { dir: dir.to_path_buf(), best, steps: Vec::new() })
    }

    /// Writes what the epoch of `report` leaves: the weights (`values`, packed as `graph` lays
    /// them out) with `metadata` and the epoch's figures, the best weights if this epoch beats
    /// the best, a metrics row, the confusion matrix and the curves (with `steps`, the epoch's
    /// running training loss: (epoch as a fraction, loss)).
    pub fn record(
        &mut self,
        graph: &Graph,
        values: &[f32],
        mut metadata: BTreeMap<String, String>,
        report: &EpochReport,
        steps: &[(f64, f64)],
    ) -> Result<(), RunDirError> {
        metadata.insert("format".into(), "pt".into());
        metadata.insert("epoch".into(), report.epoch.to_string());
        metadata.insert("test_accuracy".into(), format!("{:.4}", report.test_accuracy()));
        let tensors = state_dict::named(graph, values, "");
        let onnx = self.dir.join("model.onnx");
        let network = metadata.get("network").cloned().unwrap_or_default();
        let normalization = metadata.get("normalization").cloned().unwrap_or_default();
        crate::files::write_atomically(&onnx, &crate::onnx::export(graph, values, &network, &normalization))
            .map_err(io_error(&onnx))?;
        state_dict::write(&self.dir.join("model.safetensors"), &tensors, metadata.clone())?;
        if self.best.is_none_or(|best| report.test_accuracy() > best) {
            state_dict::write(&self.dir.join("best.safetensors"), &tensors, metadata)?;
            self.best = Some(report.test_accuracy());
        }
        self.append_metrics(report)?;
        let confusion = self.dir.join("confusion.csv");
        fs::write(&confusion, confusion_csv(&report.confusion)).map_err(io_error(&confusion))?;
        self.steps.extend_from_slice(steps);
        let curves = self.dir.join("curves.png");
        let png = crate::curves::png(&network, &self.epochs()?, &self.steps).map_err(RunDirError)?;
        crate::files::write_atomically(&curves, &png).map_err(io_error(&curves))
    }

    /// Every epoch in metrics.csv, this run's and a resumed run's.
    fn epochs(&self) -> Result<Vec<EpochPoint>, RunDirError> {
        let path = self.dir.join("metrics.csv");
        let text = fs::read_to_string(&path).map_err(io_error(&path))?;
        let parse = |line: &str| {
            let v: Vec<f64> = line.split(',').map(|f| f.parse().unwrap_or(f64::NAN)).collect();
            (v.len() == 7).then(|| EpochPoint {
                epoch: v[0],
                train_loss: v[1],
                train_accuracy: v[2],
                test_loss: v[3],
                test_accuracy: v[4],
            })
        };
        Ok(text.lines().skip(1).filter_map(parse).collect())
    }

    fn append_metrics(&self, r: &EpochReport) -> Result<(), RunDirError> {
        let path = self.dir.join("metrics.csv");
        let row = format!(
            "{},{:.6},{:.4},{:.6},{:.4},{:.2},{:.1}\n",
            r.epoch,
            r.train_loss,
            r.train_accuracy(),
            r.test_loss,
            r.test_accuracy(),
            r.train_seconds,
            r.images_per_second
        );
        let mut file: File = OpenOptions::new().append(true).open(&path).map_err(io_error(&path))?;
        file.write_all(row.as_bytes()).and_then(|_| file.sync_data()).map_err(io_error(&path))
    }
}

/// `confusion[label][predicted]` as CSV: a header of predicted classes, a row per true class.
pub fn confusion_csv(confusion: &[Vec<u32>]) -> String {
    let classes = confusion.len();
    let header: Vec<String> = (0..classes).map(|c| format!("predicted_{c}")).collect();
    let mut out = format!("label,{}\n", header.join(","));
    for (label, row) in confusion.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(u32::to_string).collect();
        out.push_str(&format!("{label},{}\n", cells.join(",")));
    }
    out
}

/// The confusion matrix as a table for the terminal: rows are true classes, columns predictions.
pub fn confusion_table(confusion: &[Vec<u32>]) -> String {
    let mut out = String::from("true \\ predicted");
    for c in 0..confusion.len() {
        out.push_str(&format!("{c:>6}"));
    }
    for (label, row) in confusion.iter().enumerate() {
        out.push_str(&format!("\n{label:>16}"));
        for n in row {
            out.push_str(&format!("{n:>6}"));
        }
    }
    out
}
