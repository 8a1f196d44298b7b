//! Network weights in safetensors files, under the names and shapes of the tutorial's PyTorch
//! modules' `state_dict()` (`conv1.weight` [10, 1, 5, 5], `incep1.branch5x5_2.bias` \[24\], …):
//! what PyTorch's `safetensors.torch.save_file(model.state_dict(), path)` writes, and what the
//! golden tests' fixtures hold.
//!
//! Reading is defensive: a file larger than [`MAX_FILE_BYTES`] is refused before it is read, and
//! the `safetensors` crate checks the header's length, the tensors' offsets (in range, contiguous,
//! not overlapping) and that each shape's size matches its bytes before any tensor is copied.

use crate::files::{Fault, FileError};
use engine::graph::{Graph, Param};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a checkpoint keeps the optimizer's state, apart from the weights (which keep their
/// state_dict names, so the weights of a checkpoint load like any state_dict): under
/// [`state_prefix`], as `optimizer.exp_avg.conv1.weight`.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// The prefix of an optimizer state buffer's tensors: `optimizer.momentum_buffer.` for SGD's.
pub fn state_prefix(state: &str) -> String {
    format!("{OPTIMIZER_PREFIX}{state}.")
}

/// The largest weights file read: the tutorial's networks hold under 120,000 parameters (under
/// 1 MB in f32), so a larger file is not theirs and is refused before it costs memory.
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// A safetensors file read into memory and checked, whose tensors are taken by name.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Reads and checks the file at `path`, refusing one larger than [`MAX_FILE_BYTES`] before
    /// reading it.
    pub fn open(path: &Path) -> Result<TensorFile, FileError> {
        let io_error = |error| FileError::weights(path.to_path_buf(), Fault::Io(error));
        let file = std::fs::File::open(path).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        Self::check_size(path, size)?;
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_FILE_BYTES).read_to_end(&mut bytes).map_err(io_error)?;
        Self::from_bytes(path, bytes)
    }

    /// A file already in memory (one a user picked in a web page, say); `name` names it in errors.
    pub fn from_bytes(name: &Path, bytes: Vec<u8>) -> Result<TensorFile, FileError> {
        Self::check_size(name, bytes.len() as u64)?;
        let tensors = TensorFile { path: name.to_path_buf(), bytes };
        tensors.parsed()?;
        Ok(tensors)
    }

    fn check_size(path: &Path, size: u64) -> Result<(), FileError> {
        if size > MAX_FILE_BYTES {
            let why = format!("it has {size} bytes, more than the {MAX_FILE_BYTES} any of these networks needs");
            return Err(FileError::weights(path, Fault::Invalid(why)));
        }
        Ok(())
    }

    fn parsed(&self) -> Result<SafeTensors<'_>, FileError> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| self.invalid(e.to_string()))
    }

    fn invalid(&self, why: String) -> FileError {
        FileError::weights(self.path.clone(), Fault::Invalid(why))
    }

    fn mismatch(&self, why: String) -> FileError {
        FileError::weights(self.path.clone(), Fault::Mismatch(why))
    }

    /// The file's metadata (string pairs; PyTorch writes `{"format": "pt"}`).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let (_, metadata) = SafeTensors::read_metadata(&self.bytes).expect("checked when opened");
        metadata.metadata().clone().unwrap_or_default().into_iter().collect()
    }

    /// Every tensor's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.parsed().expect("checked when opened").names().into_iter().map(String::from).collect();
        names.sort();
        names
    }

    /// Tensor `name` of dtype `dtype`: its shape and bytes.
    fn raw(&self, name: &str, dtype: Dtype) -> Result<(Vec<usize>, &[u8]), FileError> {
        let parsed = self.parsed()?;
        let view = parsed.tensor(name).map_err(|_| self.mismatch(format!("it has no tensor `{name}`")))?;
        if view.dtype() != dtype {
            return Err(self.mismatch(format!("tensor `{name}` is {:?}, not {dtype:?}", view.dtype())));
        }
        let start = view.data().as_ptr() as usize - self.bytes.as_ptr() as usize;
        Ok((view.shape().to_vec(), &self.bytes[start..start + view.data().len()]))
    }

    /// An f32 tensor: its shape and values.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), FileError> {
        let (shape, bytes) = self.raw(name, Dtype::F32)?;
        Ok((shape, bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
    }

    /// A count (PyTorch's int64 `num_batches_tracked`, shape `[]`) as the f32 the engine keeps
    /// it in: a negative count, or one past f32's whole numbers (2^24), is refused.
    pub fn counter(&self, name: &str) -> Result<(Vec<usize>, f32), FileError> {
        let (shape, bytes) = self.raw(name, Dtype::I64)?;
        let Ok(bytes) = <[u8; 8]>::try_from(bytes) else {
            return Err(self.mismatch(format!("tensor `{name}` holds {} bytes, not one int64", bytes.len())));
        };
        match i64::from_le_bytes(bytes) {
            count @ 0..=0x100_0000 => Ok((shape, count as f32)),
            count => Err(self.mismatch(format!("tensor `{name}` counts {count}, outside 0 to 2^24"))),
        }
    }

    /// A u8 tensor: its shape and values.
    pub fn u8(&self, name: &str) -> Result<(Vec<usize>, Vec<u8>), FileError> {
        let (shape, bytes) = self.raw(name, Dtype::U8)?;
        Ok((shape, bytes.to_vec()))
    }

    /// `graph`'s packed parameters, running statistics included, from the tensors named
    /// `prefix` + each parameter's name. A missing, wrongly shaped or wrongly typed tensor is
    /// refused by name, and so is any other tensor under `prefix` (as PyTorch's
    /// `load_state_dict(strict=True)` refuses it).
    pub fn params(&self, graph: &Graph, prefix: &str) -> Result<Vec<f32>, FileError> {
        self.read(graph, prefix, false)
    }

    /// The trained part of `graph`'s packed parameters ([`Graph::trainable_len`] floats) from
    /// the tensors named `prefix` + each trained parameter's name: an optimizer's state.
    pub fn trained(&self, graph: &Graph, prefix: &str) -> Result<Vec<f32>, FileError> {
        self.read(graph, prefix, true)
    }

    fn read(&self, graph: &Graph, prefix: &str, trained_only: bool) -> Result<Vec<f32>, FileError> {
        // A network larger than any file read here cannot be in it: refused before allocating.
        if graph.param_count() as u64 * 4 > MAX_FILE_BYTES {
            let count = graph.param_count();
            return Err(
                self.mismatch(format!("the network has {count} parameters, more than any weights file read here"))
            );
        }
        let wanted = || graph.params().iter().filter(move |p| p.trainable || !trained_only);
        let len = if trained_only { graph.trainable_len() } else { graph.param_buffer_len() };
        let mut packed = vec![0.0; len];
        for p in wanted() {
            let name = format!("{prefix}{}", p.name);
            let (shape, values) = match p.counter {
                true => self.counter(&name).map(|(shape, count)| (shape, vec![count]))?,
                false => self.f32(&name)?,
            };
            if shape != p.shape {
                return Err(
                    self.mismatch(format!("tensor `{name}` has shape {shape:?}, the network needs {:?}", p.shape))
                );
            }
            packed[p.offset..p.offset + p.len()].copy_from_slice(&values);
        }
        let known = |n: &str| wanted().any(|p| n.strip_prefix(prefix) == Some(p.name.as_str()));
        // A checkpoint's optimizer state is no extra weights.
        let optimizer = |n: &str| !prefix.starts_with(OPTIMIZER_PREFIX) && n.starts_with(OPTIMIZER_PREFIX);
        let extra: Vec<String> =
            self.names().into_iter().filter(|n| n.starts_with(prefix) && !known(n) && !optimizer(n)).collect();
        if !extra.is_empty() {
            return Err(self.mismatch(format!("tensors the network does not have: {}", extra.join(", "))));
        }
        Ok(packed)
    }
}

