//! Lowers a graph, at a given batch size, to a straight-line program over virtual buffers:
//! the forward instructions, the loss, and the backward instructions derived by reverse-mode
//! autodiff (no network has a hand-written backward). Gradients of a tensor read by several
//! consumers are summed. Both the GPU plan and the CPU reference execute this same program.

use super::{Graph, Op};
use crate::error::{Error, Result};
use crate::ops::concat::ChannelCopy;
use crate::ops::window::PoolGeometry;
use crate::ops::window::{ConvGeometry, Window};

/// A buffer of the program: an activation/gradient/scratch (`Act`, by index into
/// `Program::buffers`), or a parameter or its gradient (by parameter index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buf {
    /// An activation, gradient or scratch buffer, by index into [`Program::buffers`].
    Act(usize),
    /// A parameter's values, by index into [`Graph::params`].
    Param(usize),
    /// A parameter's gradient, by parameter index.
    Grad(usize),
}

/// An activation buffer of a [`Program`]: its size, element type and name.
#[derive(Clone, Debug)]
pub struct BufferDesc {
    /// Elements (4 bytes each), at least 1.
    pub len: usize,
    /// Holds u32 (argmax indices, labels) rather than f32.
    pub integer: bool,
    /// Its label (`conv1`, `conv1.grad`, `mp1.argmax`), which names it in GPU errors.
    pub name: String,
}

