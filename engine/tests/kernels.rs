#![allow(clippy::needless_range_loop)] // index loops read clearest beside finite differences
//! Every kernel against its CPU reference, on tiny and odd shapes and on the tutorial networks' real
//! shapes at batch 64; every backward pass also against finite differences of the CPU forward.
//!
//! Tolerances: only pure data movement must match bit for bit (im2col, max pool forward and its
//! argmax, concat and split, ReLU, copy, the gathered labels). Arithmetic gets a stated
//! tolerance, since real GPUs round differently (WGSL allows 2.5 ULP on f32 division, Metal
//! compiles with fast math): additions to two roundings (add, add_assign); sums (matmul, col2im, the
//! pool backward passes, bias gradients) to a relative 1e-4 plus an absolute 1e-4·√(terms
//! summed), the rounding of f32 sums accumulated in another order; the gather's normalization
//! to 1e-5 relative.

use engine::ops::optimizer::{self, Adam, Optimizer, OptimizerState, Sgd};
use engine::ops::window::{ConvGeometry, PoolGeometry, Window};
use engine::ops::{
    add, avg_pool, batch_norm, concat, conv, dropout, gather, matmul, max_pool, peak, relu,
    softmax_cross_entropy as sce,
};
use engine::rng::Rng;
use engine::schedule::Schedule;
use engine::{Dispatch, GpuContext, Tensor};
use test_support::gpu::{assert_close, finite_difference, gpu};

fn up(ctx: &GpuContext, data: &[f32]) -> Tensor {
    ctx.upload(data, "test").unwrap()
}

/// An output buffer full of NaN: a kernel that fails to write every element (or adds to what
/// is there instead of overwriting it) is caught, since plans reuse buffers without clearing.
fn dirty(ctx: &GpuContext, len: usize) -> Tensor {
    up(ctx, &vec![f32::NAN; len])
}

fn run_and_read(ctx: &GpuContext, dispatches: &[Dispatch], out: &Tensor) -> Vec<f32> {
    ctx.run(&dispatches.iter().collect::<Vec<_>>()).unwrap();
    ctx.read(out).unwrap()
}

fn sum_tol(terms: usize) -> f32 {
    1e-4 * (terms as f32).sqrt()
}

// ---------------------------------------------------------------- matmul

/// Both matmul kernels where the device runs both (matmul_subgroup needs a CPU driver with
/// 8-lane subgroups), else the tiled one, saying so.
fn matmul_kernels(ctx: &GpuContext) -> Vec<matmul::MatmulKernel> {
    if ctx.report.cpu_lanes_8() {
        vec![matmul::MatmulKernel::Tiled, matmul::MatmulKernel::Subgroup]
    } else {
        test_support::gpu::note(&format!(
            "matmul_subgroup not run: {} is not a CPU driver with 8-lane subgroups",
            ctx.report
        ));
        vec![matmul::MatmulKernel::Tiled]
    }
}

/// Runs `s` on both kernels (where both run) against the CPU reference; returns the result.
fn check_matmul(ctx: &GpuContext, s: &matmul::Matmul, a_len: usize, b_len: usize, c_len: usize, seed: u64) -> Vec<f32> {
    let b = Rng::new(seed ^ 0xb).uniform_vec(b_len, 1.0);
    check_matmul_on(ctx, s, a_len, &b, c_len, seed)
}

/// `check_matmul` with B given.
fn check_matmul_on(ctx: &GpuContext, s: &matmul::Matmul, a_len: usize, b: &[f32], c_len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let a = rng.uniform_vec(a_len, 1.0);
    let c0 = rng.uniform_vec(c_len, 1.0);
    let bias = match s.bias {
        matmul::BiasAlong::None => vec![],
        matmul::BiasAlong::Rows => rng.uniform_vec(s.m, 1.0),
        matmul::BiasAlong::Columns => rng.uniform_vec(s.n_inner, 1.0),
    };
    let residual = if s.residual { rng.uniform_vec(c_len, 1.0) } else { vec![] };
    let mut want = c0.clone();
    matmul::cpu::matmul(s, &a, &b, &bias, &residual, &mut want);
    let sums_want = matmul::cpu::row_sums(s, &a);
    let (a, b, bias) = (up(ctx, &a), up(ctx, b), (!bias.is_empty()).then(|| up(ctx, &bias)));
    let residual = s.residual.then(|| up(ctx, &residual));
    let mut results = Vec::new();
    for kernel in matmul_kernels(ctx) {
        let (c, sums) = (up(ctx, &c0), dirty(ctx, s.batch * s.m));
        let ops = matmul::Operands {
            bias: bias.as_ref(),
            sums: s.row_sums.then_some(&sums),
            residual: residual.as_ref(),
            ..matmul::Operands::abc(&a, &b, &c)
        };
        let got = run_and_read(ctx, &[matmul::matmul_with(ctx, kernel, s, &ops).unwrap()], &c);
        assert_close(&format!("matmul ({kernel:?}) {s:?}"), &got, &want, 1e-4, sum_tol(s.k * s.reduce));
        let sums = if s.row_sums { ctx.read::<f32>(&sums).unwrap() } else { vec![] };
        if s.row_sums {
            assert_close(&format!("row sums ({kernel:?}) {s:?}"), &sums, &sums_want, 1e-4, sum_tol(s.k * s.reduce));
        }
        results.push((got, sums));
    }
    // Both kernels add the same products in the same order: equal results, not merely close.
    if let [tiled, subgroup] = &results[..] {
        let first = tiled.0.iter().zip(&subgroup.0).position(|(t, s)| t != s);
        assert!(first.is_none(), "matmul kernels differ at {first:?}: {s:?}");
        assert_eq!(tiled.1, subgroup.1, "the kernels' row sums differ: {s:?}");
    }
    results.swap_remove(0).0
}

#[test]
fn matmul_dense_matches_cpu_on_odd_and_real_shapes() {
    let Some(ctx) = gpu() else { return };
    for (i, &(m, n, k)) in
        [(1, 1, 1), (7, 65, 13), (65, 7, 320), (64, 10, 320), (64, 10, 1408), (33, 129, 17)].iter().enumerate()
    {
        check_matmul(ctx, &matmul::Matmul::dense(m, n, k), m * k, k * n, m * n, i as u64);
    }
}

#[test]
fn matmul_transposed_views_match_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, &(m, n, k)) in [(1, 7, 1), (7, 65, 13), (65, 33, 7), (10, 320, 64)].iter().enumerate() {
        // A·Bᵀ with B stored [n, k]; Aᵀ·B with A stored [k, m]; Aᵀ·Bᵀ.
        let abt = matmul::Matmul { b: matmul::View::row_major(k).t(), ..matmul::Matmul::dense(m, n, k) };
        check_matmul(ctx, &abt, m * k, n * k, m * n, 10 + i as u64);
        let atb = matmul::Matmul { a: matmul::View::row_major(m).t(), ..matmul::Matmul::dense(m, n, k) };
        check_matmul(ctx, &atb, k * m, k * n, m * n, 20 + i as u64);
        let atbt = matmul::Matmul {
            a: matmul::View::row_major(m).t(),
            b: matmul::View::row_major(k).t(),
            ..matmul::Matmul::dense(m, n, k)
        };
        check_matmul(ctx, &atbt, k * m, n * k, m * n, 30 + i as u64);
    }
}

#[test]
fn matmul_batched_reduced_and_accumulating_match_cpu() {
    let Some(ctx) = gpu() else { return };
    // simple_cnn conv2 forward: W [20, 250] · cols of 64 images [250, 64] each, as one wide
    // product whose columns fold as (image, position).
    let (oc, rows, p, n) = (20, 250, 64, 64);
    let fwd = matmul::Matmul {
        n: n * p,
        n_inner: p,
        b_col_outer: rows * p,
        c_col_outer: oc * p,
        ..matmul::Matmul::dense(oc, p, rows)
    };
    check_matmul(ctx, &fwd, oc * rows, n * rows * p, n * oc * p, 40);
    // InceptionA(20)'s 4×4 images: 16 positions, a fold that does not align with the tile.
    let (oc, rows, p, n) = (24, 16, 16, 7);
    let small = matmul::Matmul {
        n: n * p,
        n_inner: p,
        b_col_outer: rows * p,
        c_col_outer: oc * p,
        ..matmul::Matmul::dense(oc, p, rows)
    };
    check_matmul(ctx, &small, oc * rows, n * rows * p, n * oc * p, 43);
    // Its weight gradient: Σ_n dy[n] [20, 64] · cols[n]ᵀ, a reduction over the batch, split
    // into 4 chunks of 16 images (one per batch index).
    let (oc, rows, p, n) = (20, 250, 64, 64);
    let dw = matmul::Matmul {
        reduce: 16,
        batch: 4,
        a: matmul::View::row_major(p).reduced(oc * p).batched(16 * oc * p),
        b: matmul::View::row_major(p).t().reduced(rows * p).batched(16 * rows * p),
        c_batch_stride: oc * rows,
        ..matmul::Matmul::dense(oc, rows, p)
    };
    check_matmul(ctx, &dw, n * oc * p, n * rows * p, 4 * oc * rows, 41);
    // Odd batch and reduce counts, accumulating into C.
    let odd = matmul::Matmul {
        reduce: 3,
        batch: 5,
        a: matmul::View::row_major(13).reduced(7 * 13).batched(3 * 7 * 13),
        b: matmul::View::row_major(9).reduced(13 * 9).batched(3 * 13 * 9),
        c_row_stride: 9,
        c_batch_stride: 7 * 9,
        accumulate: true,
        ..matmul::Matmul::dense(7, 9, 13)
    };
    check_matmul(ctx, &odd, 5 * 3 * 7 * 13, 5 * 3 * 13 * 9, 5 * 7 * 9, 42);
}

#[test]
fn matmul_folds_more_than_65535_column_tiles_into_z() {
    let Some(ctx) = gpu() else { return };
    // More column tiles than a dimension holds for both kernels (64 columns a workgroup tiled,
    // 128 with subgroups).
    let n = 65535 * 128 + 100;
    check_matmul(ctx, &matmul::Matmul::dense(2, n, 1), 2, n, 2 * n, 44);
}

