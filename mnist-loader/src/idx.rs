//! Streaming reader for IDX files, raw or gzip-compressed.
//!
//! A file is opened by reading and checking only its header (for gzip, only the first few
//! decompressed bytes), including that the file could hold the payload the header declares.
//! The payload is read afterwards, whole or as a prefix of it: the reservation is bounded by
//! what the file on disk can hold, and reading stops at the requested size (plus one probe
//! byte for a whole payload), so a corrupt or hostile file costs at most its own size in memory
//! and time, and a prefix read costs only the prefix even of a decompression bomb.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};
use flate2::bufread::MultiGzDecoder;

use crate::LoadError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// IDX element type code of unsigned bytes, the only type MNIST-style data sets use.
const UNSIGNED_BYTE: u8 = 0x08;
/// DEFLATE cannot expand data by more than about 1032:1, which bounds what a gzip file can hold.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// First reservation for a gzip payload, as a multiple of the compressed size: MNIST (about 5:1)
/// fits in one allocation, while a lying header cannot make us reserve far more than the file
/// size before the bytes actually arrive.
const GZIP_RESERVE_RATIO: u64 = 8;

#[derive(Clone, Copy)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn dimensions(self) -> u8 {
        match self {
            Kind::Images => 3,
            Kind::Labels => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Images => "image",
            Kind::Labels => "label",
        }
    }

    fn magic(self) -> u32 {
        u32::from(UNSIGNED_BYTE) << 8 | u32::from(self.dimensions())
    }
}

/// An open IDX file positioned at its start, decompressing on the fly when it is gzip.
struct IdxStream {
    path: PathBuf,
    reader: Box<dyn Read>,
    gzip: bool,
    /// Most bytes the stream can still yield: exact for a raw file, the DEFLATE bound for gzip.
    capacity: u64,
    /// Most bytes to reserve for the payload before they have been read.
    reserve_limit: u64,
}

impl IdxStream {
    fn open(path: &Path) -> Result<Self, LoadError> {
        let file = File::open(path).map_err(|e| LoadError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| LoadError::io(path, e))?.len();
        Self::new(path, BufReader::new(file), file_len)
    }

    /// A file already in memory (fetched by a web page, say); `name` names it in errors.
    fn from_bytes(name: &Path, bytes: Vec<u8>) -> Result<Self, LoadError> {
        let len = bytes.len() as u64;
        Self::new(name, Cursor::new(bytes), len)
    }

    fn new(path: &Path, mut buffered: impl BufRead + 'static, file_len: u64) -> Result<Self, LoadError> {
        if file_len == 0 {
            return Err(LoadError::format(path, "the file is empty (0 bytes); download or copy it again"));
        }
        let head = buffered.fill_buf().map_err(|e| LoadError::io(path, e))?;
        // Decide by content, not by name: a raw file named .gz is the only mislabelling refused.
        let gzip = head.starts_with(&GZIP_MAGIC);
        if !gzip && path.extension().is_some_and(|ext| ext == "gz") {
            return Err(LoadError::format(
                path,
                "the name ends in .gz but the file is not gzip data (it does not start with \
                 the gzip bytes 1f 8b); download it again, or remove the .gz suffix if it is \
                 an uncompressed IDX file",
            ));
        }
        let (reader, capacity, reserve_limit): (Box<dyn Read>, _, _) = if gzip {
            (
                Box::new(MultiGzDecoder::new(buffered)),
                file_len.saturating_mul(MAX_DEFLATE_RATIO),
                file_len.saturating_mul(GZIP_RESERVE_RATIO),
            )
        } else {
            (Box::new(buffered), file_len, file_len)
        };
        Ok(IdxStream { path: path.to_owned(), reader, gzip, capacity, reserve_limit })
    }

    fn error(&self, fault: impl Into<String>) -> LoadError {
        LoadError::format(&self.path, fault)
    }

    fn read_error(&self, error: io::Error) -> LoadError {
        if self.gzip {
            self.error(format!("the gzip data is corrupt or cut short ({error}); download or copy the file again"))
        } else {
            LoadError::io(&self.path, error)
        }
    }

    /// Reads up to `len` bytes into `buffer`, fewer only where the data ends.
    fn read_into(&mut self, buffer: &mut Vec<u8>, len: u64) -> Result<(), LoadError> {
        let result = (&mut self.reader).take(len).read_to_end(buffer);
        let read = result.map_err(|e| self.read_error(e))?;
        self.capacity = self.capacity.saturating_sub(read as u64);
        Ok(())
    }

