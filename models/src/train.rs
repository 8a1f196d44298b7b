//! The training loop: any graph, a training split and optionally an evaluation split of
//! [`LabelledImages`]. The data live on the GPU, each epoch uploads only its permutation, many
//! steps are recorded into each command buffer, and loss and accuracy accumulate on the GPU,
//! read back without stalling the queue. The binaries, the examples and the web page all train
//! through it.

use crate::Network;
use engine::data::{GpuSplit, LabelledImages, Normalization};
use engine::graph::plan::{Parameters, Plan, Training};
use engine::graph::program::{Pass, Program};
use engine::graph::Graph;
use engine::ops::gather::Augment;
use engine::ops::optimizer::{Optimizer, OptimizerState, Sgd};
use engine::ops::softmax_cross_entropy::Metrics;
use engine::rng::Rng;
use engine::schedule::Schedule;
use engine::{AsyncRead, GpuContext};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use web_time::Instant;

/// The inputs' normalization: MNIST's pixel mean and standard deviation, as the tutorial uses.
pub const MNIST_NORMALIZATION: Normalization = Normalization { mean: mnist_loader::MEAN, std: mnist_loader::STD };

/// An MNIST split as the training loop takes it: 1×rows×cols images.
pub fn mnist_images(split: &mnist_loader::Split) -> LabelledImages {
    let labels = split.labels.iter().map(|&l| l as u32).collect();
    LabelledImages::new([1, split.rows, split.cols], split.images.clone(), labels)
        .expect("the loader checked that the images and labels agree")
}

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

/// How a network is trained; the tutorial's recipe by default: 10 epochs, batch 64, SGD lr
/// 0.01 momentum 0.5 at a constant learning rate, seed 1, MNIST's normalization.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// Passes over the training split.
    pub epochs: usize,
    /// Samples a step (and a step of evaluation).
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// How the learning rate (and OneCycle's momentum) moves from step to step.
    pub schedule: Schedule,
    /// The training loss's label smoothing, as PyTorch's `CrossEntropyLoss(label_smoothing)`
    /// (0 for none; the test loss is always plain cross-entropy).
    pub label_smoothing: f32,
    /// The random affine augmentation of the training images (the default: none).
    pub augment: Augment,
    /// Seeds the initial parameters, every epoch's shuffle, dropout and augmentation.
    pub seed: u64,
    /// Each input channel's mean and standard deviation (one entry per channel).
    pub norm: Vec<Normalization>,
}

impl Recipe {
    /// Each channel's mean, comma-separated, as the weights' metadata writes it.
    pub fn mean_text(&self) -> String {
        self.norm.iter().map(|n| n.mean.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Each channel's standard deviation, comma-separated.
    pub fn std_text(&self) -> String {
        self.norm.iter().map(|n| n.std.to_string()).collect::<Vec<_>>().join(",")
    }

    /// The optimizer and schedule in words, with every setting (and the epochs, where the
    /// schedule spans the run), the label smoothing and the augmentation where there are any:
    /// what a resumed run must repeat, and what the weights' metadata records.
    pub fn optimizer_text(&self) -> String {
        let mut text = optimizer_schedule_text(&self.optimizer, &self.schedule, self.epochs);
        if self.label_smoothing != 0.0 {
            text += &format!("; label_smoothing {}", self.label_smoothing);
        }
        if !self.augment.is_none() {
            let a = self.augment;
            text += &format!("; augment shift={} rotate={} scale={}", a.shift, a.rotate, a.scale);
        }
        text
    }
}

/// The optimizer and schedule of [`Recipe::optimizer_text`], without the label smoothing and the
/// augmentation.
pub fn optimizer_schedule_text(optimizer: &Optimizer, schedule: &Schedule, epochs: usize) -> String {
    let optimizer = match optimizer {
        Optimizer::Sgd(s) => {
            format!("sgd lr={} momentum={} weight_decay={} nesterov={}", s.lr, s.momentum, s.weight_decay, s.nesterov)
        }
        Optimizer::Adam(a) => format!(
            "{} lr={} betas={},{} eps={} weight_decay={}",
            optimizer.name(),
            a.lr,
            a.betas.0,
            a.betas.1,
            a.eps,
            a.weight_decay
        ),
    };
    let warmup = |w: u64| if w > 0 { format!(" warmup={w}") } else { String::new() };
    let schedule_text = match *schedule {
        Schedule::Constant { warmup: w } => format!("constant{}", warmup(w)),
        Schedule::Step { step_size, gamma, warmup: w } => {
            format!("step step_size={step_size} gamma={gamma}{}", warmup(w))
        }
        Schedule::Cosine { t_max, eta_min, warmup: w } => {
            let t_max = t_max.map_or("run".to_string(), |t| t.to_string());
            format!("cosine t_max={t_max} eta_min={eta_min}{}", warmup(w))
        }
        Schedule::OneCycle(c) => format!(
            "onecycle pct_start={} div_factor={} final_div_factor={} base_momentum={} max_momentum={}",
            c.pct_start, c.div_factor, c.final_div_factor, c.base_momentum, c.max_momentum
        ),
    };
    let span = if schedule.depends_on_length() { format!(" over {epochs} epochs") } else { String::new() };
    format!("{optimizer}; schedule {schedule_text}{span}")
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            epochs: 10,
            batch_size: 64,
            optimizer: Optimizer::Sgd(Sgd::new(0.01, 0.5)),
            schedule: Schedule::default(),
            label_smoothing: 0.0,
            augment: Augment::default(),
            seed: 1,
            norm: vec![MNIST_NORMALIZATION],
        }
    }
}