#[test]
fn matmul_subgroup_is_refused_where_subgroups_are_not_8_lanes() {
    let Some(ctx) = gpu() else { return };
    let t = up(ctx, &[1.0; 4]);
    let ops = matmul::Operands::abc(&t, &t, &t);
    let result = matmul::matmul_with(ctx, matmul::MatmulKernel::Subgroup, &matmul::Matmul::dense(2, 2, 1), &ops);
    match (ctx.report.cpu_lanes_8(), result) {
        (true, Ok(_)) => {}
        (false, Err(e)) => assert!(e.to_string().contains("8-lane subgroups"), "{e}"),
        (lanes, r) => panic!("cpu_lanes_8 {lanes} but matmul_subgroup gave {:?}", r.map(|_| ())),
    }
}

#[test]
fn matmul_refuses_views_past_the_buffer() {
    let Some(ctx) = gpu() else { return };
    let a = up(ctx, &[0.0; 6]);
    let err = matmul::matmul(ctx, &matmul::Matmul::dense(3, 3, 3), &a, &a, &a).err().expect("must refuse");
    assert!(err.to_string().contains("matmul reads A up to element 9 but it holds 6"), "{err}");
}

// ---------------------------------------------------------------- convolution

fn geometries() -> Vec<(ConvGeometry, usize)> {
    let g = |n, c, h, w, k, stride, pad| ConvGeometry { n, c, window: Window { h, w, kh: k, kw: k, stride, pad } };
    vec![
        (g(1, 1, 1, 1, 1, 1, 0), 1), // a single pixel
        (g(1, 1, 7, 7, 3, 1, 1), 3), // 3×3 pad 1
        (g(3, 2, 9, 7, 5, 2, 2), 4), // odd sizes, stride 2
        (g(2, 5, 6, 6, 1, 1, 0), 7), // 1×1: the column matrix is the input
        // A 3×2 kernel at stride 3, wider than it: some pixels feed no column at all.
        (ConvGeometry { n: 2, c: 3, window: Window { h: 8, w: 10, kh: 3, kw: 2, stride: 3, pad: 1 } }, 2),
        (g(64, 1, 28, 28, 5, 1, 0), 10),  // simple_cnn conv1
        (g(64, 10, 12, 12, 5, 1, 0), 20), // simple_cnn conv2
        (g(64, 16, 12, 12, 5, 1, 2), 24), // InceptionA 5×5 branch
        (g(64, 88, 12, 12, 5, 1, 0), 20), // inception conv2
        (g(64, 16, 12, 12, 3, 1, 1), 16), // ResBlock(16)
        (g(64, 32, 4, 4, 3, 1, 1), 32),   // ResBlock(32)
        (g(64, 20, 4, 4, 1, 1, 0), 16),   // InceptionA(20) 1×1 branch
    ]
}

#[test]
fn im2col_and_col2im_match_cpu_exactly() {
    let Some(ctx) = gpu() else { return };
    for (i, (g, _)) in geometries().into_iter().enumerate() {
        let mut rng = Rng::new(100 + i as u64);
        let x = rng.uniform_vec(g.input_len(), 1.0);
        let mut want = vec![0.0; g.cols_len()];
        conv::cpu::im2col(&g, &x, &mut want);
        let cols = dirty(ctx, g.cols_len());
        let got = run_and_read(ctx, &[conv::im2col(ctx, &g, &up(ctx, &x), &cols).unwrap()], &cols);
        assert_close(&format!("im2col {g:?}"), &got, &want, 0.0, 0.0);

        let dcols = rng.uniform_vec(g.cols_len(), 1.0);
        let mut want = vec![0.0; g.input_len()];
        conv::cpu::col2im(&g, &dcols, &mut want);
        let dx = dirty(ctx, g.input_len());
        let got = run_and_read(ctx, &[conv::col2im(ctx, &g, &up(ctx, &dcols), &dx).unwrap()], &dx);
        assert_close(&format!("col2im {g:?}"), &got, &want, 1e-6, 1e-5);
    }
}

#[test]
fn im2col_and_col2im_fold_images_past_65535_workgroups() {
    let Some(ctx) = gpu() else { return };
    // 2 images of 2100×2100: 4.41 million elements each, more than 65535 workgroups of 64.
    let g = ConvGeometry { n: 2, c: 1, window: Window { h: 2100, w: 2100, kh: 1, kw: 1, stride: 1, pad: 0 } };
    let x = Rng::new(7).uniform_vec(g.input_len(), 1.0);
    let cols = dirty(ctx, g.cols_len());
    let got = run_and_read(ctx, &[conv::im2col(ctx, &g, &up(ctx, &x), &cols).unwrap()], &cols);
    assert_close("im2col, folded grid", &got, &x, 0.0, 0.0);
    let dx = dirty(ctx, g.input_len());
    let got = run_and_read(ctx, &[conv::col2im(ctx, &g, &up(ctx, &x), &dx).unwrap()], &dx);
    assert_close("col2im, folded grid", &got, &x, 0.0, 0.0);
}

#[test]
fn col2im_is_the_adjoint_of_im2col() {
    // <im2col(x), c> = <x, col2im(c)> for all x, c: col2im is exactly im2col's backward.
    for (i, (g, _)) in geometries().into_iter().take(4).enumerate() {
        let mut rng = Rng::new(200 + i as u64);
        let x = rng.uniform_vec(g.input_len(), 1.0);
        let c = rng.uniform_vec(g.cols_len(), 1.0);
        let mut cols = vec![0.0; g.cols_len()];
        conv::cpu::im2col(&g, &x, &mut cols);
        let mut back = vec![0.0; g.input_len()];
        conv::cpu::col2im(&g, &c, &mut back);
        let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
        assert!((lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()), "{g:?}: {lhs} vs {rhs}");
    }
}

/// The implicit-GEMM products (B read from the input where it lies) against the reference path,
/// im2col on the GPU then the same product over the stored column matrix: both kernels must
/// give the reference's exact floats, and the CPU's to rounding.
#[test]
fn implicit_conv_products_equal_im2col_then_matmul() {
    let Some(ctx) = gpu() else { return };
    // All but inception conv2, whose CPU reference alone would take most of a minute.
    let affordable = |(g, oc): &(ConvGeometry, usize)| g.cols_len() * oc < 50_000_000;
    for (i, (g, oc)) in geometries().into_iter().filter(affordable).enumerate() {
        let (p, rows) = (g.oh() * g.ow(), g.col_rows());
        let mut rng = Rng::new(500 + i as u64);
        let x = rng.uniform_vec(g.input_len(), 1.0);
        let cols_t = dirty(ctx, g.cols_len());
        let cols = run_and_read(ctx, &[conv::im2col(ctx, &g, &up(ctx, &x), &cols_t).unwrap()], &cols_t);
        let reference = |s: matmul::Matmul, a_len: usize, c_len: usize, seed: u64| {
            let implicit = check_matmul_on(ctx, &s, a_len, &x, c_len, seed);
            let stored = matmul::Matmul { b_source: matmul::BSource::View, ..s };
            assert_eq!(implicit, check_matmul_on(ctx, &stored, a_len, &cols, c_len, seed), "{s:?}");
        };
        if g.is_pointwise() {
            continue; // the pointwise products read x as a stored matrix already
        }
        let mut forward = conv::forward_product(&g, oc, i % 2 == 0);
        reference(forward, oc * rows, g.n * oc * p, 510 + i as u64);
        forward.bias = matmul::BiasAlong::None;
        reference(forward, oc * rows, g.n * oc * p, 520 + i as u64);
        for chunks in [1, g.n] {
            reference(conv::weight_grad_product(&g, oc, chunks), g.n * oc * p, chunks * oc * rows, 530 + i as u64);
        }
        // The transposed convolution of dy (stride 1), against the CPU with dy written out.
        if g.window.stride == 1 {
            let dy = rng.uniform_vec(g.n * oc * p, 1.0);
            check_matmul_on(ctx, &conv::input_grad_product(&g, oc), oc * rows, &dy, g.input_len(), 540 + i as u64);
        }
    }
}

