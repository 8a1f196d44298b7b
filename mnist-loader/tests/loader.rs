//! Tests of the `mnist-loader` crate: IDX parsing (raw and gzip), header inspection and prefix
//! reads, every kind of bad input, downloads against a local HTTP server, and the real MNIST
//! files. Decompression bombs are tested in `bombs.rs`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use mnist_loader::{
    download, inspect, load, load_bytes, read_images, read_labels, LoadError, SplitInfo, MEAN, NUM_CLASSES, STD,
    TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("mnist-loader-test-{}-{unique}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn file_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pixel(image: usize, row: usize, col: usize) -> u8 {
    ((image * 31 + row * 7 + col * 3) % 256) as u8
}

fn image_pixels(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(count * rows * cols);
    for image in 0..count {
        for row in 0..rows {
            for col in 0..cols {
                pixels.push(pixel(image, row, col));
            }
        }
    }
    pixels
}

/// An IDX image file with the given header fields and payload, which need not agree.
fn idx_images_raw(magic: u32, count: u32, rows: u32, cols: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for field in [magic, count, rows, cols] {
        bytes.extend_from_slice(&field.to_be_bytes());
    }
    bytes.extend_from_slice(payload);
    bytes
}

fn idx_images(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    let pixels = image_pixels(count, rows, cols);
    idx_images_raw(0x803, count as u32, rows as u32, cols as u32, &pixels)
}

