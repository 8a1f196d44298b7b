//! The tutorial's first lessons: single layers applied to small tensors on the GPU, with the
//! same kernels the networks train with.
//!
//! `cargo run --release -p models --example tutorial_tensors`

use engine::functional::{self as F, Conv2d, GpuTensor};
use engine::GpuContext;
use std::process::ExitCode;

/// The tutorial's 5×5 input, and the 4×4 corner of it that its max-pool lesson uses.
const INPUT_5X5: [f32; 25] =
    [3., 4., 6., 5., 7., 2., 4., 6., 8., 2., 1., 6., 7., 8., 4., 9., 7., 4., 6., 2., 3., 7., 5., 4., 1.];
const INPUT_4X4: [f32; 16] = [3., 4., 6., 5., 2., 4., 6., 8., 1., 6., 7., 8., 9., 7., 4., 6.];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> engine::Result<()> {
    let ctx = GpuContext::new()?;
    println!("device: {}\n", ctx.report);

    println!("Conv2d(5, 10, kernel_size=3) on a random input");
    let conv = Conv2d::new(&ctx, 5, 10, 3, 1)?;
    let x = GpuTensor::uniform(&ctx, &[1, 5, 100, 100], 1.0, 2)?;
    let y = conv.forward(&ctx, &x)?;
    println!("  input shape:  {:?}", x.shape());
    println!("  output shape: {:?}", y.shape());
    println!("  weight shape: {:?}\n", conv.weight.shape());

    println!("Conv2d(1, 1, kernel_size=3, padding=1, stride=2, bias=False), kernel 1..9, on the 5×5 input");
    let x = GpuTensor::from_slice(&ctx, &[1, 1, 5, 5], &INPUT_5X5)?;
    let kernel: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let conv =
        Conv2d { weight: GpuTensor::from_slice(&ctx, &[1, 1, 3, 3], &kernel)?, bias: None, stride: 2, padding: 1 };
    println!("  {}\n", rows(&conv.forward(&ctx, &x)?, &ctx)?);

    println!("MaxPool2d(2) on the 4×4 input");
    let x = GpuTensor::from_slice(&ctx, &[1, 1, 4, 4], &INPUT_4X4)?;
    println!("  {}", rows(&F::max_pool2d(&ctx, &x, 2, 2, 0)?, &ctx)?);
    Ok(())
}

/// The last two dimensions of a [1, 1, H, W] tensor as nested rows: [[a, b], [c, d]].
fn rows(t: &GpuTensor, ctx: &GpuContext) -> engine::Result<String> {
    let width = *t.shape().last().expect("a tensor has a shape");
    let values = t.to_vec(ctx)?;
    let rows: Vec<String> = values
        .chunks(width)
        .map(|row| format!("[{}]", row.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(", ")))
        .collect();
    Ok(format!("[{}]", rows.join(", ")))
}
