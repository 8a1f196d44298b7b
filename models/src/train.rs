//! The training loop the three binaries share: the dataset lives on the GPU, each epoch uploads
//! only its permutation, many steps are recorded into each command buffer, and loss and accuracy
//! accumulate on the GPU, read back without stalling the queue.

use crate::Network;
use engine::graph::plan::{Feed, Parameters, Plan};
use engine::graph::Graph;
use engine::ops::gather::{GpuImages, Normalization};
use engine::ops::sgd::Sgd;
use engine::ops::softmax_cross_entropy::{Metrics, METRICS_WORDS};
use engine::rng::Rng;
use engine::{AsyncRead, GpuContext, Tensor};
use mnist_loader::Split;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use web_time::Instant;

/// The inputs' normalization: MNIST's pixel mean and standard deviation, as the seed uses.
pub const MNIST_NORMALIZATION: Normalization = Normalization { mean: mnist_loader::MEAN, std: mnist_loader::STD };

/// A seeded permutation of `0..n`, the sample order of one epoch.
///
/// The same `(seed, epoch)` always gives the same order, whatever happened before (so a resumed
/// run trains on the same batches); for one seed, every epoch gets a different order.
pub fn epoch_permutation(n: u32, seed: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n).collect();
    // SplitMix64's output is a bijection of its state, so distinct epochs give distinct seeds.
    let mut rng = Rng::new(seed ^ Rng::new(epoch).next_u64());
    // Fisher–Yates.
    for i in (1..n).rev() {
        order.swap(i as usize, rng.below(i + 1) as usize);
    }
    order
}

/// The seed's recipe by default: 10 epochs, batch 64, SGD lr 0.01 momentum 0.5.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub epochs: usize,
    pub batch_size: usize,
    pub sgd: Sgd,
    pub seed: u64,
    pub norm: Normalization,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            epochs: 10,
            batch_size: 64,
            sgd: Sgd { lr: 0.01, momentum: 0.5, weight_decay: 0.0 },
            seed: 1,
            norm: MNIST_NORMALIZATION,
        }
    }
}

/// What a weights file says of the run that made it (the binaries' `--out`, the web page).
pub fn weights_metadata(network: Network, recipe: &Recipe) -> BTreeMap<String, String> {
    [
        ("network", network.name().to_string()),
        ("seed", recipe.seed.to_string()),
        ("batch_size", recipe.batch_size.to_string()),
        ("lr", recipe.sgd.lr.to_string()),
        ("momentum", recipe.sgd.momentum.to_string()),
        ("epochs", recipe.epochs.to_string()),
        ("normalization", format!("(x / 255 - {}) / {}", recipe.norm.mean, recipe.norm.std)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    pub test_correct: u32,
    pub test_count: u32,
    /// Mean over the epoch's steps of each batch's mean loss (likewise the test loss).
    pub train_loss: f64,
    pub test_loss: f64,
    pub train_correct: u32,
    pub train_count: u32,
    pub train_seconds: f64,
    pub images_per_second: f64,
    /// `confusion[label][predicted]`: test images of each class by the class predicted.
    pub confusion: Vec<Vec<u32>>,
}

impl EpochReport {
    pub fn test_accuracy(&self) -> f64 {
        100.0 * self.test_correct as f64 / self.test_count.max(1) as f64
    }

    pub fn train_accuracy(&self) -> f64 {
        100.0 * self.train_correct as f64 / self.train_count.max(1) as f64
    }

    /// The line the binaries (and the web page) print after an epoch of `epochs`.
    pub fn line(&self, epochs: usize) -> String {
        format!(
            "Accuracy on test set: {:.2}%  (epoch {}/{epochs}: train loss {:.4}, {:.1} s, {:.0} images/s)",
            self.test_accuracy(),
            self.epoch,
            self.train_loss,
            self.train_seconds,
            self.images_per_second
        )
    }
}

#[derive(Debug)]
pub enum TrainError {
    Engine(engine::Error),
    /// A buffer of the run does not fit this device; says which flag to change.
    TooLarge(String),
    /// The loss became NaN or infinite; step counts from 1 within the epoch.
    NonFinite {
        epoch: usize,
        step: usize,
    },
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Engine(e) => write!(f, "{e}"),
            TrainError::TooLarge(m) => write!(f, "too large for this device: {m}"),
            TrainError::NonFinite { epoch, step } => write!(
                f,
                "the training loss became NaN or infinite at epoch {epoch}, step {step}; training stopped. \
                 Try a smaller learning rate (--lr)"
            ),
        }
    }
}

