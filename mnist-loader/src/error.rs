//! The one error type of the crate; every message names the file or directory at fault.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the data set could not be loaded or downloaded.
#[derive(Debug)]
pub enum LoadError {
    /// A file or directory could not be opened, read or written.
    Io { path: PathBuf, source: io::Error },
    /// A file is not a well-formed IDX file of the expected kind.
    Format { path: PathBuf, fault: String },
    /// Two well-formed files that belong together disagree (counts, image sizes).
    Mismatch { first: PathBuf, second: PathBuf, fault: String },
    /// Files are absent from the data directory and downloading was not allowed.
    Missing { dir: PathBuf, files: Vec<String> },
    /// Every mirror failed for one file; `attempts` holds each URL with its failure.
    Download { destination: PathBuf, attempts: Vec<(String, String)> },
}

impl LoadError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        LoadError::Io { path: path.into(), source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, fault: impl Into<String>) -> Self {
        LoadError::Format { path: path.into(), fault: fault.into() }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(f, "{}: file not found", path.display())
            }
            LoadError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LoadError::Format { path, fault } => write!(f, "{}: {fault}", path.display()),
            LoadError::Mismatch { first, second, fault } => {
                write!(f, "{} and {} do not belong together: {fault}", first.display(), second.display())
            }
            LoadError::Missing { dir, files } => write!(
                f,
                "MNIST files missing from {}: {} (each may be gzip-compressed as NAME.gz or \
                 uncompressed as NAME). Pass --data-dir with the directory that holds them, \
                 set MNIST_DIR, or allow the download.",
                dir.display(),
                files.join(", ")
            ),
            LoadError::Download { destination, attempts } => {
                write!(f, "could not download {}", destination.display())?;
                if attempts.is_empty() {
                    write!(f, ": no mirror URLs were given.")?;
                } else {
                    write!(f, "; tried:")?;
                    for (url, reason) in attempts {
                        write!(f, "\n  {url}: {reason}")?;
                    }
                }
                write!(
                    f,
                    "\nDownload the file by hand and save it as {}, or point --data-dir or \
                     MNIST_DIR at a directory that already holds the MNIST files.",
                    destination.display()
                )
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
