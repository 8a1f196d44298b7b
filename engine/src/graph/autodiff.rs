//! Reverse-mode autodiff: the backward instructions of a lowered forward pass, one `match` arm
//! per forward op, visited from the loss back to the input. A node read by several consumers
//! (the Inception branches, the residual skip) gets the sum of their gradient contributions;
//! nodes that depend on no parameter get no gradient at all.

use super::program::{Buf, Builder, Forward, Instr};
use super::Op;
use crate::error::{Error, Result};
use crate::ops::conv::{input_grad_scratch_len, weight_grad_partials_len};

/// Gradient buffers by node, and which nodes need one (those that depend on a parameter).
struct Grads {
    grad: Vec<Option<Buf>>,
    /// The node's gradient buffer is also another node's (an add passes one gradient to both
    /// inputs): further contributions are added out of place.
    shared: Vec<bool>,
    wanted: Vec<bool>,
}

/// Appends to `b` the backward pass from `dlogits`, the gradient of the loss with respect to
/// node `logits`, to every parameter gradient (`Buf::Grad`).
pub(super) fn backward(b: &mut Builder, f: &Forward, logits: usize, dlogits: Buf, input: usize) -> Result<()> {
    let nodes = &b.graph.nodes;
    let mut wanted = vec![false; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        wanted[i] = matches!(node.op, Op::Conv2d { .. } | Op::Linear { .. } | Op::BatchNorm { .. })
            || node.op.inputs().iter().any(|&j| wanted[j]);
    }
    let mut grads = Grads { grad: vec![None; nodes.len()], shared: vec![false; nodes.len()], wanted };
    grads.grad[logits] = Some(dlogits);
    for i in (0..nodes.len()).rev() {
        if let Some(dy) = grads.grad[i] {
            backward_node(b, f, &mut grads, i, dy);
        }
    }
    if grads.grad[input].is_some() {
        return Err(Error::Graph("internal: the input received a gradient".into()));
    }
    Ok(())
}

/// The backward instructions of node `i` given its output gradient `dy`.
fn backward_node(b: &mut Builder, f: &Forward, grads: &mut Grads, i: usize, dy: Buf) {
    let graph = b.graph;
    let node = &graph.nodes[i];
    let wanted = |x: usize| grads.wanted[x];
    match node.op {
        Op::Input | Op::Labels | Op::SoftmaxCrossEntropy { .. } => {}
        Op::Conv2d { x, weight, bias, kernel, stride, pad } => {
            let g = b.conv_geometry(x, kernel, stride, pad);
            let oc = node.shape[0];
            let dcols_len = if wanted(x) { input_grad_scratch_len(&g) } else { 1 };
            let dcols = b.new_buf(dcols_len, false, format!("{}.dcols", node.name));
            let partials =
                b.new_buf(weight_grad_partials_len(&g, oc), false, format!("{}.weight.grad.partials", node.name));
            let (w, dw, db) = (Buf::Param(weight), Buf::Grad(weight), Buf::Grad(bias));
            // The input gradient is one matmul (which can add into a gradient) unless col2im is needed.
            let matmul_dx = g.window.stride == 1 || g.is_pointwise();
            push_layer_backward(b, grads, x, matmul_dx, |dx, dx_accumulate| Instr::ConvBack {
                g,
                oc,
                x: f.out[x],
                w,
                dy,
                dw,
                db,
                dx,
                dx_accumulate,
                dcols,
                partials,
            });
        }
        Op::Linear { x, weight, bias } => {
            let (n, inputs, outputs) = (b.batch, graph.nodes[x].shape[0], node.shape[0]);
            let (w, dw, db) = (Buf::Param(weight), Buf::Grad(weight), Buf::Grad(bias));
            push_layer_backward(b, grads, x, true, |dx, dx_accumulate| Instr::LinearBack {
                n,
                inputs,
                outputs,
                x: f.out[x],
                w,
                dy,
                dw,
                db,
                dx,
                dx_accumulate,
            });
        }
        Op::BatchNorm { x, weight, bias, .. } => {
            let (shape, saved) = (b.batch_norm_shape(x), f.saved[i].expect("saved by the forward pass"));
            let sums = b.new_buf(2 * shape[1], false, format!("{}.sums", node.name));
            let (gamma, daffine) = (Buf::Param(weight), [Buf::Grad(weight), Buf::Grad(bias)]);
            let x_out = f.out[x];
            push_layer_backward(b, grads, x, false, |dx, _| Instr::BatchNormBack {
                shape,
                x: x_out,
                dy,
                gamma,
                saved,
                sums,
                daffine,
                dx,
            });
        }
        Op::MaxPool2d { x, kernel, stride, pad } if wanted(x) => {
            let (g, argmax) =
                (b.pool_geometry(x, kernel, stride, pad), f.argmax[i].expect("saved by the forward pass"));
            accumulate(b, grads, x, |dx| Instr::MaxPoolBack { g, dy, argmax, dx });
        }
        Op::Dropout { x, p } if wanted(x) => {
            let len = b.node_len(i);
            accumulate(b, grads, x, |dx| Instr::Dropout { len, p, x: dy, y: dx, backward: true });
        }
        Op::AvgPool2d { x, kernel, stride, pad } if wanted(x) => {
            let g = b.pool_geometry(x, kernel, stride, pad);
            accumulate(b, grads, x, |dx| Instr::AvgPoolBack { g, dy, dx });
        }
        // A max pool's argmax masks the gradient already: it passes through, shared.
        Op::Relu { x } if wanted(x) && f.masked_by_pool[i] && grads.grad[x].is_none() => grads.grad[x] = Some(dy),
        Op::Relu { x } if wanted(x) => {
            let (len, y) = (b.node_len(i), f.out[i]);
            accumulate(b, grads, x, |dx| Instr::ReluBack { len, y, dy, dx });
        }
        Op::Add { a, b: other } => {
            let inputs: Vec<usize> = [a, other].into_iter().filter(|&x| wanted(x)).collect();
            for &x in &inputs {
                pass_through(b, grads, x, dy, inputs.len() > 1);
            }
        }
        // A flatten shares its input's memory, so the first gradient is shared too.
        Op::Flatten { x } if wanted(x) && grads.grad[x].is_none() => grads.grad[x] = Some(dy),
        Op::Flatten { x } if wanted(x) => pass_through(b, grads, x, dy, false),
        Op::Concat { .. } => {
            let parts: Vec<_> = b.concat_parts(i).into_iter().filter(|&(x, ..)| wanted(x)).collect();
            for (x, _, copy) in parts {
                accumulate(b, grads, x, |dx| Instr::CopyChannels { copy, src: dy, dst: dx });
            }
        }
        Op::MaxPool2d { .. } | Op::AvgPool2d { .. } | Op::Relu { .. } | Op::Flatten { .. } | Op::Dropout { .. } => {}
    }
}

