//! The GPU execution plan of a program: buffers allocated once (activations and gradients share
//! memory by liveness), bind groups built once, and a whole step — gather the batch from a
//! [`GpuSplit`], forward, loss (which advances the step counter), backward, optimizer update — as one list of
//! dispatches that is recorded into a command buffer with no host round trip inside. An
//! inference plan runs the forward pass alone on a batch written into its input.

use super::program::{Buf, Instr, Pass, Program};
use super::Graph;
use crate::context::{AsyncRead, GpuContext, Submission, Tensor};
use crate::data::GpuSplit;
use crate::error::{Error, Result};
use crate::kernel::Dispatch;
use crate::ops::gather::{self, Augment};
use crate::ops::optimizer::{OptimizerState, STEP_WORDS};
use crate::ops::softmax_cross_entropy as sce;
use crate::ops::{add, avg_pool, batch_norm, concat, conv, dropout, matmul, max_pool, relu};

/// The packed parameters of a network on the GPU and their gradients, shared by every plan of
/// the network (training at two batch sizes, evaluation).
pub struct Parameters {
    /// The packed parameters, laid out as [`Graph::init_params`] packs them.
    pub values: Tensor,
    /// Their gradients, in the same layout, written by each training step.
    pub grads: Tensor,
}

impl Parameters {
    /// Uploads the packed `values` (`graph.param_buffer_len()` floats), with zero gradients.
    pub fn upload(ctx: &GpuContext, graph: &Graph, values: &[f32]) -> Result<Parameters> {
        assert_eq!(values.len(), graph.param_buffer_len(), "packed parameter length");
        Ok(Parameters { values: ctx.upload(values, "parameters")?, grads: ctx.zeros(values.len(), "gradients")? })
    }
}

/// A program on the GPU: its physical buffers and one step's dispatches, recorded once and
/// submitted any number of times.
pub struct Plan {
    /// The program it runs.
    pub program: Program,
    /// One step's dispatches, in order.
    pub dispatches: Vec<Dispatch>,
    /// Bytes of activation, gradient and scratch memory after sharing by liveness.
    pub activation_bytes: u64,
    /// The same without sharing, for comparison.
    pub unshared_bytes: u64,
    buffers: Vec<Option<Tensor>>,
}

/// What a training plan adds to the forward pass.
pub struct Training<'a> {
    /// The optimizer; its step table also gives dropout the step within the run and the
    /// augmented gather the epoch.
    pub optimizer: &'a OptimizerState,
    /// The loss's label smoothing (PyTorch's, 0 for none).
    pub label_smoothing: f32,
    /// The run's seed, from which dropout draws its masks and augmentation its transforms.
    pub seed: u64,
    /// The random affine augmentation of the gathered images ([`Augment::default`]: none).
    pub augment: Augment,
}

impl Plan {
    /// A training step over `split`'s next batch: gather (augmented, when asked, from the run's
    /// seed, the epoch and the sample), forward (dropout drawing from the run's seed and the
    /// step), loss,
    /// backward, and the optimizer's update with the values of the step's row in the
    /// optimizer's step table.
    pub fn training(
        ctx: &GpuContext,
        graph: &Graph,
        params: &Parameters,
        training: &Training,
        split: &GpuSplit,
    ) -> Result<Plan> {
        if let Some(why) = graph.batch_norm_refusal(split.samples(), split.batch()) {
            return Err(Error::Graph(why));
        }
        let (opt, label_smoothing) = (training.optimizer, training.label_smoothing);
        if !(0.0..=1.0).contains(&label_smoothing) {
            return Err(Error::Setting(format!("label smoothing {label_smoothing}: must be in [0, 1]")));
        }
        let mut plan = Plan::allocate(ctx, Program::build(graph, split.batch(), Pass::Training)?)?;
        plan.lower(ctx, graph, params, Some(split), Some(training))?;
        opt.steps.check_len("the optimizer's step table", split.steps() * STEP_WORDS)?;
        // The optimizer trains the trained tensors alone: the running statistics follow them.
        let trained = graph.trainable_len();
        let (grads, values) = (params.grads.slice(0, trained), params.values.slice(0, trained));
        plan.dispatches.push(opt.dispatch(ctx, &grads, &values, split.step())?);
        Ok(plan)
    }