fn idx_labels_raw(magic: u32, count: u32, labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&magic.to_be_bytes());
    bytes.extend_from_slice(&count.to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

fn labels_for(count: usize) -> Vec<u8> {
    (0..count).map(|i| (i * 3 % NUM_CLASSES) as u8).collect()
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    idx_labels_raw(0x801, labels.len() as u32, labels)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes a complete synthetic data set (gzip or raw) into `dir`.
fn write_dataset(dir: &TempDir, gz: bool, train: usize, test: usize, rows: usize, cols: usize) {
    let files = [
        (TRAIN_IMAGES, idx_images(train, rows, cols)),
        (TRAIN_LABELS, idx_labels(&labels_for(train))),
        (TEST_IMAGES, idx_images(test, rows, cols)),
        (TEST_LABELS, idx_labels(&labels_for(test))),
    ];
    for (name, bytes) in files {
        if gz {
            dir.write(&format!("{name}.gz"), &gzip(&bytes));
        } else {
            dir.write(name, &bytes);
        }
    }
}

/// The error's message, after checking that it mentions `path`'s file name and every one of
/// `words` (case-insensitively).
fn error_message<T: Debug>(result: Result<T, LoadError>, path: &Path, words: &[&str]) -> String {
    let message = result.expect_err("expected an error").to_string();
    let file_name = path.file_name().unwrap().to_string_lossy();
    assert!(message.contains(&*file_name), "message does not name {file_name}: {message}");
    for word in words {
        assert!(message.to_lowercase().contains(&word.to_lowercase()), "message does not mention {word:?}: {message}");
    }
    message
}

/// A minimal HTTP/1.1 server on 127.0.0.1 serving `routes` (path -> body) and 404 otherwise.
/// It handles one request per connection and stops when dropped or after a minute at most.
struct TestServer {
    base: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(routes: HashMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop_flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => respond(stream, &routes),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TestServer { base, stop, thread: Some(thread) }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn respond(mut stream: TcpStream, routes: &HashMap<String, Vec<u8>>) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 << 10 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match routes.get(path) {
        Some(body) => ("200 OK", body.as_slice()),
        None => ("404 Not Found", b"not found".as_slice()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// A base URL on which nothing listens: connections to it are refused.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// A file's header followed by only half of its gzip stream: the header reads fine, the payload
/// is cut short.
fn gzip_cut_in_half(bytes: &[u8]) -> Vec<u8> {
    let compressed = gzip(bytes);
    compressed[..compressed.len() / 2].to_vec()
}

/// Same sequence everywhere, no extra crate: xorshift64*.
struct TestRng(u64);

impl TestRng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing valid files

#[test]
fn reads_raw_images_and_labels() {
    let dir = TempDir::new("raw");
    let images = dir.write("images", &idx_images(5, 3, 4));
    let labels = dir.write("labels", &idx_labels(&[0, 9, 4, 1, 7]));

    let (pixels, count, rows, cols) = read_images(&images).unwrap();
    assert_eq!((count, rows, cols), (5, 3, 4));
    assert_eq!(pixels, image_pixels(5, 3, 4));
    assert_eq!(read_labels(&labels, 10).unwrap(), vec![0, 9, 4, 1, 7]);
}

#[test]
fn reads_gzip_images_and_labels() {
    let dir = TempDir::new("gzip");
    let images = dir.write("images.gz", &gzip(&idx_images(5, 3, 4)));
    // Gzip is recognised by its magic bytes, not by the name.
    let labels = dir.write("labels", &gzip(&idx_labels(&[0, 9, 4, 1, 7])));

    let (pixels, count, rows, cols) = read_images(&images).unwrap();
    assert_eq!((count, rows, cols), (5, 3, 4));
    assert_eq!(pixels, image_pixels(5, 3, 4));
    assert_eq!(read_labels(&labels, 10).unwrap(), vec![0, 9, 4, 1, 7]);
}

#[test]
fn reads_multi_member_gzip() {
    let dir = TempDir::new("multi-member");
    let bytes = idx_images(4, 2, 2);
    let mut two_members = gzip(&bytes[..10]);
    two_members.extend(gzip(&bytes[10..]));
    let path = dir.write("images.gz", &two_members);
    assert_eq!(read_images(&path).unwrap().0, image_pixels(4, 2, 2));
}

#[test]
fn load_reads_a_synthetic_dataset() {
    for gz in [false, true] {
        let dir = TempDir::new("dataset");
        write_dataset(&dir, gz, 12, 5, 6, 7);
        let data = load(dir.path(), false).unwrap();
        assert_eq!(data.num_classes, 10);
        assert_eq!((data.train.count, data.train.rows, data.train.cols), (12, 6, 7));
        assert_eq!(data.train.image_len(), 42);
        assert_eq!(data.train.images, image_pixels(12, 6, 7));
        assert_eq!(data.train.labels, labels_for(12));
        assert_eq!((data.test.count, data.test.rows, data.test.cols), (5, 6, 7));
        assert_eq!(data.test.labels, labels_for(5));
    }
}

#[test]
fn load_prefers_gz_when_both_forms_exist() {
    let dir = TempDir::new("prefer-gz");
    write_dataset(&dir, true, 4, 2, 3, 3);
    // Raw files with other contents must be ignored in favour of the .gz ones.
    dir.write(TRAIN_IMAGES, &idx_images(9, 3, 3));
    dir.write(TRAIN_LABELS, &idx_labels(&labels_for(9)));
    let data = load(dir.path(), false).unwrap();
    assert_eq!(data.train.count, 4);
}

#[test]
fn load_accepts_other_idx_datasets_without_checksums() {
    // A Fashion-MNIST-like set: right layout, contents that match no MNIST checksum. With
    // download allowed, nothing is fetched or checksummed because every file is present.
    let dir = TempDir::new("other-dataset");
    write_dataset(&dir, true, 20, 8, 28, 28);
    let data = load(dir.path(), true).unwrap();
    assert_eq!((data.train.count, data.test.count), (20, 8));
    assert_eq!(dir.file_names().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Inspecting headers, then reading whole splits or prefixes

#[test]
fn inspect_reports_the_headers_without_reading_the_payloads() {
    for gz in [false, true] {
        let dir = TempDir::new("inspect");
        write_dataset(&dir, gz, 12, 5, 6, 7);
        let suffix = if gz { ".gz" } else { "" };
        // Replace the training images by a file whose header is intact but whose payload is cut
        // short (raw: its end is filled with data past the payload instead, since a raw file too
        // short for its header is refused by the header check).
        let broken = if gz {
            gzip_cut_in_half(&idx_images(12, 6, 7))
        } else {
            let mut bytes = idx_images(12, 6, 7);
            bytes.extend_from_slice(b"trailing");
            bytes
        };
        let train_images = dir.write(&format!("{TRAIN_IMAGES}{suffix}"), &broken);

        let info = inspect(dir.path(), false).unwrap();
        assert_eq!(info.dir, dir.path());
        assert_eq!(info.num_classes, NUM_CLASSES);
        let expected_train = SplitInfo {
            images_path: train_images.clone(),
            labels_path: dir.path().join(format!("{TRAIN_LABELS}{suffix}")),
            count: 12,
            rows: 6,
            cols: 7,
        };
        assert_eq!(info.train, expected_train);
        assert_eq!((info.test.count, info.test.rows, info.test.cols), (5, 6, 7));
        assert_eq!(info.test.images_path, dir.path().join(format!("{TEST_IMAGES}{suffix}")));
        assert_eq!(info.train.image_len(), 42);
        assert_eq!(info.train.pixel_bytes(), 12 * 42);
        assert_eq!(info.test.pixel_bytes(), 5 * 42);

        // The payload fault shows only once the payload is read.
        let words: &[&str] = if gz { &["gzip", "cut short"] } else { &["goes on past"] };
        error_message(info.train.read(None), &train_images, words);
        error_message(load(dir.path(), false), &train_images, words);
        assert_eq!(info.test.read(None).unwrap().labels, labels_for(5));
    }
}

#[test]
fn inspect_refuses_a_count_mismatch_before_reading_any_payload() {
    for gz in [false, true] {
        let dir = TempDir::new("inspect-count");
        write_dataset(&dir, gz, 10, 4, 5, 5);
        let suffix = if gz { ".gz" } else { "" };
        let name = |base: &str| format!("{base}{suffix}");
        let encode = |bytes: Vec<u8>| if gz { gzip(&bytes) } else { bytes };
        // Every payload of the training split is bad: the images cut short (gzip) or followed by
        // extra data (raw), and the labels out of range. Only the counts in the headers differ.
        let images = if gz {
            gzip_cut_in_half(&idx_images(10, 5, 5))
        } else {
            let mut bytes = idx_images(10, 5, 5);
            bytes.push(0);
            bytes
        };
        let images_path = dir.write(&name(TRAIN_IMAGES), &images);
        let labels_path = dir.write(&name(TRAIN_LABELS), &encode(idx_labels(&[200; 9])));

        for result in [inspect(dir.path(), false).map(drop), load(dir.path(), false).map(drop)] {
            let message = error_message(result, &images_path, &["10 images but 9 labels", "do not belong together"]);
            assert!(message.contains(&name(TRAIN_LABELS)), "{message}");
        }

        // With the counts agreeing, the same payloads are refused, but only when read.
        dir.write(&name(TRAIN_LABELS), &encode(idx_labels(&[200; 10])));
        let info = inspect(dir.path(), false).unwrap();
        let message = info.train.read(None).unwrap_err().to_string();
        assert!(!message.contains("do not belong together"), "{message}");
        let words: &[&str] = if gz { &["gzip", "cut short"] } else { &["goes on past"] };
        error_message(info.train.read(None), &images_path, words);
        // A prefix stops short of the broken end of the images, but reads the labels.
        error_message(info.train.read(Some(2)), &labels_path, &["label 200 at index 0", "out of range"]);
    }
}

#[test]
fn inspect_refuses_train_and_test_images_of_different_sizes_before_reading_any_payload() {
    let dir = TempDir::new("inspect-size");
    write_dataset(&dir, true, 6, 3, 28, 28);
    // Test images of another size, whose gzip stream is cut short past the header.
    let test_images = dir.write(&format!("{TEST_IMAGES}.gz"), &gzip_cut_in_half(&idx_images(3, 32, 32)));
    let train_images = dir.path().join(format!("{TRAIN_IMAGES}.gz"));
    for result in [inspect(dir.path(), false).map(drop), load(dir.path(), false).map(drop)] {
        let message = error_message(result, &train_images, &["28x28", "32x32", "do not belong together"]);
        assert!(message.contains(TEST_IMAGES), "{message}");
    }
    // Of the right size, the same cut is refused when the payload is read.
    dir.write(&format!("{TEST_IMAGES}.gz"), &gzip_cut_in_half(&idx_images(3, 28, 28)));
    let info = inspect(dir.path(), false).unwrap();
    error_message(info.test.read(None), &test_images, &["gzip", "cut short"]);
    assert_eq!(info.train.read(None).unwrap().images, image_pixels(6, 28, 28));
}

#[test]
fn inspect_refuses_a_header_the_file_cannot_hold() {
    let dir = TempDir::new("inspect-capacity");
    write_dataset(&dir, false, 10, 4, 28, 28);
    // Ten images declared, one present: a raw file's size is checked with its header.
    let path = dir.write(TRAIN_IMAGES, &idx_images_raw(0x803, 10, 28, 28, &image_pixels(1, 28, 28)));
    error_message(inspect(dir.path(), false), &path, &["10 images of 28x28", "not that long"]);
    // A gzip file cannot expand by more than DEFLATE allows.
    let path = dir.write(&format!("{TRAIN_IMAGES}.gz"), &gzip(&idx_images_raw(0x803, 1 << 30, 28, 28, &[])));
    error_message(inspect(dir.path(), false), &path, &["1073741824 images", "could hold"]);
    std::fs::remove_file(dir.path().join(format!("{TRAIN_IMAGES}.gz"))).unwrap();
    dir.write(TRAIN_IMAGES, &idx_images(10, 28, 28));
    let path = dir.write(&format!("{TEST_LABELS}.gz"), &gzip(&idx_labels_raw(0x801, u32::MAX, &[1])));
    error_message(inspect(dir.path(), false), &path, &["4294967295 labels", "could hold"]);
}

#[test]
fn read_with_a_limit_returns_the_prefix_of_the_full_read() {
    for gz in [false, true] {
        let dir = TempDir::new("prefix");
        write_dataset(&dir, gz, 12, 5, 6, 7);
        let info = inspect(dir.path(), false).unwrap();
        let full = info.train.read(None).unwrap();
        assert_eq!(full.images, image_pixels(12, 6, 7));
        assert_eq!(full.labels, labels_for(12));
        for limit in [0, 1, 5, 11, 12, 13, 1000, usize::MAX] {
            let prefix = info.train.read(Some(limit)).unwrap();
            let n = limit.min(12);
            assert_eq!(prefix.count, n, "limit {limit}");
            assert_eq!((prefix.rows, prefix.cols, prefix.image_len()), (6, 7, 42));
            assert_eq!(prefix.images, full.images[..n * 42], "limit {limit}");
            assert_eq!(prefix.labels, full.labels[..n], "limit {limit}");
        }
        assert_eq!(info.train.read(Some(12)).unwrap(), full);
        assert_eq!(info.train.read(Some(99)).unwrap(), full);
        assert_eq!(info.test.read(Some(3)).unwrap().images, image_pixels(3, 6, 7));
    }
}

#[test]
fn a_prefix_read_leaves_the_rest_of_the_file_unchecked() {
    let dir = TempDir::new("prefix-unchecked");
    write_dataset(&dir, false, 4, 2, 3, 3);
    let mut images = idx_images(4, 3, 3);
    images.extend_from_slice(b"extra");
    let images_path = dir.write(TRAIN_IMAGES, &images);
    let labels_path = dir.write(TRAIN_LABELS, &idx_labels(&[1, 2, 10, 3]));
    let info = inspect(dir.path(), false).unwrap();
    // The first two labels are in range, and the extra data lies past them.
    let prefix = info.train.read(Some(2)).unwrap();
    assert_eq!((prefix.images, prefix.labels), (image_pixels(2, 3, 3), vec![1, 2]));
    // The label check applies to every label read.
    error_message(info.train.read(Some(3)), &labels_path, &["label 10 at index 2"]);
    dir.write(TRAIN_LABELS, &idx_labels(&[1, 2, 4, 3]));
    assert_eq!(info.train.read(Some(3)).unwrap().labels, vec![1, 2, 4]);
    // Reading every image reaches the end, where the extra data is found.
    for limit in [Some(4), None] {
        error_message(info.train.read(limit), &images_path, &["goes on past", "4 images of 3x3"]);
    }
}

#[test]
fn read_refuses_files_changed_since_they_were_inspected() {
    let dir = TempDir::new("changed");
    write_dataset(&dir, true, 6, 3, 4, 4);
    let info = inspect(dir.path(), false).unwrap();
    let images = dir.write(&format!("{TRAIN_IMAGES}.gz"), &gzip(&idx_images(7, 4, 4)));
    error_message(info.train.read(Some(1)), &images, &["now declares 7 images of 4x4", "6 images of 4x4", "changed"]);
    let labels = dir.write(&format!("{TEST_LABELS}.gz"), &gzip(&idx_labels(&labels_for(2))));
    error_message(info.test.read(None), &labels, &["now declares 2 labels", "changed"]);
    // A SplitInfo built by hand is held to the files just the same.
    let made_up = SplitInfo { count: 6, rows: 2, cols: 8, ..info.train.clone() };
    error_message(made_up.read(None), &images, &["now declares 7 images of 4x4", "6 images of 2x8"]);
}

// ---------------------------------------------------------------------------------------------
// Bad input: each is refused with an error naming the file and the fault

#[test]
fn rejects_a_missing_file() {
    let dir = TempDir::new("missing-file");
    let path = dir.path().join("absent-images.gz");
    error_message(read_images(&path), &path, &["not found"]);
    error_message(read_labels(&path, 10), &path, &["not found"]);
}

#[test]
fn rejects_an_empty_file() {
    let dir = TempDir::new("empty");
    for name in ["empty.gz", "empty"] {
        let path = dir.write(name, b"");
        error_message(read_images(&path), &path, &["empty"]);
        error_message(read_labels(&path, 10), &path, &["empty"]);
    }
}

#[test]
fn rejects_raw_data_named_gz() {
    let dir = TempDir::new("not-gzip");
    let path = dir.write("images.gz", &idx_images(2, 2, 2));
    error_message(read_images(&path), &path, &["not gzip", "1f 8b"]);
}

#[test]
fn rejects_a_truncated_gzip_stream() {
    let dir = TempDir::new("truncated-gzip");
    let compressed = gzip(&idx_images(50, 10, 10));
    // Cut in the middle of the deflate data, and cut only the 8-byte CRC/length trailer.
    for (name, cut) in [("half.gz", compressed.len() / 2), ("no-trailer.gz", 8)] {
        let path = dir.write(name, &compressed[..compressed.len() - cut]);
        error_message(read_images(&path), &path, &["gzip", "cut short"]);
    }
}

#[test]
fn rejects_a_header_cut_short() {
    let dir = TempDir::new("short-header");
    let bytes = idx_images(1, 2, 2);
    for len in [1, 3, 6, 15] {
        let path = dir.write(&format!("images-{len}"), &bytes[..len]);
        error_message(read_images(&path), &path, &["ends after", "cut short"]);
        let path = dir.write(&format!("images-{len}.gz"), &gzip(&bytes[..len]));
        error_message(read_images(&path), &path, &["ends after", "cut short"]);
    }
}

#[test]
fn rejects_a_wrong_magic_number() {
    let dir = TempDir::new("magic");
    let path = dir.write("images", &idx_images_raw(0x1234_0803, 1, 2, 2, &[0; 4]));
    error_message(read_images(&path), &path, &["magic number 0x12340803", "not an IDX"]);
    let path = dir.write("labels.gz", &gzip(b"PK\x03\x04 a zip file, not IDX"));
    error_message(read_labels(&path, 10), &path, &["magic number", "not an IDX"]);
}

#[test]
fn rejects_a_wrong_element_type() {
    let dir = TempDir::new("element-type");
    // 0x0D is the IDX code for 32-bit floats.
    let path = dir.write("images", &idx_images_raw(0x0D03, 1, 2, 2, &[0; 16]));
    error_message(read_images(&path), &path, &["element type 0x0d", "unsigned bytes"]);
}

#[test]
fn rejects_a_label_file_read_as_images_and_vice_versa() {
    let dir = TempDir::new("swapped");
    let labels = dir.write("labels", &idx_labels(&[1, 2, 3]));
    error_message(read_images(&labels), &labels, &["0x00000801", "dimensions"]);
    let images = dir.write("images", &idx_images(1, 2, 2));
    error_message(read_labels(&images, 10), &images, &["0x00000803", "dimensions"]);
}

#[test]
fn rejects_an_absurd_image_count() {
    let dir = TempDir::new("absurd-count");
    let bytes = idx_images_raw(0x803, u32::MAX, 28, 28, &[0; 784]);
    let path = dir.write("images", &bytes);
    error_message(read_images(&path), &path, &["4294967295 images", "not that long"]);
    let path = dir.write("images.gz", &gzip(&bytes));
    error_message(read_images(&path), &path, &["4294967295 images", "could hold"]);
    let path = dir.write("labels", &idx_labels_raw(0x801, u32::MAX, &[1, 2]));
    error_message(read_labels(&path, 10), &path, &["4294967295 labels", "not that long"]);
}

#[test]
fn rejects_absurd_image_dimensions() {
    let dir = TempDir::new("absurd-size");
    let bytes = idx_images_raw(0x803, 1, 65535, 65535, &[0; 100]);
    let path = dir.write("images", &bytes);
    error_message(read_images(&path), &path, &["65535x65535", "not that long"]);
    let path = dir.write("images.gz", &gzip(&bytes));
    error_message(read_images(&path), &path, &["65535x65535", "could hold"]);
    // A product of three u32 sizes can overflow even 64 bits.
    let bytes = idx_images_raw(0x803, u32::MAX, u32::MAX, u32::MAX, &[]);
    let path = dir.write("overflow", &bytes);
    error_message(read_images(&path), &path, &["too large", "corrupt"]);
}

#[test]
fn rejects_zero_sized_dimensions() {
    let dir = TempDir::new("zero");
    for (name, count, rows, cols) in [("no-images", 0, 28, 28), ("no-rows", 5, 0, 28)] {
        let path = dir.write(name, &idx_images_raw(0x803, count, rows, cols, &[]));
        error_message(read_images(&path), &path, &["zero-sized"]);
    }
    let path = dir.write("no-labels", &idx_labels_raw(0x801, 0, &[]));
    error_message(read_labels(&path, 10), &path, &["zero-sized"]);
}

#[test]
fn rejects_fewer_pixels_than_declared() {
    let dir = TempDir::new("few-pixels");
    // Ten images declared, one present.
    let bytes = idx_images_raw(0x803, 10, 28, 28, &image_pixels(1, 28, 28));
    let path = dir.write("images", &bytes);
    error_message(read_images(&path), &path, &["10 images of 28x28", "not that long"]);
    // Gzip cannot know the length up front, so the shortfall shows once the data ends.
    let path = dir.write("images.gz", &gzip(&bytes));
    error_message(read_images(&path), &path, &["fewer bytes than declared", "only 784"]);
}

#[test]
fn rejects_fewer_labels_than_declared() {
    let dir = TempDir::new("few-labels");
    let bytes = idx_labels_raw(0x801, 100, &[1; 60]);
    let path = dir.write("labels", &bytes);
    error_message(read_labels(&path, 10), &path, &["100 labels", "not that long"]);
    let path = dir.write("labels.gz", &gzip(&bytes));
    error_message(read_labels(&path, 10), &path, &["fewer bytes than declared", "only 60"]);
}

#[test]
fn rejects_data_past_the_declared_payload() {
    let dir = TempDir::new("trailing");
    let mut bytes = idx_images(2, 3, 3);
    bytes.extend_from_slice(b"extra");
    let path = dir.write("images", &bytes);
    error_message(read_images(&path), &path, &["goes on past", "2 images of 3x3"]);
    let path = dir.write("images.gz", &gzip(&bytes));
    error_message(read_images(&path), &path, &["goes on past"]);
    let mut bytes = idx_labels(&[1, 2]);
    bytes.push(3);
    let path = dir.write("labels", &bytes);
    error_message(read_labels(&path, 10), &path, &["goes on past", "2 labels"]);
}

#[test]
fn rejects_a_label_out_of_range() {
    let dir = TempDir::new("label-range");
    let path = dir.write("labels.gz", &gzip(&idx_labels(&[3, 9, 10, 1])));
    error_message(read_labels(&path, 10), &path, &["label 10 at index 2", "out of range"]);
    assert_eq!(read_labels(&path, 11).unwrap(), vec![3, 9, 10, 1]);
}

#[test]
fn rejects_image_and_label_counts_that_differ() {
    let dir = TempDir::new("count-mismatch");
    write_dataset(&dir, true, 10, 4, 5, 5);
    dir.write(&format!("{TEST_LABELS}.gz"), &gzip(&idx_labels(&labels_for(3))));
    let message = error_message(
        load(dir.path(), false),
        &dir.path().join(format!("{TEST_IMAGES}.gz")),
        &["4 images but 3 labels"],
    );
    assert!(message.contains(TEST_LABELS), "{message}");
}

#[test]
fn rejects_train_and_test_images_of_different_sizes() {
    let dir = TempDir::new("size-mismatch");
    write_dataset(&dir, false, 6, 3, 28, 28);
    dir.write(TEST_IMAGES, &idx_images(3, 32, 32));
    let message = error_message(load(dir.path(), false), &dir.path().join(TRAIN_IMAGES), &["28x28", "32x32"]);
    assert!(message.contains(TEST_IMAGES), "{message}");
}

#[test]
fn missing_files_are_listed_with_the_remedies() {
    let dir = TempDir::new("missing-dataset");
    dir.write(&format!("{TRAIN_IMAGES}.gz"), &gzip(&idx_images(2, 2, 2)));
    dir.write(TRAIN_LABELS, &idx_labels(&[1, 2]));
    let message = inspect(dir.path(), false).unwrap_err().to_string();
    assert_eq!(load(dir.path(), false).unwrap_err().to_string(), message);
    for expected in [TEST_IMAGES, TEST_LABELS, &dir.path().display().to_string(), "--data-dir", "MNIST_DIR", "download"]
    {
        assert!(message.contains(expected), "no {expected:?} in: {message}");
    }
    assert!(!message.contains(TRAIN_IMAGES), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Downloads

#[test]
fn download_rejects_a_checksum_mismatch_and_leaves_no_file() {
    let dir = TempDir::new("download-bad");
    let routes = HashMap::from([(format!("/mnist/{TRAIN_IMAGES}.gz"), b"this is not the MNIST file".to_vec())]);
    let server = TestServer::start(routes);
    let mirror = format!("{}mnist/", server.base);
    let message = error_message(
        download(dir.path(), &[&mirror]),
        Path::new(&format!("{TRAIN_IMAGES}.gz")),
        &["checksum mismatch", "f68b3c2dcbeaaa9fbdd348bbdeb94873", &mirror],
    );
    assert!(message.contains("by hand"), "{message}");
    assert_eq!(dir.file_names(), Vec::<String>::new(), "files left behind");
}

#[test]
fn download_failure_names_every_url_tried() {
    let dir = TempDir::new("download-fail");
    let server = TestServer::start(HashMap::new());
    let refused = closed_port_url();
    let message = error_message(
        download(dir.path(), &[&refused, &server.base]),
        Path::new(&format!("{TRAIN_IMAGES}.gz")),
        &["404", "by hand", &dir.path().display().to_string()],
    );
    for url in [&refused, &server.base] {
        assert!(message.contains(&format!("{url}{TRAIN_IMAGES}.gz")), "{message}");
    }
    assert_eq!(dir.file_names(), Vec::<String>::new(), "files left behind");
}

#[test]
fn download_falls_back_to_the_next_mirror_and_verifies() {
    let Some(real) = test_support::real_mnist_dir() else {
        return;
    };
    let names = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS].map(|n| format!("{n}.gz"));
    let routes = names.iter().map(|name| (format!("/{name}"), std::fs::read(real.join(name)).unwrap())).collect();
    let good = TestServer::start(routes);
    let not_found = TestServer::start(HashMap::new());
    let dir = TempDir::new("download-good");
    let data_dir = dir.path().join("created/by/download");

    download(&data_dir, &[&closed_port_url(), &not_found.base, &good.base]).unwrap();

    for name in &names {
        let fetched = std::fs::read(data_dir.join(name)).unwrap();
        assert!(fetched == std::fs::read(real.join(name)).unwrap(), "{name}");
    }
    let mut on_disk: Vec<String> =
        std::fs::read_dir(&data_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    on_disk.sort();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(on_disk, expected, "only the four files, no temporary files");
    assert_eq!(load(&data_dir, false).unwrap().train.count, 60000);
}

// ---------------------------------------------------------------------------------------------
// The real MNIST files

#[test]
fn real_mnist_has_the_expected_shape_and_statistics() {
    let Some(real) = test_support::real_mnist_dir() else {
        return;
    };
    let info = inspect(&real, false).unwrap();
    assert_eq!((info.train.count, info.train.rows, info.train.cols), (60000, 28, 28));
    assert_eq!((info.test.count, info.test.rows, info.test.cols), (10000, 28, 28));
    assert_eq!((info.train.pixel_bytes(), info.test.pixel_bytes()), (47_040_000, 7_840_000));
    let data = load(&real, false).unwrap();
    let (train, test) = (&data.train, &data.test);
    let prefix = info.train.read(Some(100)).unwrap();
    assert_eq!((prefix.images.as_slice(), prefix.labels.as_slice()), (&train.images[..78_400], &train.labels[..100]));
    assert_eq!((train.count, train.rows, train.cols), (60000, 28, 28));
    assert_eq!((test.count, test.rows, test.cols), (10000, 28, 28));
    assert_eq!(train.images.len(), 60000 * 784);
    assert_eq!(train.labels.len(), 60000);
    assert_eq!(train.labels[0], 5);
    assert_eq!(test.labels[0], 7);

    // MEAN and STD are the statistics of these pixels: normalizing by them gives mean 0, std 1.
    let n = train.images.len() as f64;
    let (sum, sum_sq) = train.images.iter().fold((0.0f64, 0.0f64), |(s, q), &p| {
        let v = (f64::from(p) / 255.0 - f64::from(MEAN)) / f64::from(STD);
        (s + v, q + v * v)
    });
    let mean = sum / n;
    let std = (sum_sq / n - mean * mean).sqrt();
    assert!(mean.abs() < 0.001, "mean of normalized pixels {mean}");
    assert!((std - 1.0).abs() < 0.001, "std of normalized pixels {std}");
}

// ---------------------------------------------------------------------------------------------
// Fuzzing

#[test]
fn fuzzed_headers_and_truncations_never_panic() {
    let dir = TempDir::new("fuzz");
    let images = idx_images(3, 4, 5);
    let labels = idx_labels(&[1, 2, 3]);
    let extremes = [0u32, 1, 2, 3, 255, 256, 65535, 0x7fff_ffff, u32::MAX];
    let mut rng = TestRng(0x9e37_79b9_7f4a_7c15);
    let good_images = dir.write("good-images", &images);
    let good_labels = dir.write("good-labels", &labels);
    let mut outcomes = [0usize; 2];
    let mut prefix_outcomes = [0usize; 2];
    for round in 0..3000 {
        let mut bytes = if rng.below(2) == 0 { images.clone() } else { labels.clone() };
        match rng.below(4) {
            // Random header bytes.
            0 => {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(16.min(bytes.len()));
                    bytes[at] = rng.next() as u8;
                }
            }
            // An extreme value in one 32-bit header field.
            1 => {
                let field = 4 * rng.below(bytes.len().min(16) / 4);
                let value = extremes[rng.below(extremes.len())];
                bytes[field..field + 4].copy_from_slice(&value.to_be_bytes());
            }
            // Truncation anywhere.
            2 => bytes.truncate(rng.below(bytes.len() + 1)),
            // Extra bytes at the end.
            _ => bytes.extend((0..1 + rng.below(8)).map(|_| rng.next() as u8)),
        }
        let (name, contents) = match rng.below(3) {
            0 => (format!("case-{round}"), bytes),
            1 => (format!("case-{round}.gz"), gzip(&bytes)),
            // Damage the compressed stream itself: flip a byte, or cut it.
            _ => {
                let mut compressed = gzip(&bytes);
                if rng.below(2) == 0 {
                    let at = rng.below(compressed.len());
                    compressed[at] ^= 1 << rng.below(8);
                } else {
                    compressed.truncate(rng.below(compressed.len() + 1));
                }
                (format!("case-{round}.gz"), compressed)
            }
        };
        let path = dir.write(&name, &contents);
        for ok in [read_images(&path).is_ok(), read_labels(&path, 10).is_ok()] {
            outcomes[usize::from(ok)] += 1;
        }
        // The same file as half of a split whose other half is sound, read whole or in part.
        let limit = [None, Some(0), Some(1), Some(2), Some(5)][rng.below(5)];
        let split =
            SplitInfo { images_path: path.clone(), labels_path: good_labels.clone(), count: 3, rows: 4, cols: 5 };
        let as_images = split.read(limit);
        let as_labels = SplitInfo { images_path: good_images.clone(), labels_path: path.clone(), ..split }.read(limit);
        for ok in [as_images.is_ok(), as_labels.is_ok()] {
            prefix_outcomes[usize::from(ok)] += 1;
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both outcomes occur: {outcomes:?}");
    assert!(prefix_outcomes[0] > 0 && prefix_outcomes[1] > 0, "both outcomes occur: {prefix_outcomes:?}");
}

/// The four files of `dir` as `load_bytes` takes them, named by their paths.
fn files_in(dir: &TempDir, gz: bool) -> [(PathBuf, Vec<u8>); 4] {
    [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS].map(|name| {
        let path = dir.path().join(if gz { format!("{name}.gz") } else { name.to_string() });
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    })
}

#[test]
fn load_bytes_reads_what_load_reads_and_keeps_the_prefixes_asked_for() {
    for gz in [false, true] {
        let dir = TempDir::new("bytes");
        write_dataset(&dir, gz, 12, 5, 6, 7);
        let from_files = load(dir.path(), false).unwrap();
        assert_eq!(load_bytes(files_in(&dir, gz), [None, None]).unwrap(), from_files);
        let prefix = load_bytes(files_in(&dir, gz), [Some(4), Some(50)]).unwrap();
        assert_eq!((prefix.train.count, prefix.test.count), (4, 5));
        assert_eq!(prefix.train.images, from_files.train.images[..4 * 42]);
        assert_eq!(prefix.train.labels, from_files.train.labels[..4]);
    }
}

#[test]
fn load_bytes_refuses_damaged_or_mismatched_files_with_the_loaders_messages() {
    let dir = TempDir::new("bytes-damaged");
    write_dataset(&dir, true, 10, 4, 5, 5);
    let mut files = files_in(&dir, true);
    let cut = files[2].1.len() / 2;
    files[2].1.truncate(cut);
    error_message(load_bytes(files, [None, None]), &dir.path().join(format!("{TEST_IMAGES}.gz")), &["gzip"]);
    let mut files = files_in(&dir, true);
    files[3].1 = gzip(&idx_labels(&labels_for(3)));
    error_message(
        load_bytes(files, [None, None]),
        &dir.path().join(format!("{TEST_LABELS}.gz")),
        &["4 images but 3 labels"],
    );
    let mut files = files_in(&dir, true);
    files[0].1.clear();
    error_message(load_bytes(files, [None, None]), &dir.path().join(format!("{TRAIN_IMAGES}.gz")), &["empty"]);
    let mut files = files_in(&dir, true);
    files[2].1 = gzip(&idx_images(4, 6, 6));
    error_message(load_bytes(files, [None, None]), &dir.path().join(format!("{TRAIN_IMAGES}.gz")), &["5x5", "6x6"]);
}
