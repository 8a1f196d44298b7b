//! The CPU reference executor: runs a [`Program`] with the plain CPU reference of every op, on
//! the same packed parameters as the GPU. The whole-network gradient tests compare the two.

use super::program::{Buf, Instr, Program};
use super::Graph;
use crate::ops::{add, avg_pool, batch_norm, concat, conv, dropout, matmul, max_pool, relu, softmax_cross_entropy};

/// What a CPU run of a program produced.
pub struct CpuRun {
    /// The batch's mean loss and correct predictions.
    pub loss: f32,
    /// Rows whose argmax is the label.
    pub correct: u32,
    /// The network's output, `[rows, classes]`.
    pub logits: Vec<f32>,
    /// Packed like the parameters (zero where the program computes no gradient).
    pub grads: Vec<f32>,
    /// The packed parameters after the run: the running statistics of a training step's batch
    /// norms updated, the rest as given.
    pub params: Vec<f32>,
}

struct State<'a> {
    graph: &'a Graph,
    params: Vec<f32>,
    grads: Vec<f32>,
    acts: Vec<Vec<f32>>,
    ints: Vec<Vec<u32>>,
}

impl State<'_> {
    fn get(&self, b: Buf) -> &[f32] {
        match b {
            Buf::Act(i) => &self.acts[i],
            Buf::Param(p) => {
                let p = &self.graph.params[p];
                &self.params[p.offset..p.offset + p.len()]
            }
            Buf::Grad(p) => {
                let p = &self.graph.params[p];
                &self.grads[p.offset..p.offset + p.len()]
            }
        }
    }
    /// Takes a buffer out to write it (so it can be borrowed beside the inputs); `put` returns it.
    fn take(&mut self, b: Buf) -> Vec<f32> {
        match b {
            Buf::Act(i) => std::mem::take(&mut self.acts[i]),
            Buf::Grad(p) => {
                let p = &self.graph.params[p];
                self.grads[p.offset..p.offset + p.len()].to_vec()
            }
            Buf::Param(p) => {
                let p = &self.graph.params[p];
                self.params[p.offset..p.offset + p.len()].to_vec()
            }
        }
    }
    fn put(&mut self, b: Buf, v: Vec<f32>) {
        match b {
            Buf::Act(i) => self.acts[i] = v,
            Buf::Grad(p) => {
                let p = &self.graph.params[p];
                self.grads[p.offset..p.offset + p.len()].copy_from_slice(&v);
            }
            Buf::Param(p) => {
                let p = &self.graph.params[p];
                debug_assert!(!p.trainable, "a program writes only running statistics, not {}", p.name);
                self.params[p.offset..p.offset + p.len()].copy_from_slice(&v);
            }
        }
    }
    fn int(&self, b: Buf) -> usize {
        match b {
            Buf::Act(i) => i,
            _ => panic!("integer buffers are activations"),
        }
    }
}