    /// Reads and checks the magic number and dimension sizes; returns the sizes.
    fn read_header(&mut self, kind: Kind) -> Result<Vec<u32>, LoadError> {
        let header_len = 4 + 4 * u64::from(kind.dimensions());
        let mut header = Vec::new();
        self.read_into(&mut header, header_len)?;
        if header.len() < 4 {
            return Err(self.error(format!(
                "the data ends after {} bytes, inside the 4-byte IDX magic number; \
                 the file is cut short",
                header.len()
            )));
        }
        let magic = BigEndian::read_u32(&header[..4]);
        let [zero_a, zero_b, element_type, dimensions] = magic.to_be_bytes();
        if zero_a != 0 || zero_b != 0 {
            return Err(self.error(format!(
                "wrong magic number 0x{magic:08x}: this is not an IDX file \
                 (an IDX {} file starts with 0x{:08x})",
                kind.name(),
                kind.magic()
            )));
        }
        if element_type != UNSIGNED_BYTE {
            return Err(self.error(format!(
                "unsupported element type 0x{element_type:02x} in magic number 0x{magic:08x}; \
                 only unsigned bytes (0x08) are supported"
            )));
        }
        if dimensions != kind.dimensions() {
            return Err(self.error(format!(
                "wrong magic number 0x{magic:08x}: {dimensions} dimensions, but an IDX {} \
                 file has {} (magic 0x{:08x}); is this the right file?",
                kind.name(),
                kind.dimensions(),
                kind.magic()
            )));
        }
        if (header.len() as u64) < header_len {
            return Err(self.error(format!(
                "the data ends after {} bytes, inside the {header_len}-byte IDX header; \
                 the file is cut short",
                header.len()
            )));
        }
        let sizes: Vec<u32> = header[4..].chunks(4).map(BigEndian::read_u32).collect();
        if sizes.contains(&0) {
            return Err(self.error(format!(
                "the header declares a zero-sized dimension ({}); \
                 an IDX {} file needs at least one item of at least one element",
                join_sizes(&sizes),
                kind.name()
            )));
        }
        Ok(sizes)
    }

    /// Refuses a payload of `len` bytes (`declared` describes it in words) that the rest of the
    /// stream cannot hold; costs nothing, so it runs as soon as the header is read.
    fn check_capacity(&self, len: u64, declared: &str) -> Result<(), LoadError> {
        if len > self.capacity {
            let room = if self.gzip {
                "which is more than the whole gzip file could hold"
            } else {
                "but the file is not that long"
            };
            return Err(self.error(format!(
                "the header declares {declared} ({len} bytes), {room}; \
                 the header is corrupt or the file is cut short"
            )));
        }
        Ok(())
    }

    /// Reads the first `len` of the `total` payload bytes the header declared (`declared`
    /// describes them in words). When that is the whole payload, also checks that the data ends
    /// there; a shorter prefix leaves the rest unread and unchecked.
    fn read_payload(&mut self, len: u64, total: u64, declared: &str) -> Result<Vec<u8>, LoadError> {
        debug_assert!(len <= total);
        let reserve = usize::try_from(len.min(self.reserve_limit)).unwrap_or(usize::MAX);
        let mut payload = Vec::new();
        payload.try_reserve_exact(reserve).map_err(|_| {
            self.error(format!("not enough memory for the {declared} ({total} bytes) its header declares"))
        })?;
        self.read_into(&mut payload, len)?;
        if (payload.len() as u64) < len {
            return Err(self.error(format!(
                "fewer bytes than declared: the header declares {declared} ({total} bytes), \
                 but only {} bytes follow; the file is cut short",
                payload.len()
            )));
        }
        if len < total {
            return Ok(payload);
        }
        // One probe byte, which also makes the gzip decoder check its CRC at the end.
        let mut probe = Vec::new();
        self.read_into(&mut probe, 1)?;
        if !probe.is_empty() {
            return Err(self.error(format!(
                "the data goes on past the {declared} ({total} bytes) its header declares; \
                 the header is wrong or the file has extra data appended"
            )));
        }
        Ok(payload)
    }
}

/// An IDX image file whose header has been read and checked (including that the file could
/// hold the declared pixels), positioned at its first pixel.
pub(crate) struct ImageFile {
    stream: IdxStream,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
}