    /// A forward-only step over `split`'s next batch (no gradients kept): gather, forward, loss
    /// metrics (and predictions, where the split keeps them), advance.
    pub fn evaluation(ctx: &GpuContext, graph: &Graph, params: &Parameters, split: &GpuSplit) -> Result<Plan> {
        let mut plan = Plan::allocate(ctx, Program::build(graph, split.batch(), Pass::Evaluation)?)?;
        plan.lower(ctx, graph, params, Some(split), None)?;
        Ok(plan)
    }

    /// The forward pass alone, on `batch` normalized images written into [`input`](Self::input),
    /// to the logits: no labels, no loss, no step counter.
    pub fn inference(ctx: &GpuContext, graph: &Graph, batch: usize, params: &Parameters) -> Result<Plan> {
        let mut plan = Plan::allocate(ctx, Program::build(graph, batch, Pass::Inference)?)?;
        plan.lower(ctx, graph, params, None, None)?;
        Ok(plan)
    }

    /// Gives every activation buffer a physical buffer, reusing those whose last use has passed.
    fn allocate(ctx: &GpuContext, program: Program) -> Result<Plan> {
        let n = program.buffers.len();
        let (mut first, mut last) = (vec![usize::MAX; n], vec![0; n]);
        for (i, instr) in program.instrs.iter().enumerate() {
            for b in instr.buffers() {
                if let Buf::Act(a) = b {
                    first[a] = first[a].min(i);
                    last[a] = i;
                }
            }
        }
        // The gather writes the input and labels before the first instruction (inference: the
        // caller writes the input).
        let gathered =
            if program.pass == Pass::Inference { vec![program.input] } else { vec![program.input, program.labels] };
        for b in gathered {
            if let Buf::Act(a) = b {
                first[a] = 0;
            }
        }
        let mut buffers: Vec<Option<Tensor>> = vec![None; n];
        let mut free: Vec<Tensor> = Vec::new();
        let mut activation_bytes = 0;
        let mut unshared_bytes = 0;
        for i in 0..program.instrs.len() {
            for a in (0..n).filter(|&a| first[a] == i) {
                let len = program.buffers[a].len;
                unshared_bytes += len as u64 * 4;
                // Best fit among the free buffers, else a new one.
                let fit =
                    free.iter().enumerate().filter(|(_, t)| t.len >= len).min_by_key(|(_, t)| t.len).map(|(j, _)| j);
                let physical = match fit {
                    Some(j) => free.swap_remove(j),
                    None => {
                        activation_bytes += len as u64 * 4;
                        ctx.zeros(len, &program.buffers[a].name)?
                    }
                };
                buffers[a] = Some(Tensor { len, ..physical.clone() });
            }
            for a in (0..n).filter(|&a| last[a] == i && first[a] != usize::MAX) {
                let t = buffers[a].clone().expect("allocated at first use");
                free.push(Tensor { len: t.buffer.size() as usize / 4, ..t });
            }
        }
        Ok(Plan { program, dispatches: Vec::new(), activation_bytes, unshared_bytes, buffers })
    }

    fn tensor(&self, params: &Parameters, graph: &Graph, b: Buf) -> Tensor {
        match b {
            Buf::Act(a) => self.buffers[a].clone().expect("every used buffer is allocated"),
            Buf::Param(p) => params.values.slice(graph.params[p].offset, graph.params[p].len()),
            Buf::Grad(p) => params.grads.slice(graph.params[p].offset, graph.params[p].len()),
        }
    }

