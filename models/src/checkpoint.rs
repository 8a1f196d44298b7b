//! Training checkpoints: the parameters and SGD velocity after a whole epoch, with the recipe that
//! produced them, so that a long run can stop and resume exactly where it was. Each epoch's
//! shuffle depends only on the seed and the epoch number, so a resumed run trains on the same
//! batches, in the same order, as one that never stopped.
//!
//! File layout, little-endian:
//!   magic "MNISTCKP", u32 version, u32 name length, network name (UTF-8),
//!   u64 epochs done, u64 seed, u64 batch size, u64 training images, f32 lr, f32 momentum,
//!   u64 n, n f32 parameters, n f32 velocities, 16-byte MD5 of everything before it.

use byteorder::{LittleEndian, ReadBytesExt, WriteBytesExt};
use md5::{Digest, Md5};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"MNISTCKP";
const VERSION: u32 = 1;
const MAX_NAME: usize = 64;
const DIGEST_BYTES: u64 = 16;
/// The longest header: magic, version, name length, name, four u64, two f32, the count.
const MAX_HEADER: usize = 8 + 4 + 4 + MAX_NAME + 4 * 8 + 2 * 4 + 8;
/// More epochs than any run makes (and small enough for a 32-bit usize plus one): a header
/// claiming more is damaged.
const MAX_EPOCHS: u64 = 1 << 31;

/// What a resumed run must share with the run that saved the checkpoint: anything else would
/// train on other batches or take other steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fingerprint {
    pub seed: u64,
    pub batch_size: u64,
    /// Training images (fewer than the split's with --limit-train).
    pub train_count: u64,
    pub lr: f32,
    pub momentum: f32,
}

/// Everything before the parameters.
struct Header {
    network: String,
    epochs_done: u64,
    fingerprint: Fingerprint,
    /// Parameters (and velocities) that follow.
    params: u64,
    /// Bytes of the header itself.
    bytes: usize,
}

impl Header {
    fn parse(bytes: &[u8]) -> Result<Header, String> {
        let truncated = |_: io::Error| format!("the file ends early ({} bytes)", bytes.len());
        let mut r = bytes;
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(truncated)?;
        if &magic != MAGIC {
            return Err("it does not start with the checkpoint magic \"MNISTCKP\"".into());
        }
        let version = r.read_u32::<LittleEndian>().map_err(truncated)?;
        if version != VERSION {
            return Err(format!("format version {version}, this program reads version {VERSION}"));
        }
        let name_len = r.read_u32::<LittleEndian>().map_err(truncated)? as usize;
        if name_len > MAX_NAME || name_len > r.len() {
            return Err(format!("the network name claims {name_len} bytes"));
        }
        let (name, rest) = r.split_at(name_len);
        let network = String::from_utf8(name.to_vec()).map_err(|_| "the network name is not UTF-8".to_string())?;
        r = rest;
        let mut fields = [0u64; 4];
        for v in &mut fields {
            *v = r.read_u64::<LittleEndian>().map_err(truncated)?;
        }
        let [epochs_done, seed, batch_size, train_count] = fields;
        if epochs_done == 0 || epochs_done > MAX_EPOCHS {
            return Err(format!("it claims {epochs_done} epochs done"));
        }
        let lr = r.read_f32::<LittleEndian>().map_err(truncated)?;
        let momentum = r.read_f32::<LittleEndian>().map_err(truncated)?;
        let params = r.read_u64::<LittleEndian>().map_err(truncated)?;
        let bytes = bytes.len() - r.len();
        let fingerprint = Fingerprint { seed, batch_size, train_count, lr, momentum };
        Ok(Header { network, epochs_done, fingerprint, params, bytes })
    }

