
// ---- prelude/pool_params.wgsl, joined by shaders/src/lib.rs to max_pool.wgsl and avg_pool.wgsl:
// the window geometry (engine::ops::max_pool::PoolParams).
struct PoolParams {
    planes: u32, h: u32, w: u32, k: u32,
    stride: u32, pad: u32, oh: u32, ow: u32,
}