    /// The dispatches of every instruction, after the gather of `split`'s next batch (none for
    /// an inference plan, which has no split); a training plan's `training` settings.
    fn lower(
        &mut self,
        ctx: &GpuContext,
        graph: &Graph,
        params: &Parameters,
        split: Option<&GpuSplit>,
        training: Option<&Training>,
    ) -> Result<()> {
        let label_smoothing = training.map_or(0.0, |t| t.label_smoothing);
        let t = |b: Buf| self.tensor(params, graph, b);
        let p = &self.program;
        let mut out = Vec::new();
        if let Some(s) = split {
            out.push(gather_next_batch(ctx, s, training, p.batch, (&t(p.input), &t(p.labels)))?);
        }
        let (unused, no_predictions) = (ctx.zeros(1, "no gradient")?, ctx.zeros(1, "no predictions")?);
        for instr in &p.instrs {
            match *instr {
                Instr::Conv { g, oc, x, w, b, y, relu, residual } => {
                    let (x, w, b, residual) = (t(x), t(w), t(b), residual.map(t));
                    let layer = conv::Conv2d { g, out_channels: oc, x: &x, weight: &w, bias: &b };
                    out.extend(conv::conv2d_forward(ctx, &layer, relu, residual.as_ref(), &t(y))?);
                }
                Instr::ConvBack { g, oc, x, w, dy, dw, db, dx, dx_accumulate, dcols, partials } => {
                    let (x, w, b, dcols) = (t(x), t(w), unused.clone(), t(dcols));
                    let layer = conv::Conv2d { g, out_channels: oc, x: &x, weight: &w, bias: &b };
                    let dx = dx.map(t);
                    let to = dx.as_ref().map(|dx| conv::InputGrad { dx, accumulate: dx_accumulate, dcols: &dcols });
                    let (dy, dw, db, partials) = (t(dy), t(dw), t(db), t(partials));
                    out.extend(conv::conv2d_backward(ctx, &layer, &dy, &dw, &db, &partials, to)?);
                }
                Instr::Linear { n, inputs, outputs, x, w, b, y } => {
                    let (x, w, b) = (t(x), t(w), t(b));
                    let layer = matmul::Linear { n, inputs, outputs, x: &x, weight: &w, bias: &b };
                    out.extend(matmul::linear_forward(ctx, &layer, &t(y))?);
                }
                Instr::LinearBack { n, inputs, outputs, x, w, dy, dw, db, dx, dx_accumulate } => {
                    let (x, w, dx) = (t(x), t(w), dx.map(t));
                    let layer = matmul::Linear { n, inputs, outputs, x: &x, weight: &w, bias: &unused };
                    let dx = dx.as_ref().map(|dx| (dx, dx_accumulate));
                    out.extend(matmul::linear_backward(ctx, &layer, &t(dy), &t(dw), &t(db), dx)?);
                }
                Instr::MaxPool { g, x, y, argmax, relu } => {
                    out.push(max_pool::max_pool_forward(ctx, &g, relu, &t(x), &t(y), &t(argmax))?)
                }
                Instr::MaxPoolBack { g, dy, argmax, dx } => {
                    out.push(max_pool::max_pool_backward(ctx, &g, &t(dy), &t(argmax), &t(dx))?)
                }
                Instr::AvgPool { g, x, y } => out.push(avg_pool::avg_pool_forward(ctx, &g, &t(x), &t(y))?),
                Instr::AvgPoolBack { g, dy, dx } => out.push(avg_pool::avg_pool_backward(ctx, &g, &t(dy), &t(dx))?),
                Instr::BatchNorm { .. } | Instr::BatchNormBack { .. } | Instr::Dropout { .. } => {
                    out.extend(lower_per_step(ctx, instr, &t, split, training)?)
                }
                Instr::Relu { len, x, y } => out.push(relu::relu_forward(ctx, len, &t(x), &t(y))?),
                Instr::ReluBack { len, y, dy, dx } => out.push(relu::relu_backward(ctx, len, &t(y), &t(dy), &t(dx))?),
                Instr::Add { len, a, b, y } => out.push(add::add(ctx, len, &t(a), &t(b), &t(y))?),
                Instr::AddAssign { len, a, y } => out.push(add::add_assign(ctx, len, &t(a), &t(y))?),
                Instr::CopyChannels { copy, src, dst } => {
                    out.push(concat::copy_channels(ctx, &copy, &t(src), &t(dst))?)
                }
                Instr::Loss { rows, classes, logits, labels, dlogits } => {
                    let split = split.ok_or_else(|| Error::Graph("a loss needs a split to read labels from".into()))?;
                    let outputs = sce::LossOutputs {
                        dlogits: &dlogits.map(t).unwrap_or_else(|| unused.clone()),
                        write_grad: dlogits.is_some(),
                        predictions: split.predictions().unwrap_or(&no_predictions),
                        write_predictions: split.predictions().is_some(),
                        metrics: split.metrics(),
                    };
                    let (logits, labels, samples) = (t(logits), t(labels), split.samples());
                    out.push(sce::softmax_cross_entropy(
                        ctx,
                        rows,
                        classes,
                        label_smoothing,
                        samples,
                        &logits,
                        &labels,
                        split.step(),
                        &outputs,
                    )?);
                }
            }
        }
        self.dispatches = out;
        Ok(())
    }