/// A random input, weight and bias of a convolution, and the CPU's output (after a ReLU when
/// `relu`).
fn conv_case(g: &ConvGeometry, oc: usize, relu: bool, rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = rng.uniform_vec(g.input_len(), 1.0);
    let w = rng.uniform_vec(oc * g.col_rows(), 0.3);
    let b = rng.uniform_vec(oc, 0.3);
    let mut y = vec![0.0; g.n * oc * g.oh() * g.ow()];
    conv::cpu::conv2d_forward(g, oc, &x, &w, &b, &mut y);
    if relu {
        y.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    (x, w, b, y)
}

#[test]
fn conv2d_forward_and_backward_match_direct_cpu_convolution() {
    let Some(ctx) = gpu() else { return };
    for (i, (g, oc)) in geometries().into_iter().enumerate() {
        for relu in [false, true] {
            let mut rng = Rng::new(300 + i as u64);
            let (x, w, b, want) = conv_case(&g, oc, relu, &mut rng);
            let y_len = want.len();
            let (xt, wt, bt) = (up(ctx, &x), up(ctx, &w), up(ctx, &b));
            let layer = conv::Conv2d { g, out_channels: oc, x: &xt, weight: &wt, bias: &bt };
            let y = dirty(ctx, y_len);
            let got = run_and_read(ctx, &conv::conv2d_forward(ctx, &layer, relu, None, &y).unwrap(), &y);
            assert_close(&format!("conv2d_forward {g:?} relu {relu}"), &got, &want, 1e-4, sum_tol(g.col_rows()));

            if relu {
                continue;
            }
            let dy = rng.uniform_vec(y_len, 1.0);
            let (mut dx_want, mut dw_want, mut db_want) = (vec![0.0; g.input_len()], vec![0.0; w.len()], vec![0.0; oc]);
            conv::cpu::conv2d_backward(&g, oc, &x, &w, &dy, &mut dx_want, &mut dw_want, &mut db_want);
            let (dx, dw, db) = (dirty(ctx, x.len()), dirty(ctx, w.len()), dirty(ctx, oc));
            let dcols = dirty(ctx, g.cols_len());
            let mut steps = conv::conv2d_forward(ctx, &layer, false, None, &y).unwrap();
            let partials = dirty(ctx, conv::weight_grad_partials_len(&g, oc));
            let dyt = up(ctx, &dy);
            let to = |accumulate| Some(conv::InputGrad { dx: &dx, accumulate, dcols: &dcols });
            steps.extend(conv::conv2d_backward(ctx, &layer, &dyt, &dw, &db, &partials, to(false)).unwrap());
            let dx_got = run_and_read(ctx, &steps, &dx);
            let terms = g.n * g.oh() * g.ow();
            assert_close(&format!("conv dx {g:?}"), &dx_got, &dx_want, 1e-4, sum_tol(oc * g.window.kh * g.window.kw));
            assert_close(&format!("conv dw {g:?}"), &ctx.read(&dw).unwrap(), &dw_want, 1e-4, sum_tol(terms));
            assert_close(&format!("conv db {g:?}"), &ctx.read(&db).unwrap(), &db_want, 1e-4, sum_tol(terms));
            // A second contribution added straight into dx, where one matmul computes it.
            let again = conv::conv2d_backward(ctx, &layer, &dyt, &dw, &db, &partials, to(true));
            if g.window.stride > 1 && !g.is_pointwise() {
                assert!(again.is_err(), "col2im cannot accumulate: {g:?}");
                continue;
            }
            let twice: Vec<f32> = dx_want.iter().map(|v| 2.0 * v).collect();
            let got = run_and_read(ctx, &again.unwrap(), &dx);
            assert_close(
                &format!("conv dx added in {g:?}"),
                &got,
                &twice,
                1e-4,
                2.0 * sum_tol(oc * g.window.kh * g.window.kw),
            );
        }
    }
}

/// The direct convolution of a one-channel input against the CPU on every driver, and where
/// `conv2d_forward` chooses it (lavapipe) bit for bit against the forward product it replaces.
#[test]
fn conv_direct_matches_cpu_and_the_product_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    let g = |n, h, w, k, pad| ConvGeometry { n, c: 1, window: Window { h, w, kh: k, kw: k, stride: 1, pad } };
    let cases = [
        (g(1, 1, 1, 1, 0), 1),     // a single pixel
        (g(2, 7, 13, 3, 1), 5),    // a row of 13: one full strip of 8 and one of 5; channels 4 + 1
        (g(3, 9, 6, 5, 2), 24),    // narrower than a strip, padding on every side: fast_cnn's channels
        (g(2, 28, 28, 5, 2), 6),   // LeNet-5's conv1
        (g(64, 28, 28, 5, 0), 10), // simple_cnn's and inception's conv1
        (g(4, 28, 28, 5, 0), 16),  // resnet's conv1
    ];
    for (i, (g, oc)) in cases.into_iter().enumerate() {
        for relu in [false, true] {
            let mut rng = Rng::new(700 + i as u64);
            let (x, w, b, want) = conv_case(&g, oc, relu, &mut rng);
            let y_len = want.len();
            let (xt, wt, bt) = (up(ctx, &x), up(ctx, &w), up(ctx, &b));
            let layer = conv::Conv2d { g, out_channels: oc, x: &xt, weight: &wt, bias: &bt };
            let y = dirty(ctx, y_len);
            let direct = run_and_read(ctx, &[conv::conv_direct(ctx, &layer, relu, &y).unwrap()], &y);
            assert_close(&format!("conv_direct {g:?} relu {relu}"), &direct, &want, 1e-4, sum_tol(g.col_rows()));
            if conv::direct_applies(ctx, &g) {
                let ops = matmul::Operands { bias: Some(&bt), ..matmul::Operands::abc(&wt, &xt, &y) };
                let product = matmul::matmul_fused(ctx, &conv::forward_product(&g, oc, relu), &ops).unwrap();
                assert_eq!(direct, run_and_read(ctx, &[product], &y), "conv_direct vs the product, {g:?}");
            }
        }
    }
    let (x, w) = (up(ctx, &[0.0; 2 * 16]), up(ctx, &[0.0; 9]));
    let two = ConvGeometry { n: 1, c: 2, window: Window { h: 4, w: 4, kh: 3, kw: 3, stride: 1, pad: 0 } };
    let layer = conv::Conv2d { g: two, out_channels: 1, x: &x, weight: &w, bias: &w };
    let message = conv::conv_direct(ctx, &layer, false, &x).err().expect("two channels are refused").to_string();
    assert!(message.contains("one-channel input at stride 1"), "{message}");
}

#[test]
fn conv2d_cpu_backward_matches_finite_differences() {
    let g = ConvGeometry { n: 2, c: 2, window: Window { h: 5, w: 4, kh: 3, kw: 3, stride: 1, pad: 1 } };
    let oc = 3;
    let mut rng = Rng::new(400);
    let x = rng.uniform_vec(g.input_len(), 1.0);
    let w = rng.uniform_vec(oc * g.col_rows(), 0.5);
    let b = rng.uniform_vec(oc, 0.5);
    let y_len = g.n * oc * g.oh() * g.ow();
    let probe = rng.uniform_vec(y_len, 1.0); // loss = <probe, y>
    let loss = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = vec![0.0; y_len];
        conv::cpu::conv2d_forward(&g, oc, x, w, b, &mut y);
        y.iter().zip(&probe).map(|(a, p)| (a * p) as f64).sum::<f64>()
    };
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; oc]);
    conv::cpu::conv2d_backward(&g, oc, &x, &w, &probe, &mut dx, &mut dw, &mut db);
    for i in (0..x.len()).step_by(7) {
        let fd = finite_difference(&x, i, 1e-2, |x| loss(x, &w, &b));
        assert!((fd - dx[i] as f64).abs() < 2e-3, "dx[{i}]: fd {fd}, analytic {}", dx[i]);
    }
    for i in (0..w.len()).step_by(5) {
        let fd = finite_difference(&w, i, 1e-2, |w| loss(&x, w, &b));
        assert!((fd - dw[i] as f64).abs() < 2e-3, "dw[{i}]: fd {fd}, analytic {}", dw[i]);
    }
    for i in 0..oc {
        let fd = finite_difference(&b, i, 1e-2, |b| loss(&x, &w, b));
        assert!((fd - db[i] as f64).abs() < 2e-3, "db[{i}]: fd {fd}, analytic {}", db[i]);
    }
}

// ---------------------------------------------------------------- linear, bias

#[test]
fn linear_forward_and_backward_match_the_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    for (i, &(n, inputs, outputs)) in
        [(1, 1, 1), (7, 13, 5), (64, 320, 10), (64, 1408, 10), (32, 512, 10)].iter().enumerate()
    {
        let mut rng = Rng::new(500 + i as u64);
        let x = rng.uniform_vec(n * inputs, 1.0);
        let w = rng.uniform_vec(outputs * inputs, 0.1);
        let b = rng.uniform_vec(outputs, 0.1);
        let dy = rng.uniform_vec(n * outputs, 1.0);
        // CPU reference: a 1×1 convolution over 1×1 images is exactly a linear layer.
        let g = ConvGeometry { n, c: inputs, window: Window { h: 1, w: 1, kh: 1, kw: 1, stride: 1, pad: 0 } };
        let mut y_want = vec![0.0; n * outputs];
        conv::cpu::conv2d_forward(&g, outputs, &x, &w, &b, &mut y_want);
        let (mut dx_want, mut dw_want, mut db_want) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; outputs]);
        conv::cpu::conv2d_backward(&g, outputs, &x, &w, &dy, &mut dx_want, &mut dw_want, &mut db_want);

        let (xt, wt, bt) = (up(ctx, &x), up(ctx, &w), up(ctx, &b));
        let layer = matmul::Linear { n, inputs, outputs, x: &xt, weight: &wt, bias: &bt };
        let y = dirty(ctx, n * outputs);
        let (dx, dw, db) = (dirty(ctx, x.len()), dirty(ctx, w.len()), dirty(ctx, outputs));
        let mut steps = matmul::linear_forward(ctx, &layer, &y).unwrap();
        steps.extend(matmul::linear_backward(ctx, &layer, &up(ctx, &dy), &dw, &db, Some((&dx, false))).unwrap());
        let y_got = run_and_read(ctx, &steps, &y);
        assert_close("linear y", &y_got, &y_want, 1e-4, sum_tol(inputs));
        assert_close("linear dx", &ctx.read(&dx).unwrap(), &dx_want, 1e-4, sum_tol(outputs));
        assert_close("linear dw", &ctx.read(&dw).unwrap(), &dw_want, 1e-4, sum_tol(n));
        assert_close("linear db", &ctx.read(&db).unwrap(), &db_want, 1e-4, sum_tol(n));
    }
}

/// The epilogue (a bias along rows or columns, then ReLU) and the row sums beside the product.
#[test]
fn matmul_epilogue_and_row_sums_match_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, &(m, n, k)) in [(1, 1, 1), (10, 65, 25), (20, 250, 64), (33, 17, 129)].iter().enumerate() {
        for relu in [false, true] {
            let along_rows = matmul::Matmul { bias: matmul::BiasAlong::Rows, relu, ..matmul::Matmul::dense(m, n, k) };
            check_matmul(ctx, &along_rows, m * k, k * n, m * n, 600 + i as u64);
            let along_columns = matmul::Matmul { bias: matmul::BiasAlong::Columns, relu, ..along_rows };
            check_matmul(ctx, &along_columns, m * k, k * n, m * n, 610 + i as u64);
            let residual = matmul::Matmul { residual: true, ..along_rows };
            check_matmul(ctx, &residual, m * k, k * n, m * n, 630 + i as u64);
        }
        // Row sums of a transposed A over a reduction and a batch: a split weight gradient.
        let dw = matmul::Matmul {
            reduce: 3,
            batch: 2,
            a: matmul::View::row_major(m).t().reduced(k * m).batched(3 * k * m),
            c_batch_stride: m * n,
            row_sums: true,
            ..matmul::Matmul::dense(m, n, k)
        };
        check_matmul(ctx, &dw, 6 * k * m, k * n, 2 * m * n, 620 + i as u64);
    }
}

// ---------------------------------------------------------------- elementwise