/// A tensor to write: its name, shape and values (f32, or int64 for a counter).
pub struct Named<'a> {
    /// Its name: a prefix, then the parameter's state_dict name.
    pub name: String,
    /// Its shape, as PyTorch's.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: &'a [f32],
    /// Written as int64 (a whole-number count, PyTorch's `num_batches_tracked`).
    pub counter: bool,
}

/// `graph`'s packed `values` (running statistics included) as tensors named `prefix` + each
/// parameter's name.
pub fn named<'a>(graph: &Graph, packed: &'a [f32], prefix: &str) -> Vec<Named<'a>> {
    named_where(graph, packed, prefix, |_| true)
}

/// The trained part of `graph`'s packed values (an optimizer's state, [`Graph::trainable_len`]
/// floats) as tensors named `prefix` + each trained parameter's name.
pub fn named_trained<'a>(graph: &Graph, packed: &'a [f32], prefix: &str) -> Vec<Named<'a>> {
    named_where(graph, packed, prefix, |p| p.trainable)
}

fn named_where<'a>(graph: &Graph, packed: &'a [f32], prefix: &str, keep: fn(&Param) -> bool) -> Vec<Named<'a>> {
    graph
        .params()
        .iter()
        .filter(|p| keep(p))
        .map(|p| Named {
            name: format!("{prefix}{}", p.name),
            shape: p.shape.clone(),
            values: &packed[p.offset..p.offset + p.len()],
            counter: p.counter,
        })
        .collect()
}

