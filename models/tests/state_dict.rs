//! Weights files: a PyTorch state_dict in safetensors loads under the tutorial's names and shapes
//! (and `--init-from` takes it); a missing, extra, misshapen or non-f32 tensor is refused by
//! name; damaged files (header length past the file, offsets out of range or overlapping, a
//! huge declared shape, a truncated file, a file far larger than any of these networks) are
//! refused with a clear message before anything large is allocated. The same weights and metadata
//! serialize to the same bytes.

use models::state_dict::{self, TensorFile, MAX_FILE_BYTES};
use models::Network;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("state-dict-{}-{name}", std::process::id()))
}

/// A safetensors file of (name, dtype, shape, bytes), written with the safetensors crate.
fn write(name: &str, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> PathBuf {
    let views = tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
    let path = scratch(name);
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

/// simple_cnn's state_dict as PyTorch names it, entry i of every tensor equal to i / 1000.
fn state_dict(network: Network) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let graph = network.build([1, 28, 28], 10).unwrap();
    graph
        .params()
        .iter()
        .map(|p| {
            let bytes = (0..p.len()).flat_map(|i| (i as f32 / 1000.0).to_le_bytes()).collect();
            (p.name.clone(), Dtype::F32, p.shape.clone(), bytes)
        })
        .collect()
}

/// Why the file at `path` is refused, which must also be why its bytes are refused (as a web
/// page hands them over) where they can be read.
fn error(path: &Path) -> String {
    let graph = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    let message = match TensorFile::open(path).and_then(|f| f.params(&graph, "")) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    };
    if std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_FILE_BYTES) {
        let bytes = std::fs::read(path).unwrap();
        let from_bytes = TensorFile::from_bytes(path, bytes).and_then(|f| f.params(&graph, ""));
        assert_eq!(from_bytes.map(|_| ()).unwrap_err().to_string(), message);
    }
    message
}

