//! Tests of what the engine does with loaded MNIST data: normalization, epoch order, batch
//! boundaries, and the GPU gather against its CPU reference. The loader's own tests (parsing,
//! bad input, downloads, real MNIST) live in the `mnist-loader` crate.

use mnist_loader::{batch_ranges, cpu_batch, epoch_permutation, Normalization, Split, NUM_CLASSES};

// ---------------------------------------------------------------------------------------------
// Helpers

fn pixel(image: usize, row: usize, col: usize) -> u8 {
    ((image * 31 + row * 7 + col * 3) % 256) as u8
}

fn image_pixels(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(count * rows * cols);
    for image in 0..count {
        for row in 0..rows {
            for col in 0..cols {
                pixels.push(pixel(image, row, col));
            }
        }
    }
    pixels
}

fn labels_for(count: usize) -> Vec<u8> {
    (0..count).map(|i| (i * 3 % NUM_CLASSES) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Batching helpers

#[test]
fn normalize_default_is_the_mnist_statistics() {
    let norm = Normalization::default();
    assert_eq!((norm.mean, norm.std), (0.1307, 0.3081));
    assert!((norm.apply(0) - (-0.1307 / 0.3081)).abs() < 1e-6);
    assert!((norm.apply(255) - ((1.0 - 0.1307) / 0.3081)).abs() < 1e-6);
}

#[test]
fn cpu_batch_gathers_normalized_nchw_samples() {
    let (rows, cols) = (3, 4);
    let split = Split { images: image_pixels(6, rows, cols), labels: labels_for(6), count: 6, rows, cols };
    let norm = Normalization { mean: 0.5, std: 0.25 };
    let indices = [4u32, 0, 4, 2];
    let (pixels, labels) = cpu_batch(&split, &indices, norm);
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

#[test]
fn batch_ranges_keep_the_last_partial_batch() {
    let ranges = batch_ranges(60000, 64);
    assert_eq!(ranges.len(), 938);
    assert_eq!(ranges[0], 0..64);
    assert_eq!(ranges[937], 59968..60000);
    assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));

    assert_eq!(batch_ranges(128, 64), vec![0..64, 64..128]);
    assert_eq!(batch_ranges(10, 64), vec![0..10]);
    assert!(batch_ranges(0, 64).is_empty());
    assert!(batch_ranges(100, 0).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Feeding the GPU

#[test]
fn gpu_gather_builds_the_same_batches_as_the_cpu_path_including_the_partial_last_one() {
    let Some(ctx) = tests::gpu() else { return };
    let (count, rows, cols, batch) = (70, 5, 3, 16); // 70 = 4·16 + 6: a partial last batch
    let split = Split { images: image_pixels(count, rows, cols), labels: labels_for(count), count, rows, cols };
    let images = split.upload(ctx).unwrap();
    let norm = Normalization::default();
    let order = epoch_permutation(count, 9, 1);
    let order_t = ctx.upload(&order, "order").unwrap();
    let step = ctx.zeros(1, "step").unwrap();
    let advance = engine::ops::gather::advance_step(ctx, &step).unwrap();
    for range in batch_ranges(count, batch) {
        let n = range.len();
        let (x, y) = (ctx.zeros(n * rows * cols, "x").unwrap(), ctx.zeros(n, "y").unwrap());
        let gather = engine::ops::gather::gather_batch(ctx, &images, n, batch, norm, &order_t, &step, &x, &y).unwrap();
        ctx.run(&[&gather, &advance]).unwrap();
        let (x_want, y_want) = cpu_batch(&split, &order[range.clone()], norm);
        assert_eq!(ctx.read::<f32>(&x).unwrap(), x_want, "batch {range:?}");
        assert_eq!(ctx.read::<u32>(&y).unwrap(), y_want, "batch {range:?}");
    }
}