/// What a weights file says of the run that made it (the binaries' `--out`, the web page).
pub fn weights_metadata(network: Network, recipe: &Recipe) -> BTreeMap<String, String> {
    [
        ("network", network.name().to_string()),
        ("seed", recipe.seed.to_string()),
        ("batch_size", recipe.batch_size.to_string()),
        ("optimizer", recipe.optimizer_text()),
        ("lr", recipe.optimizer.lr().to_string()),
        ("epochs", recipe.epochs.to_string()),
        ("normalization", normalization_text(&recipe.norm)),
        ("mean", recipe.mean_text()),
        ("std", recipe.std_text()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `(x / 255 - mean) / std` for one channel, the means and deviations as lists for several.
fn normalization_text(norm: &[Normalization]) -> String {
    match norm {
        [one] => format!("(x / 255 - {}) / {}", one.mean, one.std),
        _ => {
            let list =
                |f: fn(&Normalization) -> f32| norm.iter().map(|n| f(n).to_string()).collect::<Vec<_>>().join(", ");
            format!("(x / 255 - mean[c]) / std[c], mean [{}], std [{}]", list(|n| n.mean), list(|n| n.std))
        }
    }
}

/// What an epoch did: the training split's loss and accuracy, the evaluation split's (zero
/// counts when there is none), the time it took.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// The epoch, numbered from 1.
    pub epoch: usize,
    /// Test images classified correctly.
    pub test_correct: u32,
    /// Test images evaluated (0 without a test split).
    pub test_count: u32,
    /// Mean over the epoch's steps of each batch's mean loss (likewise the test loss).
    pub train_loss: f64,
    /// Mean over the test split's steps of each batch's mean loss.
    pub test_loss: f64,
    /// Training images classified correctly, each by the step that trained on it (before its update).
    pub train_correct: u32,
    /// Training images the epoch stepped through.
    pub train_count: u32,
    /// Wall-clock seconds of the training pass (the evaluation excluded).
    pub train_seconds: f64,
    /// Training throughput: `train_count / train_seconds`.
    pub images_per_second: f64,
    /// `confusion[label][predicted]`: test images of each class by the class predicted.
    pub confusion: Vec<Vec<u32>>,
}

impl EpochReport {
    /// Test accuracy, in percent (0 without a test split).
    pub fn test_accuracy(&self) -> f64 {
        100.0 * self.test_correct as f64 / self.test_count.max(1) as f64
    }

    /// Training accuracy, in percent.
    pub fn train_accuracy(&self) -> f64 {
        100.0 * self.train_correct as f64 / self.train_count.max(1) as f64
    }

    /// The line the binaries (and the web page) print after an epoch of `epochs`: the test
    /// accuracy, or the training accuracy where there is no evaluation split.
    pub fn line(&self, epochs: usize) -> String {
        let accuracy = match self.test_count {
            0 => format!("Accuracy on training set: {:.2}%", self.train_accuracy()),
            _ => format!("Accuracy on test set: {:.2}%", self.test_accuracy()),
        };
        format!(
            "{accuracy}  (epoch {}/{epochs}: train loss {:.4}, {:.1} s, {:.0} images/s)",
            self.epoch, self.train_loss, self.train_seconds, self.images_per_second
        )
    }
}

/// Why training could not start or go on.
#[derive(Debug)]
pub enum TrainError {
    /// The engine failed (a device, kernel or shape error).
    Engine(engine::Error),
    /// A buffer of the run does not fit this device: what, and what would make it fit.
    TooLarge {
        /// The buffer and the limit it passes.
        limit: String,
        /// What to change.
        remedy: Remedy,
    },
    /// The loss became NaN or infinite; step counts from 1 within the epoch.
    NonFinite {
        /// The epoch, from 1.
        epoch: usize,
        /// The step within the epoch, from 1.
        step: usize,
    },
    /// The splits, recipe or graph do not go together (a label past the graph's classes, images
    /// of another shape than its input, a batch size of 0).
    Mismatch(String),
}

/// What would make a run fit the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Use fewer of a split's images: `split` is "train" or "test", `count` how many it has.
    FewerImages {
        /// Which split.
        split: &'static str,
        /// How many images it has now.
        count: usize,
    },
    /// Use a smaller batch.
    SmallerBatch,
    /// The network itself is too large for the device.
    SmallerNetwork,
}

impl fmt::Display for Remedy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remedy::FewerImages { split, count } => write!(f, "use fewer of the {count} {split} images"),
            Remedy::SmallerBatch => write!(f, "use a smaller batch size"),
            Remedy::SmallerNetwork => write!(f, "this network is too large"),
        }
    }
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Engine(e) => write!(f, "{e}"),
            TrainError::TooLarge { limit, remedy } => write!(f, "too large for this device: {limit}; {remedy}"),
            TrainError::NonFinite { epoch, step } => write!(
                f,
                "the training loss became NaN or infinite at epoch {epoch}, step {step}; training stopped. \
                 Try a smaller learning rate"
            ),
            TrainError::Mismatch(m) => write!(f, "{m}"),
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
/// each split's images, labels and sample order (`(split, images, pixels an image)`), and every
/// buffer of the training and evaluation programs at `batch`. Says what to change.
pub fn check_device_fits(
    ctx: &GpuContext,
    graph: &Graph,
    batch: usize,
    splits: &[(&'static str, usize, usize)],
) -> Result<(), TrainError> {
    let too_large = |remedy: Remedy| move |e: engine::Error| TrainError::TooLarge { limit: e.to_string(), remedy };
    for &(split, count, image_len) in splits {
        let fewer = too_large(Remedy::FewerImages { split, count });
        let pixels = count.saturating_mul(image_len).div_ceil(4);
        ctx.check_fits(pixels, &format!("{split} images")).map_err(fewer)?;
        ctx.check_fits(count, &format!("{split} labels")).map_err(fewer)?;
        let order = count.div_ceil(batch).saturating_mul(batch);
        ctx.check_fits(order, &format!("{split} sample order")).map_err(too_large(Remedy::SmallerBatch))?;
    }
    // The convolutions put one image per workgroup along z.
    let max_batch = ctx.max_workgroups_per_dimension().min(65535) as usize;
    if batch > max_batch {
        let limit = format!("a batch of {batch} is more than the {max_batch} images a step can hold");
        return Err(TrainError::TooLarge { limit, remedy: Remedy::SmallerBatch });
    }
    ctx.check_fits(graph.param_buffer_len(), "parameters").map_err(too_large(Remedy::SmallerNetwork))?;
    for pass in [Pass::Training, Pass::Evaluation] {
        for b in &Program::build(graph, batch, pass)?.buffers {
            ctx.check_fits(b.len, &b.name).map_err(too_large(Remedy::SmallerBatch))?;
        }
    }
    Ok(())
}

/// Refuses a split whose images the graph cannot take or whose labels it cannot predict.
fn check_split(graph: &Graph, what: &str, set: &LabelledImages, classes: usize) -> Result<(), TrainError> {
    let input = graph.input_shape().map_err(TrainError::Engine)?;
    if set.shape() != input {
        return Err(TrainError::Mismatch(format!(
            "the {what} images have shape {:?}, but the network takes {input:?}",
            set.shape()
        )));
    }
    if set.is_empty() {
        return Err(TrainError::Mismatch(format!("the {what} split holds no image")));
    }
    if set.classes() > classes {
        return Err(TrainError::Mismatch(format!(
            "the {what} split has a label {} but the network predicts {classes} classes",
            set.classes() - 1
        )));
    }
    Ok(())
}

/// One split on the GPU with its plan, and how many steps a submission takes.
struct Stage {
    split: GpuSplit,
    plan: Plan,
    /// Measured on the stage's first run; grouping steps changes no result, only the submits.
    steps_per_submit: Option<usize>,
}

/// An optimizer's state buffers, each under its PyTorch name (`exp_avg`, …), packed like the
/// parameters.
pub type Moments = Vec<(String, Vec<f32>)>;

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

/// Trains a graph on a training split, evaluating after each epoch on an evaluation split
/// when there is one.
pub struct Trainer<'a> {
    ctx: &'a GpuContext,
    recipe: Recipe,
    /// The parameters and their gradients on the GPU.
    pub params: Parameters,
    /// The optimizer's state and step table on the GPU.
    pub optimizer: OptimizerState,
    train: Stage,
    test: Option<Stage>,
    test_labels: Vec<u32>,
    classes: usize,
}

impl<'a> Trainer<'a> {
    /// Checks that the splits fit the graph and the device, uploads them and the initial
    /// parameters, and builds every plan.
    pub fn new(
        ctx: &'a GpuContext,
        graph: &Graph,
        train: &LabelledImages,
        test: Option<&LabelledImages>,
        recipe: Recipe,
    ) -> Result<Trainer<'a>, TrainError> {
        let batch = recipe.batch_size;
        if batch == 0 {
            return Err(TrainError::Mismatch("the batch size must be at least 1".into()));
        }
        let classes = graph.classes()?;
        check_split(graph, "training", train, classes)?;
        if let Some(why) = graph.batch_norm_refusal(train.len(), batch) {
            return Err(TrainError::Mismatch(why));
        }
        let mut sizes = vec![("train", train.len(), train.image_len())];
        if let Some(test) = test {
            check_split(graph, "test", test, classes)?;
            sizes.push(("test", test.len(), test.image_len()));
        }
        recipe.schedule.check()?;
        recipe.schedule.check_run((recipe.epochs * train.len().div_ceil(batch)) as u64)?;
        check_device_fits(ctx, graph, batch, &sizes)?;
        let params = Parameters::upload(ctx, graph, &graph.init_params(recipe.seed))?;
        let split = GpuSplit::upload(ctx, train, &recipe.norm, batch, false)?;
        let optimizer = OptimizerState::new(ctx, recipe.optimizer, graph.trainable_len(), split.steps())?;
        let training = Training {
            optimizer: &optimizer,
            label_smoothing: recipe.label_smoothing,
            seed: recipe.seed,
            augment: recipe.augment,
        };
        let plan = Plan::training(ctx, graph, &params, &training, &split)?;
        let train_stage = Stage { split, plan, steps_per_submit: None };
        let test_stage = test
            .map(|test| {
                let split = GpuSplit::upload(ctx, test, &recipe.norm, batch, true)?;
                let plan = Plan::evaluation(ctx, graph, &params, &split)?;
                Ok::<_, TrainError>(Stage { split, plan, steps_per_submit: None })
            })
            .transpose()?;
        let test_labels = test.map_or_else(Vec::new, |t| t.labels().to_vec());
        Ok(Trainer { ctx, recipe, params, optimizer, train: train_stage, test: test_stage, test_labels, classes })
    }

    /// The parameters and the optimizer's state (each buffer under its PyTorch name), read back
    /// from the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn state(&self) -> Result<(Vec<f32>, Moments), TrainError> {
        engine::block_on(self.state_async())
    }

    /// [`state`](Self::state) for callers that must not block (a web page).
    pub async fn state_async(&self) -> Result<(Vec<f32>, Moments), TrainError> {
        let mut moments = Vec::new();
        for (name, tensor) in &self.optimizer.moments {
            moments.push((name.to_string(), self.ctx.read_async(tensor).await?));
        }
        Ok((self.parameters_async().await?, moments))
    }

    /// The parameters alone, read back from the GPU (weights to save or classify with).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn parameters(&self) -> Result<Vec<f32>, TrainError> {
        engine::block_on(self.parameters_async())
    }

    /// [`parameters`](Self::parameters) for callers that must not block (a web page).
    pub async fn parameters_async(&self) -> Result<Vec<f32>, TrainError> {
        Ok(self.ctx.read_async(&self.params.values).await?)
    }

    /// Replaces the parameters and the optimizer's state (from a checkpoint: every buffer of
    /// [`Optimizer::state_names`], by name; none, for fresh weights, zeroes the state).
    pub fn restore(&self, values: &[f32], moments: &Moments) -> Result<(), TrainError> {
        let zeros = vec![0.0; self.optimizer.moments.first().map_or(0, |(_, t)| t.len)];
        let mut writes = vec![(&self.params.values, values)];
        for (name, tensor) in &self.optimizer.moments {
            let saved = match moments.iter().find(|(n, _)| n == name) {
                Some((_, data)) => data.as_slice(),
                None if moments.is_empty() => &zeros,
                None => return Err(TrainError::Mismatch(format!("the optimizer's `{name}` is missing"))),
            };
            writes.push((tensor, saved));
        }
        for (tensor, data) in writes {
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
        stage.split.restart(ctx);
        let mut reader = AsyncRead::new(ctx, stage.split.metrics());
        let mut read_covers = 0;
        let mut in_flight = VecDeque::new();
        let (plan, steps) = (&stage.plan, stage.split.steps());
        let mut done = 0;
        while done < steps {
            let per_submit = match stage.steps_per_submit {
                Some(n) => n,
                None if steps - done >= 2 => {
                    // Step one warms up; step two, alone on the queue, is timed.
                    let seconds = Self::time_step(ctx, plan).await?;
                    done += 2;
                    stage.steps_per_submit = Some(steps_per_submit(seconds));
                    continue;
                }
                None => 1,
            };
            let count = per_submit.min(steps - done);
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
        let words: Vec<u32> = ctx.read_async(stage.split.metrics()).await?;
        Ok(Metrics::from_words(&words))
    }

    /// Runs two steps, each alone on the queue, and returns the second one's wall-clock seconds.
    async fn time_step(ctx: &GpuContext, plan: &Plan) -> Result<f64, TrainError> {
        ctx.finished(plan.submit(ctx, None)?).await?;
        let start = Instant::now();
        ctx.finished(plan.submit(ctx, None)?).await?;
        Ok(start.elapsed().as_secs_f64())
    }

    /// Trains one epoch (numbered from 1), then evaluates on the test split if there is one; `progress` sees
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
        if epoch == 0 {
            return Err(TrainError::Mismatch("epochs are numbered from 1".into()));
        }
        if epoch > self.recipe.epochs && self.recipe.schedule.depends_on_length() {
            return Err(TrainError::Mismatch(format!(
                "epoch {epoch} is outside the run's {} epochs, which its schedule spans",
                self.recipe.epochs
            )));
        }
        let order = epoch_permutation(self.train.split.samples() as u32, self.recipe.seed, epoch as u64);
        self.train.split.set_order(self.ctx, &order)?;
        let steps_per_epoch = self.train.split.steps() as u64;
        let (first, total) = ((epoch as u64 - 1) * steps_per_epoch, self.recipe.epochs as u64 * steps_per_epoch);
        let rows = self.recipe.optimizer.step_rows(&self.recipe.schedule, first, steps_per_epoch as usize, total);
        self.optimizer.set_steps(self.ctx, &rows)?;
        let start = Instant::now();
        let steps = self.train.split.steps();
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
        let (test, test_steps) = match &mut self.test {
            Some(stage) => (Self::run_stage(self.ctx, stage, |_, _| Ok(())).await?, stage.split.steps()),
            None => (Metrics::default(), 0),
        };
        Ok(EpochReport {
            epoch,
            test_correct: test.correct,
            test_count: test.rows,
            train_loss: train.loss_sum as f64 / steps.max(1) as f64,
            test_loss: test.loss_sum as f64 / test_steps.max(1) as f64,
            train_correct: train.correct,
            train_count: train.rows,
            train_seconds,
            images_per_second: train.rows as f64 / train_seconds,
            confusion: self.confusion().await?,
        })
    }

    /// The test set's confusion matrix from the predictions the evaluation wrote (empty rows
    /// without a test split).
    async fn confusion(&self) -> Result<Vec<Vec<u32>>, TrainError> {
        let predictions = match self.test.as_ref().and_then(|t| t.split.predictions()) {
            Some(p) => self.ctx.read_async::<u32>(p).await?,
            None => Vec::new(),
        };
        let mut confusion = vec![vec![0u32; self.classes]; self.classes];
        for (&label, &predicted) in self.test_labels.iter().zip(&predictions) {
            confusion[label as usize][predicted as usize] += 1;
        }
        Ok(confusion)
    }
}
