// softmax_cross_entropy: fused, numerically stable softmax + cross-entropy, mean over the batch,
// its gradient, and the running metrics of a training or evaluation pass. It closes the step:
// it advances the step counter.
//
//   logits: [rows, classes], labels: [rows] (u32)
//   Only the first `valid` rows count, valid = min(rows, samples - step * rows): the last batch
//   of an epoch is padded to the full batch, so it runs through the same plan; padding rows get
//   a zero gradient and so change no parameter.
//   loss_i   = logsumexp(logits_i) - logits_i[label_i]       (max subtracted first: no overflow)
//   with label smoothing s (PyTorch's label_smoothing; the target is (1 - s) onehot + s / classes):
//   loss_i   = (1 - s) (logsumexp - logits_i[label_i]) + s / classes * sum_j (logsumexp - logits_ij)
//   dlogits  = (softmax(logits_i) - (1 - s) onehot(label_i) - s / classes) / valid
//              (written when write_grad != 0)
//   metrics  (u32 words, updated by one thread, so no atomics):
//     [0] sum of batch-mean losses (f32 bits)   [1] correct argmax predictions (first max wins)
//     [2] rows seen                              [3] 1 + the step of the first non-finite loss, 0 if none
//   predictions[done + i] = argmax(logits_i) for the valid rows, where done = the samples of the
//   earlier steps (written when write_predictions != 0: an evaluation's confusion matrix)
//   step[0] is the index of the current step; thread 0 adds 1 once every thread has read it.
//
// Bindings: 0 uniform SoftmaxCrossEntropyParams, 1 logits (read), 2 labels (read, u32), 3 step (read_write, u32),
//           4 dlogits (read_write), 5 metrics (read_write, u32), 6 predictions (read_write, u32).
// Dispatch: (1, 1, 1): one workgroup of 64 threads strides over the rows; thread 0 then adds up
// the 64 partial sums (one barrier: on a CPU driver each barrier switches every thread).

struct SoftmaxCrossEntropyParams {
    rows: u32, classes: u32, write_grad: u32, samples: u32, write_predictions: u32, label_smoothing: f32,
}

@group(0) @binding(0) var<uniform> p: SoftmaxCrossEntropyParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> step: array<u32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> metrics: array<u32>;
@group(0) @binding(6) var<storage, read_write> predictions: array<u32>;

const THREADS: u32 = 64u;

var<workgroup> loss_partial: array<f32, THREADS>;
var<workgroup> correct_partial: array<u32, THREADS>;

fn is_finite(v: f32) -> bool {
    // Exponent bits all ones means inf or NaN; a bit test survives fast-math compilers.
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(THREADS)
fn softmax_cross_entropy(@builtin(local_invocation_index) lid: u32) {
    var loss = 0.0;
    var correct = 0u;
    let current = step[0];
    let done = min(p.samples, current * p.rows);
    let valid = min(p.rows, p.samples - done);
    let inv_rows = 1.0 / f32(max(valid, 1u));
    if (p.write_grad != 0u) {
        for (var i = valid * p.classes + lid; i < p.rows * p.classes; i += THREADS) {
            dlogits[i] = 0.0;
        }
    }
    for (var row = lid; row < valid; row += THREADS) {
        let base = row * p.classes;
        var max_logit = logits[base];
        var arg = 0u;
        for (var j = 1u; j < p.classes; j++) {
            let v = logits[base + j];
            if (v > max_logit) {
                max_logit = v;
                arg = j;
            }
        }
        var sum = 0.0;
        var gap_sum = 0.0; // sum_j (max - logits_ij), for the smoothing term
        for (var j = 0u; j < p.classes; j++) {
            sum += exp(logits[base + j] - max_logit);
            gap_sum += max_logit - logits[base + j];
        }
        let label = labels[row];
        let s = p.label_smoothing;
        let spread = s / f32(p.classes);
        let nll = log(sum) + (max_logit - logits[base + label]);
        loss += (1.0 - s) * nll + spread * (f32(p.classes) * log(sum) + gap_sum);
        if (arg == label) {
            correct += 1u;
        }
        if (p.write_predictions != 0u) {
            predictions[done + row] = arg;
        }
        if (p.write_grad != 0u) {
            for (var j = 0u; j < p.classes; j++) {
                let prob = exp(logits[base + j] - max_logit) / sum;
                dlogits[base + j] = (prob - select(0.0, 1.0 - s, j == label) - spread) * inv_rows;
            }
        }
    }
    loss_partial[lid] = loss;
    correct_partial[lid] = correct;
    workgroupBarrier();
    storageBarrier();
    if (lid == 0u) {
        step[0] = current + 1u;
    }
    if (lid == 0u && valid > 0u) {
        var loss_sum = 0.0;
        var correct_sum = 0u;
        for (var t = 0u; t < THREADS; t++) {
            loss_sum += loss_partial[t];
            correct_sum += correct_partial[t];
        }
        let mean_loss = loss_sum * inv_rows;
        metrics[0] = bitcast<u32>(bitcast<f32>(metrics[0]) + mean_loss);
        metrics[1] += correct_sum;
        metrics[2] += valid;
        if (!is_finite(mean_loss) && metrics[3] == 0u) {
            metrics[3] = current + 1u;
        }
    }
}