#[test]
fn relu_add_and_sums_match_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, &len) in [1usize, 7, 65, 64 * 20 * 8 * 8, 70_000 * 256, 5 * 20 * 250].iter().enumerate() {
        let mut rng = Rng::new(800 + i as u64);
        let x = rng.uniform_vec(len, 1.0);
        let dy = rng.uniform_vec(len, 1.0);
        let (xt, dyt) = (up(ctx, &x), up(ctx, &dy));
        let out = dirty(ctx, len);

        let mut want = vec![0.0; len];
        relu::cpu::relu_forward(&x, &mut want);
        assert_eq!(
            run_and_read(ctx, &[relu::relu_forward(ctx, len, &xt, &out).unwrap()], &out),
            want,
            "relu_forward {len}"
        );
        relu::cpu::relu_backward(&x, &dy, &mut want);
        assert_eq!(
            run_and_read(ctx, &[relu::relu_backward(ctx, len, &xt, &dyt, &out).unwrap()], &out),
            want,
            "relu_backward {len}"
        );

        // One rounding each (add_assign adds to add's rounded output): within two roundings of
        // operands below 3 in size, 2.4e-7 relative plus 4e-7 absolute.
        add::cpu::add(&x, &dy, &mut want);
        let got = run_and_read(ctx, &[add::add(ctx, len, &xt, &dyt, &out).unwrap()], &out);
        assert_close(&format!("add {len}"), &got, &want, 2.4e-7, 4e-7);
        add::cpu::add_assign(&x, &mut want);
        let got = run_and_read(ctx, &[add::add_assign(ctx, len, &xt, &out).unwrap()], &out);
        assert_close(&format!("add_assign {len}"), &got, &want, 2.4e-7, 4e-7);

        if len % 5 == 0 {
            // sum_slices: five slices of len / 5.
            let part = len / 5;
            let mut sum = vec![0.0; part];
            add::cpu::sum_slices(part, &x, &mut sum);
            let out5 = dirty(ctx, part);
            let got = run_and_read(ctx, &[add::sum_slices(ctx, 5, [&xt, &out5], None).unwrap()], &out5);
            assert_close(&format!("sum_slices {len}"), &got, &sum, 1e-6, 1e-6);
            // With a second pair of a different length (a split bias gradient beside its weight's).
            let (second, out2) = (&x[..5 * (part / 2 + 1)], dirty(ctx, part / 2 + 1));
            let mut sum2 = vec![0.0; part / 2 + 1];
            add::cpu::sum_slices(part / 2 + 1, second, &mut sum2);
            let d = add::sum_slices(ctx, 5, [&xt, &out5], Some([&up(ctx, second), &out2])).unwrap();
            assert_close(&format!("sum_slices {len}, second pair"), &run_and_read(ctx, &[d], &out2), &sum2, 1e-6, 1e-6);
            assert_close(&format!("sum_slices {len}, first pair"), &ctx.read(&out5).unwrap(), &sum, 1e-6, 1e-6);
        }
    }
}

#[test]
fn elementwise_backward_passes_match_finite_differences() {
    let mut rng = Rng::new(900);
    // Keep inputs away from the ReLU kink so the central difference is exact.
    let x: Vec<f32> = rng.uniform_vec(50, 1.0).into_iter().map(|v| if v.abs() < 0.05 { 0.5 } else { v }).collect();
    let probe = rng.uniform_vec(50, 1.0);
    let relu_loss = |x: &[f32]| {
        let mut y = vec![0.0; x.len()];
        relu::cpu::relu_forward(x, &mut y);
        y.iter().zip(&probe).map(|(a, b)| (a * b) as f64).sum::<f64>()
    };
    let mut y = vec![0.0; 50];
    relu::cpu::relu_forward(&x, &mut y);
    let mut dx = vec![0.0; 50];
    relu::cpu::relu_backward(&y, &probe, &mut dx);
    for i in 0..50 {
        let fd = finite_difference(&x, i, 1e-3, relu_loss);
        assert!((fd - dx[i] as f64).abs() < 1e-3, "relu dx[{i}]: fd {fd} vs {}", dx[i]);
    }
    // add: d<probe, a + b>/da = probe, the fan-out the graph relies on.
    let b = rng.uniform_vec(50, 1.0);
    for i in 0..50 {
        let fd = finite_difference(&x, i, 1e-3, |a| {
            let mut s = vec![0.0; 50];
            add::cpu::add(a, &b, &mut s);
            s.iter().zip(&probe).map(|(a, b)| (a * b) as f64).sum()
        });
        assert!((fd - probe[i] as f64).abs() < 1e-3, "add da[{i}]");
    }
}

// ---------------------------------------------------------------- pooling

fn pools() -> Vec<PoolGeometry> {
    let g = PoolGeometry::new;
    vec![
        g(1, 2, 2, 2, 2, 0),
        g(3, 7, 5, 2, 2, 0),         // odd sizes drop the last row/column (floor mode)
        g(2, 9, 9, 3, 2, 1),         // overlapping windows with padding
        g(2, 10, 11, 3, 3, 0),       // 3×3 tiles: a row and two columns past the last window
        g(64 * 10, 24, 24, 2, 2, 0), // simple_cnn pool1
        g(64 * 20, 8, 8, 2, 2, 0),   // simple_cnn pool2
        g(64 * 10, 12, 12, 3, 1, 1), // InceptionA(10) avgpool 3/1/1
        g(64 * 20, 4, 4, 3, 1, 1),   // InceptionA(20) avgpool 3/1/1
        g(64 * 16, 24, 24, 2, 2, 0), // resnet pool1
    ]
}

#[test]
fn max_pool_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, g) in pools().into_iter().enumerate() {
        let relu = i % 2 == 1;
        let mut rng = Rng::new(1000 + i as u64);
        let x = rng.uniform_vec(g.input_len(), 1.0);
        let (mut y_want, mut arg_want) = (vec![0.0; g.output_len()], vec![0u32; g.output_len()]);
        max_pool::cpu::max_pool_forward(&g, relu, &x, &mut y_want, &mut arg_want);
        let (y, arg) = (dirty(ctx, g.output_len()), dirty(ctx, g.output_len()));
        let forward = max_pool::max_pool_forward(ctx, &g, relu, &up(ctx, &x), &y, &arg).unwrap();
        let got = run_and_read(ctx, &[forward], &y);
        assert_eq!(got, y_want, "max_pool_forward {g:?} relu {relu}");
        assert_eq!(ctx.read::<u32>(&arg).unwrap(), arg_want, "max_pool argmax {g:?} relu {relu}");

        let dy = rng.uniform_vec(g.output_len(), 1.0);
        let mut dx_want = vec![0.0; g.input_len()];
        max_pool::cpu::max_pool_backward(&g, &dy, &arg_want, &mut dx_want);
        let dx = dirty(ctx, g.input_len());
        let got = run_and_read(ctx, &[max_pool::max_pool_backward(ctx, &g, &up(ctx, &dy), &arg, &dx).unwrap()], &dx);
        assert_close(&format!("max_pool_backward {g:?}"), &got, &dx_want, 1e-6, 1e-6);
    }
}

#[test]
fn avg_pool_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, g) in pools().into_iter().enumerate() {
        let mut rng = Rng::new(1100 + i as u64);
        let x = rng.uniform_vec(g.input_len(), 1.0);
        let mut y_want = vec![0.0; g.output_len()];
        avg_pool::cpu::avg_pool_forward(&g, &x, &mut y_want);
        let y = dirty(ctx, g.output_len());
        let got = run_and_read(ctx, &[avg_pool::avg_pool_forward(ctx, &g, &up(ctx, &x), &y).unwrap()], &y);
        assert_close(&format!("avg_pool_forward {g:?}"), &got, &y_want, 1e-6, 1e-6);

        let dy = rng.uniform_vec(g.output_len(), 1.0);
        let mut dx_want = vec![0.0; g.input_len()];
        avg_pool::cpu::avg_pool_backward(&g, &dy, &mut dx_want);
        let dx = dirty(ctx, g.input_len());
        let got = run_and_read(ctx, &[avg_pool::avg_pool_backward(ctx, &g, &up(ctx, &dy), &dx).unwrap()], &dx);
        assert_close(&format!("avg_pool_backward {g:?}"), &got, &dx_want, 1e-5, 1e-6);
    }
}

#[test]
fn avg_pool_counts_padding_like_pytorch() {
    // A 3×3 window at a corner of a 2×2 image of ones sees 4 pixels and 5 zeros: 4/9, not 1.
    let g = PoolGeometry::new(1, 2, 2, 3, 1, 1);
    let mut y = vec![0.0; 4];
    avg_pool::cpu::avg_pool_forward(&g, &[1.0; 4], &mut y);
    assert_eq!(y, vec![4.0 / 9.0; 4]);
}

#[test]
fn pool_backward_passes_match_finite_differences() {
    let g = PoolGeometry::new(2, 5, 6, 3, 2, 1);
    let mut rng = Rng::new(1200);
    let x = rng.uniform_vec(g.input_len(), 1.0);
    let probe = rng.uniform_vec(g.output_len(), 1.0);
    let dot = |y: &[f32]| y.iter().zip(&probe).map(|(a, b)| (a * b) as f64).sum::<f64>();
    let max_loss = |x: &[f32], relu: bool| {
        let (mut y, mut a) = (vec![0.0; g.output_len()], vec![0; g.output_len()]);
        max_pool::cpu::max_pool_forward(&g, relu, x, &mut y, &mut a);
        dot(&y)
    };
    let avg_loss = |x: &[f32]| {
        let mut y = vec![0.0; g.output_len()];
        avg_pool::cpu::avg_pool_forward(&g, x, &mut y);
        dot(&y)
    };
    let mut davg = vec![0.0; x.len()];
    avg_pool::cpu::avg_pool_backward(&g, &probe, &mut davg);
    for relu in [false, true] {
        let (mut y, mut arg) = (vec![0.0; g.output_len()], vec![0; g.output_len()]);
        max_pool::cpu::max_pool_forward(&g, relu, &x, &mut y, &mut arg);
        if relu {
            assert!(arg.contains(&max_pool::NO_PIXEL), "the fused ReLU clamps some window of {x:?}");
        }
        let mut dmax = vec![0.0; x.len()];
        max_pool::cpu::max_pool_backward(&g, &probe, &arg, &mut dmax);
        for i in 0..x.len() {
            // A small step: random inputs are far enough apart that no window changes its winner.
            let fd = finite_difference(&x, i, 1e-4, |x| max_loss(x, relu));
            assert!((fd - dmax[i] as f64).abs() < 1e-2, "max_pool (relu {relu}) dx[{i}]: fd {fd} vs {}", dmax[i]);
        }
    }
    for i in 0..x.len() {
        let fd = finite_difference(&x, i, 1e-2, avg_loss);
        assert!((fd - davg[i] as f64).abs() < 1e-3, "avg_pool dx[{i}]: fd {fd} vs {}", davg[i]);
    }
}