/// One instruction of a [`Program`]: a kernel launch (or a few) over [`Buf`]s. Sizes span
/// the whole batch.
#[derive(Clone, Debug)]
pub enum Instr {
    /// y = conv(x) + b (+ residual), then ReLU when `relu`.
    Conv {
        /// Input shape (batch included) and window.
        g: ConvGeometry,
        /// Output channels.
        oc: usize,
        /// Input, `[n, c, h, w]`.
        x: Buf,
        /// Weight, `[oc, c, kh, kw]`.
        w: Buf,
        /// Bias, `[oc]`.
        b: Buf,
        /// Output, `[n, oc, oh, ow]`.
        y: Buf,
        /// Apply a fused ReLU to the output.
        relu: bool,
        /// A skip input shaped like y, added before the ReLU (a residual block's end).
        residual: Option<Buf>,
    },
    /// dw, db and (when wanted) dx from dy; `dcols` and `partials` are scratch.
    ConvBack {
        /// Input shape (batch included) and window.
        g: ConvGeometry,
        /// Output channels.
        oc: usize,
        /// The forward input, `[n, c, h, w]`.
        x: Buf,
        /// Weight, `[oc, c, kh, kw]`.
        w: Buf,
        /// Gradient of the output, `[n, oc, oh, ow]` (already through a fused ReLU's backward).
        dy: Buf,
        /// Weight gradient, written.
        dw: Buf,
        /// Bias gradient, written.
        db: Buf,
        /// Input gradient, when the input needs one.
        dx: Option<Buf>,
        /// Add dx into the buffer rather than overwrite it (a further gradient contribution).
        dx_accumulate: bool,
        /// Scratch for the column matrix's gradient, which col2im needs at a stride above 1.
        dcols: Buf,
        /// Scratch for the weight and bias gradients of each chunk of the batch, before they are summed.
        partials: Buf,
    },
    /// y `[n, outputs]` = x `[n, inputs]` · wᵀ + b.
    Linear {
        /// Batch rows.
        n: usize,
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
        /// Input, `[n, inputs]`.
        x: Buf,
        /// Weight, `[outputs, inputs]`.
        w: Buf,
        /// Bias, `[outputs]`.
        b: Buf,
        /// Output, `[n, outputs]`.
        y: Buf,
    },
    /// dw = dyᵀ · x and db = Σ dy, and dx = dy · w when wanted.
    LinearBack {
        /// Batch rows.
        n: usize,
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
        /// The forward input, `[n, inputs]`.
        x: Buf,
        /// Weight, `[outputs, inputs]`.
        w: Buf,
        /// Gradient of the output, `[n, outputs]`.
        dy: Buf,
        /// Weight gradient, written.
        dw: Buf,
        /// Bias gradient, written.
        db: Buf,
        /// Input gradient, when the input needs one.
        dx: Option<Buf>,
        /// Add dx into the buffer rather than overwrite it (a further gradient contribution).
        dx_accumulate: bool,
    },
    /// y = max pool of x, then ReLU when `relu`: a fused ReLU after the pool, or (a no-op on the
    /// values) masking the ReLU before it. Either way the argmax masks the ReLU's gradient.
    MaxPool {
        /// Input planes (batch × channels) and window.
        g: PoolGeometry,
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Each output's winning pixel within its plane (u32), saved for the backward pass.
        argmax: Buf,
        /// Apply a ReLU to the output.
        relu: bool,
    },
    /// dx = dy routed to each window's argmax pixel, summed where windows share one.
    MaxPoolBack {
        /// Input planes (batch × channels) and window.
        g: PoolGeometry,
        /// Gradient of the output.
        dy: Buf,
        /// The forward pass's argmax.
        argmax: Buf,
        /// Input gradient.
        dx: Buf,
    },
    /// y = mean of each window of x, padding counted.
    AvgPool {
        /// Input planes (batch × channels) and window.
        g: PoolGeometry,
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
    },
    /// dx = the sum of dy / (k·k) over the windows that hold each pixel.
    AvgPoolBack {
        /// Input planes (batch × channels) and window.
        g: PoolGeometry,
        /// Gradient of the output.
        dy: Buf,
        /// Input gradient.
        dx: Buf,
    },
    /// y = max(x, 0), elementwise.
    Relu {
        /// Elements.
        len: usize,
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
    },
    /// dx = dy where the forward output y is positive, else 0.
    ReluBack {
        /// Elements.
        len: usize,
        /// The forward output.
        y: Buf,
        /// Gradient of the output.
        dy: Buf,
        /// Input gradient.
        dx: Buf,
    },
    /// y = a + b, elementwise.
    Add {
        /// Elements.
        len: usize,
        /// First input.
        a: Buf,
        /// Second input.
        b: Buf,
        /// Output.
        y: Buf,
    },
    /// y += a, elementwise: a further gradient contribution added in.
    AddAssign {
        /// Elements.
        len: usize,
        /// What is added.
        a: Buf,
        /// The buffer added into.
        y: Buf,
    },
    /// Copies a range of channels of src into dst (a concat's part forward, its split backward);
    /// dst's other channels are left as they are.
    CopyChannels {
        /// Which channels, from where to where.
        copy: ChannelCopy,
        /// Source.
        src: Buf,
        /// Destination.
        dst: Buf,
    },
    /// y = batch norm of x `[n, c, plane]`: with the batch's statistics (over the step's real
    /// rows), updating the running ones, when `training`; else with the running ones.
    BatchNorm {
        /// Rows, channels and plane (h·w, or 1 after a linear layer).
        shape: [usize; 3],
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Scale and shift, `[c]` each.
        affine: [Buf; 2],
        /// Running mean and variance, `[c]` each, and the count of training batches, `[1]`.
        running: [Buf; 3],
        /// Each channel's mean and 1/√(var + eps), then the count: `[2c + 1]`, for the backward pass.
        saved: Buf,
        /// Batch statistics (a training step) or running ones.
        training: bool,
    },
    /// dgamma, dbeta and (when wanted) dx of a training batch norm.
    BatchNormBack {
        /// Rows, channels and plane.
        shape: [usize; 3],
        /// The forward input.
        x: Buf,
        /// Gradient of the output.
        dy: Buf,
        /// The scale, `[c]`.
        gamma: Buf,
        /// The forward pass's saved statistics.
        saved: Buf,
        /// Scratch for the per-channel sums, `[2c]`.
        sums: Buf,
        /// Scale and shift gradients, written.
        daffine: [Buf; 2],
        /// Input gradient, when the input needs one.
        dx: Option<Buf>,
    },
    /// y = dropout of x in training (`backward`: dx from dy, the same draw).
    Dropout {
        /// Elements.
        len: usize,
        /// The probability of dropping an element.
        p: f32,
        /// Input (backward: the output's gradient).
        x: Buf,
        /// Output (backward: the input's gradient).
        y: Buf,
        /// The backward pass, after the loss advanced the step counter.
        backward: bool,
    },
    /// Loss and metrics of logits against labels; dlogits when training.
    Loss {
        /// Rows of the batch.
        rows: usize,
        /// Classes the logits score.
        classes: usize,
        /// Logits, `[rows, classes]`.
        logits: Buf,
        /// Labels, `[rows]` (u32).
        labels: Buf,
        /// Gradient of the mean loss with respect to the logits, `[rows, classes]`, when training.
        dlogits: Option<Buf>,
    },
}

