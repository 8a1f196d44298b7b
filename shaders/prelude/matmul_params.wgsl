
// ---- prelude/matmul_params.wgsl, joined by shaders/src/lib.rs to matmul.wgsl and
// matmul_subgroup.wgsl: their parameters (engine::ops::matmul::MatmulParams) and bindings.
struct MatmulParams {
    m: u32, n: u32, k: u32, reduce: u32,
    a_ms: u32, a_ks: u32, a_rs: u32, a_bs: u32,
    b_ks: u32, b_ns: u32, b_rs: u32, b_bs: u32,
    c_ms: u32, c_bs: u32, accumulate: u32, n_inner: u32,
    b_no: u32, c_no: u32, col_folds: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
