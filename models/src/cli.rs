//! The command line shared by the training binaries (the tutorial's three networks and
//! `fast_cnn`).

use crate::checkpoint::{data_digest, Checkpoint, Fingerprint};
use crate::curves::StepLosses;
use crate::flags::{
    above_zero, at_least_one, augment, betas, finite_number, non_negative, positive_number, probability, schedule,
    size, OptimizerFlags,
};
use crate::networks::Network;
use crate::run_dir::{confusion_table, RunDir};
use crate::source::Source;
use crate::state_dict::TensorFile;
use crate::train::{check_device_fits, weights_metadata, EpochReport, Recipe, Remedy, TrainError, Trainer};
use clap::Parser;
use engine::graph::Graph;
use engine::ops::gather::Augment;
use engine::ops::optimizer::Optimizer;
use engine::schedule::Schedule;
use engine::GpuContext;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Trains one of the tutorial's networks on the GPU with the tutorial's recipe, on MNIST or on a
/// folder of your own pictures, and prints the test accuracy after each epoch.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Number of epochs (0 builds the network and trains nothing).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Samples per training step (and per evaluation step).
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub batch_size: usize,
    /// The optimizer: sgd (torch.optim.SGD), adam or adamw (torch.optim.Adam, AdamW).
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    /// Learning rate (onecycle's maximum) [default: 0.01 for sgd, 0.001 for adam and adamw].
    #[arg(long, allow_negative_numbers = true, value_parser = above_zero)]
    pub lr: Option<f64>,
    /// SGD's momentum [default: 0.5, the tutorial's]; onecycle cycles it between its
    /// base_momentum and max_momentum instead.
    #[arg(long, allow_negative_numbers = true, value_parser = non_negative)]
    pub momentum: Option<f64>,
    /// SGD's Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay: an L2 penalty for sgd and adam, decoupled for adamw [default: 0, for adamw
    /// 0.01].
    #[arg(long, allow_negative_numbers = true, value_parser = non_negative)]
    pub weight_decay: Option<f64>,
    /// Adam's and AdamW's coefficients of the moving averages [default: 0.9,0.999]; onecycle
    /// cycles B1 between its base_momentum and max_momentum instead.
    #[arg(long, value_name = "B1,B2", allow_negative_numbers = true, value_parser = betas)]
    pub betas: Option<(f64, f64)>,
    /// Adam's and AdamW's eps, added outside the square root [default: 1e-8].
    #[arg(long, allow_negative_numbers = true, value_parser = above_zero)]
    pub eps: Option<f64>,
    /// The learning-rate schedule, stepped every training step with PyTorch's formulas:
    /// `constant`; `step,step_size=STEPS` (and `,gamma=0.1`); `cosine` (and `,t_max=STEPS`, the
    /// whole run by default, `,eta_min=0`); or `onecycle` (and `,pct_start=0.3`, `,div_factor=25`,
    /// `,final_div_factor=1e4`, `,base_momentum=0.85`, `,max_momentum=0.95`; it cycles SGD's
    /// momentum or Adam's beta1).
    #[arg(long, value_name = "SCHEDULE", default_value = "constant", value_parser = schedule)]
    pub schedule: Schedule,
    /// Warm the learning rate up linearly over the first STEPS steps (times (step + 1) / STEPS).
    #[arg(long, value_name = "STEPS", default_value_t = 0)]
    pub warmup: u64,
    /// Smooth the training loss's target: (1 - S) on the label, S spread over all classes
    /// (PyTorch's CrossEntropyLoss(label_smoothing=S)).
    #[arg(long, value_name = "S", default_value_t = 0.0, allow_negative_numbers = true, value_parser = probability)]
    pub label_smoothing: f32,
    /// Augment every training image with a random affine transform, drawn anew each epoch from
    /// --seed: `shift=PIXELS,rotate=DEGREES,scale=FRACTION` (each optional; torchvision's
    /// RandomAffine with bilinear interpolation and zero fill), or `none`.
    #[arg(long, value_name = "RANGES", default_value = "none", value_parser = augment)]
    pub augment: Augment,
    /// Seed of the parameter initialisation, the shuffling, dropout and --augment.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory of the MNIST IDX files (default: $MNIST_DIR, else ./data/mnist).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Train on your own pictures instead of MNIST: DIR/train/CLASS/* and DIR/test/CLASS/*
    /// (torchvision's ImageFolder layout; PNG, JPEG, BMP, PGM/PPM). A dataset whose pictures are
    /// all gray trains with one channel, otherwise RGB.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["data_dir", "no_download"])]
    pub image_folder: Option<PathBuf>,
    /// Resize every picture of --image-folder to H×W pixels (needed when their sizes differ).
    #[arg(long, value_name = "HxW", value_parser = size, requires = "image_folder")]
    pub resize: Option<(u32, u32)>,
    /// Each channel's mean, comma-separated (default: MNIST's 0.1307, or for --image-folder the
    /// training pictures' own, printed). Needs --std.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = finite_number, requires = "std")]
    pub mean: Option<Vec<f32>>,
    /// Each channel's standard deviation, comma-separated (default: MNIST's 0.3081, or the
    /// training pictures' own). Needs --mean.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = positive_number, requires = "mean")]
    pub std: Option<Vec<f32>>,
    /// Train on the first N training images only (of an image folder: N drawn at random with
    /// --seed, since its pictures are sorted by class).
    #[arg(long, value_parser = at_least_one)]
    pub limit_train: Option<usize>,
    /// Evaluate on the first N test images only (of an image folder: N drawn at random).
    #[arg(long, value_parser = at_least_one)]
    pub limit_test: Option<usize>,
    /// Never download: fail if the files are not in the data directory.
    #[arg(long)]
    pub no_download: bool,
    /// After each epoch, save the parameters and optimizer state to FILE (written atomically).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Start from a checkpoint and train the epochs after the ones it holds, up to --epochs.
    /// The network and recipe flags must match the checkpoint's.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Start from the weights in a safetensors state_dict (PyTorch's names and shapes, as
    /// `safetensors.torch.save_file(model.state_dict(), FILE)` writes them) instead of a random
    /// initialisation.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// After every epoch, write model.safetensors, best.safetensors, metrics.csv and
    /// confusion.csv to DIR (created with its parents).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `--optimizer`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    /// torch.optim.SGD.
    Sgd,
    /// torch.optim.Adam.
    Adam,
    /// torch.optim.AdamW.
    Adamw,
}