// ---------------------------------------------------------------- concat

#[test]
fn concat_and_split_match_cpu_and_round_trip() {
    let Some(ctx) = gpu() else { return };
    // (n, s, channel counts of the parts): the last is InceptionA(10)'s 16 + 24 + 24 + 24 at 12×12.
    for (n, s, parts) in [(1, 1, vec![1, 1]), (3, 7, vec![2, 5, 1]), (64, 144, vec![16, 24, 24, 24])] {
        let total: usize = parts.iter().sum();
        let mut rng = Rng::new(1300 + n as u64);
        let inputs: Vec<Vec<f32>> = parts.iter().map(|&c| rng.uniform_vec(n * c * s, 1.0)).collect();
        let out = dirty(ctx, n * total * s);
        let mut want = vec![0.0; n * total * s];
        let mut steps = Vec::new();
        let uploaded: Vec<Tensor> = inputs.iter().map(|v| up(ctx, v)).collect();
        let mut offset = 0;
        for (part, &c) in uploaded.iter().zip(&parts) {
            let copy = concat::ChannelCopy::concat(n, s, c, total, offset);
            concat::cpu::copy_channels(&copy, &inputs[steps.len()], &mut want);
            steps.push(concat::copy_channels(ctx, &copy, part, &out).unwrap());
            offset += c;
        }
        assert_eq!(run_and_read(ctx, &steps, &out), want, "concat {parts:?}");
        // split undoes concat, part by part
        let mut offset = 0;
        for (i, &c) in parts.iter().enumerate() {
            let back = dirty(ctx, n * c * s);
            let copy = concat::ChannelCopy::split(n, s, c, total, offset);
            let got = run_and_read(ctx, &[concat::copy_channels(ctx, &copy, &out, &back).unwrap()], &back);
            assert_eq!(got, inputs[i], "split part {i}");
            offset += c;
        }
    }
}

// ---------------------------------------------------------------- loss

fn run_loss(
    ctx: &GpuContext,
    (rows, classes, smoothing): (usize, usize, f32),
    logits: &[f32],
    labels: &[u32],
    steps_before: u32,
) -> (Vec<f32>, sce::Metrics) {
    let dl = dirty(ctx, rows * classes);
    let metrics = ctx.zeros(sce::METRICS_WORDS, "metrics").unwrap();
    let step = ctx.upload(&[steps_before], "step").unwrap();
    let unused = dirty(ctx, 1);
    let outputs = sce::LossOutputs {
        dlogits: &dl,
        write_grad: true,
        predictions: &unused,
        write_predictions: false,
        metrics: &metrics,
    };
    let (lt, yt) = (up(ctx, logits), ctx.upload(labels, "labels").unwrap());
    let d = sce::softmax_cross_entropy(ctx, rows, classes, smoothing, usize::MAX, &lt, &yt, &step, &outputs).unwrap();
    ctx.run(&[&d, &d]).unwrap(); // twice: the metrics accumulate
    assert_eq!(ctx.read::<u32>(&step).unwrap(), [steps_before + 2], "each loss closes its step");
    (ctx.read(&dl).unwrap(), sce::Metrics::from_words(&ctx.read::<u32>(&metrics).unwrap()))
}

#[test]
fn softmax_cross_entropy_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let shapes = [(1, 1, 0.0), (1, 10, 0.0), (7, 3, 0.0), (64, 10, 0.0), (300, 10, 0.0), (32, 10, 0.1), (7, 3, 0.5)];
    for (i, &(rows, classes, smoothing)) in shapes.iter().enumerate() {
        let mut rng = Rng::new(1400 + i as u64);
        let logits = rng.uniform_vec(rows * classes, 5.0);
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(classes as u32)).collect();
        let mut d_want = vec![0.0; rows * classes];
        let (loss, correct) =
            sce::cpu::softmax_cross_entropy(rows, classes, &logits, &labels, smoothing, Some(&mut d_want), None);
        let (d_got, m) = run_loss(ctx, (rows, classes, smoothing), &logits, &labels, 0);
        assert_close("dlogits", &d_got, &d_want, 1e-4, 1e-6);
        assert!((m.loss_sum - 2.0 * loss).abs() <= 1e-4 * (1.0 + loss.abs()), "loss {} vs 2×{loss}", m.loss_sum);
        assert_eq!((m.correct, m.rows, m.first_nonfinite_step), (2 * correct, 2 * rows as u32, None));
    }
}

/// Label smoothing as PyTorch computes it: `tests/fixtures/label_smoothing.txt`
/// (`tests/reference/label_smoothing.py`), the loss and the logits' gradient, on the CPU
/// reference and the GPU; the plain loss differs from it past the tolerance.
#[test]
fn label_smoothing_matches_pytorch() {
    let text = include_str!("../../tests/fixtures/label_smoothing.txt");
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let mut next = |key: &str| {
        let line = lines.next().unwrap();
        let rest = line.strip_prefix(key).unwrap_or_else(|| panic!("{key}: {line}"));
        rest.split_whitespace().map(str::to_string).collect::<Vec<String>>()
    };
    let floats = |v: Vec<String>| v.iter().map(|x| x.parse::<f32>().unwrap()).collect::<Vec<f32>>();
    for _ in 0..4 {
        let case = next("case ");
        let (rows, classes, smoothing) = (case[0].parse().unwrap(), case[1].parse().unwrap(), case[2].parse().unwrap());
        let logits = floats(next("logits "));
        let labels: Vec<u32> = next("labels ").iter().map(|l| l.parse().unwrap()).collect();
        let (loss, grad) = (floats(next("loss "))[0], floats(next("grad ")));
        let mut d = vec![0.0; rows * classes];
        let (cpu_loss, _) =
            sce::cpu::softmax_cross_entropy(rows, classes, &logits, &labels, smoothing, Some(&mut d), None);
        assert!((cpu_loss - loss).abs() <= 1e-5 * loss, "smoothing {smoothing}: CPU loss {cpu_loss}, PyTorch {loss}");
        assert_close("CPU smoothed dlogits", &d, &grad, 1e-5, 1e-7);
        let (plain, _) = sce::cpu::softmax_cross_entropy(rows, classes, &logits, &labels, 0.0, None, None);
        assert!((plain - loss).abs() > 1e-3 * loss, "the unsmoothed loss {plain} is as close as the smoothed one");
        let Some(ctx) = gpu() else { continue };
        let (d_got, m) = run_loss(ctx, (rows, classes, smoothing), &logits, &labels, 0);
        assert_close("GPU smoothed dlogits", &d_got, &grad, 1e-4, 1e-6);
        assert!((m.loss_sum / 2.0 - loss).abs() <= 1e-4 * loss, "GPU loss {} vs PyTorch {loss}", m.loss_sum / 2.0);
    }
}

#[test]
fn softmax_cross_entropy_is_stable_for_huge_logits_and_flags_nan() {
    let Some(ctx) = gpu() else { return };
    let logits = [1e4, 0.0, -1e4, 5.0, 1e4, 1e4];
    let (d, m) = run_loss(ctx, (2, 3, 0.0), &logits, &[0, 2], 0);
    assert!(d.iter().all(|v| v.is_finite()) && m.loss_sum.is_finite(), "{d:?} {m:?}");
    // row 0 is certain and right (loss 0); row 1 splits between classes 1 and 2 (loss ln 2).
    assert!((m.loss_sum / 2.0 - std::f32::consts::LN_2 / 2.0).abs() < 1e-5, "{m:?}");
    assert_eq!(m.first_nonfinite_step, None);

    let (_, m) = run_loss(ctx, (2, 3, 0.0), &[f32::NAN, 0.0, 1.0, 0.0, 1.0, 2.0], &[0, 1], 41);
    assert_eq!(m.first_nonfinite_step, Some(41), "{m:?}");
}

#[test]
fn softmax_cross_entropy_ignores_the_padding_rows_of_a_last_batch() {
    let Some(ctx) = gpu() else { return };
    // Step 2 of batches of 8 over 19 samples: 3 real rows, 5 padding rows.
    let (rows, classes, samples) = (8, 10, 19);
    let mut rng = Rng::new(1450);
    let logits = rng.uniform_vec(rows * classes, 3.0);
    let labels: Vec<u32> = (0..rows).map(|_| rng.below(10)).collect();
    let mut d_want = vec![0.0; rows * classes];
    let mut p_want = vec![0u32; 3];
    let (loss, correct) = sce::cpu::softmax_cross_entropy(
        3,
        classes,
        &logits,
        &labels,
        0.0,
        Some(&mut d_want[..3 * classes]),
        Some(&mut p_want),
    );
    let dl = dirty(ctx, rows * classes);
    let metrics = ctx.zeros(sce::METRICS_WORDS, "metrics").unwrap();
    let step = ctx.upload(&[2u32], "step").unwrap();
    let (lt, yt) = (up(ctx, &logits), ctx.upload(&labels, "labels").unwrap());
    // The predictions of the 3 real rows land after the 16 samples of steps 0 and 1.
    let predictions = ctx.upload(&[u32::MAX; 19], "predictions").unwrap();
    let outputs = sce::LossOutputs {
        dlogits: &dl,
        write_grad: true,
        predictions: &predictions,
        write_predictions: true,
        metrics: &metrics,
    };
    let d = sce::softmax_cross_entropy(ctx, rows, classes, 0.0, samples, &lt, &yt, &step, &outputs).unwrap();
    let got = run_and_read(ctx, &[d], &dl);
    let written = ctx.read::<u32>(&predictions).unwrap();
    assert_eq!((&written[16..], &written[..16]), (&p_want[..], &[u32::MAX; 16][..]), "predictions");
    assert_close("dlogits with padding", &got, &d_want, 1e-4, 1e-6);
    let m = sce::Metrics::from_words(&ctx.read::<u32>(&metrics).unwrap());
    assert!((m.loss_sum - loss).abs() < 1e-5, "{m:?} vs {loss}");
    assert_eq!((m.correct, m.rows), (correct, 3));
}

