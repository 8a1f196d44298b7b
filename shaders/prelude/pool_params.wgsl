
// ---- prelude/pool_params.wgsl, joined by shaders/src/lib.rs to max_pool.wgsl and avg_pool.wgsl:
// the window geometry (engine::ops::max_pool::PoolParams), and whether max_pool_forward applies
// a ReLU after the max (`relu`; avg_pool takes no ReLU, so its launcher sets 0).
struct PoolParams {
    planes: u32, h: u32, w: u32, k: u32,
    stride: u32, pad: u32, oh: u32, ow: u32,
    relu: u32,
}

// Output element idx of [planes, oh, ow]: its column and row, and where its input plane starts.
struct OutputPixel {
    ox: u32, oy: u32, base: u32,
}

fn output_pixel(idx: u32) -> OutputPixel {
    return OutputPixel(idx % p.ow, (idx / p.ow) % p.oh, (idx / (p.ow * p.oh)) * p.h * p.w);
}
