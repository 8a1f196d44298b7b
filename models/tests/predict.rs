//! `predict` on people's pictures: MNIST test images written as PNG in several variants (gray,
//! RGB, 16-bit, dark ink on white paper, three times larger) get the digit the evaluation path
//! gives the original; hostile files (not an image, empty, truncated, absurd dimensions, the
//! weights of no known network, the old private checkpoint format) are refused naming the file,
//! with a non-zero exit and bounded memory.

use clap::Parser;
use image::{ImageBuffer, Luma, Rgb, Rgba};
use models::cli::Args;
use models::predict::{classify, mnist_digit, mnist_digit_rgba, network_of, InputSpec};
use models::state_dict::TensorFile;
use models::Network;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory of this test process's own, one per test (they run in parallel).
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("predict-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// simple_cnn trained for one epoch on 5000 images (about 91% accurate), saved by `--out`.
fn trained_model(data: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("run");
    let argv = [
        "simple_cnn",
        "--no-download",
        "--epochs",
        "1",
        "--limit-train",
        "5000",
        "--limit-test",
        "100",
        "--batch-size",
        "16",
        "--lr",
        "0.04",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    models::cli::run(Network::SimpleCnn, &Args::try_parse_from(argv).unwrap()).unwrap();
    out.join("model.safetensors")
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
}

/// The variants of one 28×28 MNIST image, as PNG files.
fn variants(dir: &Path, i: usize, pixels: &[u8]) -> Vec<PathBuf> {
    let gray = ImageBuffer::<Luma<u8>, _>::from_raw(28, 28, pixels.to_vec()).unwrap();
    let path = |what: &str| dir.join(format!("{i}-{what}.png"));
    let files = [path("gray"), path("rgb"), path("16bit"), path("on-white"), path("large")];
    gray.save(&files[0]).unwrap();
    ImageBuffer::from_fn(28, 28, |x, y| Rgb([gray.get_pixel(x, y)[0]; 3])).save(&files[1]).unwrap();
    ImageBuffer::<Luma<u16>, _>::from_fn(28, 28, |x, y| Luma([gray.get_pixel(x, y)[0] as u16 * 257]))
        .save(&files[2])
        .unwrap();
    ImageBuffer::<Luma<u8>, _>::from_fn(28, 28, |x, y| Luma([255 - gray.get_pixel(x, y)[0]])).save(&files[3]).unwrap();
    image::imageops::resize(&gray, 84, 84, image::imageops::FilterType::Nearest).save(&files[4]).unwrap();
    files.to_vec()
}

#[test]
fn pictures_of_test_images_get_the_digit_the_evaluation_gives_the_original() {
    let Some(ctx) = test_support::gpu::gpu() else { return };
    let Some(data) = test_support::real_mnist_dir() else { return };
    let dir = scratch("pictures");
    let model = TensorFile::open(&trained_model(&data, &dir)).unwrap();
    let spec = InputSpec::from_metadata(&model.metadata()).unwrap();
    assert!(spec.is_mnist(), "{spec:?}");
    let (network, graph) = network_of(&model, &spec).unwrap();
    assert_eq!(network, Network::SimpleCnn);
    let params = model.params(&graph, "").unwrap();
    let test = mnist_loader::inspect(&data, false).unwrap().test.read(Some(200)).unwrap();
    let originals = classify(Some(ctx), &graph, &params, &test.images, &spec.norm).unwrap();
    // Digits the network is sure of: re-centring moves a digit by a pixel at most, which must not
    // change such a prediction.
    let sure: Vec<usize> = (0..200).filter(|&i| originals[i][argmax(&originals[i])] > 0.9).take(20).collect();
    assert_eq!(sure.len(), 20);
    for &i in &sure {
        let files = variants(&dir, i, &test.images[i * 784..(i + 1) * 784]);
        let digits: Vec<u8> = files.iter().flat_map(|f| mnist_digit(f).unwrap()).collect();
        let on_gpu = classify(Some(ctx), &graph, &params, &digits, &spec.norm).unwrap();
        let on_cpu = classify(None, &graph, &params, &digits, &spec.norm).unwrap();
        for (file, (g, c)) in files.iter().zip(on_gpu.iter().zip(&on_cpu)) {
            let want = argmax(&originals[i]);
            assert_eq!((argmax(g), argmax(c)), (want, want), "{} (label {})", file.display(), test.labels[i]);
        }
    }
    // The binary prints one line per picture, in order, with the argument as given.
    let files = variants(&dir, sure[0], &test.images[sure[0] * 784..(sure[0] + 1) * 784]);
    let output = Command::new(env!("CARGO_BIN_EXE_predict"))
        .args(["--model", dir.join("run/model.safetensors").to_str().unwrap(), "--top", "2"])
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let digit = argmax(&originals[sure[0]]);
    for (line, file) in stdout.lines().zip(&files) {
        assert!(line.starts_with(&format!("{}: {digit} (p=", file.display())) && line.contains("), "), "{line}");
    }
    assert_eq!(stdout.lines().count(), files.len());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hostile_files_are_refused_naming_the_file_in_bounded_memory() {
    let dir = scratch("hostile");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // A real state_dict of simple_cnn (untrained), for the picture cases.
    let graph = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    let values = graph.init_params(1);
    let model = dir.join("model.safetensors");
    models::state_dict::write(&model, &models::state_dict::named(&graph, &values, ""), Default::default()).unwrap();
    let mut png = Vec::new();
    ImageBuffer::<Luma<u8>, _>::from_raw(28, 28, vec![200u8; 784])
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let pictures = [
        (write("not-an-image.png", b"this is text, not a picture"), "not a PNG, JPEG, BMP or PGM/PPM picture"),
        (write("empty.png", b""), "picture"),
        (write("truncated.png", &png[..png.len() / 2]), "picture"),
        (write("huge.pgm", b"P5 100000 100000 255\n\x00\x00\x00"), "larger than 8192×8192 pixels"),
        (
            write("blank.png", &{
                let mut blank = Vec::new();
                ImageBuffer::<Luma<u8>, _>::from_raw(28, 28, vec![255u8; 784])
                    .unwrap()
                    .write_to(&mut std::io::Cursor::new(&mut blank), image::ImageFormat::Png)
                    .unwrap();
                blank
            }),
            "blank",
        ),
    ];
    let predict = |model: &Path, picture: &Path| {
        Command::new(env!("CARGO_BIN_EXE_predict")).arg("--model").arg(model).arg(picture).output().unwrap()
    };
    for (picture, says) in &pictures {
        let out = predict(&model, picture);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(picture.to_str().unwrap()) && stderr.contains(says),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let resnet = Network::Resnet.build([1, 28, 28], 10).unwrap();
    let resnet_values = resnet.init_params(1);
    let mut tensors = models::state_dict::named(&resnet, &resnet_values, "");
    tensors.pop();
    let foreign = dir.join("foreign.safetensors");
    models::state_dict::write(&foreign, &tensors, Default::default()).unwrap();
    let old = write("old.ckpt", b"MNISTCKP\x01\x00\x00\x00 the private format of before");
    for (bad, says) in
        [(&foreign, "not the weights of simple_cnn, inception or resnet"), (&old, "not a usable safetensors file")]
    {
        let out = predict(bad, &pictures[2].0);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(bad.to_str().unwrap()) && stderr.contains(says), "{stderr}");
    }
    let peak = test_support::children_peak_rss_kib();
    assert!(peak < 300_000_000 / 1024, "a run peaked at {} MB", peak / 1024);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn canvas_pixels_are_prepared_as_picture_files_are() {
    let dir = scratch("canvas");
    // A stroke like one drawn on the web page's pad: light ink on black, and dark ink on
    // transparent paper (which counts as white).
    let ink = |x: u32, y: u32| {
        (x as i32 - 140).abs() < 14 && (60..220).contains(&y) || (y as i32 - 70).abs() < 12 && x > 90 && x < 150
    };
    let light =
        ImageBuffer::from_fn(
            280,
            280,
            |x, y| if ink(x, y) { Rgba([255, 255, 255, 255]) } else { Rgba([0, 0, 0, 255]) },
        );
    let dark = ImageBuffer::from_fn(280, 280, |x, y| if ink(x, y) { Rgba([0, 0, 0, 255]) } else { Rgba([0, 0, 0, 0]) });
    for (name, picture) in [("light", light), ("dark", dark)] {
        let path = dir.join(format!("{name}.png"));
        picture.save(&path).unwrap();
        let from_file = mnist_digit(&path).unwrap();
        assert_eq!(mnist_digit_rgba(picture.into_raw(), 280, 280).unwrap(), from_file, "{name}");
        assert!(from_file.iter().filter(|&&v| v > 128).count() > 40, "{name}: the stroke is in the digit");
    }
    let blank = mnist_digit_rgba(vec![0; 280 * 280 * 4], 280, 280).unwrap_err();
    assert!(blank.contains("blank"), "{blank}");
    let short = mnist_digit_rgba(vec![0; 100], 280, 280).unwrap_err();
    assert!(short.contains("313600 bytes"), "{short}");
    assert!(mnist_digit_rgba(Vec::new(), 0, 0).unwrap_err().contains("empty"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A weights file's metadata is refused when it asks for an input no picture can be made into,
/// before anything is allocated for it.
#[test]
fn hostile_metadata_is_refused_before_anything_is_allocated() {
    let spec = |pairs: &[(&str, &str)]| {
        let metadata = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        InputSpec::from_metadata(&metadata)
    };
    assert!(spec(&[]).unwrap().is_mnist(), "PyTorch's files say nothing: MNIST's digits");
    for shape in ["100000,100000,100000", "1,100000,100000", "3,0,5", "2,28,28", "1,28", "x,1,1", "1,28.5,28"] {
        let e = spec(&[("input_shape", shape)]).expect_err(shape);
        assert!(e.contains("input_shape"), "{shape}: {e}");
    }
    let e = spec(&[("input_shape", "3,32,32"), ("mean", "0.5"), ("std", "0.2")]).expect_err("one channel of three");
    assert!(e.contains("one normalization per channel"), "{e}");
    let e = spec(&[("input_shape", "3,32,32"), ("mean", "0.5,0.5,0.5"), ("std", "0.2,0,0.2")]).expect_err("std 0");
    assert!(e.contains("one normalization per channel"), "{e}");
    let e = spec(&[("classes", "[\"cat\", 3]")]).expect_err("not names");
    assert!(e.contains("classes"), "{e}");
    let ok = spec(&[
        ("input_shape", "3,32,32"),
        ("mean", "0.5,0.4,0.3"),
        ("std", "0.2,0.2,0.2"),
        ("classes", "[\"cat\", \"dog\"]"),
    ]);
    let ok = ok.unwrap();
    assert_eq!((ok.shape, ok.class_count(), ok.is_mnist()), ([3, 32, 32], 2, false));
}

/// fast_cnn's weights file holds its batch norms' running statistics: `predict`'s classifier,
/// on the GPU and on the CPU, gets exactly the test accuracy the run's evaluation recorded, and
/// PyTorch's int64 `num_batches_tracked` counts the run's steps.
#[test]
fn a_fast_cnn_weights_file_classifies_as_its_evaluation_did() {
    let Some(ctx) = test_support::gpu::gpu() else { return };
    let Some(data) = test_support::real_mnist_dir() else { return };
    let dir = scratch("fast_cnn");
    let out = dir.join("run");
    let argv = ["fast_cnn", "--no-download", "--limit-train", "1280", "--limit-test", "200"];
    let argv = [&argv[..], &["--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat();
    models::cli::run(Network::FastCnn, &Args::try_parse_for(Network::FastCnn, argv).unwrap()).unwrap();
    let model = TensorFile::open(&out.join("model.safetensors")).unwrap();
    let recorded: f64 = model.metadata()["test_accuracy"].parse().unwrap();
    let spec = InputSpec::from_metadata(&model.metadata()).unwrap();
    let (network, graph) = network_of(&model, &spec).unwrap();
    assert_eq!(network, Network::FastCnn);
    assert_eq!(model.counter("bn1.num_batches_tracked").unwrap(), (vec![], 20.0), "1280 images in batches of 64");
    let params = model.params(&graph, "").unwrap();
    let test = mnist_loader::inspect(&data, false).unwrap().test.read(Some(200)).unwrap();
    for device in [Some(ctx), None] {
        let scores = classify(device, &graph, &params, &test.images, &spec.norm).unwrap();
        let correct = scores.iter().zip(&test.labels).filter(|(s, &l)| argmax(s) == l as usize).count();
        let accuracy = 100.0 * correct as f64 / 200.0;
        assert!(
            (accuracy - recorded).abs() < 1e-9,
            "on {device:?}: {accuracy}% against the run's {recorded}%",
            device = device.is_some()
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
