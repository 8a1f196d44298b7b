//! The tutorial's three networks, layer for layer, with PyTorch's parameter names, and
//! `fast_cnn`, a small batch-norm network with a recipe that reaches 99% in one epoch.

use engine::graph::{Graph, NodeId, Shape};
use engine::Result;

/// One of the tutorial's three networks, or `fast_cnn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Two stages of conv, max pool and ReLU, then a linear layer.
    SimpleCnn,
    /// The simple CNN with an InceptionA block after each stage.
    Inception,
    /// Two stages of conv, ReLU and max pool, each followed by a residual block.
    Resnet,
    /// Two stages of conv, batch norm, max pool and ReLU, then two linear layers.
    FastCnn,
}

impl Network {
    /// Every network: the tutorial's, in its order, then `fast_cnn`.
    pub const ALL: [Network; 4] = [Network::SimpleCnn, Network::Inception, Network::Resnet, Network::FastCnn];

    /// Its name as the command line, the weights' metadata and checkpoints spell it (`simple_cnn`,
    /// `inception`, `resnet`, `fast_cnn`).
    pub fn name(self) -> &'static str {
        match self {
            Network::SimpleCnn => "simple_cnn",
            Network::Inception => "inception",
            Network::Resnet => "resnet",
            Network::FastCnn => "fast_cnn",
        }
    }

    /// Where its recipe differs from the tutorial's, the defaults of its binary's flags (and of
    /// the page's fields): (flag, value). `fast_cnn`'s is the fast recipe (README, "fast_cnn").
    pub fn default_flags(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Network::FastCnn => &[
                ("epochs", "1"),
                ("batch_size", "64"),
                ("optimizer", "adamw"),
                ("lr", "0.005"),
                ("schedule", "onecycle"),
                ("label_smoothing", "0.1"),
            ],
            _ => &[],
        }
    }

    /// The graph for images of `input` shape ([1, 28, 28] for MNIST) and `classes` classes.
    pub fn build(self, input: Shape, classes: usize) -> Result<Graph> {
        let mut g = Graph::new();
        let x = g.input(input);
        let labels = g.labels();
        let features = match self {
            Network::SimpleCnn => simple_cnn(&mut g, x)?,
            Network::Inception => inception(&mut g, x)?,
            Network::Resnet => resnet(&mut g, x)?,
            Network::FastCnn => fast_cnn(&mut g, x)?,
        };
        let flat = g.flatten("flatten", features)?;
        let logits = match self {
            Network::FastCnn => {
                let hidden = g.linear("fc1", flat, 256)?;
                let hidden = g.relu("relu3", hidden)?;
                g.linear("fc2", hidden, classes)?
            }
            _ => g.linear("fc", flat, classes)?,
        };
        g.softmax_cross_entropy(logits, labels)?;
        Ok(g)
    }
}

/// conv 1→10 k5, maxpool 2, relu, conv 10→20 k5, maxpool 2, relu (then linear 320→10).
fn simple_cnn(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let x = g.conv2d("conv1", x, 10, 5, 1, 0)?;
    let x = g.max_pool2d("mp1", x, 2, 2, 0)?;
    let x = g.relu("relu1", x)?;
    let x = g.conv2d("conv2", x, 20, 5, 1, 0)?;
    let x = g.max_pool2d("mp2", x, 2, 2, 0)?;
    g.relu("relu2", x)
}

/// The tutorial's InceptionA block on `x`, its layers named `name.branch1x1` and so on (its
/// state_dict prefix): four branches concatenated along channels, 16 + 24 + 24 + 24 = 88 outputs.
pub fn inception_a(g: &mut Graph, name: &str, x: NodeId) -> Result<NodeId> {
    let layer = |part: &str| format!("{name}.{part}");
    let branch1x1 = g.conv2d(&layer("branch1x1"), x, 16, 1, 1, 0)?;

    let b5 = g.conv2d(&layer("branch5x5_1"), x, 16, 1, 1, 0)?;
    let branch5x5 = g.conv2d(&layer("branch5x5_2"), b5, 24, 5, 1, 2)?;

    let b3 = g.conv2d(&layer("branch3x3_1"), x, 16, 1, 1, 0)?;
    let b3 = g.conv2d(&layer("branch3x3_2"), b3, 24, 3, 1, 1)?;
    let branch3x3 = g.conv2d(&layer("branch3x3_3"), b3, 24, 3, 1, 1)?;

    let pool = g.avg_pool2d(&layer("avg_pool"), x, 3, 1, 1)?;
    let branch_pool = g.conv2d(&layer("branch_pool"), pool, 24, 1, 1, 0)?;

    g.concat(name, &[branch1x1, branch5x5, branch3x3, branch_pool])
}

/// conv 1→10 k5, maxpool 2, relu, InceptionA, conv 88→20 k5, maxpool 2, relu, InceptionA
/// (then linear 1408→10).
fn inception(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let x = g.conv2d("conv1", x, 10, 5, 1, 0)?;
    let x = g.max_pool2d("mp1", x, 2, 2, 0)?;
    let x = g.relu("relu1", x)?;
    let x = inception_a(g, "incep1", x)?;
    let x = g.conv2d("conv2", x, 20, 5, 1, 0)?;
    let x = g.max_pool2d("mp2", x, 2, 2, 0)?;
    let x = g.relu("relu2", x)?;
    inception_a(g, "incep2", x)
}

/// The tutorial's ResidualBlock on `x`, its layers named `name.conv1` and `name.conv2`:
/// relu(x + conv2(relu(conv1(x)))), 3×3 convolutions with padding 1 keeping x's channels.
pub fn res_block(g: &mut Graph, name: &str, x: NodeId) -> Result<NodeId> {
    let channels = g.shape(x)?[0];
    let y = g.conv2d(&format!("{name}.conv1"), x, channels, 3, 1, 1)?;
    let y = g.relu(&format!("{name}.relu1"), y)?;
    let y = g.conv2d(&format!("{name}.conv2"), y, channels, 3, 1, 1)?;
    let sum = g.add(&format!("{name}.add"), x, y)?;
    g.relu(&format!("{name}.relu2"), sum)
}

/// conv 1→24 k5, batch norm, maxpool 2, relu, conv 24→32 k3, batch norm, maxpool 2, relu
/// (then linear 800→256, relu, linear 256→10).
fn fast_cnn(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let x = g.conv2d("conv1", x, 24, 5, 1, 0)?;
    let x = g.batch_norm2d("bn1", x)?;
    let x = g.max_pool2d("mp1", x, 2, 2, 0)?;
    let x = g.relu("relu1", x)?;
    let x = g.conv2d("conv2", x, 32, 3, 1, 0)?;
    let x = g.batch_norm2d("bn2", x)?;
    let x = g.max_pool2d("mp2", x, 2, 2, 0)?;
    g.relu("relu2", x)
}

/// conv 1→16 k5, relu, maxpool 2, ResBlock(16), conv 16→32 k5, relu, maxpool 2, ResBlock(32)
/// (then linear 512→10).
fn resnet(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let x = g.conv2d("conv1", x, 16, 5, 1, 0)?;
    let x = g.relu("relu1", x)?;
    let x = g.max_pool2d("mp1", x, 2, 2, 0)?;
    let x = res_block(g, "rblock1", x)?;
    let x = g.conv2d("conv2", x, 32, 5, 1, 0)?;
    let x = g.relu("relu2", x)?;
    let x = g.max_pool2d("mp2", x, 2, 2, 0)?;
    res_block(g, "rblock2", x)
}
