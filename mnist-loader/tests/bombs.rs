//! Decompression bombs: legal gzip files of about 1.5 MB whose headers declare 2,000,000 images
//! of 28x28 zeros (about 1.5 GB once decompressed). Inconsistent with their label file they are
//! refused from the headers alone; consistent, their size is reported without decompressing them
//! and a prefix of them can be read, all in bounded time and memory.
//!
//! The scenarios run in child processes (this test binary run again, on `bomb_child` alone), so
//! that their peak memory can be measured apart from the parent's with
//! `getrusage(RUSAGE_CHILDREN)`. This file holds no other test that starts processes, so those
//! children are the only ones that call sees. Linux only: elsewhere `ru_maxrss` has other units
//! or no `getrusage` exists.

#![cfg(target_os = "linux")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mnist_loader::{inspect, load, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use test_support::{children_peak_rss_kib, own_peak_rss_kib, write_gzip_idx};

/// Set in a child to the scenario it runs.
const SCENARIO_ENV: &str = "MNIST_LOADER_BOMB_SCENARIO";
/// Set in a child to the data directory of its scenario.
const DIR_ENV: &str = "MNIST_LOADER_BOMB_DIR";
const CHILD_TEST: &str = "bomb_child";

const BOMB_IMAGES: usize = 2_000_000;
const SIDE: usize = 28;
/// The label count of the inconsistent scenario, MNIST's.
const FEW_LABELS: usize = 60_000;
const PREFIX: usize = 1000;

/// Peak resident memory allowed to a child, in KiB (`ru_maxrss` is in KiB on Linux): 300 MB.
const MAX_PEAK_RSS_KIB: i64 = 300_000_000 / 1024;
/// Time allowed to the work of one scenario, measured in the child.
const MAX_SCENARIO_TIME: Duration = Duration::from_secs(3);
/// Time allowed to one child process, start and exit included.
const MAX_CHILD_TIME: Duration = Duration::from_secs(10);

fn images_header(count: usize) -> [u32; 4] {
    [0x803, count as u32, SIDE as u32, SIDE as u32]
}

fn write_images(dir: &Path, name: &str, count: usize) -> u64 {
    write_gzip_idx(&dir.join(format!("{name}.gz")), &images_header(count), count * SIDE * SIDE, 0)
}

fn write_labels(dir: &Path, name: &str, count: usize) -> u64 {
    write_gzip_idx(&dir.join(format!("{name}.gz")), &[0x801, count as u32], count, 0)
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("mnist-loader-bombs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn decompression_bombs_cost_bounded_memory_and_time() {
    let root = TempDir::new();
    let started = Instant::now();
    let bomb = root.0.join("bomb.gz");
    let bomb_len = write_gzip_idx(&bomb, &images_header(BOMB_IMAGES), BOMB_IMAGES * SIDE * SIDE, 0);
    for (scenario, labels) in [("inconsistent", FEW_LABELS), ("consistent", BOMB_IMAGES)] {
        let dir = root.0.join(scenario);
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(&bomb, dir.join(format!("{TRAIN_IMAGES}.gz"))).unwrap();
        write_labels(&dir, TRAIN_LABELS, labels);
        write_images(&dir, TEST_IMAGES, 10);
        write_labels(&dir, TEST_LABELS, 10);
    }
    let declared = (BOMB_IMAGES * SIDE * SIDE) as u64;
    // Legal gzip: no more than DEFLATE's 1032:1 of the declared payload; a bomb: at least 500:1.
    assert!(bomb_len * 1032 >= declared && bomb_len * 500 <= declared, "bomb of {bomb_len} bytes");
    writeln!(
        std::io::stderr(),
        "bombs: {bomb_len} bytes of gzip declaring {declared} bytes, written in {:.1?}",
        started.elapsed()
    )
    .unwrap();

    for scenario in ["inconsistent", "consistent"] {
        let started = Instant::now();
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads=1"])
            .env(SCENARIO_ENV, scenario)
            .env(DIR_ENV, root.0.join(scenario))
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let peak = children_peak_rss_kib();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Memory and time first: a child that failed for running out of them says so.
        assert!(peak > 0, "no peak RSS reported for the {scenario} child");
        assert!(
            peak < MAX_PEAK_RSS_KIB,
            "{scenario}: peak RSS {peak} KiB, over {MAX_PEAK_RSS_KIB} KiB:\n{stdout}\n{stderr}"
        );
        assert!(elapsed < MAX_CHILD_TIME, "{scenario}: the child took {elapsed:.2?}:\n{stdout}\n{stderr}");
        assert!(output.status.success(), "{scenario} child failed ({}):\n{stdout}\n{stderr}", output.status);
        // With a wrong test name libtest would run nothing and succeed: the child says it ran.
        let done = format!("bomb scenario {scenario} done");
        let line = stdout.lines().find_map(|line| line.find(&done).map(|at| &line[at..]));
        let line = line.unwrap_or_else(|| panic!("the {scenario} child did not run:\n{stdout}\n{stderr}"));
        writeln!(std::io::stderr(), "{line}; child process {elapsed:.2?}; peak RSS of the children so far {peak} KiB")
            .unwrap();
    }
}

/// One bomb scenario, in a child process started by `decompression_bombs_cost_bounded_memory_and_time`
/// (ignored otherwise: it is no test on its own).
#[test]
#[ignore = "a child process of decompression_bombs_cost_bounded_memory_and_time, which runs it"]
fn bomb_child() {
    let scenario = std::env::var(SCENARIO_ENV).expect("started by its parent test, which sets the scenario");
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("the data directory"));
    let started = Instant::now();
    match scenario.as_str() {
        "inconsistent" => {
            for result in [inspect(&dir, false).map(drop), load(&dir, false).map(drop)] {
                let message = result.expect_err("inconsistent counts").to_string();
                assert!(message.contains(&format!("{BOMB_IMAGES} images but {FEW_LABELS} labels")), "{message}");
                assert!(message.contains(TRAIN_IMAGES) && message.contains(TRAIN_LABELS), "{message}");
            }
        }
        "consistent" => {
            let info = inspect(&dir, false).unwrap();
            assert_eq!((info.train.count, info.train.rows, info.train.cols), (BOMB_IMAGES, SIDE, SIDE));
            assert_eq!(info.train.pixel_bytes(), (BOMB_IMAGES * SIDE * SIDE) as u64);
            let prefix = info.train.read(Some(PREFIX)).unwrap();
            assert_eq!(prefix.count, PREFIX);
            assert_eq!(prefix.images.len(), PREFIX * SIDE * SIDE);
            assert!(prefix.images.iter().all(|&p| p == 0));
            assert_eq!(prefix.labels, vec![0; PREFIX]);
        }
        other => panic!("unknown scenario {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(elapsed < MAX_SCENARIO_TIME, "{scenario}: {elapsed:.2?}");
    println!("bomb scenario {scenario} done in {elapsed:.2?}, own peak RSS {} KiB", own_peak_rss_kib());
}