impl std::error::Error for TrainError {}

impl From<engine::Error> for TrainError {
    fn from(e: engine::Error) -> Self {
        TrainError::Engine(e)
    }
}

/// Refuses, before anything is read or allocated, a run whose buffers this device cannot hold:
/// each split's images, labels and sample order (`(what, images, pixels an image)`), and every
/// buffer of the training and evaluation programs at `batch`. Names the flag to change.
pub fn check_device_fits(
    ctx: &GpuContext,
    graph: &Graph,
    batch: usize,
    splits: [(&str, usize, usize); 2],
) -> Result<(), TrainError> {
    let too_large = |flag: &str, e: engine::Error| TrainError::TooLarge(format!("{e}; {flag}"));
    for (what, count, image_len) in splits {
        let flag = format!("use --limit-{what} to use fewer of the {count} {what} images");
        let pixels = count.saturating_mul(image_len).div_ceil(4);
        for (len, name) in [(pixels, format!("{what} images")), (count, format!("{what} labels"))] {
            ctx.check_fits(len, &name).map_err(|e| too_large(&flag, e))?;
        }
        let order = count.div_ceil(batch).saturating_mul(batch);
        ctx.check_fits(order, &format!("{what} sample order"))
            .map_err(|e| too_large("use a smaller --batch-size", e))?;
    }
    // The convolutions put one image per workgroup along z.
    let max_batch = ctx.max_workgroups_per_dimension().min(65535) as usize;
    if batch > max_batch {
        return Err(TrainError::TooLarge(format!(
            "--batch-size {batch} is more than the {max_batch} images a step can hold; use a smaller --batch-size"
        )));
    }
    ctx.check_fits(graph.param_buffer_len(), "parameters").map_err(|e| too_large("this network is too large", e))?;
    for training in [true, false] {
        let program = engine::graph::program::Program::build(graph, batch, training)?;
        for b in &program.buffers {
            ctx.check_fits(b.len, &b.name).map_err(|e| too_large("use a smaller --batch-size", e))?;
        }
    }
    Ok(())
}

/// One split on the GPU with its order (padded to whole batches), step counter, metrics and
/// plan. The last partial batch runs through the same plan: the loss masks its padding rows.
struct Stage {
    images: GpuImages,
    order: Tensor,
    step: Tensor,
    metrics: Tensor,
    /// Each sample's predicted class, written by evaluation stages.
    predictions: Option<Tensor>,
    samples: usize,
    steps: usize,
    plan: Option<Plan>,
    /// Measured on the stage's first run; grouping steps changes no result, only the submits.
    steps_per_submit: Option<usize>,
}

impl Stage {
    fn new(ctx: &GpuContext, split: &Split, batch: usize, evaluation: bool) -> Result<Stage, TrainError> {
        let steps = split.count.div_ceil(batch);
        let mut order: Vec<u32> = (0..split.count as u32).collect();
        order.resize(steps * batch, 0);
        Ok(Stage {
            images: GpuImages::upload(ctx, &split.images, &split.labels, split.image_len())?,
            order: ctx.upload(&order, "order")?,
            step: ctx.zeros(1, "step")?,
            metrics: Feed::new_metrics(ctx)?,
            predictions: if evaluation { Some(ctx.zeros(split.count, "predictions")?) } else { None },
            samples: split.count,
            steps,
            plan: None,
            steps_per_submit: None,
        })
    }

    fn feed(&self, norm: Normalization) -> Feed<'_> {
        Feed {
            images: &self.images,
            order: &self.order,
            step: &self.step,
            metrics: &self.metrics,
            predictions: self.predictions.as_ref(),
            samples: self.samples,
            norm,
        }
    }

    fn reset(&self, ctx: &GpuContext) {
        ctx.write(&self.step, &[0u32]);
        ctx.write(&self.metrics, &[0u32; METRICS_WORDS]);
    }
}

