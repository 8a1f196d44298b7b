//! Files written so that a crash never leaves half of one: a temporary file beside the target,
//! synced, then renamed over it.

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
