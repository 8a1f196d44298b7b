//! The engine's WGSL compute shaders, embedded at compile time.
//!
//! Each file starts with a header giving its bindings, shapes and dispatch layout. The Rust
//! launcher and the CPU reference of each file live in `engine/src/ops/<same name>.rs`.

/// Every shader file: (name, WGSL source). The name is the file stem.
pub const ALL: &[(&str, &str)] = &[
    ("add", include_str!("../add.wgsl")),
    ("avg_pool", include_str!("../avg_pool.wgsl")),
    ("bias", include_str!("../bias.wgsl")),
    ("bias_subgroup", include_str!("../bias_subgroup.wgsl")),
    ("concat", include_str!("../concat.wgsl")),
    ("conv", include_str!("../conv.wgsl")),
    ("fill", include_str!("../fill.wgsl")),
    ("gather", include_str!("../gather.wgsl")),
    ("matmul", include_str!("../matmul.wgsl")),
    ("matmul_subgroup", include_str!("../matmul_subgroup.wgsl")),
    ("max_pool", include_str!("../max_pool.wgsl")),
    ("relu", include_str!("../relu.wgsl")),
    ("sgd", include_str!("../sgd.wgsl")),
    ("softmax_cross_entropy", include_str!("../softmax_cross_entropy.wgsl")),
];

/// The WGSL source of the shader file `name` (its stem), if there is one.
pub fn source(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
