//! Shared helpers for the shader unit tests and end-to-end checks.

use engine::graph::plan::{Feed, Parameters, Plan};
use engine::graph::Graph;
use engine::ops::gather::GpuImages;
use engine::ops::sgd::Sgd;
use engine::{GpuContext, Tensor};
use models::train::MNIST_NORMALIZATION;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

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
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
        let written = file.and_then(|mut f| writeln!(f, "{line}"));
        written.unwrap_or_else(|e| panic!("cannot append to the skip log {}: {e}", path.display()));
    }
}

/// Prints a line, once per test binary, where `cargo test` shows it: for what a device can or
/// cannot run, which is no skip (a kernel variant the driver lacks).
pub fn note(line: &str) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if SEEN.lock().unwrap().insert(line.to_string()) {
        let _ = writeln!(std::io::stderr(), "note: {line}");
    }
}

/// Set to 1 to let GPU tests pass (printing that they were skipped) on a machine with no adapter.
pub const SKIP_ENV: &str = "ENGINE_SKIP_GPU_TESTS";

/// The one GPU context the tests of a binary share. With no adapter this fails the test with the
/// engine's message (which says how to install a driver), unless `ENGINE_SKIP_GPU_TESTS=1`, when
/// it prints that the test was skipped and returns None.
pub fn gpu() -> Option<&'static GpuContext> {
    static CONTEXT: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    let ctx = CONTEXT.get_or_init(|| {
        let ctx = GpuContext::new().map_err(|e| e.to_string());
        if let Ok(c) = &ctx {
            note(&format!("GPU tests run on {}", c.report));
        }
        ctx
    });
    match ctx {
        Ok(c) => Some(c),
        Err(e) if std::env::var(SKIP_ENV).as_deref() == Ok("1") => {
            skipped(&test_name(), &format!("no GPU ({SKIP_ENV}=1): {e}"));
            None
        }
        Err(e) => panic!("{e}\n(set {SKIP_ENV}=1 to skip the GPU tests on a machine without one)"),
    }
}

/// The real MNIST files beside the checkout (`../shared/mnist`). When they are absent the test
/// fails saying so, unless `MNIST_SKIP_REAL=1`, when it prints that it was skipped and gets None.
pub fn real_mnist_dir() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/mnist");
    if dir.join("train-images-idx3-ubyte.gz").is_file() {
        return Some(dir);
    }
    if std::env::var("MNIST_SKIP_REAL").as_deref() == Ok("1") {
        skipped(&test_name(), &format!("real MNIST files not found in {}; MNIST_SKIP_REAL=1 is set", dir.display()));
        return None;
    }
    panic!(
        "the real MNIST files are not in {}; put the four .gz files there, or set \
         MNIST_SKIP_REAL=1 to skip the tests that need them",
        dir.display()
    );
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("a test").to_string()
}

/// Asserts |got - want| <= atol + rtol·|want| elementwise, naming the first offender.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0.0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(err.is_finite() || g == w, "{what}[{i}]: got {g}, want {w}");
        let excess = err - (atol + rtol * w.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let (i, excess) = worst;
    assert!(excess <= 0.0, "{what}[{i}]: got {}, want {} (tolerance {rtol}·|want| + {atol})", got[i], want[i]);
}

/// Central finite difference of a scalar function along coordinate `i` of `x`.
pub fn finite_difference(x: &[f32], i: usize, eps: f32, f: impl Fn(&[f32]) -> f64) -> f64 {
    let mut plus = x.to_vec();
    plus[i] += eps;
    let mut minus = x.to_vec();
    minus[i] -= eps;
    (f(&plus) - f(&minus)) / (2.0 * eps as f64)
}

/// A training plan with its own parameters, sample order, step counter and metrics.
pub struct Rig {
    pub plan: Plan,
    pub params: Parameters,
    pub metrics: Tensor,
}

impl Rig {
    /// A plan of `batch` rows training `graph` from `params` on `images` in `order` (padded to
    /// whole batches with sample 0), of which the first `samples` count.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &GpuContext,
        graph: &Graph,
        params: &[f32],
        images: &GpuImages,
        order: &[u32],
        samples: usize,
        batch: usize,
        sgd: Sgd,
    ) -> Rig {
        let mut order = order.to_vec();
        order.resize(order.len().next_multiple_of(batch), 0);
        let order = ctx.upload(&order, "order").unwrap();
        let (step, metrics) = (ctx.zeros(1, "step").unwrap(), Feed::new_metrics(ctx).unwrap());
        let feed = Feed { images, order: &order, step: &step, metrics: &metrics, samples, norm: MNIST_NORMALIZATION };
        let params = Parameters::upload(ctx, graph, params).unwrap();
        let plan = Plan::training(ctx, graph, batch, &params, sgd, &feed).unwrap();
        Rig { plan, params, metrics }
    }

    /// Records, submits and waits for one step.
    pub fn step(&self, ctx: &GpuContext) {
        self.plan.submit(ctx, 1, None).unwrap();
        ctx.wait().unwrap();
    }
}

#[cfg(test)]
mod skip_log {
    #[test]
    fn every_skip_is_appended_to_the_log() {
        let path = std::env::temp_dir().join(format!("skip-log-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        super::record_skip("SKIPPED one: why", Some(&path));
        super::record_skip("SKIPPED two: why", Some(&path));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "SKIPPED one: why\nSKIPPED two: why\n");
        std::fs::remove_file(&path).unwrap();
    }
}