    /// Refuses a file whose size is not what the header says.
    fn check_size(&self, size: u64) -> Result<(), String> {
        let total = self.params.checked_mul(8).and_then(|p| p.checked_add(self.bytes as u64 + DIGEST_BYTES));
        if total != Some(size) {
            return Err(format!(
                "the header claims {} parameters ({} bytes in all) but the file has {size} bytes",
                self.params,
                total.map_or("more than 2^64".to_string(), |t| t.to_string())
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub network: String,
    /// Epochs completed; training resumes at `epochs_done + 1`.
    pub epochs_done: u64,
    pub fingerprint: Fingerprint,
    /// The packed parameter buffer, as `Graph::init_params` lays it out.
    pub values: Vec<f32>,
    pub velocity: Vec<f32>,
}

#[derive(Debug)]
pub enum CheckpointError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// The file is not a checkpoint this program wrote, or it was damaged.
    Invalid {
        path: PathBuf,
        why: String,
    },
    /// A valid checkpoint of another network or recipe than the one asked for.
    Mismatch {
        path: PathBuf,
        why: String,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io { path, error } => write!(f, "checkpoint {}: {error}", path.display()),
            CheckpointError::Invalid { path, why } => {
                write!(
                    f,
                    "checkpoint {} is not usable: {why}. Start without --resume to train from scratch",
                    path.display()
                )
            }
            CheckpointError::Mismatch { path, why } => {
                write!(f, "checkpoint {} does not fit this run: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for CheckpointError {}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        assert_eq!(self.values.len(), self.velocity.len(), "one velocity per parameter");
        assert!(self.network.len() <= MAX_NAME, "network name too long for a checkpoint");
        let mut out = Vec::with_capacity(MAX_HEADER + 8 * self.values.len() + DIGEST_BYTES as usize);
        out.extend_from_slice(MAGIC);
        // Writing into a Vec cannot fail.
        let w = &mut out;
        w.write_u32::<LittleEndian>(VERSION).unwrap();
        w.write_u32::<LittleEndian>(self.network.len() as u32).unwrap();
        w.extend_from_slice(self.network.as_bytes());
        let f = &self.fingerprint;
        for v in [self.epochs_done, f.seed, f.batch_size, f.train_count] {
            w.write_u64::<LittleEndian>(v).unwrap();
        }
        w.write_f32::<LittleEndian>(f.lr).unwrap();
        w.write_f32::<LittleEndian>(f.momentum).unwrap();
        w.write_u64::<LittleEndian>(self.values.len() as u64).unwrap();
        for v in self.values.iter().chain(&self.velocity) {
            w.write_f32::<LittleEndian>(*v).unwrap();
        }
        let digest = Md5::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// The temporary file a checkpoint is written to before it is renamed over `path`.
    fn temp_path(path: &Path) -> Result<PathBuf, CheckpointError> {
        match path.file_name() {
            Some(name) => Ok(path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()))),
            None => Err(CheckpointError::Io {
                path: path.to_path_buf(),
                error: io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
            }),
        }
    }

    /// Checks, before any training, that a checkpoint can be written at `path`, so that a typo
    /// in the path does not cost the first epoch.
    pub fn check_writable(path: &Path) -> Result<(), CheckpointError> {
        let temp = Self::temp_path(path)?;
        File::create(&temp).map_err(|error| CheckpointError::Io { path: path.to_path_buf(), error })?;
        let _ = fs::remove_file(&temp);
        Ok(())
    }

    /// Writes the checkpoint atomically: a temporary file beside `path`, synced, then renamed
    /// over it, so a crash leaves either the old checkpoint or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io_error = |error| CheckpointError::Io { path: path.to_path_buf(), error };
        let temp = Self::temp_path(path)?;
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(&self.encode())?;
            file.sync_all()?;
            fs::rename(&temp, path)?;
            // The rename itself is durable once the directory is synced (where directories can
            // be opened as files; elsewhere the rename stands unsynced).
            if let Some(dir) =
                path.parent().and_then(|d| File::open(if d.as_os_str().is_empty() { Path::new(".") } else { d }).ok())
            {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp); // the write error is the one worth reporting
        }
        written.map_err(io_error)
    }

    /// Reads and checks a checkpoint. The header is read first and the file's size checked
    /// against the parameter count it claims before the parameters are read, then the MD5
    /// against the contents.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let invalid = |why: String| CheckpointError::Invalid { path: path.to_path_buf(), why };
        let io_error = |error| CheckpointError::Io { path: path.to_path_buf(), error };
        let mut file = File::open(path).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        let mut bytes = Vec::new();
        (&mut file).take(MAX_HEADER as u64).read_to_end(&mut bytes).map_err(io_error)?;
        let header = Header::parse(&bytes).map_err(invalid)?;
        header.check_size(size).map_err(invalid)?;
        file.read_to_end(&mut bytes).map_err(io_error)?;
        Self::decode(header, &bytes).map_err(invalid)
    }

    /// The parameters after `h`, once the MD5 of the whole file checks out.
    fn decode(h: Header, bytes: &[u8]) -> Result<Checkpoint, String> {
        // The file may have changed since its size was checked.
        h.check_size(bytes.len() as u64)?;
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_BYTES as usize);
        if Md5::digest(body).as_slice() != digest {
            return Err("its MD5 checksum does not match its contents: the file is damaged".into());
        }
        let floats = |from: usize| -> Vec<f32> {
            let data = &body[from..from + 4 * h.params as usize];
            data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        };
        Ok(Checkpoint {
            values: floats(h.bytes),
            velocity: floats(h.bytes + 4 * h.params as usize),
            network: h.network,
            epochs_done: h.epochs_done,
            fingerprint: h.fingerprint,
        })
    }

    /// Refuses to resume a run whose network or recipe differs from the checkpoint's: the
    /// result would match neither.
    pub fn check_fits(
        &self,
        path: &Path,
        network: &str,
        param_len: usize,
        asked: &Fingerprint,
    ) -> Result<(), CheckpointError> {
        let mismatch = |why: String| Err(CheckpointError::Mismatch { path: path.to_path_buf(), why });
        if self.network != network {
            return mismatch(format!("it holds a {} network, not {network}", self.network));
        }
        if self.values.len() != param_len {
            return mismatch(format!(
                "it holds {} packed parameter values, {network} has {param_len}",
                self.values.len()
            ));
        }
        let (saved, asked) = (&self.fingerprint, asked);
        let fields = [
            ("--seed", saved.seed.to_string(), asked.seed.to_string()),
            ("--batch-size", saved.batch_size.to_string(), asked.batch_size.to_string()),
            ("training images (--limit-train)", saved.train_count.to_string(), asked.train_count.to_string()),
            ("--lr", saved.lr.to_string(), asked.lr.to_string()),
            ("--momentum", saved.momentum.to_string(), asked.momentum.to_string()),
        ];
        for (flag, saved, asked) in fields {
            if saved != asked {
                return mismatch(format!("it was trained with {flag} {saved}, this run asks for {asked}"));
            }
        }
        Ok(())
    }
}
