//! Epoch order, batch boundaries and the CPU reference of the GPU batch gather.

use std::ops::Range;

use engine::ops::gather;
use engine::rng::Rng;

use crate::Split;

/// Per-pixel normalization, `value = (pixel / 255 - mean) / std`: the engine's, so the GPU
/// gather and this CPU path share one definition.
pub use engine::ops::gather::Normalization;

/// A seeded permutation of `0..n`, the sample order of one epoch.
///
/// The same `(seed, epoch)` always gives the same order; for one seed, every epoch gets a
/// different generator state, so orders differ between epochs.
///
/// # Panics
/// If `n` exceeds `u32::MAX` (IDX counts are 32-bit, so no split is that large).
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let n = u32::try_from(n).expect("epoch_permutation: n exceeds u32::MAX");
    let mut order: Vec<u32> = (0..n).collect();
    // SplitMix64's output is a bijection of its state, so distinct epochs give distinct seeds.
    let mut rng = Rng::new(seed ^ Rng::new(epoch).next_u64());
    // Fisher–Yates.
    for i in (1..n).rev() {
        order.swap(i as usize, rng.below(i + 1) as usize);
    }
    order
}

/// Consecutive ranges of `batch_size` items covering `0..n`; the last, partial batch is kept
/// (60000 items in batches of 64 give 938 ranges, the last of 32). A `batch_size` of 0 gives
/// no ranges.
pub fn batch_ranges(n: usize, batch_size: usize) -> Vec<Range<usize>> {
    if batch_size == 0 {
        return Vec::new();
    }
    (0..n).step_by(batch_size).map(|start| start..n.min(start + batch_size)).collect()
}

/// Gathers the samples at `indices` into a normalized `f32` batch laid out NCHW
/// `(indices.len(), 1, rows, cols)`, with their labels: the CPU reference of the GPU gather.
///
/// # Panics
/// If an index is not below `split.count`.
pub fn cpu_batch(split: &Split, indices: &[u32], norm: Normalization) -> (Vec<f32>, Vec<u32>) {
    for &index in indices {
        assert!(
            (index as usize) < split.count,
            "cpu_batch: index {index} is out of range for a split of {} samples",
            split.count
        );
    }
    gather::cpu::gather_batch(&split.images, &split.labels, split.image_len(), indices, norm)
}