impl OptimizerKind {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adamw => "adamw",
        }
    }
}

impl Args {
    /// The optimizer the flags ask for; refuses a flag the chosen optimizer does not have.
    pub fn optimizer(&self) -> Result<Optimizer, String> {
        let flags = OptimizerFlags {
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            betas: self.betas,
            eps: self.eps,
        };
        flags.optimizer(self.optimizer.name())
    }

    /// The schedule with the `--warmup` asked for (refused with onecycle).
    pub fn schedule(&self) -> Result<Schedule, String> {
        self.schedule.with_warmup(self.warmup).map_err(|_| {
            "--warmup does not apply to --schedule onecycle, which warms up by itself (pct_start)".to_string()
        })
    }
}

impl Args {
    /// The command line of `network`'s binary: [`Args`] with the network's
    /// [`default_flags`](Network::default_flags)
    /// (their help without the tutorial's defaults, which clap's `[default: …]` replaces).
    pub fn command_for(network: Network) -> clap::Command {
        let flags = network.default_flags();
        let command = flags.iter().fold(<Args as clap::CommandFactory>::command(), |command, &(flag, value)| {
            command.mut_arg(flag, |arg| {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let help = help.split(" [default:").next().unwrap_or_default().to_string();
                arg.default_value(value).help(help)
            })
        });
        let command = command.name(network.name());
        if flags.is_empty() {
            return command;
        }
        let recipe: Vec<String> =
            flags.iter().map(|(flag, value)| format!("--{} {value}", flag.replace('_', "-"))).collect();
        command.about(format!(
            "Trains {} on the GPU with its own recipe ({}), on MNIST or on a folder of your own pictures, and prints \
             the test accuracy after each epoch. A flag given replaces its default alone: --optimizer sgd keeps the \
             learning rate, schedule and label smoothing above.",
            network.name(),
            recipe.join(" ")
        ))
    }

