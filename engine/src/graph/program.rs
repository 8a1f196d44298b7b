//! Lowers a graph, at a given batch size, to a straight-line program over virtual buffers:
//! the forward instructions, the loss, and the backward instructions derived by reverse-mode
//! autodiff (no network has a hand-written backward). Gradients of a tensor read by several
//! consumers are summed. Both the GPU plan and the CPU reference execute this same program.

use super::{Graph, Op};
use crate::error::{Error, Result};
use crate::ops::concat::ChannelCopy;
use crate::ops::conv::ConvGeometry;
use crate::ops::max_pool::PoolGeometry;

/// A buffer of the program: an activation/gradient/scratch (`Act`, by index into
/// `Program::buffers`), or a parameter or its gradient (by parameter index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buf {
    Act(usize),
    Param(usize),
    Grad(usize),
}

#[derive(Clone, Debug)]
pub struct BufferDesc {
    pub len: usize,
    /// Holds u32 (argmax indices, labels) rather than f32.
    pub integer: bool,
    pub name: String,
}

#[derive(Clone, Debug)]
pub enum Instr {
    /// y = conv(x) + b, then ReLU when `relu`. `cols` receives x's column matrix (unused for a
    /// pointwise convolution, whose column matrix is x itself).
    Conv {
        g: ConvGeometry,
        oc: usize,
        x: Buf,
        w: Buf,
        b: Buf,
        y: Buf,
        relu: bool,
        cols: Buf,
    },
    /// dw, db and (when wanted) dx from dy. `cols` is the forward pass's column matrix, kept
    /// alive until here; `dcols` and `partials` are scratch.
    ConvBack {
        g: ConvGeometry,
        oc: usize,
        x: Buf,
        w: Buf,
        dy: Buf,
        dw: Buf,
        db: Buf,
        dx: Option<Buf>,
        cols: Buf,
        dcols: Buf,
        partials: Buf,
    },
    Linear {
        n: usize,
        inputs: usize,
        outputs: usize,
        x: Buf,
        w: Buf,
        b: Buf,
        y: Buf,
    },
    LinearBack {
        n: usize,
        inputs: usize,
        outputs: usize,
        x: Buf,
        w: Buf,
        dy: Buf,
        dw: Buf,
        db: Buf,
        dx: Option<Buf>,
    },
    MaxPool {
        g: PoolGeometry,
        x: Buf,
        y: Buf,
        argmax: Buf,
    },
    MaxPoolBack {
        g: PoolGeometry,
        dy: Buf,
        argmax: Buf,
        dx: Buf,
    },
    AvgPool {
        g: PoolGeometry,
        x: Buf,
        y: Buf,
    },
    AvgPoolBack {
        g: PoolGeometry,
        dy: Buf,
        dx: Buf,
    },
    Relu {
        len: usize,
        x: Buf,
        y: Buf,
    },
    ReluBack {
        len: usize,
        y: Buf,
        dy: Buf,
        dx: Buf,
    },
    Add {
        len: usize,
        a: Buf,
        b: Buf,
        y: Buf,
    },
    AddAssign {
        len: usize,
        a: Buf,
        y: Buf,
    },
    Copy {
        len: usize,
        src: Buf,
        dst: Buf,
    },
    CopyChannels {
        copy: ChannelCopy,
        src: Buf,
        dst: Buf,
    },
    /// Loss and metrics of logits against labels; dlogits when training.
    Loss {
        rows: usize,
        classes: usize,
        logits: Buf,
        labels: Buf,
        dlogits: Option<Buf>,
    },
}

impl Instr {
    /// Every buffer the instruction reads or writes.
    pub fn buffers(&self) -> Vec<Buf> {
        use Instr::*;
        match self {
            Conv { x, w, b, y, cols, .. } => vec![*x, *w, *b, *y, *cols],
            ConvBack { x, w, dy, dw, db, dx, cols, dcols, partials, .. } => {
                [*x, *w, *dy, *dw, *db, *cols, *dcols, *partials].into_iter().chain(*dx).collect()
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
            Copy { src, dst, .. } | CopyChannels { src, dst, .. } => vec![*src, *dst],
            Loss { logits, labels, dlogits, .. } => [*logits, *labels].into_iter().chain(*dlogits).collect(),
        }
    }
}

pub struct Program {
    pub batch: usize,
    pub buffers: Vec<BufferDesc>,
    /// The batch's images [batch, c, h, w] and labels [batch] (u32).
    pub input: Buf,
    pub labels: Buf,
    pub logits: Buf,
    pub classes: usize,
    /// Forward instructions, then the loss, then (when training) the backward instructions.
    pub instrs: Vec<Instr>,
}

struct Builder<'g> {
    graph: &'g Graph,
    batch: usize,
    buffers: Vec<BufferDesc>,
    instrs: Vec<Instr>,
}

