//! The engine in a browser tab, for `web/static/index.html`: WebGPU through wgpu's browser
//! backend, the same networks, training loop (its async path), MNIST checks, safetensors files
//! and digit preprocessing as the native binaries. The page fetches files and draws; this crate
//! does everything else.
//!
//! Use from JavaScript: `Engine.open()`, `configure(...)` with the URL's or the form's values
//! (checked as the native flags are), `load_data(...)` with the four files' bytes, `build()`,
//! then `epoch(n, progress)` for each epoch; `predict(rgba, w, h)`, `weights()` and
//! `load_weights(name, bytes)` at any time after.
#![cfg(target_arch = "wasm32")]

use engine::data::Normalization;
use engine::graph::Graph;
use engine::{GpuContext, LimitsRequest};
use mnist_loader::Dataset;
use models::flags::{self, above_zero, at_least_one, limit_note, non_negative, probability, OptimizerFlags};
use models::predict::{classify_async, mnist_digit_rgba, network_of, InputSpec};
use models::state_dict::{self, TensorFile};
use models::train::{mnist_images, weights_metadata, Recipe, Trainer};
use models::Network;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn js_value(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A network and its weights: what drawn digits are classified with and what downloads hold.
struct Model {
    graph: Rc<Graph>,
    params: Vec<f32>,
    metadata: BTreeMap<String, String>,
    /// How its inputs were normalized (MNIST's, or the weights file's `--mean`/`--std`).
    norm: Vec<Normalization>,
}

/// The values of the native flags of the same names.
struct Settings {
    network: Network,
    recipe: Recipe,
    limits: [Option<usize>; 2],
}

struct State {
    ctx: &'static GpuContext,
    settings: Option<Settings>,
    data: Option<Dataset>,
    /// Taken out while an epoch runs, so the borrow never spans an `await`.
    trainer: Option<Trainer<'static>>,
    /// An epoch is running: the run may not be reconfigured or rebuilt under it.
    running: bool,
    graph: Option<Rc<Graph>>,
    model: Option<Rc<Model>>,
}

#[wasm_bindgen]
pub struct Engine {
    state: Rc<RefCell<State>>,
}

fn parse_network(name: &str) -> Result<Network, String> {
    Network::ALL.into_iter().find(|n| n.name() == name).ok_or_else(|| {
        let names: Vec<&str> = Network::ALL.iter().map(|n| n.name()).collect();
        format!("network `{name}` is not one of {}", names.join(", "))
    })
}

/// An optional setting: empty means its default.
fn optional<T>(name: &str, value: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    let value = value.trim();
    (!value.is_empty()).then(|| parse(value).map_err(|e| format!("{name}: {e}"))).transpose()
}

/// Where `network`'s recipe differs from the tutorial's, the page's fields for it: [field,
/// value] pairs, as the binaries' defaults (`fast_cnn`'s own recipe).
#[wasm_bindgen]
pub fn recipe_defaults(network: &str) -> Result<js_sys::Array, JsError> {
    let network = parse_network(network.trim()).map_err(js_error)?;
    let pairs = network.default_flags().iter().map(|(flag, value)| {
        js_sys::Array::of2(&JsValue::from_str(&flag.replace('_', "-")), &JsValue::from_str(value))
    });
    Ok(pairs.collect())
}

#[wasm_bindgen]
impl Engine {
    /// Opens the browser's WebGPU adapter with WebGPU's default limits (every kernel fits them),
    /// or with the adapter's own when `adapter_limits` is true.
    pub async fn open(adapter_limits: bool) -> Result<Engine, JsError> {
        console_error_panic_hook::set_once();
        let limits = if adapter_limits { LimitsRequest::Adapter } else { LimitsRequest::WebGpuDefaults };
        let ctx = GpuContext::open(limits).await.map_err(js_error)?;
        // One device for the page's lifetime; trainers borrow it.
        let ctx: &'static GpuContext = Box::leak(Box::new(ctx));
        let state = State { ctx, settings: None, data: None, trainer: None, running: false, graph: None, model: None };
        Ok(Engine { state: Rc::new(RefCell::new(state)) })
    }

    /// The adapter, as the native binaries' first line describes it.
    pub fn adapter(&self) -> String {
        self.state.borrow().ctx.report.to_string()
    }

    /// Builds the pipeline of every kernel the engine has, so the browser's WGSL compiler checks
    /// each shader now; returns how many. Errors it reports surface through [`check`](Self::check).
    pub fn compile_all(&self) -> Result<u32, JsError> {
        let ctx = self.state.borrow().ctx;
        let usable = engine::ops::KERNELS.iter().filter(|k| ctx.report.subgroups || !shaders::uses_subgroups(k.file));
        let mut count = 0;
        for spec in usable {
            ctx.kernel(spec).map_err(js_error)?;
            count += 1;
        }
        Ok(count)
    }

    /// Resolves once the queue is idle, or rejects with any WebGPU error raised so far.
    pub fn check(&self) -> js_sys::Promise {
        let ctx = self.state.borrow().ctx;
        future_to_promise(async move {
            let submission = ctx.submit([], None).map_err(js_value)?;
            ctx.finished(submission).await.map_err(js_value)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Checks and keeps the run's settings (the URL parameters or the form's fields, as text;
    /// an empty learning rate or momentum means the optimizer's default, an empty limit all
    /// images). Throws naming the setting and what it must be.
    #[allow(clippy::too_many_arguments)]
    pub fn configure(
        &self,
        network: &str,
        epochs: &str,
        batch_size: &str,
        optimizer: &str,
        lr: &str,
        momentum: &str,
        schedule: &str,
        label_smoothing: &str,
        seed: &str,
        limit_train: &str,
        limit_test: &str,
    ) -> Result<(), JsError> {
        self.idle()?;
        let network = parse_network(network.trim()).map_err(js_error)?;
        let epochs = epochs
            .trim()
            .parse::<usize>()
            .map_err(|_| js_error(format!("epochs: `{epochs}` is not a whole number")))?;
        let batch_size = at_least_one(batch_size.trim()).map_err(|e| js_error(format!("batch-size: {e}")))?;
        let settings = OptimizerFlags {
            lr: optional("lr", lr, above_zero).map_err(js_error)?,
            momentum: optional("momentum", momentum, non_negative).map_err(js_error)?,
            ..OptimizerFlags::default()
        };
        let optimizer = settings.optimizer(optimizer.trim()).map_err(|e| js_error(format!("optimizer: {e}")))?;
        let schedule = flags::schedule(schedule.trim()).map_err(|e| js_error(format!("schedule: {e}")))?;
        let label_smoothing =
            probability(label_smoothing.trim()).map_err(|e| js_error(format!("label-smoothing: {e}")))?;
        let seed = seed.trim().parse::<u64>().map_err(|_| js_error(format!("seed: `{seed}` is not a whole number")))?;
        let limits = [
            optional("limit-train", limit_train, at_least_one).map_err(js_error)?,
            optional("limit-test", limit_test, at_least_one).map_err(js_error)?,
        ];
        let recipe = Recipe { epochs, batch_size, optimizer, schedule, label_smoothing, seed, ..Recipe::default() };
        self.state.borrow_mut().settings = Some(Settings { network, recipe, limits });
        Ok(())
    }

    /// Checks and reads the four MNIST files (training images, training labels, test images,
    /// test labels; raw or gzip), named in errors by `names` (their URLs or file names), keeping
    /// the first `limit-train` / `limit-test` samples. Returns a line describing the data.
    pub fn load_data(&self, names: Vec<String>, files: Vec<js_sys::Uint8Array>) -> Result<String, JsError> {
        self.idle()?;
        let mut state = self.state.borrow_mut();
        let limits = state.settings.as_ref().ok_or_else(|| js_error("configure the run before loading data"))?.limits;
        let files: Vec<(PathBuf, Vec<u8>)> =
            names.into_iter().map(PathBuf::from).zip(files.iter().map(|f| f.to_vec())).collect();
        let files: [(PathBuf, Vec<u8>); 4] =
            files.try_into().map_err(|_| js_error("four MNIST files are needed, with a name each"))?;
        let data = mnist_loader::load_bytes(files, limits).map_err(js_error)?;
        let mut line = format!(
            "{} training and {} test images of {}×{}",
            data.train.count, data.test.count, data.train.rows, data.train.cols
        );
        // As the binaries say it; the loader used every image there is.
        for (what, limit, count) in [("train", limits[0], data.train.count), ("test", limits[1], data.test.count)] {
            if let Some(note) = limit_note(what, limit, count) {
                line = format!("{line} ({note})");
            }
        }
        state.data = Some(data);
        Ok(line)
    }

    /// Builds the configured network and its trainer on the loaded data (uploading both splits
    /// and building every plan); returns the line the binaries print about it.
    pub fn build(&self) -> Result<String, JsError> {
        self.idle()?;
        let mut state = self.state.borrow_mut();
        let settings = state.settings.as_ref().ok_or_else(|| js_error("configure the run first"))?;
        let data = state.data.as_ref().ok_or_else(|| js_error("load the data first"))?;
        let (network, recipe) = (settings.network, settings.recipe.clone());
        let graph = network.build([1, data.train.rows, data.train.cols], data.num_classes).map_err(js_error)?;
        let (train, test) = (mnist_images(&data.train), mnist_images(&data.test));
        let trainer = Trainer::new(state.ctx, &graph, &train, Some(&test), recipe).map_err(js_error)?;
        let line = format!(
            "{}: {} parameters; {} training and {} test images",
            network.name(),
            graph.param_count(),
            data.train.count,
            data.test.count
        );
        state.trainer = Some(trainer);
        state.graph = Some(Rc::new(graph));
        Ok(line)
    }

    /// Trains epoch `epoch` (from 1) and evaluates; `progress(step, steps, loss, imagesPerSecond)`
    /// is called as it goes. Resolves to `{line, trainLoss, accuracy}`, `line` being what the
    /// binaries print after an epoch; the weights then classify drawn digits and are what
    /// `weights()` returns.
    pub fn epoch(&self, epoch: u32, progress: js_sys::Function) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let taken = state.borrow_mut().trainer.take();
            let mut trainer = taken.ok_or_else(|| js_value("no run is built, or an epoch is already running"))?;
            state.borrow_mut().running = true;
            let report = trainer
                .epoch_async(epoch as usize, |step, steps, loss, rate| {
                    let args = [step as f64, steps as f64, loss, rate].map(JsValue::from);
                    // A throwing callback only loses a progress line, not the run.
                    let _ = progress.apply(&JsValue::NULL, &args.into_iter().collect());
                })
                .await;
            let params = trainer.parameters_async().await;
            let mut state = state.borrow_mut();
            state.trainer = Some(trainer);
            state.running = false;
            let (report, params) = (report.map_err(js_value)?, params.map_err(js_value)?);
            let settings = state.settings.as_ref().expect("configured before building");
            let metadata = weights_metadata(settings.network, &settings.recipe);
            let result = js_sys::Object::new();
            js_sys::Reflect::set(&result, &"line".into(), &report.line(settings.recipe.epochs).into())?;
            js_sys::Reflect::set(&result, &"trainLoss".into(), &report.train_loss.into())?;
            js_sys::Reflect::set(&result, &"accuracy".into(), &report.test_accuracy().into())?;
            let graph = state.graph.clone().expect("built with the trainer");
            let norm = settings.recipe.norm.clone();
            state.model = Some(Rc::new(Model { graph, params, metadata, norm }));
            Ok(result.into())
        })
    }

    /// Reads weights in a safetensors file (from the native binaries, this page or PyTorch's
    /// `save_file(model.state_dict())`); returns the network's name.
    pub fn load_weights(&self, name: &str, bytes: Vec<u8>) -> Result<String, JsError> {
        let file = TensorFile::from_bytes(name.as_ref(), bytes).map_err(js_error)?;
        let spec = InputSpec::from_metadata(&file.metadata()).map_err(|why| js_error(format!("{name}: {why}")))?;
        if !spec.is_mnist() {
            return Err(js_error(format!("{name}: a network for {:?} images, not MNIST's digits", spec.shape)));
        }
        let (network, graph) = network_of(&file, &spec).ok_or_else(|| {
            js_error(format!("{name}: its tensors are not the weights of simple_cnn, inception or resnet"))
        })?;
        let params = file.params(&graph, "").map_err(js_error)?;
        let mut metadata = file.metadata();
        metadata.insert("network".into(), network.name().into());
        let model = Model { graph: Rc::new(graph), params, metadata, norm: spec.norm };
        self.state.borrow_mut().model = Some(Rc::new(model));
        Ok(network.name().into())
    }

    /// The current weights as a safetensors file, as the native binaries write them.
    pub fn weights(&self) -> Result<Vec<u8>, JsError> {
        let model = self.model()?;
        let tensors = state_dict::named(&model.graph, &model.params, "");
        state_dict::serialize(&tensors, model.metadata.clone()).map_err(js_error)
    }

    /// The network the current weights belong to, if any.
    pub fn model_network(&self) -> Option<String> {
        self.state.borrow().model.as_ref().and_then(|m| m.metadata.get("network").cloned())
    }

    /// Classifies a drawing (RGBA pixels, `width`×`height`) as `predict` does a picture:
    /// resolves to `{digit: Uint8Array(784), probabilities: Float32Array(10)}`.
    pub fn predict(&self, rgba: Vec<u8>, width: u32, height: u32) -> js_sys::Promise {
        let (ctx, model) = (self.state.borrow().ctx, self.model());
        future_to_promise(async move {
            let model = model.map_err(JsValue::from)?;
            let digit = mnist_digit_rgba(rgba, width, height).map_err(js_value)?;
            let probabilities =
                classify_async(Some(ctx), &model.graph, &model.params, &digit, &model.norm).await.map_err(js_value)?;
            let result = js_sys::Object::new();
            js_sys::Reflect::set(&result, &"digit".into(), &js_sys::Uint8Array::from(&digit[..]))?;
            js_sys::Reflect::set(&result, &"probabilities".into(), &js_sys::Float32Array::from(&probabilities[0][..]))?;
            Ok(result.into())
        })
    }
}

impl Engine {
    fn idle(&self) -> Result<(), JsError> {
        match self.state.borrow().running {
            true => Err(js_error("an epoch is running; wait for it to end")),
            false => Ok(()),
        }
    }

    fn model(&self) -> Result<Rc<Model>, JsError> {
        self.state
            .borrow()
            .model
            .clone()
            .ok_or_else(|| js_error("no weights yet: train an epoch or load a weights file"))
    }
}
