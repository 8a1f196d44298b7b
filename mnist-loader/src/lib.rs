//! Reads MNIST, or any data set laid out the same way, from IDX files: a pure file-format
//! crate, with no GPU or training code (the caller normalizes with [`MEAN`] and [`STD`],
//! shuffles, batches and uploads).
//!
//! - [`resolve_data_dir`] finds the data directory (`--data-dir`, `$MNIST_DIR`, `data/mnist`).
//! - [`inspect`] downloads missing files when allowed ([`download`], MD5-checked), then reads
//!   only the four headers, a few bytes each even of gzip, and cross-checks them: equal image
//!   and label counts in each split, training and test images of the same size, each file able
//!   to hold what its header declares. No payload is read, so a hostile header is refused, or
//!   its size reported ([`SplitInfo::pixel_bytes`]), before it costs memory or time.
//! - [`SplitInfo::read`] then reads a split whole, or only its first `n` samples, which
//!   decompresses only that prefix; [`load`] is [`inspect`] plus whole reads of both splits.
//! - [`read_images`] and [`read_labels`] read a single IDX file, raw or gzip.
//!
//! Files are checked structurally whenever they are read (magic number, element type,
//! truncation, declared sizes the file cannot hold, data past the payload, labels out of range),
//! with errors that name the file and never panics; MD5 checksums apply only to downloads, so
//! other IDX data sets (Fashion-MNIST, for one) can be used from a data directory.

#[cfg(feature = "download")]
mod download;
mod error;
mod idx;

use std::path::{Path, PathBuf};

#[cfg(feature = "download")]
pub use download::{download, MIRRORS};
pub use error::LoadError;
pub use idx::{read_images, read_labels};

use idx::{ImageFile, LabelFile};

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
}

/// The training and test splits; both have images of the same size.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    pub num_classes: usize,
}

/// One split's files with their headers read and cross-checked; no payload read yet.
///
/// `count` images of `rows x cols` pixels in `images_path`, and as many labels in
/// `labels_path`. The headers were checked as [`read_images`] and [`read_labels`] check them,
/// including that each file could hold the payload its header declares (exactly for a raw
/// file; for gzip, within what DEFLATE can expand the file to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitInfo {
    pub images_path: PathBuf,
    pub labels_path: PathBuf,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
}

impl SplitInfo {
    /// Cross-checks the headers of an image file and its label file.
    fn from_headers(images: &ImageFile, labels: &LabelFile) -> Result<Self, LoadError> {
        let (images_path, labels_path) = (images.path().to_owned(), labels.path().to_owned());
        if images.count != labels.count {
            return Err(LoadError::Mismatch {
                first: images_path,
                second: labels_path,
                fault: format!("{} images but {} labels", images.count, labels.count),
            });
        }
        let (count, rows, cols) = (images.count, images.rows, images.cols);
        Ok(SplitInfo { images_path, labels_path, count, rows, cols })
    }

    /// Bytes (pixels) per image.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// Bytes of pixels the whole split holds (`count * rows * cols`), as u64: what
    /// [`read(None)`](Self::read) will allocate for the images, known before reading them.
    pub fn pixel_bytes(&self) -> u64 {
        self.count as u64 * self.rows as u64 * self.cols as u64
    }

    /// Reads the first `min(limit, count)` images and labels (all of them when `limit` is
    /// `None`).
    ///
    /// With a limit below `count` only that prefix is read (and decompressed), so time and
    /// memory are those of the prefix whatever the header declares. The rest of each file then
    /// goes unchecked: data after the declared payload is not detected, nor, in a gzip file, a
    /// truncation or corruption past the prefix or a wrong CRC (a raw file too short for its
    /// header is refused by the header check). Reading all of them checks those too, as
    /// [`read_images`] does. Every label read must be below [`NUM_CLASSES`]; those not read are
    /// not checked.
    ///
    /// The headers are read again and must still match this `SplitInfo`; a file changed since
    /// [`inspect`] is refused.
    pub fn read(&self, limit: Option<usize>) -> Result<Split, LoadError> {
        let images = ImageFile::open(&self.images_path)?;
        let labels = LabelFile::open(&self.labels_path)?;
        if (images.count, images.rows, images.cols) != (self.count, self.rows, self.cols) {
            return Err(LoadError::format(
                &self.images_path,
                format!(
                    "the header now declares {} images of {}x{} pixels, but {} images of {}x{} when the \
                     split was inspected; the file changed in between",
                    images.count, images.rows, images.cols, self.count, self.rows, self.cols
                ),
            ));
        }
        if labels.count != self.count {
            return Err(LoadError::format(
                &self.labels_path,
                format!(
                    "the header now declares {} labels, but {} when the split was inspected; the \
                     file changed in between",
                    labels.count, self.count
                ),
            ));
        }
        self.read_opened(images, labels, limit)
    }