impl Builder<'_> {
    fn new_buf(&mut self, len: usize, integer: bool, name: String) -> Buf {
        self.buffers.push(BufferDesc { len: len.max(1), integer, name });
        Buf::Act(self.buffers.len() - 1)
    }
    fn node_len(&self, node: usize) -> usize {
        self.batch * self.graph.nodes[node].shape.iter().product::<usize>()
    }
    fn conv_geometry(&self, x: usize, kernel: usize, stride: usize, pad: usize) -> ConvGeometry {
        let [c, h, w] = self.graph.nodes[x].shape;
        ConvGeometry { n: self.batch, c, h, w, kh: kernel, kw: kernel, stride, pad }
    }
    fn pool_geometry(&self, x: usize, k: usize, stride: usize, pad: usize) -> PoolGeometry {
        let [c, h, w] = self.graph.nodes[x].shape;
        PoolGeometry { planes: self.batch * c, h, w, k, stride, pad }
    }
}

impl Program {
    /// Lowers `graph` at `batch` samples a step; with `training`, appends the backward pass.
    pub fn build(graph: &Graph, batch: usize, training: bool) -> Result<Program> {
        if batch == 0 {
            return Err(Error::Graph("batch size must be at least 1".into()));
        }
        let nodes = &graph.nodes;
        let loss_nodes: Vec<usize> =
            (0..nodes.len()).filter(|&i| matches!(nodes[i].op, Op::SoftmaxCrossEntropy { .. })).collect();
        let &[loss] = loss_nodes.as_slice() else {
            return Err(Error::Graph(format!("a graph needs exactly one loss, this one has {}", loss_nodes.len())));
        };
        let Op::SoftmaxCrossEntropy { logits, labels } = nodes[loss].op else { unreachable!() };

        // Nodes the loss depends on; everything else (and its parameters) is refused.
        let mut needed = vec![false; nodes.len()];
        needed[loss] = true;
        for i in (0..nodes.len()).rev() {
            if needed[i] {
                for j in nodes[i].op.inputs() {
                    needed[j] = true;
                }
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            if !needed[i] {
                let params: Vec<&str> = match node.op {
                    Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias, .. } => {
                        vec![&graph.params[weight].name, &graph.params[bias].name]
                    }
                    _ => vec![],
                };
                let what = if params.is_empty() {
                    String::new()
                } else {
                    format!(" (so parameters {} are never used)", params.join(", "))
                };
                return Err(Error::Graph(format!("layer `{}` does not contribute to the loss{what}", node.name)));
            }
        }
        let inputs: Vec<usize> = (0..nodes.len()).filter(|&i| matches!(nodes[i].op, Op::Input)).collect();
        let &[input] = inputs.as_slice() else {
            return Err(Error::Graph(format!("a graph needs exactly one input, this one has {}", inputs.len())));
        };

        let mut consumers = vec![0usize; nodes.len()];
        for node in nodes {
            for j in node.op.inputs() {
                consumers[j] += 1;
            }
        }
        let mut b = Builder { graph, batch, buffers: Vec::new(), instrs: Vec::new() };
        // Output buffer of each node. A ReLU right after a conv (its only consumer) is fused:
        // the conv writes the ReLU's output directly.
        let mut out: Vec<Option<Buf>> = vec![None; nodes.len()];
        let fused_relu = |i: usize| -> Option<usize> {
            let next = i + 1;
            (consumers[i] == 1
                && matches!(nodes[i].op, Op::Conv2d { .. })
                && next < nodes.len()
                && matches!(nodes[next].op, Op::Relu { x } if x == i))
            .then_some(next)
        };
        let mut argmax: Vec<Option<Buf>> = vec![None; nodes.len()];
        let mut cols_of: Vec<Option<Buf>> = vec![None; nodes.len()];
        for i in 0..nodes.len() {
            let node = &nodes[i];
            let len = b.node_len(i);
            if out[i].is_some() {
                continue; // a fused ReLU, written by its conv
            }
            let y = match node.op {
                Op::Labels => b.new_buf(batch, true, "labels".into()),
                Op::Flatten { x } => out[x].unwrap(), // same memory, new shape
                _ => b.new_buf(len, false, node.name.clone()),
            };
            out[i] = Some(y);
            let input_of = |x: usize| out[x].unwrap();
            match node.op {
                Op::Input | Op::Labels | Op::Flatten { .. } | Op::SoftmaxCrossEntropy { .. } => {}
                Op::Conv2d { x, weight, bias, kernel, stride, pad } => {
                    let g = b.conv_geometry(x, kernel, stride, pad);
                    let cols = b.new_buf(
                        if g.is_pointwise() { 1 } else { g.cols_len() },
                        false,
                        format!("{}.cols", node.name),
                    );
                    cols_of[i] = Some(cols);
                    let relu = fused_relu(i);
                    let x = input_of(x);
                    if let Some(r) = relu {
                        out[r] = Some(y);
                    }
                    b.instrs.push(Instr::Conv {
                        g,
                        oc: node.shape[0],
                        x,
                        w: Buf::Param(weight),
                        b: Buf::Param(bias),
                        y,
                        relu: relu.is_some(),
                        cols,
                    });
                }
                Op::Linear { x, weight, bias } => b.instrs.push(Instr::Linear {
                    n: batch,
                    inputs: nodes[x].shape[0],
                    outputs: node.shape[0],
                    x: input_of(x),
                    w: Buf::Param(weight),
                    b: Buf::Param(bias),
                    y,
                }),
                Op::MaxPool2d { x, kernel, stride, pad } => {
                    let g = b.pool_geometry(x, kernel, stride, pad);
                    let arg = b.new_buf(len, true, format!("{}.argmax", node.name));
                    argmax[i] = Some(arg);
                    b.instrs.push(Instr::MaxPool { g, x: input_of(x), y, argmax: arg });
                }
                Op::AvgPool2d { x, kernel, stride, pad } => {
                    let g = b.pool_geometry(x, kernel, stride, pad);
                    b.instrs.push(Instr::AvgPool { g, x: input_of(x), y });
                }
                Op::Relu { x } => b.instrs.push(Instr::Relu { len, x: input_of(x), y }),
                Op::Add { a, b: bb } => b.instrs.push(Instr::Add { len, a: input_of(a), b: input_of(bb), y }),
                Op::Concat { ref xs } => {
                    let total = node.shape[0];
                    let s = node.shape[1] * node.shape[2];
                    let mut offset = 0;
                    for &x in xs {
                        let c = nodes[x].shape[0];
                        let copy = ChannelCopy::concat(batch, s, c, total, offset);
                        b.instrs.push(Instr::CopyChannels { copy, src: input_of(x), dst: y });
                        offset += c;
                    }
                }
            }
        }
        let classes = nodes[logits].shape[0];
        let dlogits = training.then(|| b.new_buf(batch * classes, false, "loss.grad".into()));
        b.instrs.push(Instr::Loss {
            rows: batch,
            classes,
            logits: out[logits].unwrap(),
            labels: out[labels].unwrap(),
            dlogits,
        });

        if training {
            // Which nodes depend on a parameter (and so need a gradient).
            let mut wants_grad = vec![false; nodes.len()];
            for (i, node) in nodes.iter().enumerate() {
                wants_grad[i] = matches!(node.op, Op::Conv2d { .. } | Op::Linear { .. })
                    || node.op.inputs().iter().any(|&j| wants_grad[j]);
            }
            let mut grad: Vec<Option<Buf>> = vec![None; nodes.len()];
            grad[logits] = dlogits;
            for i in (0..nodes.len()).rev() {
                let Some(dy) = grad[i] else { continue };
                let node = &nodes[i];
                let y = out[i].unwrap();
                match node.op {
                    Op::Input | Op::Labels | Op::SoftmaxCrossEntropy { .. } => {}
                    Op::Conv2d { x, weight, bias, kernel, stride, pad } => {
                        let g = b.conv_geometry(x, kernel, stride, pad);
                        let cols = cols_of[i].expect("the forward pass built the column matrix");
                        let dcols = b.new_buf(
                            if wants_grad[x] && !g.is_pointwise() { g.cols_len() } else { 1 },
                            false,
                            format!("{}.dcols", node.name),
                        );
                        let partials = b.new_buf(
                            crate::ops::conv::weight_grad_partials_len(&g, node.shape[0]),
                            false,
                            format!("{}.weight.grad.partials", node.name),
                        );
                        let dx = wants_grad[x].then(|| b.contribution(&mut grad, x, &nodes[x].name));
                        b.instrs.push(Instr::ConvBack {
                            g,
                            oc: node.shape[0],
                            x: out[x].unwrap(),
                            w: Buf::Param(weight),
                            dy,
                            dw: Buf::Grad(weight),
                            db: Buf::Grad(bias),
                            dx: dx.map(|(t, _)| t),
                            cols,
                            dcols,
                            partials,
                        });
                        b.finish_contribution(dx);
                    }
                    Op::Linear { x, weight, bias } => {
                        let dx = wants_grad[x].then(|| b.contribution(&mut grad, x, &nodes[x].name));
                        b.instrs.push(Instr::LinearBack {
                            n: batch,
                            inputs: nodes[x].shape[0],
                            outputs: node.shape[0],
                            x: out[x].unwrap(),
                            w: Buf::Param(weight),
                            dy,
                            dw: Buf::Grad(weight),
                            db: Buf::Grad(bias),
                            dx: dx.map(|(t, _)| t),
                        });
                        b.finish_contribution(dx);
                    }
                    Op::MaxPool2d { x, kernel, stride, pad } if wants_grad[x] => {
                        let g = b.pool_geometry(x, kernel, stride, pad);
                        let dx = b.contribution(&mut grad, x, &nodes[x].name);
                        b.instrs.push(Instr::MaxPoolBack { g, dy, argmax: argmax[i].unwrap(), dx: dx.0 });
                        b.finish_contribution(Some(dx));
                    }
                    Op::AvgPool2d { x, kernel, stride, pad } if wants_grad[x] => {
                        let g = b.pool_geometry(x, kernel, stride, pad);
                        let dx = b.contribution(&mut grad, x, &nodes[x].name);
                        b.instrs.push(Instr::AvgPoolBack { g, dy, dx: dx.0 });
                        b.finish_contribution(Some(dx));
                    }
                    Op::Relu { x } if wants_grad[x] => {
                        let dx = b.contribution(&mut grad, x, &nodes[x].name);
                        b.instrs.push(Instr::ReluBack { len: b.node_len(i), y, dy, dx: dx.0 });
                        b.finish_contribution(Some(dx));
                    }
                    Op::Add { a, b: bb } => {
                        for x in [a, bb] {
                            if wants_grad[x] {
                                b.pass_through(&mut grad, x, dy);
                            }
                        }
                    }
                    Op::Flatten { x } if wants_grad[x] => {
                        if grad[x].is_none() {
                            grad[x] = Some(dy); // same memory, so the same gradient buffer
                        } else {
                            b.pass_through(&mut grad, x, dy);
                        }
                    }
                    Op::Concat { ref xs } => {
                        let total = node.shape[0];
                        let s = node.shape[1] * node.shape[2];
                        let mut offset = 0;
                        for &x in xs {
                            let c = nodes[x].shape[0];
                            if wants_grad[x] {
                                let dx = b.contribution(&mut grad, x, &nodes[x].name);
                                let copy = ChannelCopy::split(batch, s, c, total, offset);
                                b.instrs.push(Instr::CopyChannels { copy, src: dy, dst: dx.0 });
                                b.finish_contribution(Some(dx));
                            }
                            offset += c;
                        }
                    }
                    _ => {}
                }
            }
            if grad[input].is_some() {
                return Err(Error::Graph("internal: the input received a gradient".into()));
            }
        }
        Ok(Program {
            batch,
            buffers: b.buffers,
            input: out[input].unwrap(),
            labels: out[labels].unwrap(),
            logits: out[logits].unwrap(),
            classes,
            instrs: b.instrs,
        })
    }
}

