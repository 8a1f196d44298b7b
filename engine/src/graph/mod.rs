//! A static graph builder: a network is declared once, with shapes inferred and checked as it is
//! built; [`program`] lowers it to forward instructions and `autodiff` derives the backward ones,
//! which the GPU [`plan`] turns into recorded dispatches and [`cpu`] runs as a reference.

mod autodiff;
pub mod cpu;
pub mod plan;
pub mod program;

pub use crate::context::PARAM_ALIGN;
use crate::error::{Error, Result};
use crate::ops::window::PoolGeometry;
use crate::ops::window::{ConvGeometry, Window};
use crate::rng::Rng;

/// A node of the graph it was created by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId {
    graph: u64,
    index: usize,
}

/// Per-sample shape [channels, height, width]; the batch size is chosen when planning.
pub type Shape = [usize; 3];

/// What a node computes. Its inputs are node indices (into [`Graph::nodes`]); `weight` and
/// `bias` are parameter indices (into [`Graph::params`]).
#[derive(Clone, Debug)]
pub enum Op {
    /// The batch's images, `[c, h, w]` a sample; reads nothing.
    Input,
    /// The batch's class labels (u32, one a sample; shape `[1, 1, 1]`); reads nothing.
    Labels,
    /// `y = conv(x, weight) + bias`, to `[oc, oh, ow]`.
    Conv2d {
        /// Input node.
        x: usize,
        /// Parameter index of the weight, `[oc, c, kernel, kernel]`.
        weight: usize,
        /// Parameter index of the bias, `[oc]`.
        bias: usize,
        /// Window side.
        kernel: usize,
        /// Window step.
        stride: usize,
        /// Zeros on each side.
        pad: usize,
    },
    /// The max of each `kernel`×`kernel` window of each channel.
    MaxPool2d {
        /// Input node.
        x: usize,
        /// Window side.
        kernel: usize,
        /// Window step.
        stride: usize,
        /// Padding on each side.
        pad: usize,
    },
    /// The mean of each `kernel`×`kernel` window of each channel, padding counted.
    AvgPool2d {
        /// Input node.
        x: usize,
        /// Window side.
        kernel: usize,
        /// Window step.
        stride: usize,
        /// Zeros on each side.
        pad: usize,
    },
    /// Elementwise max(x, 0).
    Relu {
        /// Input node.
        x: usize,
    },
    /// Elementwise a + b, of the same shape.
    Add {
        /// First input node.
        a: usize,
        /// Second input node.
        b: usize,
    },
    /// The inputs concatenated along channels, in order.
    Concat {
        /// Input nodes, in channel order.
        xs: Vec<usize>,
    },
    /// `x` reshaped to `[c·h·w, 1, 1]` (the same memory).
    Flatten {
        /// Input node.
        x: usize,
    },
    /// `y = x · weightᵀ + bias` on a flattened input, to `[outputs, 1, 1]`.
    Linear {
        /// Input node, `[features, 1, 1]`.
        x: usize,
        /// Parameter index of the weight, `[outputs, features]`.
        weight: usize,
        /// Parameter index of the bias, `[outputs]`.
        bias: usize,
    },
    /// Batch normalization of each channel (BatchNorm2d; BatchNorm1d on a flattened `[features,
    /// 1, 1]`): in training with the batch's statistics, updating the running ones; in
    /// evaluation with the running ones. The output has the input's shape.
    BatchNorm {
        /// Input node.
        x: usize,
        /// Parameter index of the scale (`name.weight`, `[channels]`).
        weight: usize,
        /// Parameter index of the shift (`name.bias`, `[channels]`).
        bias: usize,
        /// Parameter index of the running mean (not trained).
        running_mean: usize,
        /// Parameter index of the running variance (not trained).
        running_var: usize,
        /// Parameter index of the count of training batches (not trained; int64 in a state_dict).
        num_batches_tracked: usize,
    },
    /// Inverted dropout in training (each element zeroed with probability `p`, the others
    /// scaled by 1/(1 − p)); the identity in evaluation.
    Dropout {
        /// Input node.
        x: usize,
        /// The probability of dropping an element, in [0, 1).
        p: f32,
    },
    /// The loss: mean softmax cross-entropy of the logits against the labels, `[1, 1, 1]`.
    SoftmaxCrossEntropy {
        /// The logits node, `[classes, 1, 1]`.
        logits: usize,
        /// The [`Op::Labels`] node.
        labels: usize,
    },
}

