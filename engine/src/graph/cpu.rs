//! The CPU reference executor: runs a [`Program`] with the plain CPU reference of every op, on
//! the same packed parameters as the GPU. The whole-network gradient tests compare the two.

use super::program::{Buf, Instr, Program};
use super::Graph;
use crate::ops::{add, avg_pool, bias, concat, conv, fill, matmul, max_pool, relu, softmax_cross_entropy};

pub struct CpuRun {
    /// The batch's mean loss and correct predictions.
    pub loss: f32,
    pub correct: u32,
    pub logits: Vec<f32>,
    /// Packed like the parameters (zero where the program computes no gradient).
    pub grads: Vec<f32>,
}

struct State<'a> {
    graph: &'a Graph,
    params: &'a [f32],
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
            Buf::Param(_) => panic!("the program never writes parameters"),
        }
    }
    fn put(&mut self, b: Buf, v: Vec<f32>) {
        match b {
            Buf::Act(i) => self.acts[i] = v,
            Buf::Grad(p) => {
                let p = &self.graph.params[p];
                self.grads[p.offset..p.offset + p.len()].copy_from_slice(&v);
            }
            Buf::Param(_) => panic!("the program never writes parameters"),
        }
    }
    fn int(&self, b: Buf) -> usize {
        match b {
            Buf::Act(i) => i,
            _ => panic!("integer buffers are activations"),
        }
    }
}

/// Runs `program` on `x` (the normalized batch) and `labels`.
pub fn run(graph: &Graph, program: &Program, params: &[f32], x: &[f32], labels: &[u32]) -> CpuRun {
    let mut s = State {
        graph,
        params,
        grads: vec![0.0; params.len()],
        acts: program.buffers.iter().map(|b| if b.integer { Vec::new() } else { vec![0.0; b.len] }).collect(),
        ints: program.buffers.iter().map(|b| if b.integer { vec![0; b.len] } else { Vec::new() }).collect(),
    };
    s.put(program.input, x.to_vec());
    let li = s.int(program.labels);
    s.ints[li] = labels.to_vec();
    let (mut loss, mut correct) = (0.0, 0);
    for instr in &program.instrs {
        match *instr {
            Instr::Conv { g, oc, x, w, b, y, relu, .. } => {
                let mut out = s.take(y);
                conv::cpu::conv2d_forward(&g, oc, s.get(x), s.get(w), s.get(b), &mut out);
                if relu {
                    out.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                s.put(y, out);
            }
            Instr::ConvBack { g, oc, x, w, dy, dw, db, dx, .. } => {
                let (mut dwv, mut dbv) = (s.take(dw), s.take(db));
                let mut dxv = vec![0.0; g.input_len()];
                conv::cpu::conv2d_backward(&g, oc, s.get(x), s.get(w), s.get(dy), &mut dxv, &mut dwv, &mut dbv);
                s.put(dw, dwv);
                s.put(db, dbv);
                if let Some(dx) = dx {
                    s.put(dx, dxv);
                }
            }
            Instr::Linear { n, inputs, outputs, x, w, b, y } => {
                let mut out = s.take(y);
                let product = matmul::Matmul {
                    b: matmul::View::row_major(inputs).t(),
                    ..matmul::Matmul::dense(n, outputs, inputs)
                };
                matmul::cpu::matmul(&product, s.get(x), s.get(w), &mut out);
                bias::cpu::bias_add(n, outputs, 1, false, s.get(b), &mut out);
                s.put(y, out);
            }
            Instr::LinearBack { n, inputs, outputs, x, w, dy, dw, db, dx } => {
                let (mut dwv, mut dbv) = (s.take(dw), s.take(db));
                let weight_grad = matmul::Matmul {
                    a: matmul::View::row_major(outputs).t(),
                    ..matmul::Matmul::dense(outputs, inputs, n)
                };
                matmul::cpu::matmul(&weight_grad, s.get(dy), s.get(x), &mut dwv);
                bias::cpu::bias_grad(n, outputs, 1, s.get(dy), &mut dbv);
                s.put(dw, dwv);
                s.put(db, dbv);
                if let Some(dx) = dx {
                    let mut dxv = s.take(dx);
                    matmul::cpu::matmul(&matmul::Matmul::dense(n, inputs, outputs), s.get(dy), s.get(w), &mut dxv);
                    s.put(dx, dxv);
                }
            }
            Instr::MaxPool { g, x, y, argmax } => {
                let mut out = s.take(y);
                let ai = s.int(argmax);
                let mut arg = std::mem::take(&mut s.ints[ai]);
                max_pool::cpu::max_pool_forward(&g, s.get(x), &mut out, &mut arg);
                s.ints[ai] = arg;
                s.put(y, out);
            }
            Instr::MaxPoolBack { g, dy, argmax, dx } => {
                let mut out = s.take(dx);
                max_pool::cpu::max_pool_backward(&g, s.get(dy), &s.ints[s.int(argmax)], &mut out);
                s.put(dx, out);
            }
            Instr::AvgPool { g, x, y } => {
                let mut out = s.take(y);
                avg_pool::cpu::avg_pool_forward(&g, s.get(x), &mut out);
                s.put(y, out);
            }
            Instr::AvgPoolBack { g, dy, dx } => {
                let mut out = s.take(dx);
                avg_pool::cpu::avg_pool_backward(&g, s.get(dy), &mut out);
                s.put(dx, out);
            }
            Instr::Relu { len, x, y } => {
                let mut out = s.take(y);
                relu::cpu::relu_forward(&s.get(x)[..len], &mut out[..len]);
                s.put(y, out);
            }
            Instr::ReluBack { len, y, dy, dx } => {
                let mut out = s.take(dx);
                relu::cpu::relu_backward(&s.get(y)[..len], &s.get(dy)[..len], &mut out[..len]);
                s.put(dx, out);
            }
            Instr::Add { len, a, b, y } => {
                let mut out = s.take(y);
                add::cpu::add(&s.get(a)[..len], &s.get(b)[..len], &mut out[..len]);
                s.put(y, out);
            }
            Instr::AddAssign { len, a, y } => {
                let mut out = s.take(y);
                add::cpu::add_assign(&s.get(a)[..len], &mut out[..len]);
                s.put(y, out);
            }
            Instr::Copy { len, src, dst } => {
                let mut out = s.take(dst);
                fill::cpu::copy(&s.get(src)[..len], &mut out[..len]);
                s.put(dst, out);
            }
            Instr::CopyChannels { copy, src, dst } => {
                let mut out = s.take(dst);
                concat::cpu::copy_channels(&copy, s.get(src), &mut out);
                s.put(dst, out);
            }
            Instr::Loss { rows, classes, logits, labels, dlogits } => {
                let mut d = dlogits.map(|b| s.take(b));
                let labels = &s.ints[s.int(labels)];
                (loss, correct) = softmax_cross_entropy::cpu::softmax_cross_entropy(
                    rows,
                    classes,
                    s.get(logits),
                    labels,
                    d.as_deref_mut(),
                );
                if let (Some(b), Some(d)) = (dlogits, d) {
                    s.put(b, d);
                }
            }
        }
    }
    CpuRun { loss, correct, logits: s.get(program.logits).to_vec(), grads: s.grads }
}
