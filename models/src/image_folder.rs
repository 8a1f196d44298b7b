//! A dataset of one's own pictures, in torchvision's `ImageFolder` layout: `DIR/train/<class>/*`
//! and `DIR/test/<class>/*`, classes sorted by name as torchvision sorts them, pictures found in
//! each class folder and below it (sorted by path) by their extension. Every picture is decoded
//! under size limits, on every core, into one u8 buffer a split: gray when every picture of the
//! dataset is gray, else RGB (transparency composited over white). All pictures must share one
//! size unless a size to resize them to is given.
//!
//! Everything that can be wrong with such a folder is refused naming the file or folder and the
//! fix, before the pixels are allocated where a picture's header shows it.

use crate::picture;
use engine::data::LabelledImages;
use image::imageops::{self, FilterType};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The extensions of the files a class folder's pictures are found by (any case): those of
/// torchvision's `IMG_EXTENSIONS` this build decodes, and the other netpbm ones.
pub const EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "bmp", "pgm", "ppm", "pnm", "pbm"];

/// The most pixel bytes a dataset may take in memory (RGB, both splits): 4 GiB.
pub const MAX_DATASET_BYTES: u64 = 4 << 30;

/// Both splits of an image folder, and the class names (sorted; a label indexes them).
pub struct FolderDataset {
    /// The pictures of `DIR/train`.
    pub train: LabelledImages,
    /// The pictures of `DIR/test`.
    pub test: LabelledImages,
    /// The class folders' names, sorted.
    pub classes: Vec<String>,
    /// The pictures each split holds, before the limits chose among them.
    pub found: [usize; 2],
}

/// What an image folder could not be read for.
#[derive(Debug)]
pub enum FolderError {
    /// The folders are not laid out as the dataset needs: `path` and what is wrong.
    Layout {
        /// The folder at fault.
        path: PathBuf,
        /// What is wrong, and the fix.
        why: String,
    },
    /// A picture could not be read: `path` and why.
    Picture {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it, and the fix.
        why: String,
    },
}

