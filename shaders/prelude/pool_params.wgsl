
// ---- prelude/pool_params.wgsl, joined by shaders/src/lib.rs to max_pool.wgsl and avg_pool.wgsl:
// the window geometry (engine::ops::max_pool::PoolParams), and whether max_pool_forward applies
// a ReLU after the max (`relu`; avg_pool takes no ReLU, so its launcher sets 0).
struct PoolParams {
    planes: u32, h: u32, w: u32, k: u32,
    stride: u32, pad: u32, oh: u32, ow: u32,
    relu: u32,
}