impl Op {
    /// The nodes it reads, by node index, in order.
    pub fn inputs(&self) -> Vec<usize> {
        match self {
            Op::Input | Op::Labels => vec![],
            Op::Conv2d { x, .. }
            | Op::MaxPool2d { x, .. }
            | Op::AvgPool2d { x, .. }
            | Op::Relu { x }
            | Op::Flatten { x }
            | Op::Linear { x, .. }
            | Op::BatchNorm { x, .. }
            | Op::Dropout { x, .. } => vec![*x],
            Op::Add { a, b } => vec![*a, *b],
            Op::Concat { xs } => xs.clone(),
            Op::SoftmaxCrossEntropy { logits, labels } => vec![*logits, *labels],
        }
    }
}

/// A layer of a [`Graph`]: its name, what it computes and its per-sample output shape.
#[derive(Clone, Debug)]
pub struct Node {
    /// The layer's name (`conv1`, `rblock1.relu2`); its parameters are named after it.
    pub name: String,
    /// What it computes, from which nodes and parameters.
    pub op: Op,
    /// Its per-sample output shape.
    pub shape: Shape,
}

/// How a tensor starts: PyTorch's default for its layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Uniform in ±1/√fan_in (Conv2d's and Linear's weights and biases).
    Uniform,
    /// All ones (a batch norm's scale, its running variance).
    Ones,
    /// All zeros (a batch norm's shift, its running mean).
    Zeros,
}

/// A tensor of the network, named as PyTorch's state_dict names it (`conv1.weight`,
/// `bn1.running_mean`), at `offset` in the packed parameter buffer: the trained tensors first,
/// then those a layer updates itself (a batch norm's running statistics).
#[derive(Clone, Debug)]
pub struct Param {
    /// The state_dict name: `layer.weight`, `layer.bias`, `layer.running_mean`, ….
    pub name: String,
    /// PyTorch's shape: `[out, in, k, k]` for a conv weight, `[out, in]` for a linear one, `[out]`
    /// for a bias.
    pub shape: Vec<usize>,
    /// Where it starts in the packed parameter buffer, in floats (a multiple of [`PARAM_ALIGN`]);
    /// final once the graph is built (declaring a trained tensor moves the untrained ones).
    pub offset: usize,
    /// Inputs that feed each output (c·k·k for a conv, features for a linear layer): the
    /// initialisation bound is ±1/√fan_in.
    pub fan_in: usize,
    /// How it starts.
    pub init: Init,
    /// Whether the optimizer trains it (PyTorch's parameters) or not (its buffers).
    pub trainable: bool,
    /// A count kept as a whole number in f32, which a state_dict holds as int64
    /// (`num_batches_tracked`).
    pub counter: bool,
}

impl Param {
    /// Elements of the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A network as a list of named layers, each reading earlier ones; its learnable tensors are
/// packed into one buffer. Build it with the layer methods, which infer and check each layer's
/// output shape.
pub struct Graph {
    id: u64,
    nodes: Vec<Node>,
    params: Vec<Param>,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl Graph {
    /// An empty graph, with an identity of its own: a [`NodeId`] of another graph is refused.
    pub fn new() -> Graph {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Graph { id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed), nodes: Vec::new(), params: Vec::new() }
    }

    fn push(&mut self, name: &str, op: Op, shape: Shape) -> NodeId {
        self.nodes.push(Node { name: name.to_string(), op, shape });
        NodeId { graph: self.id, index: self.nodes.len() - 1 }
    }

    fn node(&self, layer: &str, id: NodeId) -> Result<usize> {
        if id.graph != self.id || id.index >= self.nodes.len() {
            return Err(Error::Graph(format!("layer `{layer}`: its input is not a node of this graph")));
        }
        Ok(id.index)
    }

    /// The per-sample shape of a node.
    pub fn shape(&self, id: NodeId) -> Result<Shape> {
        Ok(self.nodes[self.node("shape", id)?].shape)
    }