/// How many submissions may be queued ahead of the GPU before the host waits.
const MAX_IN_FLIGHT: usize = 2;
/// Steps between progress reads (at the end of the submission that reaches them).
const REPORT_EVERY: usize = 25;
/// The GPU time one submission aims at: long enough that the cost of a submission is small
/// beside it, and well under the second or two after which desktop drivers and browsers reset a
/// device whose work does not finish.
pub const SUBMIT_SECONDS: f64 = 0.25;
const MAX_STEPS_PER_SUBMIT: usize = 256;

/// Steps recorded into one submission when a step takes `step_seconds`.
pub fn steps_per_submit(step_seconds: f64) -> usize {
    ((SUBMIT_SECONDS / step_seconds.max(1e-6)) as usize).clamp(1, MAX_STEPS_PER_SUBMIT)
}

pub struct Trainer<'a> {
    ctx: &'a GpuContext,
    recipe: Recipe,
    pub params: Parameters,
    train: Stage,
    test: Stage,
    train_count: usize,
    test_labels: Vec<u8>,
    classes: usize,
}

impl<'a> Trainer<'a> {
    /// Uploads both splits and the initial parameters, and builds every plan.
    pub fn new(
        ctx: &'a GpuContext,
        graph: &Graph,
        train: &Split,
        test: &Split,
        recipe: Recipe,
    ) -> Result<Trainer<'a>, TrainError> {
        let batch = recipe.batch_size;
        let image_len = train.image_len();
        check_device_fits(ctx, graph, batch, [("train", train.count, image_len), ("test", test.count, image_len)])?;
        let params = Parameters::upload(ctx, graph, &graph.init_params(recipe.seed))?;
        let mut train_stage = Stage::new(ctx, train, batch, false)?;
        train_stage.plan =
            Some(Plan::training(ctx, graph, batch, &params, recipe.sgd, &train_stage.feed(recipe.norm))?);
        let mut test_stage = Stage::new(ctx, test, batch, true)?;
        test_stage.plan = Some(Plan::evaluation(ctx, graph, batch, &params, &test_stage.feed(recipe.norm))?);
        let classes = test_stage.plan.as_ref().expect("built above").program.classes;
        Ok(Trainer {
            ctx,
            recipe,
            params,
            train: train_stage,
            test: test_stage,
            train_count: train.count,
            test_labels: test.labels.clone(),
            classes,
        })
    }

    /// The parameters and SGD velocity, read back from the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn state(&self) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        engine::block_on(self.state_async())
    }

    pub async fn state_async(&self) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        Ok((self.parameters_async().await?, self.ctx.read_async(&self.params.velocity).await?))
    }

    /// The parameters alone, read back from the GPU (weights to save or classify with).
    pub async fn parameters_async(&self) -> Result<Vec<f32>, TrainError> {
        Ok(self.ctx.read_async(&self.params.values).await?)
    }

    /// Replaces the parameters and SGD velocity (from a checkpoint).
    pub fn restore(&self, values: &[f32], velocity: &[f32]) -> Result<(), TrainError> {
        for (tensor, data) in [(&self.params.values, values), (&self.params.velocity, velocity)] {
            if tensor.len != data.len() {
                return Err(TrainError::Engine(engine::Error::Shape(format!(
                    "restoring {} values into a buffer of {}",
                    data.len(),
                    tensor.len
                ))));
            }
            self.ctx.write(tensor, data);
        }
        Ok(())
    }

    /// Runs every step of a stage, many to a submission; `on_metrics` sees progress reads (and
    /// may stop the run). The metrics are read back asynchronously, so the queue never waits for
    /// the host, except to time the first steps of a stage's first run. Every wait is an
    /// `await`, so in a browser the page stays live while the GPU works.
    async fn run_stage(
        ctx: &GpuContext,
        stage: &mut Stage,
        mut on_metrics: impl FnMut(usize, Metrics) -> Result<(), TrainError>,
    ) -> Result<Metrics, TrainError> {
        stage.reset(ctx);
        let mut reader = AsyncRead::new(ctx, &stage.metrics);
        let mut read_covers = 0;
        let mut in_flight = VecDeque::new();
        let plan = stage.plan.as_ref().expect("plans are built with their stage");
        let mut done = 0;
        while done < stage.steps {
            let per_submit = match stage.steps_per_submit {
                Some(n) => n,
                None if stage.steps - done >= 2 => {
                    // Step one warms up; step two, alone on the queue, is timed.
                    let seconds = Self::time_step(ctx, plan).await?;
                    done += 2;
                    stage.steps_per_submit = Some(steps_per_submit(seconds));
                    continue;
                }
                None => 1,
            };
            let count = per_submit.min(stage.steps - done);
            let reaches_report = (done + count) / REPORT_EVERY > done / REPORT_EVERY;
            let read = (reaches_report && !reader.pending()).then_some(&mut reader);
            if read.is_some() {
                read_covers = done + count;
            }
            in_flight.push_back(plan.submit_steps(ctx, count, read)?);
            done += count;
            if in_flight.len() > MAX_IN_FLIGHT {
                ctx.finished(in_flight.pop_front().unwrap()).await?;
            }
            if let Some(words) = reader.take::<u32>()? {
                on_metrics(read_covers, Metrics::from_words(&words))?;
            }
        }
        let words: Vec<u32> = ctx.read_async(&stage.metrics).await?;
        Ok(Metrics::from_words(&words))
    }

    /// Runs two steps, each alone on the queue, and returns the second one's wall-clock seconds.
    async fn time_step(ctx: &GpuContext, plan: &Plan) -> Result<f64, TrainError> {
        ctx.finished(plan.submit(ctx, None)?).await?;
        let start = Instant::now();
        ctx.finished(plan.submit(ctx, None)?).await?;
        Ok(start.elapsed().as_secs_f64())
    }

    /// Trains one epoch (numbered from 1), then evaluates on the test split; `progress` sees
    /// (step, steps, mean loss so far, images a second).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn epoch(
        &mut self,
        epoch: usize,
        progress: impl FnMut(usize, usize, f64, f64),
    ) -> Result<EpochReport, TrainError> {
        engine::block_on(self.epoch_async(epoch, progress))
    }

    /// [`epoch`](Self::epoch) for callers that must not block (a web page).
    pub async fn epoch_async(
        &mut self,
        epoch: usize,
        mut progress: impl FnMut(usize, usize, f64, f64),
    ) -> Result<EpochReport, TrainError> {
        let order = epoch_permutation(self.train_count as u32, self.recipe.seed, epoch as u64);
        self.ctx.write(&self.train.order, &order);
        let start = Instant::now();
        let steps = self.train.steps;
        let nonfinite =
            |m: &Metrics| m.first_nonfinite_step.map(|s| TrainError::NonFinite { epoch, step: s as usize + 1 });
        let train = Self::run_stage(self.ctx, &mut self.train, |step, m| {
            if let Some(e) = nonfinite(&m) {
                return Err(e);
            }
            let seen = m.rows as f64;
            progress(step, steps, m.loss_sum as f64 / step as f64, seen / start.elapsed().as_secs_f64());
            Ok(())
        })
        .await?;
        let train_seconds = start.elapsed().as_secs_f64();
        if let Some(e) = nonfinite(&train) {
            return Err(e);
        }
        let test = Self::run_stage(self.ctx, &mut self.test, |_, _| Ok(())).await?;
        Ok(EpochReport {
            epoch,
            test_correct: test.correct,
            test_count: test.rows,
            train_loss: train.loss_sum as f64 / steps.max(1) as f64,
            test_loss: test.loss_sum as f64 / self.test.steps.max(1) as f64,
            train_correct: train.correct,
            train_count: train.rows,
            train_seconds,
            images_per_second: train.rows as f64 / train_seconds,
            confusion: self.confusion().await?,
        })
    }

    /// The test set's confusion matrix from the predictions the evaluation wrote.
    async fn confusion(&self) -> Result<Vec<Vec<u32>>, TrainError> {
        let predictions = self.test.predictions.as_ref().expect("an evaluation stage");
        let predictions: Vec<u32> = self.ctx.read_async(predictions).await?;
        let mut confusion = vec![vec![0u32; self.classes]; self.classes];
        for (&label, &predicted) in self.test_labels.iter().zip(&predictions) {
            confusion[label as usize][predicted as usize] += 1;
        }
        Ok(confusion)
    }
}