impl Instr {
    /// Every buffer the instruction reads or writes.
    pub fn buffers(&self) -> Vec<Buf> {
        use Instr::*;
        match self {
            Conv { x, w, b, y, residual, .. } => [*x, *w, *b, *y].into_iter().chain(*residual).collect(),
            ConvBack { x, w, dy, dw, db, dx, dcols, partials, .. } => {
                [*x, *w, *dy, *dw, *db, *dcols, *partials].into_iter().chain(*dx).collect()
            }
            Linear { x, w, b, y, .. } => vec![*x, *w, *b, *y],
            LinearBack { x, w, dy, dw, db, dx, .. } => [*x, *w, *dy, *dw, *db].into_iter().chain(*dx).collect(),
            MaxPool { x, y, argmax, .. } => vec![*x, *y, *argmax],
            MaxPoolBack { dy, argmax, dx, .. } => vec![*dy, *argmax, *dx],
            AvgPool { x, y, .. } => vec![*x, *y],
            AvgPoolBack { dy, dx, .. } => vec![*dy, *dx],
            Relu { x, y, .. } => vec![*x, *y],
            ReluBack { y, dy, dx, .. } => vec![*y, *dy, *dx],
            Add { a, b, y, .. } => vec![*a, *b, *y],
            AddAssign { a, y, .. } => vec![*a, *y],
            CopyChannels { src, dst, .. } => vec![*src, *dst],
            BatchNorm { x, y, affine, running, saved, .. } => {
                [*x, *y, affine[0], affine[1], running[0], running[1], running[2], *saved].to_vec()
            }
            BatchNormBack { x, dy, gamma, saved, sums, daffine, dx, .. } => {
                [*x, *dy, *gamma, *saved, *sums, daffine[0], daffine[1]].into_iter().chain(*dx).collect()
            }
            Dropout { x, y, .. } => vec![*x, *y],
            Loss { logits, labels, dlogits, .. } => [*logits, *labels].into_iter().chain(*dlogits).collect(),
        }
    }
}

/// A graph lowered at one batch size: its buffers and the instructions over them, in the order
/// they run.
pub struct Program {
    /// Samples a step.
    pub batch: usize,
    /// Every activation, gradient and scratch buffer, indexed by `Buf::Act`.
    pub buffers: Vec<BufferDesc>,
    /// What the program computes.
    pub pass: Pass,
    /// The batch's images [batch, c, h, w] and labels \[batch\] (u32; unused by inference).
    pub input: Buf,
    /// The batch's labels `[batch]` (u32; unused by inference).
    pub labels: Buf,
    /// The logits `[batch, classes]`, which the loss reads.
    pub logits: Buf,
    /// Classes the logits score.
    pub classes: usize,
    /// Forward instructions, then the loss, then (when training) the backward instructions.
    pub instrs: Vec<Instr>,
}

/// Builds a program's buffers and instructions; the forward lowering lives here, the backward
/// pass in [`super::autodiff`].
pub(super) struct Builder<'g> {
    pub graph: &'g Graph,
    pub batch: usize,
    /// A training step: batch norms use the batch's statistics.
    pub training: bool,
    pub buffers: Vec<BufferDesc>,
    pub instrs: Vec<Instr>,
}

