//! The engine's WGSL compute shaders, embedded at compile time.
//!
//! Each file starts with a header giving its bindings, shapes and dispatch layout. The Rust
//! launcher and the CPU reference of each file live in `engine/src/ops/<same name>.rs`.
//!
//! WGSL has no includes, so what several files share lives once in `prelude/` and is appended to
//! each file that uses it here, at build time (module-scope declarations may come in any order,
//! so the file's own header and line numbers stay first).

/// Appends prelude files to a shader file: `joined!("matmul", "matmul_params")`.
macro_rules! joined {
    ($file:literal $(, $prelude:literal)*) => {
        ($file, concat!(
            include_str!(concat!("../", $file, ".wgsl")),
            $(include_str!(concat!("../prelude/", $prelude, ".wgsl")),)*
        ))
    };
}

/// Every shader file: (name, WGSL source with its preludes). The name is the file stem.
pub const ALL: &[(&str, &str)] = &[
    joined!("add", "grid"),
    joined!("avg_pool", "pool_params", "grid"),
    joined!("batch_norm", "grid"),
    joined!("concat", "grid"),
    joined!("conv"),
    joined!("dropout", "grid", "hash", "step_table"),
    joined!("gather", "grid", "hash", "step_table"),
    joined!("matmul", "matmul_params"),
    joined!("matmul_subgroup", "matmul_params"),
    joined!("max_pool", "pool_params", "grid"),
    joined!("optimizer", "grid", "step_table"),
    joined!("peak"),
    joined!("relu", "grid"),
    joined!("softmax_cross_entropy"),
];

/// The WGSL source of the shader file `name` (its stem), if there is one.
pub fn source(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Whether a shader file uses subgroup operations (the optional SUBGROUP feature).
pub fn uses_subgroups(name: &str) -> bool {
    name.ends_with("_subgroup")
}

/// The directives browsers' WGSL compiler (Tint) requires before subgroup operations and the
/// `subgroup_id` / `num_subgroups` builtins, and that naga 30 refuses.
pub const BROWSER_SUBGROUP_DIRECTIVES: &str = "enable subgroups;\n";

/// The source as a browser's WebGPU must be given it: with the subgroup directives prepended
/// to the files that use subgroups, unchanged otherwise.
pub fn browser_source(name: &str) -> Option<String> {
    let source = source(name)?;
    Some(if uses_subgroups(name) { format!("{BROWSER_SUBGROUP_DIRECTIVES}{source}") } else { source.to_string() })
}