    /// The layers, in the order they were declared.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every tensor, trained or not, in the order they were declared (PyTorch's state_dict
    /// order).
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Why a training epoch of `samples` in batches of `batch` cannot run, if it cannot: a batch
    /// norm would see one value per channel in a step (a batch of 1 after a linear layer, or a
    /// last batch of 1), which PyTorch refuses too, or more than the 2^24 values a channel it
    /// counts exactly in f32.
    pub fn batch_norm_refusal(&self, samples: usize, batch: usize) -> Option<String> {
        let last = match samples % batch.max(1) {
            0 => batch,
            rows => rows,
        };
        self.nodes.iter().find_map(|node| {
            let Op::BatchNorm { x, .. } = node.op else { return None };
            let [_, h, w] = self.nodes[x].shape;
            let name = &node.name;
            match (last * h * w, batch * h * w) {
                (1, _) => Some(format!(
                    "batch norm `{name}` would see one value per channel in a step of 1 image ({samples} training \
                     images in batches of {batch}); it needs at least two: change the batch size or the number of \
                     training images"
                )),
                (_, values) if values > 1 << 24 => Some(format!(
                    "batch norm `{name}` would see {values} values per channel in a step of {batch} images, more than \
                     the 2^24 it counts exactly; use a smaller batch size"
                )),
                _ => None,
            }
        })
    }

    /// Floats at the start of the packed buffer that the optimizer trains (the running
    /// statistics come after them).
    pub fn trainable_len(&self) -> usize {
        self.region_end(true)
    }

    /// The per-sample shape of the graph's input.
    pub fn input_shape(&self) -> Result<Shape> {
        let mut inputs = self.nodes.iter().filter(|n| matches!(n.op, Op::Input));
        match (inputs.next(), inputs.next()) {
            (Some(input), None) => Ok(input.shape),
            _ => Err(Error::Graph("a graph needs exactly one input".into())),
        }
    }

    /// The number of classes the loss's logits score.
    pub fn classes(&self) -> Result<usize> {
        self.nodes
            .iter()
            .find_map(|n| match n.op {
                Op::SoftmaxCrossEntropy { logits, .. } => Some(self.nodes[logits].shape[0]),
                _ => None,
            })
            .ok_or_else(|| Error::Graph("the graph has no loss".into()))
    }

    fn param(&mut self, name: String, shape: Vec<usize>, fan_in: usize) -> Result<usize> {
        self.tensor(name, shape, fan_in, Init::Uniform, true)
    }

    /// Declares a tensor and lays the packed buffer out again: trained tensors first, then the
    /// others, each group in declaration order, each tensor aligned to [`PARAM_ALIGN`].
    fn tensor(&mut self, name: String, shape: Vec<usize>, fan_in: usize, init: Init, trainable: bool) -> Result<usize> {
        if self.params.iter().any(|p| p.name == name) {
            return Err(Error::Graph(format!("parameter `{name}` is declared twice")));
        }
        self.params.push(Param { name, shape, offset: 0, fan_in, init, trainable, counter: false });
        let mut offset = 0;
        for trainable in [true, false] {
            for p in self.params.iter_mut().filter(|p| p.trainable == trainable) {
                p.offset = offset;
                offset = (offset + p.len()).next_multiple_of(PARAM_ALIGN);
            }
        }
        Ok(self.params.len() - 1)
    }

    /// The end of the trained tensors (`trainable`) or of all tensors, in floats.
    fn region_end(&self, trainable: bool) -> usize {
        self.params
            .iter()
            .filter(|p| p.trainable || !trainable)
            .map(|p| (p.offset + p.len()).next_multiple_of(PARAM_ALIGN))
            .max()
            .unwrap_or(0)
    }

    /// Total floats of the packed parameter buffer, padding included.
    pub fn param_buffer_len(&self) -> usize {
        self.region_end(false)
    }

    /// Number of trained scalars (as PyTorch's `parameters()` counts them).
    pub fn param_count(&self) -> usize {
        self.params.iter().filter(|p| p.trainable).map(Param::len).sum()
    }

    /// A batch of images of per-sample shape [c, h, w].
    pub fn input(&mut self, shape: Shape) -> NodeId {
        self.push("input", Op::Input, shape)
    }

    /// The class labels of the batch.
    pub fn labels(&mut self) -> NodeId {
        self.push("labels", Op::Labels, [1, 1, 1])
    }