/// Writes f32 tensors and string metadata as a safetensors file, atomically.
pub fn write(path: &Path, tensors: &[Named], metadata: BTreeMap<String, String>) -> Result<(), FileError> {
    let file =
        serialize(tensors, metadata).map_err(|why| FileError::weights(path.to_path_buf(), Fault::Invalid(why)))?;
    crate::files::write_atomically(path, &file)
        .map_err(|error| FileError::weights(path.to_path_buf(), Fault::Io(error)))
}

/// The bytes of a safetensors file of tensors and string metadata (what [`write()`] writes).
pub fn serialize(tensors: &[Named], metadata: BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    let bytes = |t: &Named| -> Vec<u8> {
        match t.counter {
            true => t.values.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect(),
            false => t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    };
    let bytes: Vec<Vec<u8>> = tensors.iter().map(bytes).collect();
    let views = tensors.iter().zip(&bytes).map(|(t, b)| {
        let dtype = if t.counter { Dtype::I64 } else { Dtype::F32 };
        let view = safetensors::tensor::TensorView::new(dtype, t.shape.clone(), b).expect("shape matches values");
        (t.name.clone(), view)
    });
    let file = safetensors::serialize(views, Some(metadata.into_iter().collect())).map_err(|e| e.to_string())?;
    sorted_header(file)
}

/// The file with its JSON header's keys in sorted order. safetensors writes the metadata from a
/// HashMap, whose order changes from run to run; sorted, the same weights and metadata are the
/// same bytes. The header keeps its length (the same keys and values), so nothing moves.
fn sorted_header(mut file: Vec<u8>) -> Result<Vec<u8>, String> {
    let len = u64::from_le_bytes(file[..8].try_into().expect("safetensors writes 8 bytes of length")) as usize;
    let header = &file[8..8 + len];
    let json: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let sorted = serde_json::to_vec(&json).map_err(|e| e.to_string())?;
    // safetensors pads its compact JSON with spaces to a multiple of 8 bytes.
    if sorted.len() != header.trim_ascii_end().len() {
        return Err("the sorted safetensors header changed length".into());
    }
    file[8..8 + sorted.len()].copy_from_slice(&sorted);
    Ok(file)
}
