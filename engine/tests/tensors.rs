//! The tensor-level API (`engine::functional`): the tutorial's single-layer demos give its exact
//! numbers on the GPU and on the CPU reference, every layer agrees with its reference on odd
//! shapes, and a shape a layer cannot take is refused naming the layer and the shapes.

use engine::functional::cpu::{self as C, CpuTensor};
use engine::functional::{self as F, Conv2d, GpuTensor, Linear};
use engine::rng::Rng;
use engine::GpuContext;
use test_support::gpu::{assert_close, gpu};

const INPUT_5X5: [f32; 25] =
    [3., 4., 6., 5., 7., 2., 4., 6., 8., 2., 1., 6., 7., 8., 4., 9., 7., 4., 6., 2., 3., 7., 5., 4., 1.];
const INPUT_4X4: [f32; 16] = [3., 4., 6., 5., 2., 4., 6., 8., 1., 6., 7., 8., 9., 7., 4., 6.];

fn random(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..shape.iter().product()).map(|_| rng.uniform(1.0)).collect()
}

/// The same data on both sides.
fn pair(ctx: &GpuContext, shape: &[usize], data: &[f32]) -> (GpuTensor, CpuTensor) {
    (GpuTensor::from_slice(ctx, shape, data).unwrap(), CpuTensor::new(shape, data.to_vec()).unwrap())
}

#[track_caller]
fn assert_same(what: &str, ctx: &GpuContext, got: &GpuTensor, want: &CpuTensor, atol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    assert_close(what, &got.to_vec(ctx).unwrap(), want.data(), 1e-4, atol);
}

#[test]
fn conv2d_5_to_10_channels_on_100x100_gives_the_tutorials_shapes() {
    let Some(ctx) = gpu() else { return };
    let conv = Conv2d::new(ctx, 5, 10, 3, 1).unwrap();
    let data = random(&[1, 5, 100, 100], 2);
    let (x, x_cpu) = pair(ctx, &[1, 5, 100, 100], &data);
    let y = conv.forward(ctx, &x).unwrap();
    assert_eq!(x.shape(), [1, 5, 100, 100]);
    assert_eq!(y.shape(), [1, 10, 98, 98]);
    assert_eq!(conv.weight.shape(), [10, 5, 3, 3]);
    let (w, b) = (conv.weight.to_cpu(ctx).unwrap(), conv.bias.as_ref().unwrap().to_cpu(ctx).unwrap());
    // PyTorch's default initialisation bound, 1/√(5·3·3).
    let bound = 1.0 / 45f32.sqrt();
    assert!(w.data().iter().chain(b.data()).all(|v| v.abs() <= bound), "weights within ±{bound}");
    let want = C::conv2d(&x_cpu, &w, Some(&b), 1, 0).unwrap();
    assert_same("conv2d 5→10", ctx, &y, &want, 1e-4 * 45f32.sqrt());
}

#[test]
fn the_tutorials_strided_padded_convolution_without_bias() {
    let want = [91., 224., 127., 192., 282., 122., 96., 110., 31.];
    let kernel: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let (x_cpu, k_cpu) = (
        CpuTensor::new(&[1, 1, 5, 5], INPUT_5X5.to_vec()).unwrap(),
        CpuTensor::new(&[1, 1, 3, 3], kernel.clone()).unwrap(),
    );
    let cpu = C::conv2d(&x_cpu, &k_cpu, None, 2, 1).unwrap();
    assert_eq!((cpu.shape(), cpu.data()), (&[1, 1, 3, 3][..], &want[..]), "CPU reference");
    let Some(ctx) = gpu() else { return };
    let conv = Conv2d {
        weight: GpuTensor::from_slice(ctx, &[1, 1, 3, 3], &kernel).unwrap(),
        bias: None,
        stride: 2,
        padding: 1,
    };
    let y = conv.forward(ctx, &GpuTensor::from_slice(ctx, &[1, 1, 5, 5], &INPUT_5X5).unwrap()).unwrap();
    assert_eq!((y.shape(), &y.to_vec(ctx).unwrap()[..]), (&[1, 1, 3, 3][..], &want[..]), "GPU");
}

#[test]
fn the_tutorials_max_pool() {
    let want = [4., 8., 9., 8.];
    let cpu = C::max_pool2d(&CpuTensor::new(&[1, 1, 4, 4], INPUT_4X4.to_vec()).unwrap(), 2, 2, 0).unwrap();
    assert_eq!((cpu.shape(), cpu.data()), (&[1, 1, 2, 2][..], &want[..]), "CPU reference");
    let Some(ctx) = gpu() else { return };
    let y = F::max_pool2d(ctx, &GpuTensor::from_slice(ctx, &[1, 1, 4, 4], &INPUT_4X4).unwrap(), 2, 2, 0).unwrap();
    assert_eq!((y.shape(), &y.to_vec(ctx).unwrap()[..]), (&[1, 1, 2, 2][..], &want[..]), "GPU");
}