/// Pushes a layer's backward instruction (which always writes its parameter gradients), giving
/// it the gradient of its input `x` to write too when `x` needs one: `instr(dx, accumulate)`.
/// A layer that `can_accumulate` adds a further contribution straight into x's gradient.
fn push_layer_backward(
    b: &mut Builder,
    grads: &mut Grads,
    x: usize,
    can_accumulate: bool,
    instr: impl FnOnce(Option<Buf>, bool) -> Instr,
) {
    match grads.grad[x] {
        _ if !grads.wanted[x] => b.instrs.push(instr(None, false)),
        Some(total) if can_accumulate && !grads.shared[x] => b.instrs.push(instr(Some(total), true)),
        _ => accumulate(b, grads, x, |dx| instr(Some(dx), false)),
    }
}

/// Pushes `instr(dx)`, one gradient contribution to node `x`: written straight into x's
/// gradient buffer when it is the first, else into a scratch buffer then added in.
fn accumulate(b: &mut Builder, grads: &mut Grads, x: usize, instr: impl FnOnce(Buf) -> Instr) {
    let name = &b.graph.nodes[x].name;
    match grads.grad[x] {
        None => {
            let dx = b.new_buf(b.node_len(x), false, format!("{name}.grad"));
            grads.grad[x] = Some(dx);
            b.instrs.push(instr(dx));
        }
        Some(_) => {
            let part = b.new_buf(b.node_len(x), false, format!("{name}.grad.part"));
            b.instrs.push(instr(part));
            add_into(b, grads, x, part);
        }
    }
}

/// Node x's gradient receives `dy` unchanged (the fan-out of an add, a flatten): it becomes x's
/// gradient buffer when it is the first (`shared` when another node's gradient is it too), else
/// it is added in.
fn pass_through(b: &mut Builder, grads: &mut Grads, x: usize, dy: Buf, shared: bool) {
    match grads.grad[x] {
        Some(_) => add_into(b, grads, x, dy),
        None => {
            grads.grad[x] = Some(dy);
            grads.shared[x] = shared;
        }
    }
}

/// Adds `part` to node x's gradient: in place, or into a new buffer when the gradient is shared.
fn add_into(b: &mut Builder, grads: &mut Grads, x: usize, part: Buf) {
    let (len, total) = (b.node_len(x), grads.grad[x].expect("a gradient to add to"));
    if grads.shared[x] {
        let sum = b.new_buf(len, false, format!("{}.grad", b.graph.nodes[x].name));
        b.instrs.push(Instr::Add { len, a: part, b: total, y: sum });
        (grads.grad[x], grads.shared[x]) = (Some(sum), false);
    } else {
        b.instrs.push(Instr::AddAssign { len, a: part, y: total });
    }
}