/// What the forward lowering leaves for the backward pass, by node index.
pub(super) struct Forward {
    /// Each node's output buffer.
    pub out: Vec<Buf>,
    /// A max pool's saved argmax.
    pub argmax: Vec<Option<Buf>>,
    /// A batch norm's saved statistics.
    pub saved: Vec<Option<Buf>>,
    /// A ReLU whose gradient the next max pool's argmax masks: one fused into the pool before
    /// it, or one whose only consumer is a max pool (which then masks windows whose max is not
    /// positive, those where the ReLU clamped its winner).
    pub masked_by_pool: Vec<bool>,
}

impl Builder<'_> {
    pub fn new_buf(&mut self, len: usize, integer: bool, name: String) -> Buf {
        self.buffers.push(BufferDesc { len: len.max(1), integer, name });
        Buf::Act(self.buffers.len() - 1)
    }
    /// Elements of node `node`'s output over the batch.
    pub fn node_len(&self, node: usize) -> usize {
        self.batch * self.graph.nodes[node].shape.iter().product::<usize>()
    }
    pub fn conv_geometry(&self, x: usize, kernel: usize, stride: usize, pad: usize) -> ConvGeometry {
        let [c, h, w] = self.graph.nodes[x].shape;
        ConvGeometry { n: self.batch, c, window: Window { h, w, kh: kernel, kw: kernel, stride, pad } }
    }
    pub fn pool_geometry(&self, x: usize, k: usize, stride: usize, pad: usize) -> PoolGeometry {
        let [c, h, w] = self.graph.nodes[x].shape;
        PoolGeometry::new(self.batch * c, h, w, k, stride, pad)
    }
    /// A batch norm's `[rows, channels, plane]` over its input node `x`.
    pub fn batch_norm_shape(&self, x: usize) -> [usize; 3] {
        let [c, h, w] = self.graph.nodes[x].shape;
        [self.batch, c, h * w]
    }
    /// The copies that concatenate (or, backward, split) node `node`'s inputs along channels:
    /// (input node, the copy for concatenation, the copy for the split).
    pub fn concat_parts(&self, node: usize) -> Vec<(usize, ChannelCopy, ChannelCopy)> {
        let nodes = &self.graph.nodes;
        let Op::Concat { ref xs } = nodes[node].op else { unreachable!("concat_parts of a concat") };
        let [total, h, w] = nodes[node].shape;
        let mut offset = 0;
        xs.iter()
            .map(|&x| {
                let c = nodes[x].shape[0];
                offset += c;
                let at = offset - c;
                (
                    x,
                    ChannelCopy::concat(self.batch, h * w, c, total, at),
                    ChannelCopy::split(self.batch, h * w, c, total, at),
                )
            })
            .collect()
    }
}

/// The graph's one loss node and one input node, after checking that every node contributes
/// to the loss (a layer that does not would hold parameters that never train).
fn check(graph: &Graph, batch: usize) -> Result<(usize, usize)> {
    if batch == 0 {
        return Err(Error::Graph("batch size must be at least 1".into()));
    }
    let nodes = &graph.nodes;
    let find = |is: fn(&Op) -> bool| (0..nodes.len()).filter(|&i| is(&nodes[i].op)).collect::<Vec<_>>();
    let &[loss] = find(|op| matches!(op, Op::SoftmaxCrossEntropy { .. })).as_slice() else {
        let count = find(|op| matches!(op, Op::SoftmaxCrossEntropy { .. })).len();
        return Err(Error::Graph(format!("a graph needs exactly one loss, this one has {count}")));
    };
    let mut needed = vec![false; nodes.len()];
    needed[loss] = true;
    for i in (0..nodes.len()).rev() {
        if needed[i] {
            for j in nodes[i].op.inputs() {
                needed[j] = true;
            }
        }
    }
    if let Some(i) = (0..nodes.len()).find(|&i| !needed[i]) {
        let what = match nodes[i].op {
            Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias, .. } | Op::BatchNorm { weight, bias, .. } => {
                format!(" (so parameters {}, {} are never used)", graph.params[weight].name, graph.params[bias].name)
            }
            _ => String::new(),
        };
        return Err(Error::Graph(format!("layer `{}` does not contribute to the loss{what}", nodes[i].name)));
    }
    let inputs = find(|op| matches!(op, Op::Input));
    let &[input] = inputs.as_slice() else {
        return Err(Error::Graph(format!("a graph needs exactly one input, this one has {}", inputs.len())));
    };
    Ok((loss, input))
}