impl State<'_> {
    /// Writes buffer `y` with `f(state, y)`, the state lending its other buffers as inputs.
    fn write(&mut self, y: Buf, f: impl FnOnce(&Self, &mut Vec<f32>)) {
        let mut out = self.take(y);
        f(self, &mut out);
        self.put(y, out);
    }

    /// A convolution's dw, db and (written, or added in) dx.
    fn conv_backward(&mut self, instr: &Instr) {
        let Instr::ConvBack { g, oc, x, w, dy, dw, db, dx, dx_accumulate, .. } = *instr else { unreachable!() };
        let (mut dwv, mut dbv, mut dxv) = (self.take(dw), self.take(db), vec![0.0; g.input_len()]);
        conv::cpu::conv2d_backward(&g, oc, self.get(x), self.get(w), self.get(dy), &mut dxv, &mut dwv, &mut dbv);
        self.put(dw, dwv);
        self.put(db, dbv);
        match dx {
            Some(dx) if dx_accumulate => self.write(dx, |_, out| add::cpu::add_assign(&dxv, out)),
            Some(dx) => self.put(dx, dxv),
            None => {}
        }
    }

    /// A batch norm's forward pass (its running statistics updated when training: every row
    /// of a CPU run is real).
    fn batch_norm(&mut self, instr: &Instr) {
        let Instr::BatchNorm { shape, x, y, affine, running, saved, training } = *instr else { unreachable!() };
        let mut stats = self.take(saved);
        if training {
            let [mut mean, mut var, mut batches] = running.map(|b| self.take(b));
            batch_norm::cpu::statistics(shape, shape[0], self.get(x), &mut stats, [&mut mean, &mut var, &mut batches]);
            for (b, values) in running.into_iter().zip([mean, var, batches]) {
                self.put(b, values);
            }
        } else {
            batch_norm::cpu::running(shape, [self.get(running[0]), self.get(running[1])], &mut stats);
        }
        self.put(saved, stats);
        let [gamma, beta] = affine;
        self.write(y, |s, out| batch_norm::cpu::apply(shape, s.get(x), s.get(saved), s.get(gamma), s.get(beta), out));
    }

    /// A batch norm's dgamma, dbeta and dx.
    fn batch_norm_backward(&mut self, instr: &Instr) {
        let Instr::BatchNormBack { shape, x, dy, gamma, saved, daffine, dx, .. } = *instr else { unreachable!() };
        let (mut dgamma, mut dbeta) = (self.take(daffine[0]), self.take(daffine[1]));
        let mut dxv = vec![0.0; shape.iter().product()];
        let inputs = (self.get(x), self.get(dy), self.get(saved), self.get(gamma));
        batch_norm::cpu::backward(shape, inputs, &mut dgamma, &mut dbeta, &mut dxv);
        self.put(daffine[0], dgamma);
        self.put(daffine[1], dbeta);
        if let Some(dx) = dx {
            self.put(dx, dxv);
        }
    }

    /// Runs one instruction; the loss instruction returns (mean loss, correct predictions).
    fn exec(&mut self, instr: &Instr) -> Option<(f32, u32)> {
        match *instr {
            Instr::Conv { g, oc, x, w, b, y, relu, residual } => self.write(y, |s, out| {
                conv::cpu::conv2d_forward(&g, oc, s.get(x), s.get(w), s.get(b), out);
                if let Some(r) = residual {
                    add::cpu::add_assign(s.get(r), out);
                }
                if relu {
                    out.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }),
            Instr::ConvBack { .. } => self.conv_backward(instr),
            Instr::Linear { n, inputs, outputs, x, w, b, y } => self.write(y, |s, out| {
                matmul::cpu::matmul(&matmul::linear_product(n, inputs, outputs), s.get(x), s.get(w), s.get(b), &[], out)
            }),
            Instr::LinearBack { n, inputs, outputs, x, w, dy, dw, db, dx, dx_accumulate } => {
                let weight_grad = matmul::linear_weight_grad_product(n, inputs, outputs);
                self.write(dw, |s, out| matmul::cpu::matmul(&weight_grad, s.get(dy), s.get(x), &[], &[], out));
                self.write(db, |s, out| out.copy_from_slice(&matmul::cpu::row_sums(&weight_grad, s.get(dy))));
                if let Some(dx) = dx {
                    let input_grad =
                        matmul::Matmul { accumulate: dx_accumulate, ..matmul::Matmul::dense(n, inputs, outputs) };
                    self.write(dx, |s, out| matmul::cpu::matmul(&input_grad, s.get(dy), s.get(w), &[], &[], out));
                }
            }
            Instr::MaxPool { g, x, y, argmax, relu } => {
                let ai = self.int(argmax);
                let mut arg = std::mem::take(&mut self.ints[ai]);
                self.write(y, |s, out| max_pool::cpu::max_pool_forward(&g, relu, s.get(x), out, &mut arg));
                self.ints[ai] = arg;
            }
            Instr::MaxPoolBack { g, dy, argmax, dx } => {
                self.write(dx, |s, out| max_pool::cpu::max_pool_backward(&g, s.get(dy), &s.ints[s.int(argmax)], out))
            }
            Instr::AvgPool { g, x, y } => self.write(y, |s, out| avg_pool::cpu::avg_pool_forward(&g, s.get(x), out)),
            Instr::AvgPoolBack { g, dy, dx } => {
                self.write(dx, |s, out| avg_pool::cpu::avg_pool_backward(&g, s.get(dy), out))
            }
            Instr::Relu { len, x, y } => {
                self.write(y, |s, out| relu::cpu::relu_forward(&s.get(x)[..len], &mut out[..len]))
            }
            Instr::ReluBack { len, y, dy, dx } => {
                self.write(dx, |s, out| relu::cpu::relu_backward(&s.get(y)[..len], &s.get(dy)[..len], &mut out[..len]))
            }
            Instr::Add { len, a, b, y } => {
                self.write(y, |s, out| add::cpu::add(&s.get(a)[..len], &s.get(b)[..len], &mut out[..len]))
            }
            Instr::AddAssign { len, a, y } => {
                self.write(y, |s, out| add::cpu::add_assign(&s.get(a)[..len], &mut out[..len]))
            }
            Instr::CopyChannels { copy, src, dst } => {
                self.write(dst, |s, out| concat::cpu::copy_channels(&copy, s.get(src), out))
            }
            Instr::BatchNorm { .. } => self.batch_norm(instr),
            // A CPU run draws as a training plan seeded 0 does at its first step.
            Instr::Dropout { p, x, y, .. } => {
                let d = dropout::Dropout { p, seed: 0 };
                self.write(y, |s, out| dropout::cpu::dropout(&d, 0, s.get(x), out))
            }
            Instr::BatchNormBack { .. } => self.batch_norm_backward(instr),
            Instr::Loss { rows, classes, logits, labels, dlogits } => {
                let mut d = dlogits.map(|b| self.take(b));
                let labels = &self.ints[self.int(labels)];
                let result = softmax_cross_entropy::cpu::softmax_cross_entropy(
                    rows,
                    classes,
                    self.get(logits),
                    labels,
                    0.0,
                    d.as_deref_mut(),
                    None,
                );
                if let (Some(b), Some(d)) = (dlogits, d) {
                    self.put(b, d);
                }
                return Some(result);
            }
        }
        None
    }
}

/// Runs `program` on `x` (the normalized batch) and `labels`.
pub fn run(graph: &Graph, program: &Program, params: &[f32], x: &[f32], labels: &[u32]) -> CpuRun {
    let mut s = State {
        graph,
        params: params.to_vec(),
        grads: vec![0.0; params.len()],
        acts: program.buffers.iter().map(|b| if b.integer { Vec::new() } else { vec![0.0; b.len] }).collect(),
        ints: program.buffers.iter().map(|b| if b.integer { vec![0; b.len] } else { Vec::new() }).collect(),
    };
    s.put(program.input, x.to_vec());
    let li = s.int(program.labels);
    s.ints[li] = labels.to_vec();
    let (mut loss, mut correct) = (0.0, 0);
    for instr in &program.instrs {
        if let Some(result) = s.exec(instr) {
            (loss, correct) = result;
        }
    }
    CpuRun { loss, correct, logits: s.get(program.logits).to_vec(), grads: s.grads, params: s.params }
}
