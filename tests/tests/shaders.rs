//! Every WGSL file is parsed and validated by naga, then translated to SPIR-V (Vulkan), MSL
//! (Metal) and HLSL (DX12), so the Metal and DX12 paths are checked where only Vulkan runs.
//! The SPIR-V also passes `spirv-val` when Debian's spirv-tools is installed (CI installs it).

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::process::Command;

fn parse_and_validate(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(source)));
    // Subgroup operations are optional: only the files that say so in their name may use them.
    let capabilities = if name.contains("subgroup") {
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
        eprintln!(
            "spirv-val not found: SPIR-V is generated but not checked by spirv-tools (apt-get install spirv-tools)"
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

fn bytemuck_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