/// What a program computes over a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Forward, loss and metrics, then every gradient (a training step).
    Training,
    /// Forward, loss and metrics (against the labels), no gradient.
    Evaluation,
    /// Forward to the logits alone: no labels, no loss.
    Inference,
}

impl Program {
    /// Lowers `graph` at `batch` samples a step: check, forward, and as `pass` asks, the loss
    /// and the backward pass that autodiff derives.
    pub fn build(graph: &Graph, batch: usize, pass: Pass) -> Result<Program> {
        let (loss, input) = check(graph, batch)?;
        let Op::SoftmaxCrossEntropy { logits, labels } = graph.nodes[loss].op else { unreachable!() };
        let training = pass == Pass::Training;
        let mut b = Builder { graph, batch, training, buffers: Vec::new(), instrs: Vec::new() };
        let forward = b.forward();
        let classes = graph.nodes[logits].shape[0];
        let dlogits = (pass == Pass::Training).then(|| b.new_buf(batch * classes, false, "loss.grad".into()));
        let (logits_buf, labels_buf) = (forward.out[logits], forward.out[labels]);
        if pass != Pass::Inference {
            b.instrs.push(Instr::Loss { rows: batch, classes, logits: logits_buf, labels: labels_buf, dlogits });
        }
        if let Some(dlogits) = dlogits {
            super::autodiff::backward(&mut b, &forward, logits, dlogits, input)?;
        }
        Ok(Program {
            pass,
            batch,
            buffers: b.buffers,
            input: forward.out[input],
            labels: labels_buf,
            logits: logits_buf,
            classes,
            instrs: b.instrs,
        })
    }
}