    /// Parses `argv` (the binary's name first) as `network`'s binary does.
    pub fn try_parse_for<I, T>(network: Network, argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command_for(network).try_get_matches_from(argv)?;
        <Args as clap::FromArgMatches>::from_arg_matches(&matches)
    }
}

/// Parses the command line and trains `network`; the binaries' whole `main`.
pub fn main(network: Network) -> ExitCode {
    let args = Args::try_parse_for(network, std::env::args_os()).unwrap_or_else(|e| e.exit());
    match run(network, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Trains `network` as `args` say: the data's headers and every file first, then the device
/// check, then the pixels, then the epochs.
pub fn run(network: Network, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let source = Source::open(args)?;
    let [train_count, test_count] = source.counts();
    let graph = network.build(source.shape(), source.classes())?;
    let recipe = Recipe {
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer: args.optimizer()?,
        schedule: args.schedule()?,
        label_smoothing: args.label_smoothing,
        augment: args.augment,
        seed: args.seed,
        norm: source.normalization(args)?,
    };
    let fingerprint = Fingerprint {
        seed: args.seed,
        batch_size: args.batch_size as u64,
        train_count: train_count as u64,
        optimizer: recipe.optimizer_text(),
        normalization: (recipe.mean_text(), recipe.std_text()),
    };
    let resume = checkpoints(network, args, &graph, &fingerprint)?;
    let mut run_dir = args.out.as_deref().map(|dir| RunDir::open(dir, args.resume.is_some())).transpose()?;
    let initial = match &args.init_from {
        Some(path) => Some(TensorFile::open(path)?.params(&graph, "")?),
        None => None,
    };
    let mut metadata = weights_metadata(network, &recipe);
    metadata.extend(source.metadata());

    let ctx = GpuContext::new()?;
    println!("{}: adapter {}", network.name(), ctx.report);
    if let Some(advice) = ctx.report.newer_driver_advice() {
        eprintln!("{advice}");
    }
    let image_len = source.shape().iter().product();
    let sizes = [("train", train_count, image_len), ("test", test_count, image_len)];
    check_device_fits(&ctx, &graph, args.batch_size, &sizes).map_err(with_flags)?;
    let [c, h, w] = source.shape();
    let (dir, class_names) = (source.dir().to_path_buf(), source.class_names());
    let (train, test) = source.read()?;
    let data_md5 = data_digest(&train);
    if let Some((path, saved)) = &resume {
        saved.check_data(path, &data_md5)?;
    }
    let (parameters, images) = (graph.param_count(), train.len());
    println!(
        "{}: {parameters} parameters; {images} training and {} test images of {c}×{h}×{w} from {}",
        network.name(),
        test.len(),
        dir.display()
    );
    let mut trainer = Trainer::new(&ctx, &graph, &train, Some(&test), recipe).map_err(with_flags)?;
    let first_epoch = start(&trainer, network, args, initial, resume)?;
    let saving = Saving { graph: &graph, network, metadata, fingerprint, data_md5 };
    let mut last = None;
    for epoch in first_epoch..=args.epochs {
        let (report, steps) = train_epoch(&mut trainer, args, epoch, train.len())?;
        saving.save(&trainer, args, run_dir.as_mut(), &report, &steps)?;
        last = Some(report);
    }
    if let Some(report) = last {
        println!(
            "Confusion matrix of the test set after epoch {}:\n{}",
            report.epoch,
            confusion_table(&report.confusion)
        );
        if let Some(names) = class_names {
            let legend: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("{i} = {n}")).collect();
            println!("classes: {}", legend.join(", "));
        }
    }
    Ok(())
}

/// What an epoch's end writes: the run directory's files and the checkpoint, as asked.
struct Saving<'g> {
    graph: &'g Graph,
    network: Network,
    metadata: BTreeMap<String, String>,
    fingerprint: Fingerprint,
    data_md5: String,
}