#[test]
fn softmax_cross_entropy_cpu_gradient_matches_finite_differences() {
    let (rows, classes) = (4, 5);
    let mut rng = Rng::new(1500);
    let logits = rng.uniform_vec(rows * classes, 3.0);
    let labels = [0u32, 4, 2, 2];
    let mut d = vec![0.0; rows * classes];
    for smoothing in [0.0, 0.2] {
        sce::cpu::softmax_cross_entropy(rows, classes, &logits, &labels, smoothing, Some(&mut d), None);
        for i in 0..logits.len() {
            let fd = finite_difference(&logits, i, 1e-2, |l| {
                sce::cpu::softmax_cross_entropy(rows, classes, l, &labels, smoothing, None, None).0 as f64
            });
            assert!((fd - d[i] as f64).abs() < 1e-3, "smoothing {smoothing}: dlogits[{i}]: fd {fd} vs {}", d[i]);
        }
    }
}

// ---------------------------------------------------------------- optimizer

/// Every optimizer over several steps of a warm-up (so each step's row differs), on one
/// element, a few, and more than one workgroup row: the GPU reads row `step - 1` of the table
/// and matches the CPU reference.
#[test]
fn optimizers_match_cpu_over_several_scheduled_steps() {
    let Some(ctx) = gpu() else { return };
    let nesterov = Sgd { nesterov: true, weight_decay: 1e-2, ..Sgd::new(0.1, 0.9) };
    let l2 = Adam { weight_decay: 0.1, betas: (0.6, 0.9), ..Adam::adam(0.01) };
    let optimizers = [
        Optimizer::Sgd(Sgd::new(0.01, 0.5)),
        Optimizer::Sgd(nesterov),
        Optimizer::Adam(Adam::adam(0.001)),
        Optimizer::Adam(l2),
        Optimizer::Adam(Adam { weight_decay: 0.3, ..Adam::adamw(0.01) }),
    ];
    let (steps, warm_up) = (4, Schedule::Constant { warmup: 3 });
    for (i, &len) in [1usize, 7, 21_840].iter().enumerate() {
        for opt in optimizers {
            let mut rng = Rng::new(1600 + i as u64);
            let mut want = rng.uniform_vec(len, 1.0);
            let mut moments = vec![vec![0.0; len]; opt.state_names().len()];
            let state = OptimizerState::new(ctx, opt, len, steps).unwrap();
            let rows = opt.step_rows(&warm_up, 0, steps, steps as u64);
            state.set_steps(ctx, &rows).unwrap();
            let (p, counter) = (up(ctx, &want), ctx.zeros(1, "step").unwrap());
            for (k, row) in rows.iter().enumerate() {
                let g = rng.uniform_vec(len, 1.0);
                optimizer::cpu::step(&opt, row, &g, &mut want, &mut moments);
                ctx.write(&counter, &[k as u32 + 1]);
                ctx.run(&[&state.dispatch(ctx, &up(ctx, &g), &p, &counter).unwrap()]).unwrap();
            }
            let what = format!("{} over {len}", opt.name());
            assert_close(&what, &ctx.read(&p).unwrap(), &want, 1e-5, 1e-6);
            for ((name, t), m) in state.moments.iter().zip(&moments) {
                assert_close(&format!("{what}: {name}"), &ctx.read(t).unwrap(), m, 1e-5, 1e-6);
            }
        }
    }
}

// ---------------------------------------------------------------- batch norm

/// One batch norm on the GPU: its tensors, uploaded from the CPU's values.
struct BatchNormRig {
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running: [Tensor; 3],
    saved: Tensor,
}

impl BatchNormRig {
    fn new(ctx: &GpuContext, shape: [usize; 3], x: &[f32], affine: [&[f32]; 2], running: [&[f32]; 2]) -> BatchNormRig {
        BatchNormRig {
            x: up(ctx, x),
            gamma: up(ctx, affine[0]),
            beta: up(ctx, affine[1]),
            running: [up(ctx, running[0]), up(ctx, running[1]), up(ctx, &[7.0])],
            saved: dirty(ctx, 2 * shape[1] + 1),
        }
    }
    fn layer(&self, shape: [usize; 3]) -> batch_norm::BatchNorm<'_> {
        let (x, gamma, beta, saved) = (&self.x, &self.gamma, &self.beta, &self.saved);
        let running = [&self.running[0], &self.running[1], &self.running[2]];
        batch_norm::BatchNorm { shape, x, gamma, beta, running, saved }
    }
}

/// Training and evaluation forward passes and the backward pass against the CPU reference, on
/// a 2-D and a 1-D layer, a batch whose last rows are padding (they enter no statistic and get a
/// zero input gradient), and a layer large enough that each thread loops.
#[test]
fn batch_norm_matches_cpu_in_training_and_evaluation() {
    let Some(ctx) = gpu() else { return };
    // (shape, samples in the epoch, step): valid rows = min(batch, samples - step·batch).
    for (i, &(shape, samples, step)) in
        [([4, 3, 5], 4, 0), ([8, 3, 5], 19, 2), ([16, 7, 1], 37, 2), ([64, 24, 144], 64, 0), ([8, 3, 300], 19, 2)]
            .iter()
            .enumerate()
    {
        let [batch, channels, plane] = shape;
        let valid = batch.min(samples - step * batch);
        let mut rng = Rng::new(1700 + i as u64);
        let len = batch * channels * plane;
        let x: Vec<f32> = rng.uniform_vec(len, 2.0).iter().map(|v| v + 0.5).collect();
        let (gamma, beta) = (rng.uniform_vec(channels, 1.0), rng.uniform_vec(channels, 1.0));
        let running: Vec<Vec<f32>> = vec![rng.uniform_vec(channels, 0.5), vec![1.5; channels]];
        let mut want_saved = vec![0.0; 2 * channels + 1];
        let (mut want_mean, mut want_var) = (running[0].clone(), running[1].clone());
        batch_norm::cpu::statistics(shape, valid, &x, &mut want_saved, [&mut want_mean, &mut want_var, &mut [7.0]]);
        let mut want_y = vec![0.0; len];
        batch_norm::cpu::apply(shape, &x, &want_saved, &gamma, &beta, &mut want_y);

        let rig = BatchNormRig::new(ctx, shape, &x, [&gamma, &beta], [&running[0], &running[1]]);
        let (counter, y) = (ctx.upload(&[step as u32], "step").unwrap(), dirty(ctx, len));
        let d = batch_norm::batch_norm_forward(ctx, &rig.layer(shape), Some((&counter, samples)), &y).unwrap();
        let got_y = run_and_read(ctx, &d, &y);
        let what = format!("batch norm {shape:?}, {valid} valid rows");
        let got_saved = ctx.read::<f32>(&rig.saved).unwrap();
        assert_close(&format!("{what}: saved"), &got_saved[..2 * channels], &want_saved[..2 * channels], 1e-4, 1e-5);
        assert_eq!(got_saved[2 * channels], (valid * plane) as f32, "{what}: the count of values");
        assert_close(&format!("{what}: running mean"), &ctx.read(&rig.running[0]).unwrap(), &want_mean, 1e-4, 1e-5);
        assert_close(&format!("{what}: running var"), &ctx.read(&rig.running[1]).unwrap(), &want_var, 1e-4, 1e-5);
        assert_eq!(ctx.read::<f32>(&rig.running[2]).unwrap(), [8.0], "{what}: one more batch tracked");
        assert_close(
            &format!("{what}: y"),
            &got_y[..valid * channels * plane],
            &want_y[..valid * channels * plane],
            1e-4,
            1e-5,
        );

        // Backward from a random dy (zero on the padding rows, as the loss leaves them).
        let mut dy = rng.uniform_vec(len, 1.0);
        dy[valid * channels * plane..].fill(0.0);
        let (mut dgamma, mut dbeta, mut want_dx) = (vec![0.0; channels], vec![0.0; channels], vec![0.0; len]);
        batch_norm::cpu::backward(shape, (&x, &dy, &want_saved, &gamma), &mut dgamma, &mut dbeta, &mut want_dx);
        let (dyt, sums, dg, db, dx) =
            (up(ctx, &dy), dirty(ctx, 2 * channels), dirty(ctx, channels), dirty(ctx, channels), dirty(ctx, len));
        let forward = batch_norm::Saved { shape, x: &rig.x, gamma: &rig.gamma, saved: &rig.saved };
        let d = batch_norm::batch_norm_backward(ctx, &forward, &dyt, &sums, (&dg, &db), Some(&dx)).unwrap();
        let got_dx = run_and_read(ctx, &d, &dx);
        let tol = sum_tol(valid * plane);
        assert_close(&format!("{what}: dgamma"), &ctx.read(&dg).unwrap(), &dgamma, 1e-4, tol);
        assert_close(&format!("{what}: dbeta"), &ctx.read(&db).unwrap(), &dbeta, 1e-4, tol);
        assert_close(&format!("{what}: dx"), &got_dx, &want_dx, 1e-4, 1e-5);
        assert!(got_dx[valid * channels * plane..].iter().all(|&v| v == 0.0), "{what}: padding rows get no gradient");

        // Evaluation: the running statistics, every row.
        let rig = BatchNormRig::new(ctx, shape, &x, [&gamma, &beta], [&running[0], &running[1]]);
        let mut eval_saved = vec![0.0; 2 * channels + 1];
        batch_norm::cpu::running(shape, [&running[0], &running[1]], &mut eval_saved);
        batch_norm::cpu::apply(shape, &x, &eval_saved, &gamma, &beta, &mut want_y);
        let d = batch_norm::batch_norm_forward(ctx, &rig.layer(shape), None, &y).unwrap();
        assert_close(&format!("{what}: evaluation y"), &run_and_read(ctx, &d, &y), &want_y, 1e-5, 1e-6);
        assert_eq!(ctx.read::<f32>(&rig.running[0]).unwrap(), running[0], "evaluation leaves the running mean");
        assert_eq!(ctx.read::<f32>(&rig.running[2]).unwrap(), [7.0], "evaluation counts no batch");
    }
}

