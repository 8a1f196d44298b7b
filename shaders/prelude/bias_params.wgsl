
// ---- prelude/bias_params.wgsl, joined by shaders/src/lib.rs to bias.wgsl and bias_subgroup.wgsl:
// their parameters (engine::ops::bias::BiasParams) and bindings.
struct BiasParams {
    n: u32, c: u32, s: u32, relu: u32,
}

@group(0) @binding(0) var<uniform> p: BiasParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
