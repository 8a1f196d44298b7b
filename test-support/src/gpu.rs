//! What the GPU tests of every crate share (the `gpu` feature): one context a test binary, the
//! tolerance check, finite differences, and a training plan with its own data.

use crate::skipped;
use engine::data::{GpuSplit, LabelledImages, Normalization};
use engine::graph::plan::{Parameters, Plan, Training};
use engine::graph::Graph;
use engine::ops::optimizer::{Optimizer, OptimizerState};
use engine::GpuContext;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

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

/// Set (by `.ci/run`) to a part of the driver string, such as `Mesa 25`, that the context must
/// have opened: a stage meant for one driver then cannot run on another unnoticed.
pub const EXPECT_DRIVER_ENV: &str = "ENGINE_EXPECT_DRIVER";

/// The one GPU context the tests of a binary share. With no adapter this fails the test with the
/// engine's message (which says how to install a driver), unless `ENGINE_SKIP_GPU_TESTS=1`, when
/// it prints that the test was skipped and returns None.
pub fn gpu() -> Option<&'static GpuContext> {
    static CONTEXT: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    let ctx = CONTEXT.get_or_init(|| {
        let ctx = GpuContext::new().map_err(|e| e.to_string())?;
        note(&format!("GPU tests run on {}", ctx.report));
        match std::env::var(EXPECT_DRIVER_ENV) {
            Ok(want) if !ctx.report.driver.contains(&want) => {
                Err(format!("{EXPECT_DRIVER_ENV}={want}, but the tests opened {}", ctx.report))
            }
            _ => Ok(ctx),
        }
    });
    match ctx {
        Ok(c) => Some(c),
        Err(e) if std::env::var(SKIP_ENV).as_deref() == Ok("1") => {
            skipped(&crate::test_name(), &format!("no GPU ({SKIP_ENV}=1): {e}"));
            None
        }
        Err(e) => panic!("{e}\n(set {SKIP_ENV}=1 to skip the GPU tests on a machine without one)"),
    }
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

/// The Euclidean norm, summed in f64.
pub fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

/// Central finite difference of a scalar function along coordinate `i` of `x`.
pub fn finite_difference(x: &[f32], i: usize, eps: f32, f: impl Fn(&[f32]) -> f64) -> f64 {
    let mut plus = x.to_vec();
    plus[i] += eps;
    let mut minus = x.to_vec();
    minus[i] -= eps;
    (f(&plus) - f(&minus)) / (2.0 * eps as f64)
}

/// A training plan with its own parameters and split.
pub struct Rig {
    pub plan: Plan,
    pub params: Parameters,
    pub optimizer: OptimizerState,
    pub split: GpuSplit,
}

impl Rig {
    /// A plan of `batch` rows training `graph` from `params` on `images` (normalized with
    /// `norm`) in their order, the last batch padded.
    pub fn new(
        ctx: &GpuContext,
        graph: &Graph,
        params: &[f32],
        (images, norm): (&LabelledImages, &[Normalization]),
        batch: usize,
        optimizer: Optimizer,
    ) -> Rig {
        let split = GpuSplit::upload(ctx, images, norm, batch, false).unwrap();
        let params = Parameters::upload(ctx, graph, params).unwrap();
        let optimizer = OptimizerState::constant(ctx, optimizer, graph.trainable_len(), split.steps()).unwrap();
        // Seed 0 at the first step: dropout draws as the CPU executor does.
        let training = Training { optimizer: &optimizer, label_smoothing: 0.0, seed: 0, augment: Default::default() };
        let plan = Plan::training(ctx, graph, &params, &training, &split).unwrap();
        Rig { plan, params, optimizer, split }
    }

    /// Records, submits and waits for one step.
    pub fn step(&self, ctx: &GpuContext) {
        self.plan.submit(ctx, None).unwrap();
        ctx.wait().unwrap();
    }
}

/// The images of `set` in order, `times` over.
pub fn repeated(set: &LabelledImages, times: usize) -> LabelledImages {
    set.select(&(0..set.len() * times).map(|i| i % set.len()).collect::<Vec<_>>()).unwrap()
}