    /// Conv2d with bias, named `name` (its parameters are `name.weight`, `name.bias`).
    pub fn conv2d(
        &mut self,
        name: &str,
        x: NodeId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> Result<NodeId> {
        let xi = self.node(name, x)?;
        let [c, h, w] = self.nodes[xi].shape;
        let g = ConvGeometry { n: 1, c, window: Window { h, w, kh: kernel, kw: kernel, stride, pad } };
        if out_channels == 0 || g.validate().is_err() {
            return Err(Error::Graph(format!(
                "layer `{name}`: a {kernel}×{kernel} kernel at stride {stride}, padding {pad}, with {out_channels} \
                 outputs does not fit its input of shape {:?}",
                [c, h, w]
            )));
        }
        let fan_in = c * kernel * kernel;
        let weight = self.param(format!("{name}.weight"), vec![out_channels, c, kernel, kernel], fan_in)?;
        let bias = self.param(format!("{name}.bias"), vec![out_channels], fan_in)?;
        let shape = [out_channels, g.oh(), g.ow()];
        Ok(self.push(name, Op::Conv2d { x: xi, weight, bias, kernel, stride, pad }, shape))
    }

    fn pool_shape(&self, layer: &str, xi: usize, kernel: usize, stride: usize, pad: usize) -> Result<Shape> {
        let [c, h, w] = self.nodes[xi].shape;
        let g = PoolGeometry::new(c, h, w, kernel, stride, pad);
        if g.validate().is_err() {
            return Err(Error::Graph(format!(
                "layer `{layer}`: a {kernel}×{kernel} pool at stride {stride}, padding {pad} does not fit its input of \
                 shape {:?}",
                [c, h, w]
            )));
        }
        Ok([c, g.oh(), g.ow()])
    }

    /// Max pooling over `kernel`×`kernel` windows at `stride`, with `pad` padding each side.
    pub fn max_pool2d(&mut self, name: &str, x: NodeId, kernel: usize, stride: usize, pad: usize) -> Result<NodeId> {
        let xi = self.node(name, x)?;
        let shape = self.pool_shape(name, xi, kernel, stride, pad)?;
        Ok(self.push(name, Op::MaxPool2d { x: xi, kernel, stride, pad }, shape))
    }

    /// Average pooling with count_include_pad = true (PyTorch's default).
    pub fn avg_pool2d(&mut self, name: &str, x: NodeId, kernel: usize, stride: usize, pad: usize) -> Result<NodeId> {
        let xi = self.node(name, x)?;
        let shape = self.pool_shape(name, xi, kernel, stride, pad)?;
        Ok(self.push(name, Op::AvgPool2d { x: xi, kernel, stride, pad }, shape))
    }

    /// Dropout with probability `p` in [0, 1), as PyTorch's `nn.Dropout(p)` (no tensors): in
    /// training each element is zeroed with probability `p` and the others scaled by 1/(1 − p),
    /// drawn from the run's seed, the step and the element; in evaluation, the identity.
    pub fn dropout(&mut self, name: &str, x: NodeId, p: f32) -> Result<NodeId> {
        let xi = self.node(name, x)?;
        crate::ops::dropout::Dropout::check(p).map_err(|e| Error::Graph(format!("layer `{name}`: {e}")))?;
        Ok(self.push(name, Op::Dropout { x: xi, p }, self.nodes[xi].shape))
    }

    /// Elementwise max(x, 0).
    pub fn relu(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        let xi = self.node(name, x)?;
        Ok(self.push(name, Op::Relu { x: xi }, self.nodes[xi].shape))
    }

    /// Elementwise sum of two nodes of the same shape (a residual block's skip connection).
    pub fn add(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        let (ai, bi) = (self.node(name, a)?, self.node(name, b)?);
        let (sa, sb) = (self.nodes[ai].shape, self.nodes[bi].shape);
        if sa != sb {
            return Err(Error::Graph(format!(
                "layer `{name}`: cannot add `{}` of shape {sa:?} to `{}` of shape {sb:?}",
                self.nodes[ai].name, self.nodes[bi].name
            )));
        }
        Ok(self.push(name, Op::Add { a: ai, b: bi }, sa))
    }

    /// Concatenation along channels.
    pub fn concat(&mut self, name: &str, xs: &[NodeId]) -> Result<NodeId> {
        let xs: Vec<usize> = xs.iter().map(|&x| self.node(name, x)).collect::<Result<_>>()?;
        let Some(&first) = xs.first() else {
            return Err(Error::Graph(format!("layer `{name}`: concat of nothing")));
        };
        let [_, h, w] = self.nodes[first].shape;
        let mut channels = 0;
        for &x in &xs {
            let s = self.nodes[x].shape;
            if s[1..] != [h, w] {
                return Err(Error::Graph(format!(
                    "layer `{name}`: cannot concatenate `{}` of shape {:?} with `{}` of shape {s:?}: spatial sizes differ",
                    self.nodes[first].name, self.nodes[first].shape, self.nodes[x].name
                )));
            }
            channels += s[0];
        }
        Ok(self.push(name, Op::Concat { xs }, [channels, h, w]))
    }

    /// Reshapes `[c, h, w]` to `[c·h·w, 1, 1]` for a linear layer (the same memory, no copy).
    pub fn flatten(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        let xi = self.node(name, x)?;
        let [c, h, w] = self.nodes[xi].shape;
        Ok(self.push(name, Op::Flatten { x: xi }, [c * h * w, 1, 1]))
    }

    /// A fully connected layer on a flattened input ([features, 1, 1]).
    pub fn linear(&mut self, name: &str, x: NodeId, outputs: usize) -> Result<NodeId> {
        let xi = self.node(name, x)?;
        let s = self.nodes[xi].shape;
        if s[1..] != [1, 1] || outputs == 0 {
            return Err(Error::Graph(format!(
                "layer `{name}`: a linear layer needs a flattened input of shape [features, 1, 1], got `{}` of shape {s:?}",
                self.nodes[xi].name
            )));
        }
        let weight = self.param(format!("{name}.weight"), vec![outputs, s[0]], s[0])?;
        let bias = self.param(format!("{name}.bias"), vec![outputs], s[0])?;
        Ok(self.push(name, Op::Linear { x: xi, weight, bias }, [outputs, 1, 1]))
    }

    /// BatchNorm2d over the channels of `x` `[c, h, w]` (eps 1e-5, momentum 0.1, affine, with
    /// running statistics): `name.weight` and `name.bias` train, `name.running_mean` and
    /// `name.running_var` follow the batches.
    pub fn batch_norm2d(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        let xi = self.node(name, x)?;
        let shape = self.nodes[xi].shape;
        let channels = shape[0];
        let weight = self.tensor(format!("{name}.weight"), vec![channels], 0, Init::Ones, true)?;
        let bias = self.tensor(format!("{name}.bias"), vec![channels], 0, Init::Zeros, true)?;
        let running_mean = self.tensor(format!("{name}.running_mean"), vec![channels], 0, Init::Zeros, false)?;
        let running_var = self.tensor(format!("{name}.running_var"), vec![channels], 0, Init::Ones, false)?;
        let num_batches_tracked = self.tensor(format!("{name}.num_batches_tracked"), vec![], 0, Init::Zeros, false)?;
        self.params[num_batches_tracked].counter = true;
        let op = Op::BatchNorm { x: xi, weight, bias, running_mean, running_var, num_batches_tracked };
        Ok(self.push(name, op, shape))
    }

    /// BatchNorm1d over the features of a flattened `x` `[features, 1, 1]` (after a linear
    /// layer), as [`batch_norm2d`](Self::batch_norm2d) names its tensors.
    pub fn batch_norm1d(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        let s = self.shape(x)?;
        if s[1..] != [1, 1] {
            return Err(Error::Graph(format!(
                "layer `{name}`: batch_norm1d needs a flattened input of shape [features, 1, 1], got {s:?}; \
                 use batch_norm2d after a convolution"
            )));
        }
        self.batch_norm2d(name, x)
    }

    /// Mean softmax cross-entropy of `logits` ([classes, 1, 1]) against `labels`.
    pub fn softmax_cross_entropy(&mut self, logits: NodeId, labels: NodeId) -> Result<NodeId> {
        let name = "loss";
        let (li, yi) = (self.node(name, logits)?, self.node(name, labels)?);
        if !matches!(self.nodes[yi].op, Op::Labels) {
            return Err(Error::Graph(format!("layer `{name}`: `{}` is not the labels input", self.nodes[yi].name)));
        }
        let s = self.nodes[li].shape;
        if s[1..] != [1, 1] {
            return Err(Error::Graph(format!(
                "layer `{name}`: logits must have shape [classes, 1, 1], `{}` has {s:?}",
                self.nodes[li].name
            )));
        }
        Ok(self.push(name, Op::SoftmaxCrossEntropy { logits: li, labels: yi }, [1, 1, 1]))
    }

    /// PyTorch's default initialisation: Conv2d's and Linear's weights and biases uniform in
    /// ±1/√fan_in, drawn from `seed` in declaration order; a batch norm's scale and running
    /// variance 1, its shift and running mean 0. Returns the packed parameter buffer (padding zero).
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut packed = vec![0.0; self.param_buffer_len()];
        for p in &self.params {
            let values = &mut packed[p.offset..p.offset + p.len()];
            match p.init {
                Init::Uniform => {
                    let bound = 1.0 / (p.fan_in as f32).sqrt();
                    values.iter_mut().for_each(|v| *v = rng.uniform(bound));
                }
                Init::Ones => values.fill(1.0),
                Init::Zeros => values.fill(0.0),
            }
        }
        packed
    }
}