    /// Reads the first `min(limit, count)` samples of this split's opened files.
    fn read_opened(&self, images: ImageFile, labels: LabelFile, limit: Option<usize>) -> Result<Split, LoadError> {
        let count = limit.map_or(self.count, |limit| limit.min(self.count));
        let images = images.read(count)?;
        let labels = labels.read(count, NUM_CLASSES)?;
        Ok(Split { images, labels, count, rows: self.rows, cols: self.cols })
    }
}

/// The four headers of a data directory read and cross-checked; no payload read yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    pub dir: PathBuf,
    pub train: SplitInfo,
    pub test: SplitInfo,
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

/// Reads and cross-checks the headers of the four files in `dir`, reading no payload.
///
/// Each file may be `NAME.gz` or raw `NAME` (the .gz is preferred when both exist). Missing
/// files are downloaded from [`MIRRORS`] first if `allow_download` is true; otherwise the
/// error lists them. All four headers are read and checked before any cross-check: the image
/// and label counts of each split must be equal, and training and test images of the same size.
/// A header costs a few bytes to read even of a gzip file, so a hostile header is refused (or,
/// if consistent, reported in the sizes, e.g. [`SplitInfo::pixel_bytes`]) before its payload
/// costs any memory or time.
pub fn inspect(dir: &Path, allow_download: bool) -> Result<DatasetInfo, LoadError> {
    let missing: Vec<String> = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
        .into_iter()
        .filter(|name| locate(dir, name).is_none())
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        if !(allow_download && cfg!(feature = "download")) {
            return Err(LoadError::Missing { dir: dir.to_owned(), files: missing });
        }
        #[cfg(feature = "download")]
        download(dir, MIRRORS)?;
    }
    // Every header first, then the cross-checks; no payload is read.
    let train_images = ImageFile::open(&require(dir, TRAIN_IMAGES)?)?;
    let train_labels = LabelFile::open(&require(dir, TRAIN_LABELS)?)?;
    let test_images = ImageFile::open(&require(dir, TEST_IMAGES)?)?;
    let test_labels = LabelFile::open(&require(dir, TEST_LABELS)?)?;
    let (train, test) = cross_check([&train_images, &test_images], [&train_labels, &test_labels])?;
    Ok(DatasetInfo { dir: dir.to_owned(), train, test, num_classes: NUM_CLASSES })
}

/// The two splits' headers cross-checked: as many labels as images in each, and training and
/// test images of the same size.
fn cross_check(images: [&ImageFile; 2], labels: [&LabelFile; 2]) -> Result<(SplitInfo, SplitInfo), LoadError> {
    let train = SplitInfo::from_headers(images[0], labels[0])?;
    let test = SplitInfo::from_headers(images[1], labels[1])?;
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(LoadError::Mismatch {
            first: train.images_path,
            second: test.images_path,
            fault: format!(
                "training images are {}x{} pixels but test images are {}x{}",
                train.rows, train.cols, test.rows, test.cols
            ),
        });
    }
    Ok((train, test))
}

/// The four files already in memory (fetched by a web page, say), in the order training
/// images, training labels, test images, test labels, each raw or gzip and named by its
/// path or URL in errors: the checks of [`inspect`] and [`SplitInfo::read`], then the first
/// `limits` samples of each split (all when None).
pub fn load_bytes(files: [(PathBuf, Vec<u8>); 4], limits: [Option<usize>; 2]) -> Result<Dataset, LoadError> {
    let [train_images, train_labels, test_images, test_labels] = files;
    let train_images = ImageFile::from_bytes(&train_images.0, train_images.1)?;
    let train_labels = LabelFile::from_bytes(&train_labels.0, train_labels.1)?;
    let test_images = ImageFile::from_bytes(&test_images.0, test_images.1)?;
    let test_labels = LabelFile::from_bytes(&test_labels.0, test_labels.1)?;
    let (train, test) = cross_check([&train_images, &test_images], [&train_labels, &test_labels])?;
    let train = train.read_opened(train_images, train_labels, limits[0])?;
    let test = test.read_opened(test_images, test_labels, limits[1])?;
    Ok(Dataset { train, test, num_classes: NUM_CLASSES })
}

/// Loads the training and test splits from `dir` whole: [`inspect`], then
/// [`SplitInfo::read`] of each split with no limit. Check [`SplitInfo::pixel_bytes`] first
/// (through [`inspect`]) where the directory is not trusted to hold data of a sensible size.
pub fn load(dir: &Path, allow_download: bool) -> Result<Dataset, LoadError> {
    let info = inspect(dir, allow_download)?;
    let train = info.train.read(None)?;
    let test = info.test.read(None)?;
    Ok(Dataset { train, test, num_classes: info.num_classes })
}