#[test]
fn a_pytorch_state_dict_loads_under_the_tutorials_names() {
    let path = write("good", &state_dict(Network::SimpleCnn));
    let graph = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    let packed = TensorFile::open(&path).unwrap().params(&graph, "").unwrap();
    for p in graph.params() {
        let want: Vec<f32> = (0..p.len()).map(|i| i as f32 / 1000.0).collect();
        assert_eq!(packed[p.offset..p.offset + p.len()], want[..], "{}", p.name);
    }
    let from_bytes = TensorFile::from_bytes(&path, std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(from_bytes.params(&graph, "").unwrap(), packed);
    // What the web page offers for download reads back the same.
    let metadata = [("network".to_string(), "simple_cnn".to_string())].into();
    let served = state_dict::serialize(&state_dict::named(&graph, &packed, ""), metadata).unwrap();
    let served = TensorFile::from_bytes(Path::new("model.safetensors"), served).unwrap();
    assert_eq!((served.params(&graph, "").unwrap(), served.metadata()["network"].as_str()), (packed, "simple_cnn"));
    std::fs::remove_file(path).unwrap();
}

#[test]
fn the_same_weights_and_metadata_are_the_same_bytes() {
    let graph = Network::Inception.build([1, 28, 28], 10).unwrap();
    let mut packed = vec![0.0; graph.param_buffer_len()];
    for p in graph.params() {
        packed[p.offset..p.offset + p.len()].iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
    }
    let metadata: BTreeMap<String, String> = (0..12).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
    let file = || state_dict::serialize(&state_dict::named(&graph, &packed, ""), metadata.clone()).unwrap();
    let first = file();
    // Each serialization builds a new HashMap with its own random order, before sorting.
    for _ in 0..4 {
        assert!(file() == first, "serializing the same model twice gave different bytes");
    }
    let read = TensorFile::from_bytes(Path::new("model.safetensors"), first).unwrap();
    assert_eq!(read.params(&graph, "").unwrap(), packed);
    assert_eq!(read.metadata(), metadata);
}

#[test]
fn missing_extra_misshapen_and_non_f32_tensors_are_refused_by_name() {
    let good = state_dict(Network::SimpleCnn);
    let without = |name: &str| good.iter().filter(|t| t.0 != name).cloned().collect::<Vec<_>>();
    let mut extra = good.clone();
    extra.push(("conv3.weight".into(), Dtype::F32, vec![1], vec![0; 4]));
    let mut misshapen = without("fc.bias");
    misshapen.push(("fc.bias".into(), Dtype::F32, vec![5, 2], vec![0; 40]));
    let mut wrong_dtype = without("conv1.bias");
    wrong_dtype.push(("conv1.bias".into(), Dtype::F64, vec![10], vec![0; 80]));
    for (name, tensors, says) in [
        ("missing", without("conv2.weight"), "no tensor `conv2.weight`"),
        ("extra", extra, "tensors the network does not have: conv3.weight"),
        ("misshapen", misshapen, "tensor `fc.bias` has shape [5, 2], the network needs [10]"),
        ("dtype", wrong_dtype, "tensor `conv1.bias` is F64, not F32"),
        ("other network", state_dict(Network::Resnet), "tensor `conv1.weight` has shape [16, 1, 5, 5]"),
    ] {
        let path = write(name, &tensors);
        let e = error(&path);
        assert!(e.contains(says) && e.contains(path.to_str().unwrap()), "{name}: {e}");
        std::fs::remove_file(path).unwrap();
    }
}

/// A hand-written safetensors file: the 8-byte header length, the JSON header, then `data`.
fn raw(name: &str, declared_len: Option<u64>, header: &str, data: &[u8]) -> PathBuf {
    let mut bytes = declared_len.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn damaged_files_are_refused_with_the_reason() {
    let one = r#"{"conv1.bias":{"dtype":"F32","shape":[10],"data_offsets":[0,40]}}"#;
    let two = r#"{"a":{"dtype":"F32","shape":[10],"data_offsets":[0,40]},"b":{"dtype":"F32","shape":[10],"data_offsets":[20,60]}}"#;
    let huge = r#"{"conv1.bias":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,40]}}"#;
    for (name, path) in [
        ("header length past the file", raw("long header", Some(1 << 40), one, &[0; 40])),
        ("offsets past the data", raw("out of range", None, &one.replace("[0,40]", "[0,400]"), &[0; 40])),
        ("overlapping offsets", raw("overlap", None, two, &[0; 60])),
        ("a huge shape", raw("huge", None, huge, &[0; 40])),
        ("a truncated file", raw("truncated", None, one, &[0; 20])),
        ("not JSON", raw("not json", None, "this is not a header!", &[])),
        ("an empty file", raw("empty", Some(0), "", &[]).with_extension("")),
    ] {
        let e = error(&path);
        assert!(e.contains("is not a usable safetensors file"), "{name}: {e}");
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_file_far_larger_than_any_network_is_refused_unread() {
    let path = scratch("huge-file");
    // A sparse file: no disk or memory is spent on its length.
    std::fs::File::create(&path).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap();
    let e = error(&path);
    assert!(e.contains(&format!("more than the {MAX_FILE_BYTES}")), "{e}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn init_from_takes_a_state_dict_and_refuses_another_networks() {
    if test_support::gpu::gpu().is_none() {
        return;
    }
    let Some(data) = test_support::real_mnist_dir() else { return };
    let good = write("init-good", &state_dict(Network::SimpleCnn));
    let other = write("init-other", &state_dict(Network::Inception));
    let run = |file: &Path| {
        let args = ["simple_cnn", "--epochs", "1", "--limit-train", "64", "--limit-test", "64", "--no-download"];
        let mut argv: Vec<&str> = args.to_vec();
        argv.extend(["--data-dir", data.to_str().unwrap(), "--init-from", file.to_str().unwrap()]);
        let parsed = <models::cli::Args as clap::Parser>::try_parse_from(argv).unwrap();
        models::cli::run(Network::SimpleCnn, &parsed).map_err(|e| e.to_string())
    };
    run(&good).unwrap();
    let e = run(&other).unwrap_err();
    assert!(e.contains("tensor `conv2.weight` has shape [20, 88, 5, 5]") && e.contains("init-other"), "{e}");
    for p in [good, other] {
        std::fs::remove_file(p).unwrap();
    }
}