/// The CPU backward pass against finite differences of the CPU training forward pass, through
/// a weighted sum of the outputs (so every output's gradient differs).
#[test]
fn batch_norm_cpu_backward_matches_finite_differences() {
    let shape = [5, 2, 3];
    let [_, channels, _] = shape;
    let len: usize = shape.iter().product();
    let mut rng = Rng::new(1750);
    let x = rng.uniform_vec(len, 2.0);
    let (gamma, beta, weights) =
        (rng.uniform_vec(channels, 1.5), rng.uniform_vec(channels, 1.0), rng.uniform_vec(len, 1.0));
    let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
        let (mut saved, mut mean, mut var) = (vec![0.0; 2 * channels + 1], vec![0.0; channels], vec![1.0; channels]);
        batch_norm::cpu::statistics(shape, shape[0], x, &mut saved, [&mut mean, &mut var, &mut [0.0]]);
        let mut y = vec![0.0; len];
        batch_norm::cpu::apply(shape, x, &saved, gamma, beta, &mut y);
        y.iter().zip(&weights).map(|(y, w)| (y * w) as f64).sum::<f64>()
    };
    let mut saved = vec![0.0; 2 * channels + 1];
    batch_norm::cpu::statistics(
        shape,
        shape[0],
        &x,
        &mut saved,
        [&mut vec![0.0; channels], &mut vec![1.0; channels], &mut [0.0]],
    );
    let (mut dgamma, mut dbeta, mut dx) = (vec![0.0; channels], vec![0.0; channels], vec![0.0; len]);
    batch_norm::cpu::backward(shape, (&x, &weights, &saved, &gamma), &mut dgamma, &mut dbeta, &mut dx);
    for i in 0..len {
        let fd = finite_difference(&x, i, 1e-2, |x| loss(x, &gamma, &beta));
        assert!((fd - dx[i] as f64).abs() < 2e-3, "dx[{i}]: fd {fd} vs {}", dx[i]);
    }
    for c in 0..channels {
        let fd = finite_difference(&gamma, c, 1e-2, |g| loss(&x, g, &beta));
        assert!((fd - dgamma[c] as f64).abs() < 2e-3, "dgamma[{c}]: fd {fd} vs {}", dgamma[c]);
        let fd = finite_difference(&beta, c, 1e-2, |b| loss(&x, &gamma, b));
        assert!((fd - dbeta[c] as f64).abs() < 2e-3, "dbeta[{c}]: fd {fd} vs {}", dbeta[c]);
    }
}

// ---------------------------------------------------------------- dropout

/// Dropout against its CPU reference, bit for bit: the mask depends only on the run's seed, the
/// step within the run (read from the optimizer's table at the step counter: row `step` going
/// forward, `step - 1` going back, after the loss advanced it) and the element. About `p` of the
/// elements are dropped, the rest scaled by 1/(1 − p); another step or seed draws another mask.
#[test]
fn dropout_matches_cpu_and_draws_from_seed_step_and_element() {
    let Some(ctx) = gpu() else { return };
    let len = 70_001;
    let mut rng = Rng::new(1800);
    let x = rng.uniform_vec(len, 1.0);
    let sgd = Optimizer::Sgd(Sgd::new(0.1, 0.0));
    let rows = sgd.step_rows(&Schedule::default(), 5, 3, 8); // global steps 5, 6, 7
    let state = OptimizerState::new(ctx, sgd, 1, 3).unwrap();
    state.set_steps(ctx, &rows).unwrap();
    let (xt, counter) = (up(ctx, &x), ctx.upload(&[1u32], "step").unwrap());
    for (seed, p) in [(1u64, 0.5f32), (7, 0.1), (7, 0.0)] {
        let d = dropout::Dropout { p, seed };
        let y = dirty(ctx, len);
        let forward = dropout::dropout(ctx, &d, len, (&state.steps, &counter), false, (&xt, &y)).unwrap();
        let got = run_and_read(ctx, &[forward], &y);
        let mut want = vec![0.0; len];
        dropout::cpu::dropout(&d, 6, &x, &mut want);
        assert!(
            got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
            "seed {seed}, p {p}: GPU mask or scale differs"
        );
        let dropped = got.iter().filter(|&&v| v == 0.0).count() as f64 / len as f64;
        assert!((dropped - p as f64).abs() < 0.01, "seed {seed}: dropped {dropped}, p {p}");
        let kept = got.iter().zip(&x).find(|(g, _)| **g != 0.0).unwrap();
        assert_eq!(*kept.0, kept.1 * (1.0 / (1.0 - p as f64)) as f32);

        // Backward, after the loss advanced the counter to 2: row 1 again, the same mask.
        ctx.write(&counter, &[2u32]);
        let dx = dirty(ctx, len);
        let backward = dropout::dropout(ctx, &d, len, (&state.steps, &counter), true, (&xt, &dx)).unwrap();
        assert_eq!(run_and_read(ctx, &[backward], &dx), got, "seed {seed}: the backward mask");
        ctx.write(&counter, &[1u32]);
    }
    let d = |seed| dropout::Dropout { p: 0.5, seed };
    let mask = |d: &dropout::Dropout, step| (0..1000).map(|i| dropout::cpu::keeps(d, step, i)).collect::<Vec<_>>();
    assert_ne!(mask(&d(1), 6), mask(&d(1), 7), "another step, another mask");
    assert_ne!(mask(&d(1), 6), mask(&d(2), 6), "another seed, another mask");
    assert_eq!(mask(&d(1), 6), mask(&d(1), 6));
}

// ---------------------------------------------------------------- data gather

#[test]
fn gather_batch_matches_cpu_and_follows_the_step_counter() {
    let Some(ctx) = gpu() else { return };
    let mnist = [gather::Normalization { mean: 0.1307, std: 0.3081 }]; // MNIST's
    check_gather(ctx, 37, [1, 13, 1], 8, &mnist); // odd sizes: images straddle u32 words
    check_gather(ctx, 200, [1, 28, 28], 64, &mnist); // MNIST images, the tutorial's batch
                                                     // Three channels, each with its own statistics: each plane is normalized by its channel's.
    let rgb = [(0.49, 0.25), (0.48, 0.24), (0.45, 0.26)].map(|(mean, std)| gather::Normalization { mean, std });
    check_gather(ctx, 21, [3, 5, 7], 6, &rgb);
}

fn check_gather(ctx: &GpuContext, count: usize, shape: [usize; 3], rows: usize, norm: &[gather::Normalization]) {
    let mut rng = Rng::new(1700);
    let image_len = shape.iter().product::<usize>();
    let pixels: Vec<u8> = (0..count * image_len).map(|_| rng.below(256) as u8).collect();
    let labels: Vec<u32> = (0..count).map(|_| rng.below(10)).collect();
    let images = gather::GpuImages::upload(ctx, &pixels, &labels, shape).unwrap();
    let order: Vec<u32> = (0..count as u32).rev().collect();
    let norm_t = gather::Normalization::upload(ctx, norm).unwrap();
    let stride = rows;
    let (x, y) = (dirty(ctx, rows * image_len), dirty(ctx, rows));
    let step = ctx.zeros(1, "step").unwrap();
    let order_t = ctx.upload(&order, "order").unwrap();
    let gather = gather::gather_batch(ctx, &images, rows, stride, &norm_t, &order_t, &step, (&x, &y), None).unwrap();
    for s in 0..3 {
        ctx.run(&[&gather]).unwrap();
        let (x_want, y_want) =
            gather::cpu::gather_batch(&pixels, &labels, image_len, &order[s * stride..s * stride + rows], norm);
        assert_close(&format!("step {s}"), &ctx.read::<f32>(&x).unwrap(), &x_want, 1e-5, 1e-6);
        assert_eq!(ctx.read::<u32>(&y).unwrap(), y_want, "step {s}");
        ctx.write(&step, &[s as u32 + 1]);
    }
}

/// Random pixels, labels and an order for `count` images of `shape`, uploaded.
struct GatherData {
    norm: Vec<gather::Normalization>,
    pixels: Vec<u8>,
    labels: Vec<u32>,
    order: Vec<u32>,
    images: gather::GpuImages,
    order_t: Tensor,
}

impl GatherData {
    fn new(ctx: &GpuContext, count: usize, shape: [usize; 3]) -> GatherData {
        let mut rng = Rng::new(1701);
        let pixels: Vec<u8> = (0..count * shape.iter().product::<usize>()).map(|_| rng.below(256) as u8).collect();
        let labels: Vec<u32> = (0..count).map(|_| rng.below(10)).collect();
        let order: Vec<u32> = (0..count as u32).map(|i| (i * 7 + 3) % count as u32).collect();
        let images = gather::GpuImages::upload(ctx, &pixels, &labels, shape).unwrap();
        let order_t = ctx.upload(&order, "order").unwrap();
        // One channel: MNIST's statistics; three: each its own, so a plane normalized by another
        // channel's shows.
        let rgb = [(0.49, 0.25), (0.48, 0.24), (0.45, 0.26)].map(|(mean, std)| gather::Normalization { mean, std });
        let norm = if shape[0] == 1 { MNIST.to_vec() } else { rgb[..shape[0]].to_vec() };
        GatherData { norm, pixels, labels, order, images, order_t }
    }

    /// The GPU batch at `step` of epoch `epoch` (from 0) of a run seeded `seed`, augmented with
    /// `augment` (None: the plain gather).
    fn gather(
        &self,
        ctx: &GpuContext,
        rows: usize,
        step: u32,
        run: (u64, u32),
        augment: Option<gather::Augment>,
    ) -> Vec<f32> {
        let (seed, epoch) = run;
        let steps_per_epoch = self.labels.len().div_ceil(rows);
        // The table of epoch `epoch`, as the training loop writes it.
        let sgd = Optimizer::Sgd(Sgd::new(0.1, 0.0));
        let first = epoch as u64 * steps_per_epoch as u64;
        let table = sgd.step_rows(&Schedule::default(), first, steps_per_epoch, 100 * steps_per_epoch as u64);
        let state = OptimizerState::new(ctx, sgd, 1, steps_per_epoch).unwrap();
        state.set_steps(ctx, &table).unwrap();
        let steps = &state.steps;
        let augmented = augment.map(|augment| gather::Augmented { augment, seed, steps_per_epoch, steps });
        let norm = gather::Normalization::upload(ctx, &self.norm).unwrap();
        let image_len = self.images.image_len();
        let (x, y) = (dirty(ctx, rows * image_len), dirty(ctx, rows));
        let step_t = ctx.upload(&[step], "step").unwrap();
        let (images, order) = (&self.images, &self.order_t);
        let d =
            gather::gather_batch(ctx, images, rows, rows, &norm, order, &step_t, (&x, &y), augmented.as_ref()).unwrap();
        ctx.run(&[&d]).unwrap();
        let indices = &self.order[step as usize * rows..(step as usize + 1) * rows];
        assert_eq!(ctx.read::<u32>(&y).unwrap(), indices.iter().map(|&i| self.labels[i as usize]).collect::<Vec<_>>());
        ctx.read::<f32>(&x).unwrap()
    }