impl Builder<'_> {
    /// Where the next gradient contribution to node `x` is written: its gradient buffer when it
    /// is the first, else a scratch buffer that `finish_contribution` adds in.
    fn contribution(&mut self, grad: &mut [Option<Buf>], x: usize, name: &str) -> (Buf, Option<Buf>) {
        let len = self.node_len(x);
        match grad[x] {
            None => {
                let g = self.new_buf(len, false, format!("{name}.grad"));
                grad[x] = Some(g);
                (g, None)
            }
            Some(g) => (self.new_buf(len, false, format!("{name}.grad.part")), Some(g)),
        }
    }

    fn finish_contribution(&mut self, c: Option<(Buf, Option<Buf>)>) {
        if let Some((part, Some(total))) = c {
            let len = self.buffers[match total {
                Buf::Act(i) => i,
                _ => unreachable!("gradients of activations are activations"),
            }]
            .len;
            self.instrs.push(Instr::AddAssign { len, a: part, y: total });
        }
    }

    /// Node x's gradient receives `dy` unchanged (the fan-out of an add).
    fn pass_through(&mut self, grad: &mut [Option<Buf>], x: usize, dy: Buf) {
        let len = self.node_len(x);
        match grad[x] {
            None => {
                let g = self.new_buf(len, false, format!("{}.grad", self.graph.nodes[x].name));
                grad[x] = Some(g);
                self.instrs.push(Instr::Copy { len, src: dy, dst: g });
            }
            Some(g) => self.instrs.push(Instr::AddAssign { len, a: dy, y: g }),
        }
    }
}
