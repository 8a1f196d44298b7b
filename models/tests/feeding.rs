//! What the engine does with loaded MNIST data: normalization, the epoch order, and the GPU
//! gather of every batch (the last one partial) against its CPU reference. The loader's own
//! tests (parsing, bad input, downloads, real MNIST) live in the `mnist-loader` crate.

use engine::ops::gather::{self, GpuImages, Normalization};
use models::train::{epoch_permutation, MNIST_NORMALIZATION};
use test_support::gpu::{assert_close, gpu};

fn pixel(image: usize, row: usize, col: usize) -> u8 {
    ((image * 31 + row * 7 + col * 3) % 256) as u8
}

fn image_pixels(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    (0..count).flat_map(|i| (0..rows).flat_map(move |r| (0..cols).map(move |c| pixel(i, r, c)))).collect()
}

fn labels_for(count: usize) -> Vec<u32> {
    (0..count).map(|i| (i * 3 % 10) as u32).collect()
}

#[test]
fn the_binaries_normalize_with_the_mnist_statistics() {
    let norm = MNIST_NORMALIZATION;
    assert_eq!((norm.mean, norm.std), (0.1307, 0.3081));
    assert!((norm.apply(0) - (-0.1307 / 0.3081)).abs() < 1e-6);
    assert!((norm.apply(255) - ((1.0 - 0.1307) / 0.3081)).abs() < 1e-6);
}

#[test]
fn cpu_gather_builds_normalized_nchw_samples() {
    let (rows, cols) = (3, 4);
    let norm = Normalization { mean: 0.5, std: 0.25 };
    let indices = [4u32, 0, 4, 2];
    let (pixels, labels) =
        gather::cpu::gather_batch(&image_pixels(6, rows, cols), &labels_for(6), rows * cols, &indices, &[norm]);
    assert_eq!(pixels.len(), indices.len() * rows * cols);
    assert_eq!(labels, vec![2, 0, 2, 6]);
    for (n, &index) in indices.iter().enumerate() {
        for row in 0..rows {
            for col in 0..cols {
                let expected = (f32::from(pixel(index as usize, row, col)) / 255.0 - 0.5) / 0.25;
                let actual = pixels[(n * rows + row) * cols + col];
                assert!((actual - expected).abs() < 1e-6, "sample {n} ({row},{col}): {actual} != {expected}");
            }
        }
    }
}

#[test]
fn epoch_permutation_is_deterministic_and_a_permutation() {
    let first = epoch_permutation(1000, 42, 3);
    assert_eq!(first, epoch_permutation(1000, 42, 3));
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
    assert_ne!(first, sorted, "the order is shuffled");
    assert!(epoch_permutation(0, 42, 0).is_empty());
}

#[test]
fn epoch_permutation_differs_between_epochs_and_seeds() {
    let epochs: Vec<Vec<u32>> = (0..5).map(|epoch| epoch_permutation(500, 7, epoch)).collect();
    for a in 0..epochs.len() {
        for b in a + 1..epochs.len() {
            assert_ne!(epochs[a], epochs[b], "epochs {a} and {b} share an order");
        }
    }
    assert_ne!(epoch_permutation(500, 7, 0), epoch_permutation(500, 8, 0));
}

/// The normalized pixels agree to 1e-5 relative plus 1e-6: the shader's two divisions may each
/// be 2.5 ULP off on real GPUs (WGSL's bound for f32 division); the labels are moved, so exact.
#[test]
fn gpu_gather_builds_the_same_batches_as_the_cpu_path_including_the_partial_last_one() {
    let Some(ctx) = gpu() else { return };
    let (count, rows, cols, batch) = (70, 5, 3, 16); // 70 = 4·16 + 6: a partial last batch
    let (pixels, labels) = (image_pixels(count, rows, cols), labels_for(count));
    let images = GpuImages::upload(ctx, &pixels, &labels, [1, rows, cols]).unwrap();
    let norm = [MNIST_NORMALIZATION];
    let norm_t = Normalization::upload(ctx, &norm).unwrap();
    let order = epoch_permutation(count as u32, 9, 1);
    let order_t = ctx.upload(&order, "order").unwrap();
    let step = ctx.zeros(1, "step").unwrap();
    for start in (0..count).step_by(batch) {
        let n = batch.min(count - start);
        let (x, y) = (ctx.zeros(n * rows * cols, "x").unwrap(), ctx.zeros(n, "y").unwrap());
        let gather = gather::gather_batch(ctx, &images, n, batch, &norm_t, &order_t, &step, (&x, &y), None).unwrap();
        ctx.write(&step, &[(start / batch) as u32]);
        ctx.run(&[&gather]).unwrap();
        let (x_want, y_want) =
            gather::cpu::gather_batch(&pixels, &labels, rows * cols, &order[start..start + n], &norm);
        assert_close(&format!("batch at {start}"), &ctx.read::<f32>(&x).unwrap(), &x_want, 1e-5, 1e-6);
        assert_eq!(ctx.read::<u32>(&y).unwrap(), y_want, "batch at {start}");
    }
}
