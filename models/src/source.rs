//! Where the binaries' images come from: MNIST's IDX files (`--data-dir`), whose headers are read
//! first and whose pixels are decompressed only once the run is known to fit the device, or an
//! image folder (`--image-folder`), decoded whole (within its own memory limit) since its size
//! and classes are known only from its pictures.

use crate::cli::Args;
use crate::flags::limit_note;
use crate::image_folder::{self, FolderDataset, FolderOptions};
use crate::train::{mnist_images, MNIST_NORMALIZATION};
use engine::data::{LabelledImages, Normalization};
use engine::graph::Shape;
use indicatif::{ProgressBar, ProgressStyle};
use mnist_loader::DatasetInfo;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

/// A run's data, before its pixels are read (MNIST) or after (an image folder).
pub enum Source {
    /// The IDX files in `info.dir`, of which `counts` training and test images are used.
    Mnist {
        /// The files' headers.
        info: DatasetInfo,
        /// Training and test images used.
        counts: [usize; 2],
    },
    /// The pictures of an image folder, with their class names.
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Its decoded splits (only the pictures the limits chose).
        data: FolderDataset,
    },
}

/// How many of a split's `count` images the run uses: `limit` of them, or all (saying so when
/// the limit asked for more than there are).
fn images_used(what: &str, limit: Option<usize>, count: usize) -> usize {
    if let Some(note) = limit_note(what, limit, count) {
        println!("{note}");
    }
    limit.map_or(count, |n| n.min(count))
}

impl Source {
    /// Reads the MNIST headers, or decodes the image folder (with a progress bar on a terminal),
    /// applying `--limit-train` and `--limit-test`.
    pub fn open(args: &Args) -> Result<Source, Box<dyn std::error::Error>> {
        let Some(dir) = &args.image_folder else {
            let dir = mnist_loader::resolve_data_dir(args.data_dir.as_deref());
            let info = mnist_loader::inspect(&dir, !args.no_download)?;
            let counts = [
                images_used("train", args.limit_train, info.train.count),
                images_used("test", args.limit_test, info.test.count),
            ];
            return Ok(Source::Mnist { info, counts });
        };
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("decoding [{bar:30}] {pos}/{len} pictures").expect("a valid template"),
            );
            bar
        });
        let progress = |done: usize, total: usize| {
            if let Some(bar) = &bar {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        };
        let limits = [args.limit_train, args.limit_test];
        let options = FolderOptions { resize: args.resize.map(|(h, w)| [h, w]), limits, seed: args.seed };
        let data = image_folder::load(dir, &options, &progress)?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        images_used("train", args.limit_train, data.found[0]);
        images_used("test", args.limit_test, data.found[1]);
        Ok(Source::Folder { dir: dir.clone(), data })
    }

    /// Each image's shape.
    pub fn shape(&self) -> Shape {
        match self {
            Source::Mnist { info, .. } => [1, info.train.rows, info.train.cols],
            Source::Folder { data, .. } => data.train.shape(),
        }
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        match self {
            Source::Mnist { info, .. } => info.num_classes,
            Source::Folder { data, .. } => data.classes.len(),
        }
    }

    /// An image folder's class names (a label indexes them); None for MNIST's digits.
    pub fn class_names(&self) -> Option<Vec<String>> {
        match self {
            Source::Mnist { .. } => None,
            Source::Folder { data, .. } => Some(data.classes.clone()),
        }
    }

    /// Training and test images used.
    pub fn counts(&self) -> [usize; 2] {
        match self {
            Source::Mnist { counts, .. } => *counts,
            Source::Folder { data, .. } => [data.train.len(), data.test.len()],
        }
    }

    /// Where the images come from.
    pub fn dir(&self) -> &std::path::Path {
        match self {
            Source::Mnist { info, .. } => &info.dir,
            Source::Folder { dir, .. } => dir,
        }
    }

    /// The normalization: `--mean` and `--std` when given, else MNIST's for MNIST, else each
    /// channel's statistics over the training images (printed).
    pub fn normalization(&self, args: &Args) -> Result<Vec<Normalization>, String> {
        let channels = self.shape()[0];
        if let (Some(mean), Some(std)) = (&args.mean, &args.std) {
            if mean.len() != channels || std.len() != channels {
                return Err(format!(
                    "--mean and --std need one value per channel: the images have {channels}, --mean gives {} and \
                     --std {}",
                    mean.len(),
                    std.len()
                ));
            }
            return Ok(mean.iter().zip(std).map(|(&mean, &std)| Normalization { mean, std }).collect());
        }
        match self {
            Source::Mnist { .. } => Ok(vec![MNIST_NORMALIZATION]),
            Source::Folder { data, .. } => {
                let norm = data.train.channel_statistics();
                let list =
                    |f: fn(&Normalization) -> f32| norm.iter().map(|n| format!("{:.4}", f(n))).collect::<Vec<_>>();
                println!(
                    "normalization from the training images: --mean {} --std {}",
                    list(|n| n.mean).join(","),
                    list(|n| n.std).join(",")
                );
                Ok(norm)
            }
        }
    }

    /// What the weights' metadata says of the data: the input shape, and the class names of an
    /// image folder (as a JSON list), which `predict` prints.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let shape = self.shape().map(|d| d.to_string()).join(",");
        let mut metadata = BTreeMap::from([("input_shape".to_string(), shape)]);
        if let Source::Folder { data, .. } = self {
            metadata.insert("classes".into(), serde_json::to_string(&data.classes).expect("strings serialize"));
        }
        metadata
    }

    /// The training and test images (for MNIST, decompressed now).
    pub fn read(self) -> Result<(LabelledImages, LabelledImages), Box<dyn std::error::Error>> {
        match self {
            Source::Mnist { info, counts } => {
                let train = info.train.read(Some(counts[0]))?;
                let test = info.test.read(Some(counts[1]))?;
                Ok((mnist_images(&train), mnist_images(&test)))
            }
            Source::Folder { data, .. } => Ok((data.train, data.test)),
        }
    }
}