impl fmt::Display for FolderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FolderError::Layout { path, why } | FolderError::Picture { path, why } => {
                write!(f, "{}: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for FolderError {}

fn layout(path: &Path, why: impl Into<String>) -> FolderError {
    FolderError::Layout { path: path.to_owned(), why: why.into() }
}

const LAYOUT: &str = "an image folder holds DIR/train/<class>/* and DIR/test/<class>/*";

/// How an image folder is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct FolderOptions {
    /// Resize every picture to [height, width] (else all must share one size).
    pub resize: Option<[u32; 2]>,
    /// Read at most this many training and test pictures: a subset drawn with `seed` (a
    /// folder's pictures are sorted by class, so the first N would miss classes), chosen before
    /// anything is decoded.
    pub limits: [Option<usize>; 2],
    /// Seeds the subsets.
    pub seed: u64,
}

/// Reads the image folder at `dir` as `options` say; `progress(done, total)` sees the decoding
/// advance.
pub fn load(
    dir: &Path,
    options: &FolderOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<FolderDataset, FolderError> {
    let (classes, mut files) = scan(dir)?;
    let found = [files[0].len(), files[1].len()];
    for (split, limit) in files.iter_mut().zip(options.limits) {
        *split = subset(std::mem::take(split), limit, options.seed);
    }
    let resize = options.resize;
    let all: Vec<&PathBuf> = files.iter().flatten().map(|(path, _)| path).collect();
    let [height, width] = match resize {
        Some(size) => size,
        None => common_size(&all)?,
    };
    let rgb_bytes = all.len() as u64 * 3 * u64::from(height) * u64::from(width);
    if rgb_bytes > MAX_DATASET_BYTES {
        return Err(layout(
            dir,
            format!(
                "{} pictures of {height}×{width} need {} MiB, more than the {} MiB allowed; use --resize to make them \
                 smaller, or fewer pictures",
                all.len(),
                rgb_bytes >> 20,
                MAX_DATASET_BYTES >> 20
            ),
        ));
    }
    let (done, total) = (AtomicUsize::new(0), all.len());
    let tick = || progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
    let mut train = decode_all(&files[0], [height, width], resize.is_some(), &tick)?;
    let mut test = decode_all(&files[1], [height, width], resize.is_some(), &tick)?;
    let gray = train.gray && test.gray;
    let shape = [if gray { 1 } else { 3 }, height as usize, width as usize];
    let [train, test] = [&mut train, &mut test].map(|split| {
        if gray {
            keep_first_plane(&mut split.pixels, height as usize * width as usize);
        }
        let labels = std::mem::take(&mut split.labels);
        LabelledImages::new(shape, std::mem::take(&mut split.pixels), labels).expect("one image per label")
    });
    Ok(FolderDataset { train, test, classes, found })
}

/// `limit` of `files` drawn without repetition in an order seeded by `seed`, kept in their
/// order; all of them without a limit.
fn subset(files: Vec<(PathBuf, u32)>, limit: Option<usize>, seed: u64) -> Vec<(PathBuf, u32)> {
    let Some(limit) = limit.filter(|&n| n < files.len()) else { return files };
    let mut chosen = vec![false; files.len()];
    for &i in &crate::train::epoch_permutation(files.len() as u32, seed, u64::MAX)[..limit] {
        chosen[i as usize] = true;
    }
    files.into_iter().zip(chosen).filter_map(|(file, keep)| keep.then_some(file)).collect()
}

/// The sorted class names and each split's pictures with their labels, after checking the
/// layout: both splits, the same classes (at least two), a picture in every class folder.
#[allow(clippy::type_complexity)]
fn scan(dir: &Path) -> Result<(Vec<String>, [Vec<(PathBuf, u32)>; 2]), FolderError> {
    if !dir.is_dir() {
        return Err(layout(dir, format!("no such folder; {LAYOUT}")));
    }
    let splits = ["train", "test"].map(|s| dir.join(s));
    for split in &splits {
        if !split.is_dir() {
            return Err(layout(split, format!("missing; {LAYOUT}")));
        }
    }
    let [train_classes, test_classes] = [&splits[0], &splits[1]].map(|s| class_names(s));
    let (classes, test_classes) = (train_classes?, test_classes?);
    for (name, here, there) in [(&classes, &splits[0], &splits[1]), (&test_classes, &splits[1], &splits[0])]
        .into_iter()
        .flat_map(|(names, here, there)| names.iter().map(move |n| (n, here, there)))
    {
        if !there.join(name).is_dir() {
            return Err(layout(
                &there.join(name),
                format!(
                    "class `{name}` has a folder in {} but none here: both splits need the same classes",
                    here.display()
                ),
            ));
        }
    }
    if classes.len() < 2 {
        let found = classes.first().map_or("none".to_string(), |c| format!("only `{c}`"));
        return Err(layout(&splits[0], format!("a classifier needs at least two class folders, found {found}")));
    }
    let files = [&splits[0], &splits[1]].map(|split| pictures_of(split, &classes));
    let [train, test] = files;
    Ok((classes, [train?, test?]))
}

/// The names of the folders in `split`, sorted.
fn class_names(split: &Path) -> Result<Vec<String>, FolderError> {
    let entries = std::fs::read_dir(split).map_err(|e| layout(split, format!("cannot be read ({e})")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| layout(split, format!("cannot be read ({e})")))?;
        if entry.path().is_dir() {
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| layout(&entry.path(), "a class folder's name must be UTF-8"))?;
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Every picture of every class folder of `split`, labelled by the class's index.
fn pictures_of(split: &Path, classes: &[String]) -> Result<Vec<(PathBuf, u32)>, FolderError> {
    let mut out = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let folder = split.join(class);
        let mut found = Vec::new();
        walk(&folder, &mut found)?;
        if found.is_empty() {
            let kinds = EXTENSIONS.join(", ");
            return Err(layout(&folder, format!("holds no picture ({kinds}); remove the class or add its pictures")));
        }
        found.sort();
        out.extend(found.into_iter().map(|path| (path, label as u32)));
    }
    Ok(out)
}

/// Adds the pictures in `folder` and its subfolders to `found`. Links to folders are not
/// followed (a link back up would loop); links to files are.
fn walk(folder: &Path, found: &mut Vec<PathBuf>) -> Result<(), FolderError> {
    let entries = std::fs::read_dir(folder).map_err(|e| layout(folder, format!("cannot be read ({e})")))?;
    for entry in entries {
        let entry = entry.map_err(|e| layout(folder, format!("cannot be read ({e})")))?;
        let (path, is_dir) = (entry.path(), entry.file_type().is_ok_and(|t| t.is_dir()));
        if is_dir {
            walk(&path, found)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            found.push(path);
        }
    }
    Ok(())
}

/// The one size [height, width] every picture has, read from their headers; refused naming the
/// first picture of another size.
fn common_size(files: &[&PathBuf]) -> Result<[u32; 2], FolderError> {
    let sizes = parallel_map(files.to_vec(), |path| picture::dimensions(path).map_err(|why| picture_error(path, why)));
    let mut first = None;
    for (path, size) in files.iter().zip(sizes) {
        let (w, h) = size?;
        let (first_w, first_h) = *first.get_or_insert((w, h));
        if (w, h) != (first_w, first_h) {
            return Err(picture_error(
                path,
                format!(
                    "is {w}×{h} pixels but {} is {first_w}×{first_h}: all pictures must share one size; use --resize HxW",
                    files[0].display(),
                ),
            ));
        }
    }
    let (w, h) = first.expect("every split holds a picture");
    Ok([h, w])
}

fn picture_error(path: &Path, why: String) -> FolderError {
    FolderError::Picture { path: path.to_owned(), why }
}

/// One split's pictures decoded to RGB planes (CHW), their labels, and whether all are gray.
struct Decoded {
    pixels: Vec<u8>,
    labels: Vec<u32>,
    gray: bool,
}

/// Decodes every picture of a split into one buffer of [count, 3, height, width] u8, resizing
/// each to that size when `resize` (else each must have it already).
fn decode_all(
    files: &[(PathBuf, u32)],
    [height, width]: [u32; 2],
    resize: bool,
    tick: &(dyn Fn() + Sync),
) -> Result<Decoded, FolderError> {
    let image_len = 3 * height as usize * width as usize;
    let mut pixels = vec![0u8; files.len() * image_len];
    let slots: Vec<(&mut [u8], &(PathBuf, u32))> = pixels.chunks_mut(image_len).zip(files).collect();
    let results = parallel_map(slots, |(slot, (path, _))| {
        let picture = picture::decode(path).map_err(|why| picture_error(path, why))?;
        let rgba = picture::on_white(picture.to_rgba8());
        let rgba = if resize { imageops::resize(&rgba, width, height, FilterType::Triangle) } else { rgba };
        if rgba.dimensions() != (width, height) {
            let (w, h) = rgba.dimensions();
            return Err(picture_error(path, format!("is {w}×{h} pixels, not {width}×{height}; use --resize HxW")));
        }
        tick();
        Ok(picture::write_planes(&rgba, slot))
    });
    let mut gray = true;
    for result in results {
        gray &= result?;
    }
    Ok(Decoded { pixels, labels: files.iter().map(|(_, label)| *label).collect(), gray })
}

/// Keeps each image's first plane of `plane` pixels ([count, 3, plane] becomes [count, 1, plane]),
/// in place.
fn keep_first_plane(pixels: &mut Vec<u8>, plane: usize) {
    let count = pixels.len() / (3 * plane);
    for i in 1..count {
        pixels.copy_within(3 * i * plane..(3 * i + 1) * plane, i * plane);
    }
    pixels.truncate(count * plane);
    pixels.shrink_to_fit();
}

/// Threads that decode at once: every core, but at most 8, since each may hold a picture's
/// decoding (up to 160 MB), its RGBA copy (up to 256 MB) and its resized copy at the same time.
fn decoding_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// `f` of every item, consumed, on every core, in order.
fn parallel_map<T: Send, R: Send>(mut items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = decoding_threads();
    let per_thread = items.len().div_ceil(threads).max(1);
    let mut chunks = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(per_thread.min(items.len()));
        chunks.push(std::mem::replace(&mut items, rest));
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            chunks.into_iter().map(|chunk| scope.spawn(|| chunk.into_iter().map(&f).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("a decoding thread panicked")).collect()
    })
}