impl ImageFile {
    /// Opens `path` and reads only its header; a gzip file is decompressed no further.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        Self::from_stream(IdxStream::open(path)?)
    }

    /// An image file already in memory; `name` names it in errors.
    pub fn from_bytes(name: &Path, bytes: Vec<u8>) -> Result<Self, LoadError> {
        Self::from_stream(IdxStream::from_bytes(name, bytes)?)
    }

    fn from_stream(mut stream: IdxStream) -> Result<Self, LoadError> {
        let sizes = stream.read_header(Kind::Images)?;
        let [count, rows, cols] = [sizes[0], sizes[1], sizes[2]].map(u64::from);
        let declared = format!("{count} images of {rows}x{cols} pixels");
        let len = count.checked_mul(rows).and_then(|n| n.checked_mul(cols));
        let len = len.and_then(|len| usize::try_from(len).ok()).ok_or_else(|| {
            stream.error(format!("the header declares {declared}, a size too large to address; the header is corrupt"))
        })?;
        stream.check_capacity(len as u64, &declared)?;
        // Each size is a factor of `len`, which fits a usize.
        Ok(ImageFile { stream, count: count as usize, rows: rows as usize, cols: cols as usize })
    }

    /// The file's path, as given to `open`.
    pub fn path(&self) -> &Path {
        &self.stream.path
    }

    /// Reads the pixels of the first `limit` images (all of them if `limit >= count`), checking
    /// for data past the payload only when reading all of them.
    pub fn read(mut self, limit: usize) -> Result<Vec<u8>, LoadError> {
        let image_len = (self.rows * self.cols) as u64;
        let total = self.count as u64 * image_len;
        let len = limit.min(self.count) as u64 * image_len;
        let declared = format!("{} images of {}x{} pixels", self.count, self.rows, self.cols);
        self.stream.read_payload(len, total, &declared)
    }
}

/// An IDX label file whose header has been read and checked, positioned at its first label.
pub(crate) struct LabelFile {
    stream: IdxStream,
    pub count: usize,
}

impl LabelFile {
    /// Opens `path` and reads only its header; a gzip file is decompressed no further.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        Self::from_stream(IdxStream::open(path)?)
    }

    /// A label file already in memory; `name` names it in errors.
    pub fn from_bytes(name: &Path, bytes: Vec<u8>) -> Result<Self, LoadError> {
        Self::from_stream(IdxStream::from_bytes(name, bytes)?)
    }

    fn from_stream(mut stream: IdxStream) -> Result<Self, LoadError> {
        let count = stream.read_header(Kind::Labels)?[0];
        stream.check_capacity(u64::from(count), &format!("{count} labels"))?;
        // A u32 fits the usize of any target with pointers of 32 bits or more.
        Ok(LabelFile { stream, count: count as usize })
    }

    /// The file's path, as given to `open`.
    pub fn path(&self) -> &Path {
        &self.stream.path
    }

    /// Reads the first `limit` labels (all of them if `limit >= count`), checking for data past
    /// the payload only when reading all of them, and that every label read is below
    /// `num_classes`.
    pub fn read(mut self, limit: usize, num_classes: usize) -> Result<Vec<u8>, LoadError> {
        let len = limit.min(self.count) as u64;
        let labels = self.stream.read_payload(len, self.count as u64, &format!("{} labels", self.count))?;
        if let Some((index, label)) = labels.iter().enumerate().find(|&(_, &label)| usize::from(label) >= num_classes) {
            return Err(self.stream.error(format!(
                "label {label} at index {index} is out of range: labels must be below the number \
                 of classes, {num_classes}; the file is corrupt or not a {num_classes}-class label file"
            )));
        }
        Ok(labels)
    }
}

fn join_sizes(sizes: &[u32]) -> String {
    let parts: Vec<String> = sizes.iter().map(u32::to_string).collect();
    parts.join(" x ")
}

/// Reads an IDX image file (magic 0x00000803), raw or gzip-compressed.
///
/// Returns `(pixels, count, rows, cols)`, pixels row-major with `rows * cols` bytes per image.
/// Refuses (never panics on) empty, truncated, mislabelled, corrupt or oversized files, and
/// files with data beyond the declared images.
pub fn read_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize), LoadError> {
    let file = ImageFile::open(path)?;
    let (count, rows, cols) = (file.count, file.rows, file.cols);
    Ok((file.read(count)?, count, rows, cols))
}

/// Reads an IDX label file (magic 0x00000801), raw or gzip-compressed, and checks that every
/// label is below `num_classes`.
pub fn read_labels(path: &Path, num_classes: usize) -> Result<Vec<u8>, LoadError> {
    let file = LabelFile::open(path)?;
    let count = file.count;
    file.read(count, num_classes)
}
