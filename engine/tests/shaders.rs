//! Every WGSL file, joined with its preludes as the engine compiles it, is parsed and validated
//! by naga, then translated to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12), so the Metal and
//! DX12 paths are checked where only Vulkan runs. The SPIR-V also passes `spirv-val` (Debian's
//! spirv-tools; without it the test says it skipped that check). Every kernel's Rust parameter
//! struct and binding list is checked against its WGSL module by naga's reflection.

use engine::kernel::{Access, KernelSpec};
use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use std::collections::BTreeMap;
use std::process::Command;

fn parse_and_validate(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(source)));
    // Subgroup operations are optional: only the files that say so in their name may use them.
    let capabilities = if shaders::uses_subgroups(name) {
        Capabilities::default() | Capabilities::SUBGROUP
    } else {
        Capabilities::default()
    };
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}.wgsl is invalid:\n{}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_shader_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "wgsl").then(|| path.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = shaders::ALL.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, embedded, "shaders::ALL must list every .wgsl file, sorted");
}

#[test]
fn every_shader_starts_with_a_header_naming_bindings_and_dispatch() {
    for (name, source) in shaders::ALL {
        let header: String = source.lines().take_while(|l| l.starts_with("//")).collect();
        assert!(header.contains("Bindings") || header.contains("bindings"), "{name}.wgsl header lacks bindings");
        assert!(header.contains("Dispatch"), "{name}.wgsl header lacks the dispatch layout");
    }
}

#[test]
fn every_shader_validates_and_has_compute_entry_points() {
    for (name, source) in shaders::ALL {
        let (module, _) = parse_and_validate(name, source);
        assert!(!module.entry_points.is_empty(), "{name}.wgsl has no entry point");
        for ep in &module.entry_points {
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{name}.wgsl: {}", ep.name);
        }
    }
}

#[test]
fn every_shader_translates_to_spirv_msl_and_hlsl() {
    let spirv_val = Command::new("spirv-val").arg("--version").output().is_ok();
    if !spirv_val {
        test_support::skipped(
            "spirv-val checks of the SPIR-V",
            "spirv-val not found (apt-get install spirv-tools); the SPIR-V is generated but not checked",
        );
    }
    for (name, source) in shaders::ALL {
        let (module, info) = parse_and_validate(name, source);

        // SPIR-V 1.3 (Vulkan 1.1), the first with subgroup (GroupNonUniform) operations.
        let spirv_options = spv::Options { lang_version: (1, 3), ..Default::default() };
        let words = spv::write_vec(&module, &info, &spirv_options, None)
            .unwrap_or_else(|e| panic!("{name}.wgsl -> SPIR-V: {e}"));
        assert_eq!(words[0], 0x0723_0203, "{name}: SPIR-V magic");
        if spirv_val {
            let path = std::env::temp_dir().join(format!("engine-{}-{name}.spv", std::process::id()));
            std::fs::write(&path, bytemuck_words(&words)).unwrap();
            let out = Command::new("spirv-val").arg("--target-env").arg("vulkan1.1").arg(&path).output().unwrap();
            std::fs::remove_file(&path).ok();
            assert!(
                out.status.success(),
                "{name}.wgsl: spirv-val rejects the SPIR-V:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // The language versions wgpu itself targets, which have subgroup (SIMD-group, wave) ops.
        let metal_options = msl::Options { lang_version: (2, 4), ..Default::default() };
        let (metal, _) = msl::write_string(&module, &info, &metal_options, &msl::PipelineOptions::default())
            .unwrap_or_else(|e| panic!("{name}.wgsl -> MSL: {e}"));
        for ep in &module.entry_points {
            assert!(metal.contains(&ep.name), "{name}: MSL lacks entry point {}", ep.name);
        }

        let mut hlsl_text = String::new();
        let options = hlsl::Options { shader_model: hlsl::ShaderModel::V6_0, ..Default::default() };
        let pipeline = hlsl::PipelineOptions::default();
        hlsl::Writer::new(&mut hlsl_text, &options, &pipeline)
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{name}.wgsl -> HLSL: {e}"));
        assert!(hlsl_text.contains("[numthreads("), "{name}: HLSL has no compute entry point");
    }
}

/// Each (group, binding) an entry point uses, with how: "uniform <struct>", "read" or "read_write".
fn used_bindings(module: &naga::Module, info: &ModuleInfo, entry: usize) -> BTreeMap<(u32, u32), String> {
    let uses = info.get_entry_point(entry);
    let mut out = BTreeMap::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else { continue };
        if uses[handle].is_empty() {
            continue;
        }
        let how = match var.space {
            naga::AddressSpace::Uniform => format!("uniform {}", module.types[var.ty].name.as_deref().unwrap_or("?")),
            naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                "read_write".into()
            }
            naga::AddressSpace::Storage { .. } => "read".into(),
            other => format!("{other:?}"),
        };
        out.insert((binding.group, binding.binding), how);
    }
    out
}

