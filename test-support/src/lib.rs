//! Helpers the test suites of every crate share. Without the `gpu` feature it has no GPU
//! dependency (the loader's tests use it so); with it, `gpu` holds the GPU tests' helpers.

#[cfg(feature = "gpu")]
pub mod gpu;

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Names a file to which every skipped check appends a line; `.ci/run` sets it and fails when
/// the file is not empty, since CI must run everything.
pub const SKIP_LOG_ENV: &str = "ENGINE_SKIP_LOG";

/// Reports that `what` was skipped and why, where `cargo test` shows it (straight to stderr:
/// libtest captures only the print macros) and in the skip log when one is set.
pub fn skipped(what: &str, why: &str) {
    record_skip(&format!("SKIPPED {what}: {why}"), std::env::var_os(SKIP_LOG_ENV).as_deref().map(Path::new));
}

fn record_skip(line: &str, log: Option<&Path>) {
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(path) = log {
        // One write of the whole line, so lines of tests running in parallel do not mix.
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
        let written = file.and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        written.unwrap_or_else(|e| panic!("cannot append to the skip log {}: {e}", path.display()));
    }
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("a test").to_string()
}

/// The four MNIST files, gzip-compressed under their standard names.
const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// The real MNIST files: in `$MNIST_DIR` when it is set and not empty, else beside the checkout
/// (`../shared/mnist`). When one is absent the test fails saying where it looked, unless
/// `MNIST_SKIP_REAL=1`, when the skip is reported and the answer is None.
pub fn real_mnist_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MNIST_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/mnist"),
    };
    let missing: Vec<&str> = MNIST_FILES.into_iter().filter(|name| !dir.join(name).is_file()).collect();
    if missing.is_empty() {
        return Some(dir.canonicalize().unwrap_or(dir));
    }
    let reason = format!("the real MNIST files are not in {} (missing: {})", dir.display(), missing.join(", "));
    if std::env::var("MNIST_SKIP_REAL").as_deref() == Ok("1") {
        skipped(&test_name(), &format!("{reason}; MNIST_SKIP_REAL=1 is set"));
        return None;
    }
    panic!("{reason}; put the four .gz files there, or set MNIST_SKIP_REAL=1 to skip the tests that need them");
}

/// Writes a gzip IDX file: `header` (big-endian u32 fields), then `payload` bytes of `fill`,
/// streamed through the encoder so that a decompression bomb's payload is never held in memory.
/// Returns the size of the file.
pub fn write_gzip_idx(path: &Path, header: &[u32], payload: usize, fill: u8) -> u64 {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = GzEncoder::new(file, Compression::default());
    for field in header {
        encoder.write_all(&field.to_be_bytes()).unwrap();
    }
    let chunk = vec![fill; 1 << 20];
    let mut left = payload;
    while left > 0 {
        let n = left.min(chunk.len());
        encoder.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    encoder.finish().unwrap().into_inner().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// The largest peak resident memory, in KiB, of the child processes this process has waited
/// for (Linux: elsewhere `ru_maxrss` has other units).
#[cfg(target_os = "linux")]
pub fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes the struct it is given, which is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let status = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(status, 0, "getrusage failed: {}", std::io::Error::last_os_error());
    usage.ru_maxrss
}

/// This process's own peak resident memory, in KiB (Linux).
#[cfg(target_os = "linux")]
pub fn own_peak_rss_kib() -> i64 {
    // SAFETY: as above.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_maxrss
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_skip_is_appended_to_the_log() {
        let path = std::env::temp_dir().join(format!("skip-log-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        super::record_skip("SKIPPED one: why", Some(&path));
        super::record_skip("SKIPPED two: why", Some(&path));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "SKIPPED one: why\nSKIPPED two: why\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_gzip_idx_file_holds_its_header_then_the_payload() {
        use std::io::Read;
        let path = std::env::temp_dir().join(format!("idx-test-{}.gz", std::process::id()));
        super::write_gzip_idx(&path, &[0x801, 3], 3, 7);
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, [0, 0, 8, 1, 0, 0, 0, 3, 7, 7, 7]);
        std::fs::remove_file(&path).unwrap();
    }
}
