//! Downloading the four MNIST .gz files, checked against their published MD5 sums.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use crate::{locate, LoadError, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};

/// Mirrors of the original MNIST files, in the order torchvision tries them.
pub const MIRRORS: &[&str] = &["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"];

/// MD5 of each original .gz file, as published with the data set.
const CHECKSUMS: [(&str, &str); 4] = [
    (TRAIN_IMAGES, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    (TRAIN_LABELS, "d53e105ee54ea40749a09fcbcd1e9432"),
    (TEST_IMAGES, "9fb629c4189551a2d022fa330f9573f3"),
    (TEST_LABELS, "ec29112dd5afa0611ce80d1b7f02629c"),
];

/// The largest MNIST file is about 10 MB; a server sending far more is not serving MNIST,
/// and is stopped before it fills the disk.
const MAX_DOWNLOAD_BYTES: u64 = 64 << 20;

/// Downloads into `dir` each of the four MNIST .gz files that `dir` lacks (in either form,
/// `NAME.gz` or `NAME`), trying `mirrors` (base URLs) in order for each file.
///
/// Each file is checked against its published MD5 and only then renamed into place from a
/// temporary file in `dir`, so a failed or corrupt download leaves nothing behind. A progress
/// bar is drawn when stderr is a terminal. Files already present are neither fetched nor
/// checksummed, so other IDX data sets can stand in for MNIST.
pub fn download(dir: &Path, mirrors: &[&str]) -> Result<(), LoadError> {
    fs::create_dir_all(dir).map_err(|e| LoadError::io(dir, e))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // Catches a stalled transfer without limiting a slow but steady one.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    for (name, md5) in CHECKSUMS {
        if locate(dir, name).is_some() {
            continue;
        }
        let file_name = format!("{name}.gz");
        let destination = dir.join(&file_name);
        let mut attempts = Vec::new();
        for mirror in mirrors {
            let url = join_url(mirror, &file_name);
            match fetch_verified(&agent, &url, &destination, md5) {
                Ok(()) => break,
                Err(reason) => attempts.push((url, reason)),
            }
        }
        if attempts.len() == mirrors.len() {
            return Err(LoadError::Download { destination, attempts });
        }
    }
    Ok(())
}

fn join_url(base: &str, file_name: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{file_name}")
    } else {
        format!("{base}/{file_name}")
    }
}

/// Removes a temporary file when dropped, unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Nothing useful to do if removal fails; the original error is reported instead.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Downloads `url` to `destination` if its MD5 is `expected_md5`; on failure returns why,
/// in words, and leaves no file behind.
fn fetch_verified(agent: &ureq::Agent, url: &str, destination: &Path, expected_md5: &str) -> Result<(), String> {
    let response = agent.get(url).call().map_err(|e| e.to_string())?;
    let content_length = response.body().content_length();
    let mut body = response.into_body().into_reader().take(MAX_DOWNLOAD_BYTES + 1);

    let file_name = destination.file_name().unwrap_or_default().to_string_lossy();
    // Same directory as the destination, so the final rename cannot cross file systems.
    let mut temp = TempFile {
        path: destination.with_file_name(format!(".{file_name}.{}.part", std::process::id())),
        persisted: false,
    };
    let local_error = |e: io::Error| format!("cannot write {}: {e}", temp.path.display());
    let mut file = File::create(&temp.path).map_err(local_error)?;

    let progress = progress_bar(content_length, &file_name);
    let mut hasher = Md5::new();
    let mut received: u64 = 0;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let read = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("transfer failed after {received} bytes: {e}")),
        };
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).map_err(local_error)?;
        received += read as u64;
        progress.inc(read as u64);
    }
    progress.finish_and_clear();
    if received > MAX_DOWNLOAD_BYTES {
        return Err(format!("the server sent more than {MAX_DOWNLOAD_BYTES} bytes, far more than the MNIST file"));
    }
    let actual_md5 = to_hex(&hasher.finalize());
    if actual_md5 != expected_md5 {
        return Err(format!(
            "checksum mismatch: the {received} bytes received have MD5 {actual_md5}, \
             expected {expected_md5}"
        ));
    }
    file.sync_all().map_err(local_error)?;
    drop(file);
    fs::rename(&temp.path, destination)
        .map_err(|e| format!("cannot move {} to {}: {e}", temp.path.display(), destination.display()))?;
    temp.persisted = true;
    Ok(())
}

fn progress_bar(content_length: Option<u64>, file_name: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match content_length {
        Some(len) => (ProgressBar::new(len), "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"),
        None => (ProgressBar::new_spinner(), "{msg} {spinner} {bytes} {bytes_per_sec}"),
    };
    let style = ProgressStyle::with_template(template).expect("progress template is valid");
    bar.with_style(style).with_message(format!("downloading {file_name}"))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