    /// The batch's input [batch, c, h, w], which an inference plan reads (the others gather it).
    pub fn input(&self) -> Tensor {
        let Buf::Act(a) = self.program.input else { unreachable!("the input is an activation") };
        self.buffers[a].clone().expect("every used buffer is allocated")
    }

    /// The batch's logits [batch, classes] after a step. Read them from an evaluation or
    /// inference plan: in a training plan the backward pass reuses their memory once the loss
    /// has read them.
    pub fn logits(&self) -> Tensor {
        let Buf::Act(a) = self.program.logits else { unreachable!("logits are an activation") };
        self.buffers[a].clone().expect("every used buffer is allocated")
    }

    /// Submits one step, then the copy `read` requests, if any.
    pub fn submit(&self, ctx: &GpuContext, read: Option<&mut AsyncRead>) -> Result<Submission> {
        self.submit_steps(ctx, 1, read)
    }

    /// Submits `steps` steps back to back in one command buffer (the step counter lives on the
    /// GPU, so no host work sits between them), then the copy `read` requests, if any.
    pub fn submit_steps(&self, ctx: &GpuContext, steps: usize, read: Option<&mut AsyncRead>) -> Result<Submission> {
        ctx.submit((0..steps).flat_map(|_| &self.dispatches), read)
    }
}

/// The gather of `split`'s next `batch` images and labels into `(x, y)`, augmented where
/// `training` asks for it (evaluation never is).
fn gather_next_batch(
    ctx: &GpuContext,
    split: &GpuSplit,
    training: Option<&Training>,
    batch: usize,
    (x, y): (&Tensor, &Tensor),
) -> Result<Dispatch> {
    let augmented = training.filter(|tr| !tr.augment.is_none()).map(|tr| gather::Augmented {
        augment: tr.augment,
        seed: tr.seed,
        steps_per_epoch: split.steps(),
        steps: &tr.optimizer.steps,
    });
    let (images, norm, order, step) = (split.images(), split.normalization(), split.order(), split.step());
    gather::gather_batch(ctx, images, batch, batch, norm, order, step, (x, y), augmented.as_ref())
}

/// The dispatches of the instructions that depend on the step as well as on the batch: a batch
/// norm (its training statistics count the step's real rows) and a dropout (its mask is drawn
/// from the run's seed and the step within the run).
fn lower_per_step(
    ctx: &GpuContext,
    instr: &Instr,
    t: &dyn Fn(Buf) -> Tensor,
    split: Option<&GpuSplit>,
    training: Option<&Training>,
) -> Result<Vec<Dispatch>> {
    match *instr {
        Instr::BatchNorm { shape, x, y, affine, running, saved, training } => {
            let (x, [gamma, beta], [mean, var, batches], saved) = (t(x), affine.map(t), running.map(t), t(saved));
            let running = [&mean, &var, &batches];
            let layer = batch_norm::BatchNorm { shape, x: &x, gamma: &gamma, beta: &beta, running, saved: &saved };
            let batch = match (training, split) {
                (true, Some(s)) => Some((s.step(), s.samples())),
                (true, None) => return Err(Error::Graph("a training batch norm needs a split".into())),
                (false, _) => None,
            };
            batch_norm::batch_norm_forward(ctx, &layer, batch, &t(y))
        }
        Instr::BatchNormBack { shape, x, dy, gamma, saved, sums, daffine, dx } => {
            let (x, gamma, saved, [dgamma, dbeta], dx) = (t(x), t(gamma), t(saved), daffine.map(t), dx.map(t));
            let forward = batch_norm::Saved { shape, x: &x, gamma: &gamma, saved: &saved };
            batch_norm::batch_norm_backward(ctx, &forward, &t(dy), &t(sums), (&dgamma, &dbeta), dx.as_ref())
        }
        Instr::Dropout { len, p, x, y, backward } => {
            let (Some(training), Some(split)) = (training, split) else {
                return Err(Error::Graph("a training dropout needs a training plan".into()));
            };
            let d = dropout::Dropout { p, seed: training.seed };
            let counters = (&training.optimizer.steps, split.step());
            Ok(vec![dropout::dropout(ctx, &d, len, counters, backward, (&t(x), &t(y)))?])
        }
        _ => unreachable!("lower_per_step takes batch norms and dropouts"),
    }
}