    fn cpu(&self, rows: usize, step: u32, run: (u64, u32), augment: &gather::Augment) -> Vec<f32> {
        let indices = &self.order[step as usize * rows..(step as usize + 1) * rows];
        gather::cpu::gather_augmented(&self.pixels, self.images.shape, indices, &self.norm, augment, run)
    }
}

const MNIST: [gather::Normalization; 1] = [gather::Normalization { mean: 0.1307, std: 0.3081 }];

#[test]
fn augmented_gather_matches_cpu_and_draws_from_seed_epoch_and_sample() {
    let Some(ctx) = gpu() else { return };
    let augment = gather::Augment { shift: 2.0, rotate: 10.0, scale: 0.1 };
    for shape in [[1, 28, 28], [1, 9, 6], [3, 5, 7]] {
        let data = GatherData::new(ctx, 40, shape);
        for (step, run) in [(0, (1, 0)), (3, (1, 2)), (1, (7, 5))] {
            let gpu = data.gather(ctx, 8, step, run, Some(augment));
            // The draws are exact on both sides; WGSL lets sin and cos err by 2^-11, which moves a
            // source point 14 pixels from the centre by 0.007 pixels: on these noise images up to
            // 2 levels of 255, 0.03 normalized (lavapipe agrees to 1e-4). A wrong formula is off
            // by whole pixels.
            let label = format!("{shape:?} step {step} run {run:?}");
            assert_close(&label, &gpu, &data.cpu(8, step, run, &augment), 1e-4, 3e-2);
            assert_eq!(
                gpu,
                data.gather(ctx, 8, step, run, Some(augment)),
                "the same seed, epoch and sample: the same pixels"
            );
            let plain = data.gather(ctx, 8, step, run, None);
            assert!(gpu != plain, "augmentation changed nothing");
        }
        let [a, b, c] = [(1, 0), (1, 1), (2, 0)].map(|run| data.gather(ctx, 8, 2, run, Some(augment)));
        assert!(a != b, "another epoch, other transforms");
        assert!(a != c, "another seed, other transforms");
    }
    assert_ne!(gather::cpu::augment_hash(1, 0, 5), gather::cpu::augment_hash(1, 0, 6), "another sample, another draw");
}

#[test]
fn augmentation_without_ranges_is_the_plain_gather_and_shifts_move_whole_pixels() {
    let Some(ctx) = gpu() else { return };
    let data = GatherData::new(ctx, 24, [1, 28, 28]);
    let none = gather::Augment::default();
    let plain = data.gather(ctx, 8, 1, (1, 0), None);
    assert_close("zero ranges", &data.gather(ctx, 8, 1, (1, 0), Some(none)), &plain, 1e-5, 1e-6);
    // A shift alone moves each image by whole pixels, filling with zeros: exact in the CPU
    // reference, and the GPU within the plain gather's tolerance.
    let shift = gather::Augment { shift: 3.0, ..none };
    let gpu = data.gather(ctx, 8, 1, (4, 1), Some(shift));
    assert_close("shift", &gpu, &data.cpu(8, 1, (4, 1), &shift), 1e-5, 1e-6);
    let mut moved = 0;
    for (r, &sample) in data.order[8..16].iter().enumerate() {
        let plane = gather::cpu::augment_plane(
            &data.pixels[sample as usize * 784..][..784],
            28,
            &shift,
            gather::cpu::augment_hash(4, 1, sample),
        );
        // Find the whole-pixel (tx, ty) that explains the plane: pixel (i, j) came from (i - ty, j - tx).
        let explains = |tx: i32, ty: i32| {
            (0..784).all(|k| {
                let (i, j) = ((k / 28) as i32 - ty, (k % 28) as i32 - tx);
                let want = if (0..28).contains(&i) && (0..28).contains(&j) {
                    data.pixels[sample as usize * 784 + (i * 28 + j) as usize]
                } else {
                    0
                };
                plane[k] == f32::from(want)
            })
        };
        let found: Vec<(i32, i32)> =
            (-3..=3).flat_map(|tx| (-3..=3).map(move |ty| (tx, ty))).filter(|&(tx, ty)| explains(tx, ty)).collect();
        assert_eq!(found.len(), 1, "row {r}: {found:?}");
        moved += (found[0] != (0, 0)) as usize;
        let normalized: Vec<f32> = plane.iter().map(|&v| MNIST[0].apply_value(v)).collect();
        assert_close(&format!("row {r}"), &gpu[r * 784..(r + 1) * 784], &normalized, 1e-5, 1e-6);
    }
    assert!(moved >= 6, "only {moved} of 8 images moved");
}

#[test]
fn augment_ranges_are_checked() {
    let ok = gather::Augment { shift: 2.0, rotate: 180.0, scale: 0.5 };
    assert!(ok.check().is_ok());
    for (bad, words) in [
        (gather::Augment { shift: -1.0, ..ok }, "augment shift=-1: must be a finite number of at least 0"),
        (gather::Augment { rotate: f32::NAN, ..ok }, "augment rotate=NaN"),
        (gather::Augment { rotate: 181.0, ..ok }, "must be at most 180"),
        (gather::Augment { scale: 1.0, ..ok }, "augment scale=1: must be below 1"),
    ] {
        let message = bad.check().unwrap_err().to_string();
        assert!(message.contains(words), "{message}");
    }
}

// ---------------------------------------------------------------- peak (the bench's yardstick)

#[test]
fn peak_kernels_match_cpu_and_the_measurement_is_positive() {
    let Some(ctx) = gpu() else { return };
    let (groups, iterations) = (2u32, 37u32);
    let out = dirty(ctx, 4 * 64 * groups as usize);
    let got = run_and_read(ctx, &[peak::fma_peak(ctx, groups, iterations, &out).unwrap()], &out);
    let want: Vec<f32> = (0..64 * groups).flat_map(|id| peak::cpu::fma_peak(id, iterations)).collect();
    // fma may be fused or rounded twice on some GPUs: 37 steps of at most one rounding each.
    assert_close("fma_peak", &got, &want, 1e-5, 1e-4);
    let len = 1000; // vec4s: not a multiple of the grid, so the grid-stride loop wraps
    let src: Vec<f32> = (0..4 * len).map(|i| i as f32 * 0.5 - 7.0).collect();
    let (x, y) = (up(ctx, &src), dirty(ctx, 4 * len));
    let got = run_and_read(ctx, &[peak::copy_peak(ctx, 3, len, &x, &y).unwrap()], &y);
    assert_eq!(got, src, "copy_peak copies every vec4");
    let measured = peak::measure(ctx).unwrap();
    assert!(measured.gflops.is_finite() && measured.gflops > 0.0, "{measured}");
    assert!(measured.copy_gbs.is_finite() && measured.copy_gbs > 0.0, "{measured}");
}

#[test]
fn the_newer_driver_advice_names_old_mesa_cpu_drivers_only() {
    let report = |device_type: &str, driver: &str| engine::AdapterReport {
        name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
        backend: "Vulkan".into(),
        device_type: device_type.into(),
        driver: driver.into(),
        subgroups: true,
        subgroup_sizes: Some((8, 8)),
        timestamps: true,
    };
    let old = report("Cpu", "llvmpipe Mesa 22.3.6 (LLVM 15.0.6)");
    assert_eq!(old.mesa_version(), Some((22, 3)));
    let advice = old.newer_driver_advice().expect("Mesa 22.3 on the CPU gets the advice");
    assert!(advice.contains("Mesa 22.3") && advice.contains("bookworm-backports"), "{advice}");
    assert_eq!(report("Cpu", "llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 19.1.7)").mesa_version(), Some((25, 0)));
    assert!(report("Cpu", "llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 19.1.7)").newer_driver_advice().is_none());
    assert!(
        report("DiscreteGpu", "radv Mesa 22.3.6").newer_driver_advice().is_none(),
        "only CPU drivers were measured"
    );
    assert!(report("DiscreteGpu", "NVIDIA 550.54").mesa_version().is_none());
}

#[test]
fn timestamp_queries_time_each_dispatch_where_the_device_has_them() {
    let Some(ctx) = gpu() else { return };
    let len = 1 << 20;
    let (x, y) = (up(ctx, &vec![1.0; len]), dirty(ctx, len));
    let d = [relu::relu_forward(ctx, len, &x, &y).unwrap(), add::add_assign(ctx, len, &y, &x).unwrap()];
    match ctx.time_dispatches(&[&d[0], &d[1]]).unwrap() {
        Some(times) => {
            assert_eq!(times.len(), 2);
            assert!(times.iter().all(|t| t.is_finite() && *t >= 0.0 && *t < 10.0), "{times:?}");
            assert!(times.iter().any(|t| *t > 0.0), "a million-element dispatch took no time: {times:?}");
        }
        None => {
            assert!(!ctx.report.timestamps);
            test_support::gpu::note("no TIMESTAMP_QUERY on this device: timing falls back to the wall clock");
        }
    }
    let x = ctx.read::<f32>(&x).unwrap();
    assert!(x.iter().all(|&v| v == 2.0), "the timed dispatches ran: x = 1 + relu(1) everywhere");
}

#[test]
fn buffers_past_u32_indices_or_the_binding_limit_are_refused_before_allocation() {
    let Some(ctx) = gpu() else { return };
    let past_u32 = ctx.zeros(u32::MAX as usize + 1, "huge").map(|_| ()).unwrap_err().to_string();
    let limit = engine::context::MAX_ELEMENTS;
    assert!(
        past_u32.contains(&format!("buffer `huge` of 4294967296 elements exceeds the {limit} elements")),
        "{past_u32}"
    );
    // Past this, a grid folded past 65535 workgroups would wrap its u32 thread index.
    assert!(ctx.check_fits(limit as usize + 1, "wrap").is_err());
    let bytes = ctx.max_binding_bytes();
    let past_limit = ctx.check_fits(bytes as usize / 4 + 1, "big").unwrap_err().to_string();
    assert!(past_limit.contains("buffer `big`") && past_limit.contains("bytes per binding"), "{past_limit}");
    ctx.check_fits(bytes as usize / 4, "largest").unwrap();
}
