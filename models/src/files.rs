//! Files written so that a crash never leaves half of one: a temporary file beside the target,
//! synced, then renamed over it; and the one error type of the files a run reads and writes
//! (weights and checkpoints).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The temporary file `path` is written to before it is renamed over it.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    match path.file_name() {
        Some(name) => Ok(path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()))),
        None => Err(io::Error::new(io::ErrorKind::InvalidInput, "the path names no file")),
    }
}

/// Checks that `path` can be written (its directory exists and takes files), leaving nothing.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let temp = temp_path(path)?;
    File::create(&temp)?;
    let _ = fs::remove_file(&temp);
    Ok(())
}

/// Writes `bytes` to `path` atomically: a crash leaves the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path)?;
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // The rename itself is durable once the directory is synced (where directories can be
        // opened as files; elsewhere the rename stands unsynced).
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp); // the write error is the one worth reporting
    }
    written
}

/// Which kind of file a [`FileError`] is about: its message says what to do accordingly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A safetensors state_dict (`--init-from`, `--out`'s weights, `predict --model`).
    Weights,
    /// A training checkpoint (`--checkpoint`, `--resume`).
    Checkpoint,
}

/// What is wrong with a file.
#[derive(Debug)]
pub enum Fault {
    /// Reading or writing it failed.
    Io(io::Error),
    /// It is not such a file, or a damaged one: why.
    Invalid(String),
    /// A valid file that does not fit what was asked of it (another network, recipe or data).
    Mismatch(String),
}

/// Why a weights file or a checkpoint cannot be read or written, or does not fit.
#[derive(Debug)]
pub struct FileError {
    /// Weights or checkpoint.
    pub kind: FileKind,
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub fault: Fault,
}

impl FileError {
    /// An error about the weights file at `path`.
    pub fn weights(path: impl Into<PathBuf>, fault: Fault) -> FileError {
        FileError { kind: FileKind::Weights, path: path.into(), fault }
    }

    /// An error about the checkpoint at `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, fault: Fault) -> FileError {
        FileError { kind: FileKind::Checkpoint, path: path.into(), fault }
    }

    /// The error told as a checkpoint's: a file read as a checkpoint that is no usable
    /// safetensors file, or whose tensors do not fit, is an unusable checkpoint.
    pub fn of_checkpoint(self) -> FileError {
        let fault = match (self.kind, self.fault) {
            (FileKind::Weights, Fault::Invalid(why)) => {
                Fault::Invalid(format!("it is not a usable safetensors file ({why})"))
            }
            (FileKind::Weights, Fault::Mismatch(why)) => Fault::Invalid(why),
            (_, fault) => fault,
        };
        FileError::checkpoint(self.path, fault)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match (self.kind, &self.fault) {
            (FileKind::Weights, Fault::Io(e)) => write!(f, "{path}: {e}"),
            (FileKind::Weights, Fault::Invalid(why)) => write!(f, "{path} is not a usable safetensors file: {why}"),
            (FileKind::Weights, Fault::Mismatch(why)) => write!(f, "{path} does not fit: {why}"),
            (FileKind::Checkpoint, Fault::Io(e)) => write!(f, "checkpoint {path}: {e}"),
            (FileKind::Checkpoint, Fault::Invalid(why)) => {
                write!(f, "checkpoint {path} is not usable: {why}. Start without --resume to train from scratch")
            }
            (FileKind::Checkpoint, Fault::Mismatch(why)) => write!(f, "checkpoint {path} does not fit this run: {why}"),
        }
    }
}

impl std::error::Error for FileError {}