/// The bindings a spec declares, in `used_bindings`' terms.
fn declared_bindings(spec: &KernelSpec) -> BTreeMap<(u32, u32), String> {
    let uniform = spec.params.as_ref().map(|l| ((0, 0), format!("uniform {}", l.name)));
    let storage = spec.storage.iter().map(|&(binding, access)| {
        let how = if access == Access::Read { "read" } else { "read_write" };
        ((0, binding), how.to_string())
    });
    uniform.into_iter().chain(storage).collect()
}

/// Every way `spec` disagrees with its WGSL module, each naming the kernel and the binding or
/// field at fault.
fn mismatches(spec: &KernelSpec, module: &naga::Module, info: &ModuleInfo) -> Vec<String> {
    let kernel = format!("kernel `{}` ({}.wgsl)", spec.entry, spec.file);
    let Some(entry) = module.entry_points.iter().position(|e| e.name == spec.entry) else {
        return vec![format!("{kernel}: no such entry point")];
    };
    let (used, declared) = (used_bindings(module, info, entry), declared_bindings(spec));
    let mut out = Vec::new();
    for key in used.keys().chain(declared.keys().filter(|k| !used.contains_key(k))) {
        let (wgsl, rust) = (used.get(key), declared.get(key));
        if wgsl != rust {
            out.push(format!("{kernel}: binding {key:?} is {wgsl:?} in WGSL but {rust:?} in the launcher"));
        }
    }
    let Some(layout) = &spec.params else { return out };
    // The uniform block this entry point uses (a missing one is reported above as a binding).
    let uses = info.get_entry_point(entry);
    let uniform =
        module.global_variables.iter().find(|(h, v)| v.space == naga::AddressSpace::Uniform && !uses[*h].is_empty());
    let Some((_, var)) = uniform else { return out };
    let naga::TypeInner::Struct { members, span } = &module.types[var.ty].inner else {
        out.push(format!("{kernel}: its uniform block is not a struct"));
        return out;
    };
    if *span as usize != layout.size {
        out.push(format!("{kernel}: {} is {span} bytes in WGSL but {} in Rust", layout.name, layout.size));
    }
    let wgsl_fields = members.iter().map(|m| {
        let ty = match module.types[m.ty].inner {
            naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Uint, width: 4 }) => "u32",
            naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Float, width: 4 }) => "f32",
            naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Sint, width: 4 }) => "i32",
            _ => "another type",
        };
        (m.name.clone().unwrap_or_default(), m.offset as usize, ty)
    });
    let rust_fields = layout.fields.iter().map(|&(name, offset, ty)| (name.to_string(), offset, ty));
    let (wgsl_fields, rust_fields): (Vec<_>, Vec<_>) = (wgsl_fields.collect(), rust_fields.collect());
    for i in 0..wgsl_fields.len().max(rust_fields.len()) {
        let (w, r) = (wgsl_fields.get(i), rust_fields.get(i));
        if w != r {
            let field = w.or(r).map(|f| f.0.as_str()).unwrap_or_default();
            out.push(format!(
                "{kernel}: field {i} (`{field}`) of {} is (name, offset, type) {w:?} in WGSL but {r:?} in Rust",
                layout.name
            ));
        }
    }
    out
}