#[test]
fn every_layer_matches_its_cpu_reference_on_odd_shapes() {
    let Some(ctx) = gpu() else { return };
    let shape = [3, 4, 9, 7];
    let (x, xc) = pair(ctx, &shape, &random(&shape, 3));
    let (w, wc) = pair(ctx, &[5, 4, 3, 2], &random(&[5, 4, 3, 2], 4));
    let (b, bc) = pair(ctx, &[5], &random(&[5], 5));
    for (stride, pad) in [(1, 0), (2, 1), (3, 2)] {
        let y = F::conv2d(ctx, &x, &w, Some(&b), stride, pad).unwrap();
        let want = C::conv2d(&xc, &wc, Some(&bc), stride, pad).unwrap();
        assert_same(&format!("conv2d stride {stride} pad {pad}"), ctx, &y, &want, 1e-4 * 24f32.sqrt());
    }
    for (k, s, p) in [(2, 2, 0), (3, 2, 1), (3, 1, 1)] {
        let y = F::max_pool2d(ctx, &x, k, s, p).unwrap();
        assert_same(&format!("max_pool2d {k} {s} {p}"), ctx, &y, &C::max_pool2d(&xc, k, s, p).unwrap(), 0.0);
        let y = F::avg_pool2d(ctx, &x, k, s, p).unwrap();
        assert_same(&format!("avg_pool2d {k} {s} {p}"), ctx, &y, &C::avg_pool2d(&xc, k, s, p).unwrap(), 1e-5);
    }
    assert_same("relu", ctx, &F::relu(ctx, &x).unwrap(), &C::relu(&xc), 0.0);
    assert_same("add", ctx, &F::add(ctx, &x, &x).unwrap(), &C::add(&xc, &xc).unwrap(), 0.0);
    let (z, zc) = pair(ctx, &[3, 2, 9, 7], &random(&[3, 2, 9, 7], 6));
    assert_same("concat", ctx, &F::concat(ctx, &[&x, &z, &x]).unwrap(), &C::concat(&[&xc, &zc, &xc]).unwrap(), 0.0);

    let flat = F::flatten(&x).unwrap();
    assert_eq!(flat.shape(), [3, 4 * 9 * 7]);
    let linear = Linear::new(ctx, 4 * 9 * 7, 11, 7).unwrap();
    let (lw, lb) = (linear.weight.to_cpu(ctx).unwrap(), linear.bias.as_ref().unwrap().to_cpu(ctx).unwrap());
    let flat_cpu = CpuTensor::new(&[3, 252], xc.data().to_vec()).unwrap();
    let want = C::linear(&flat_cpu, &lw, Some(&lb)).unwrap();
    assert_same("linear", ctx, &linear.forward(ctx, &flat).unwrap(), &want, 1e-4 * 252f32.sqrt());
}

/// Each refusal names the layer and the shapes involved, on both sides.
#[test]
fn shapes_a_layer_cannot_take_are_refused_naming_the_layer_and_shapes() {
    let x = CpuTensor::new(&[1, 4, 5, 5], vec![0.0; 100]).unwrap();
    let w = CpuTensor::new(&[2, 3, 3, 3], vec![0.0; 54]).unwrap();
    let w4 = CpuTensor::new(&[2, 4, 3, 3], vec![0.0; 72]).unwrap();
    let big = CpuTensor::new(&[2, 4, 8, 8], vec![0.0; 512]).unwrap();
    let expect = |result: engine::Result<CpuTensor>, words: &[&str]| {
        let message = result.expect_err("refused").to_string();
        for w in words {
            assert!(message.contains(w), "`{message}` should name {w}");
        }
    };
    expect(C::conv2d(&x, &w, None, 1, 0), &["conv2d", "[2, 3, 3, 3]", "[1, 4, 5, 5]", "channels"]);
    expect(C::conv2d(&x, &w4, None, 0, 0), &["conv2d", "stride 0", "[1, 4, 5, 5]"]);
    expect(C::conv2d(&x, &big, None, 1, 0), &["conv2d", "8×8", "[1, 4, 5, 5]"]);
    expect(C::conv2d(&x, &w4, Some(&x), 1, 0), &["conv2d", "bias", "[1, 4, 5, 5]"]);
    expect(C::max_pool2d(&x, 6, 1, 0), &["max_pool2d", "6×6", "[1, 4, 5, 5]"]);
    expect(C::max_pool2d(&x, 2, 0, 0), &["max_pool2d", "stride 0"]);
    expect(C::avg_pool2d(&x, 3, 1, 2), &["avg_pool2d", "padding 2"]);
    expect(C::linear(&x, &w, None), &["linear", "[1, 4, 5, 5]", "flatten"]);
    let x2 = CpuTensor::new(&[2, 3], vec![0.0; 6]).unwrap();
    let w2 = CpuTensor::new(&[4, 5], vec![0.0; 20]).unwrap();
    expect(C::linear(&x2, &w2, None), &["linear", "[2, 3]", "[4, 5]"]);
    expect(C::add(&x, &big), &["add", "[1, 4, 5, 5]", "[2, 4, 8, 8]"]);
    expect(C::concat(&[&x, &big]), &["concat", "[1, 4, 5, 5]", "[2, 4, 8, 8]"]);
    expect(CpuTensor::new(&[2, 2], vec![0.0; 3]), &["3 elements", "[2, 2]"]);
    expect(CpuTensor::new(&[2, 0], vec![]), &["[2, 0]"]);

    let Some(ctx) = gpu() else { return };
    let gx = GpuTensor::from_slice(ctx, &[1, 4, 5, 5], &[0.0; 100]).unwrap();
    let gw = GpuTensor::from_slice(ctx, &[2, 3, 3, 3], &[0.0; 54]).unwrap();
    let message = F::conv2d(ctx, &gx, &gw, None, 1, 0).expect_err("refused on the GPU path too").to_string();
    assert!(message.contains("conv2d") && message.contains("[2, 3, 3, 3]"), "{message}");
}
