//! Writes, as JSON on stdout, every shader as a browser's WebGPU must be given it, with the
//! kernels (entry points) the engine launches from it, for `tests/webgpu/compile_shaders.py`:
//! `[{"file", "entries", "subgroups", "source", "line_offset", "parts"}]` (see that script).

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The appended prelude files: each starts with a blank line and then its `// ---- prelude/…`
/// marker, so its line 1 is the line before the marker.
fn parts(source: &str) -> Vec<String> {
    source
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let name = line.strip_prefix("// ---- ")?.split(".wgsl").next()?;
            Some(format!("{{\"file\": {}, \"line\": {}}}", json_string(name), i))
        })
        .collect()
}

fn main() {
    let shaders: Vec<String> = shaders::ALL
        .iter()
        .map(|(file, _)| {
            let source = shaders::browser_source(file).expect("listed in shaders::ALL");
            let entries: Vec<String> =
                engine::ops::KERNELS.iter().filter(|k| k.file == *file).map(|k| json_string(k.entry)).collect();
            let subgroups = shaders::uses_subgroups(file);
            let line_offset = if subgroups { shaders::BROWSER_SUBGROUP_DIRECTIVES.lines().count() } else { 0 };
            format!(
                "{{\"file\": {}, \"entries\": [{}], \"subgroups\": {subgroups}, \"line_offset\": {line_offset}, \
                 \"parts\": [{}], \"source\": {}}}",
                json_string(file),
                entries.join(", "),
                parts(&source).join(", "),
                json_string(&source)
            )
        })
        .collect();
    println!("[\n{}\n]", shaders.join(",\n"));
}