impl Saving<'_> {
    fn save(
        &self,
        trainer: &Trainer,
        args: &Args,
        run_dir: Option<&mut RunDir>,
        report: &EpochReport,
        steps: &StepLosses,
    ) -> Result<(), Box<dyn std::error::Error>> {
        if run_dir.is_none() && args.checkpoint.is_none() {
            return Ok(());
        }
        let (values, moments) = trainer.state()?;
        if let Some(run_dir) = run_dir {
            run_dir.record(self.graph, &values, self.metadata.clone(), report, steps)?;
        }
        if let Some(path) = &args.checkpoint {
            let network = self.network.name().to_string();
            let (fingerprint, data_md5, epochs_done) =
                (self.fingerprint.clone(), self.data_md5.clone(), report.epoch as u64);
            Checkpoint { network, epochs_done, fingerprint, values, moments, data_md5 }.save(path, self.graph)?;
        }
        Ok(())
    }
}

/// A training error in the command line's words: what to change, as the flag to change it.
fn with_flags(e: TrainError) -> Box<dyn std::error::Error> {
    match e {
        TrainError::TooLarge { limit, remedy } => {
            let fix = match remedy {
                Remedy::FewerImages { split, count } => {
                    format!("use --limit-{split} to use fewer of the {count} {split} images")
                }
                Remedy::SmallerBatch => "use a smaller --batch-size".into(),
                Remedy::SmallerNetwork => remedy.to_string(),
            };
            format!("too large for this device: {limit}; {fix}").into()
        }
        TrainError::NonFinite { .. } => format!("{e} (--lr)").into(),
        TrainError::Engine(engine::Error::Setting(m)) => {
            format!("{m} (see --help for the optimizer's and the schedule's flags)").into()
        }
        e => e.into(),
    }
}

/// Checks that `--checkpoint` can be written, and reads and checks the `--resume` checkpoint,
/// before anything is uploaded.
fn checkpoints<'a>(
    network: Network,
    args: &'a Args,
    graph: &Graph,
    fingerprint: &Fingerprint,
) -> Result<Option<(&'a PathBuf, Checkpoint)>, Box<dyn std::error::Error>> {
    if let Some(path) = &args.checkpoint {
        Checkpoint::check_writable(path)?;
    }
    let Some(path) = &args.resume else { return Ok(None) };
    let saved = Checkpoint::load(path, network.name(), graph)?;
    saved.check_fits(path, fingerprint)?;
    Ok(Some((path, saved)))
}

/// Puts the `--init-from` weights or the `--resume` checkpoint into the trainer; returns the
/// first epoch to train.
fn start(
    trainer: &Trainer,
    network: Network,
    args: &Args,
    initial: Option<Vec<f32>>,
    resume: Option<(&PathBuf, Checkpoint)>,
) -> Result<usize, Box<dyn std::error::Error>> {
    if let (Some(values), Some(path)) = (initial, &args.init_from) {
        trainer.restore(&values, &Vec::new())?;
        println!("{}: initial weights from {}", network.name(), path.display());
    }
    let Some((path, saved)) = resume else { return Ok(1) };
    trainer.restore(&saved.values, &saved.moments)?;
    // Checkpoint::load keeps epochs_done within 1..=2^31.
    let first_epoch = saved.epochs_done as usize + 1;
    println!("{}: resumed from {} after epoch {}", network.name(), path.display(), saved.epochs_done);
    if first_epoch > args.epochs {
        println!("{}: the checkpoint already holds {} or more epochs; nothing to train", network.name(), args.epochs);
    }
    Ok(first_epoch)
}

/// Trains one epoch with a progress bar on a terminal, then prints the test accuracy. Returns
/// the report and the running training loss at each progress read: (epoch as a fraction, loss).
fn train_epoch(
    trainer: &mut Trainer,
    args: &Args,
    epoch: usize,
    train_count: usize,
) -> Result<(EpochReport, StepLosses), Box<dyn std::error::Error>> {
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = ProgressBar::new(train_count.div_ceil(args.batch_size) as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        bar
    });
    let mut losses = Vec::new();
    let report = trainer.epoch(epoch, |step, steps, loss, rate| {
        losses.push(((epoch - 1) as f64 + step as f64 / steps as f64, loss));
        if let Some(bar) = &bar {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}, {rate:.0} images/s"));
        }
    });
    let report = report.map_err(with_flags)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    println!("{}", report.line(args.epochs));
    Ok((report, losses))
}