#[test]
fn every_kernel_matches_its_wgsl_parameters_and_bindings() {
    let mut problems = Vec::new();
    for spec in engine::ops::KERNELS {
        let source = shaders::source(spec.file).unwrap_or_else(|| panic!("no shader file {}", spec.file));
        let (module, info) = parse_and_validate(spec.file, source);
        problems.extend(mismatches(spec, &module, &info));
    }
    assert!(problems.is_empty(), "kernel specs disagree with their shaders:\n{}", problems.join("\n"));
}

#[test]
fn every_entry_point_is_a_kernel_the_engine_knows() {
    for (name, source) in shaders::ALL {
        let (module, _) = parse_and_validate(name, source);
        for ep in &module.entry_points {
            assert!(
                engine::ops::KERNELS.iter().any(|k| k.file == *name && k.entry == ep.name),
                "{name}.wgsl: entry point {} is missing from engine::ops::KERNELS",
                ep.name
            );
        }
    }
}

#[test]
fn a_kernel_spec_that_disagrees_with_its_shader_is_named_with_the_field_or_binding() {
    use engine::kernel::ParamsLayout;
    let source = shaders::source("matmul").unwrap();
    let (module, info) = parse_and_validate("matmul", source);
    let good = &engine::ops::matmul::MATMUL;
    assert!(mismatches(good, &module, &info).is_empty());

    // C declared read-only.
    let wrong_access =
        KernelSpec { storage: &[(1, Access::Read), (2, Access::Read), (3, Access::Read), (4, Access::Read)], ..*good };
    let found = mismatches(&wrong_access, &module, &info).join("\n");
    assert!(found.contains("kernel `matmul`") && found.contains("binding (0, 3)"), "{found}");

    // The second field at the wrong offset, and a missing last field.
    let mut fields = good.params.as_ref().unwrap().fields.to_vec();
    fields[1].1 += 4;
    fields.pop();
    let fields: &'static [_] = fields.leak();
    assert!(!fields.is_empty());
    let size = good.params.unwrap().size;
    let layout = ParamsLayout { name: "MatmulParams", size: size - 4, fields };
    let wrong_layout = KernelSpec { params: Some(layout), ..*good };
    let found = mismatches(&wrong_layout, &module, &info).join("\n");
    let (last, last_name) = (fields.len(), good.params.unwrap().fields[fields.len()].0);
    assert!(found.contains("field 1 (`n`)") && found.contains(&format!("field {last} (`{last_name}`)")), "{found}");
    assert!(found.contains(&format!("MatmulParams is {size} bytes in WGSL but {} in Rust", size - 4)), "{found}");
}

/// Chromium's WGSL compiler wants `enable subgroups;` before subgroup operations, naga 30 refuses
/// it: the directive goes exactly to the browser source of the files that need the SUBGROUP
/// capability (tests/webgpu/compile_shaders.py compiles those sources in Chromium).
#[test]
fn browsers_get_the_subgroup_directive_exactly_where_subgroups_are_used() {
    for (name, source) in shaders::ALL {
        let module = naga::front::wgsl::parse_str(source).unwrap();
        let without_subgroups = Validator::new(ValidationFlags::all(), Capabilities::default()).validate(&module);
        let browser = shaders::browser_source(name).unwrap();
        assert_eq!(without_subgroups.is_err(), shaders::uses_subgroups(name), "{name}.wgsl");
        if shaders::uses_subgroups(name) {
            assert_eq!(browser, format!("{}{source}", shaders::BROWSER_SUBGROUP_DIRECTIVES), "{name}.wgsl");
            assert!(naga::front::wgsl::parse_str(&browser).is_err(), "naga 30 now takes `enable subgroups;`: {name}");
        } else {
            assert_eq!(browser, *source, "{name}.wgsl");
        }
    }
}

fn bytemuck_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