impl Builder<'_> {
    /// The forward instructions of every node, in graph order. A ReLU right after a conv or a
    /// max pool (its only consumer) is fused: the conv or pool writes the ReLU's output directly.
    fn forward(&mut self) -> Forward {
        let nodes = &self.graph.nodes;
        let n = nodes.len();
        let mut f = Forward {
            out: Vec::with_capacity(n),
            argmax: vec![None; n],
            saved: vec![None; n],
            masked_by_pool: vec![false; n],
        };
        let mut absorbed = 0;
        for (i, node) in nodes.iter().enumerate() {
            if absorbed > 0 {
                absorbed -= 1;
                f.out.push(f.out[i - 1]);
                f.masked_by_pool[i] = matches!(nodes[i - 1].op, Op::MaxPool2d { .. });
                continue;
            }
            let y = match node.op {
                Op::Labels => self.new_buf(self.batch, true, "labels".into()),
                Op::Flatten { x } => f.out[x], // same memory, new shape
                Op::Dropout { x, .. } if !self.training => f.out[x], // the identity
                _ => self.new_buf(self.node_len(i), false, node.name.clone()),
            };
            f.out.push(y);
            absorbed = self.forward_node(i, &mut f);
        }
        f
    }

    /// The forward instructions of node `i`, whose output is `f.out[i]`; returns how many of the
    /// nodes after it were fused into it (a ReLU; or a residual add and the ReLU after it).
    fn forward_node(&mut self, i: usize, f: &mut Forward) -> usize {
        let node = &self.graph.nodes[i];
        let (y, len) = (f.out[i], self.node_len(i));
        match node.op {
            Op::Input | Op::Labels | Op::Flatten { .. } | Op::SoftmaxCrossEntropy { .. } => {}
            Op::Conv2d { x, weight, bias, kernel, stride, pad } => {
                let g = self.conv_geometry(x, kernel, stride, pad);
                let (w, b, x, oc) = (Buf::Param(weight), Buf::Param(bias), f.out[x], node.shape[0]);
                if let Some(skip) = self.residual_fuses_into(i) {
                    let residual = Some(f.out[skip]);
                    self.instrs.push(Instr::Conv { g, oc, x, w, b, y, relu: true, residual });
                    return 2;
                }
                let relu = self.relu_fuses_into(i);
                self.instrs.push(Instr::Conv { g, oc, x, w, b, y, relu, residual: None });
                return relu as usize;
            }
            Op::Linear { x, weight, bias } => self.instrs.push(Instr::Linear {
                n: self.batch,
                inputs: self.graph.nodes[x].shape[0],
                outputs: node.shape[0],
                x: f.out[x],
                w: Buf::Param(weight),
                b: Buf::Param(bias),
                y,
            }),
            Op::MaxPool2d { x, kernel, stride, pad } => {
                let g = self.pool_geometry(x, kernel, stride, pad);
                let argmax = self.new_buf(len, true, format!("{}.argmax", node.name));
                f.argmax[i] = Some(argmax);
                let relu_after = self.relu_fuses_into(i);
                let relu_before = matches!(self.graph.nodes[x].op, Op::Relu { .. }) && self.consumers(x) == 1;
                f.masked_by_pool[x] = relu_before;
                let relu = relu_after || relu_before;
                self.instrs.push(Instr::MaxPool { g, x: f.out[x], y, argmax, relu });
                return relu_after as usize;
            }
            Op::AvgPool2d { x, kernel, stride, pad } => {
                let g = self.pool_geometry(x, kernel, stride, pad);
                self.instrs.push(Instr::AvgPool { g, x: f.out[x], y });
            }
            Op::BatchNorm { x, weight, bias, running_mean, running_var, num_batches_tracked } => {
                let shape = self.batch_norm_shape(x);
                let saved = self.new_buf(2 * shape[1] + 1, false, format!("{}.saved", node.name));
                f.saved[i] = Some(saved);
                self.instrs.push(Instr::BatchNorm {
                    shape,
                    x: f.out[x],
                    y,
                    affine: [Buf::Param(weight), Buf::Param(bias)],
                    running: [Buf::Param(running_mean), Buf::Param(running_var), Buf::Param(num_batches_tracked)],
                    saved,
                    training: self.training,
                });
            }
            Op::Dropout { x, p } if self.training => {
                self.instrs.push(Instr::Dropout { len, p, x: f.out[x], y, backward: false })
            }
            Op::Dropout { .. } => {}
            Op::Relu { x } => self.instrs.push(Instr::Relu { len, x: f.out[x], y }),
            Op::Add { a, b } => self.instrs.push(Instr::Add { len, a: f.out[a], b: f.out[b], y }),
            Op::Concat { .. } => {
                for (x, copy, _) in self.concat_parts(i) {
                    self.instrs.push(Instr::CopyChannels { copy, src: f.out[x], dst: y });
                }
            }
        }
        0
    }

    /// Whether node `i + 1` is a ReLU of node `i` and its only consumer.
    fn relu_fuses_into(&self, i: usize) -> bool {
        let next = self.graph.nodes.get(i + 1).map(|n| &n.op);
        self.consumers(i) == 1 && matches!(next, Some(Op::Relu { x }) if *x == i)
    }

    /// The skip input when node `i + 1` adds node `i` (its only consumer) to it and node `i + 2`,
    /// the add's only consumer, is a ReLU of it: a residual block's end, fused into conv `i`.
    fn residual_fuses_into(&self, i: usize) -> Option<usize> {
        let Some(Op::Add { a, b }) = self.graph.nodes.get(i + 1).map(|n| &n.op) else { return None };
        let skip = if *a == i { *b } else { *a };
        let adds_i = (*a == i) != (*b == i);
        (adds_i && self.consumers(i) == 1 && self.relu_fuses_into(i + 1)).then_some(skip)
    }

    /// How many nodes read node `i`.
    fn consumers(&self, i: usize) -> usize {
        self.graph.nodes.iter().filter(|n| n.op.inputs().contains(&i)).count()
    }
}
