//! Loads MNIST, or any data set laid out the same way, from IDX files: finds the data
//! directory, downloads missing files with checksum verification, reads raw or gzip IDX files
//! with strict structural checks. It knows nothing of GPUs or training: the caller normalizes
//! (see [`MEAN`] and [`STD`]), shuffles, batches and uploads.
//!
//! Files are checked structurally whenever they are read; MD5 checksums apply only to
//! downloads, so other IDX data sets (Fashion-MNIST, for one) can be used from a data directory.

mod download;
mod error;
mod idx;

use std::path::{Path, PathBuf};

pub use download::{download, MIRRORS};
pub use error::LoadError;
pub use idx::{read_images, read_labels};

/// Base names of the four files; each may be stored as `NAME.gz` (gzip) or `NAME` (raw).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Mean of MNIST's training pixels scaled to 0..1, for normalizing as
/// `(pixel / 255 - MEAN) / STD`; the values the PyTorch MNIST example uses.
pub const MEAN: f32 = 0.1307;
/// Standard deviation of MNIST's training pixels scaled to 0..1 (see [`MEAN`]).
pub const STD: f32 = 0.3081;

/// Number of classes of MNIST (digits 0 to 9); labels must be below it.
pub const NUM_CLASSES: usize = 10;

/// Where the data lives when neither `--data-dir` nor `MNIST_DIR` says otherwise.
const DEFAULT_DATA_DIR: &str = "data/mnist";

/// One split (training or test): `count` images of `rows x cols` bytes, row-major and
/// back to back, with one label each.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Split {
    /// Bytes (pixels) per image.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// A copy holding only the first `n` samples (all of them if `n >= count`).
    pub fn truncated(&self, n: usize) -> Split {
        let count = n.min(self.count);
        Split {
            images: self.images[..count * self.image_len()].to_vec(),
            labels: self.labels[..count].to_vec(),
            count,
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// The training and test splits; both have images of the same size.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    pub num_classes: usize,
}

/// The data directory: `flag` (from `--data-dir`) if given, else `$MNIST_DIR` if set and not
/// empty, else `./data/mnist`.
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_owned();
    }
    match std::env::var_os("MNIST_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

/// The path of file `name` in `dir`: `NAME.gz` if present, else `NAME`, else `None`.
pub(crate) fn locate(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(format!("{name}.gz")), dir.join(name)].into_iter().find(|path| path.is_file())
}

fn require(dir: &Path, name: &str) -> Result<PathBuf, LoadError> {
    locate(dir, name).ok_or_else(|| LoadError::Missing { dir: dir.to_owned(), files: vec![name.to_owned()] })
}

/// Loads the training and test splits from `dir`.
///
/// Each file may be `NAME.gz` or raw `NAME` (the .gz is preferred when both exist). Missing
/// files are downloaded from [`MIRRORS`] first if `allow_download` is true; otherwise the
/// error lists them.
pub fn load(dir: &Path, allow_download: bool) -> Result<Dataset, LoadError> {
    let missing: Vec<String> = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
        .into_iter()
        .filter(|name| locate(dir, name).is_none())
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        if !allow_download {
            return Err(LoadError::Missing { dir: dir.to_owned(), files: missing });
        }
        download(dir, MIRRORS)?;
    }
    let train = read_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?;
    let test = read_split(dir, TEST_IMAGES, TEST_LABELS)?;
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(LoadError::Mismatch {
            first: require(dir, TRAIN_IMAGES)?,
            second: require(dir, TEST_IMAGES)?,
            fault: format!(
                "training images are {}x{} pixels but test images are {}x{}",
                train.rows, train.cols, test.rows, test.cols
            ),
        });
    }
    Ok(Dataset { train, test, num_classes: NUM_CLASSES })
}

fn read_split(dir: &Path, images_name: &str, labels_name: &str) -> Result<Split, LoadError> {
    let images_path = require(dir, images_name)?;
    let labels_path = require(dir, labels_name)?;
    let (images, count, rows, cols) = read_images(&images_path)?;
    let labels = read_labels(&labels_path, NUM_CLASSES)?;
    if labels.len() != count {
        return Err(LoadError::Mismatch {
            first: images_path,
            second: labels_path,
            fault: format!("{count} images but {} labels", labels.len()),
        });
    }
    Ok(Split { images, labels, count, rows, cols })
}
