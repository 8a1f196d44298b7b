//! `--image-folder`: torchvision's ImageFolder layout read into the training loop. Real MNIST
//! pictures written as PNG (gray and RGB) train to exactly the accuracy the IDX path gives on
//! the same images, and `predict` names the folder's classes; RGB pictures train with three
//! channels, and the networks adapt to their size; every broken folder is refused naming the
//! file or folder and the fix.

use clap::Parser;
use engine::data::LabelledImages;
use engine::ops::optimizer::{Optimizer, Sgd};
use image::{ImageBuffer, Luma, Rgb, Rgba};
use models::cli::Args;
use models::image_folder::{self, FolderError, FolderOptions};
use models::train::{mnist_images, Recipe, Trainer};
use models::Network;
use std::path::{Path, PathBuf};
use std::process::Command;

const DIGITS: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("image-folder-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn no_progress(_: usize, _: usize) {}

fn load(dir: &Path, resize: Option<[u32; 2]>) -> Result<image_folder::FolderDataset, FolderError> {
    image_folder::load(dir, &FolderOptions { resize, ..FolderOptions::default() }, &no_progress)
}

/// Writes `pixels` (28×28 gray) as `split/<class>/<index>.png`, as RGB every other image.
fn write_digit(dir: &Path, split: &str, class: &str, index: usize, pixels: &[u8]) {
    let folder = dir.join(split).join(class);
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join(format!("{index:05}.png"));
    let gray = ImageBuffer::<Luma<u8>, _>::from_raw(28, 28, pixels.to_vec()).unwrap();
    if index % 2 == 0 {
        gray.save(path).unwrap();
    } else {
        ImageBuffer::from_fn(28, 28, |x, y| Rgb([gray.get_pixel(x, y)[0]; 3])).save(path).unwrap();
    }
}

/// The last `--out` epoch's test accuracy, from metrics.csv.
fn last_accuracy(out: &Path) -> f64 {
    let text = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    text.lines().last().unwrap().split(',').nth(4).unwrap().parse().unwrap()
}

#[test]
fn mnist_as_pictures_trains_exactly_as_the_idx_files_and_predict_names_the_classes() {
    let Some(ctx) = test_support::gpu::gpu() else { return };
    let Some(data) = test_support::real_mnist_dir() else { return };
    let mnist = mnist_images(&mnist_loader::inspect(&data, false).unwrap().test.read(Some(2000)).unwrap());
    let dir = scratch("mnist");
    for i in 0..mnist.len() {
        let split = if i < 1500 { "train" } else { "test" };
        write_digit(&dir, split, DIGITS[mnist.labels()[i] as usize], i, mnist.image(i));
    }
    let out = dir.join("run");
    let argv = ["simple_cnn", "--epochs", "1", "--batch-size", "16", "--lr", "0.04", "--mean", "0.1307", "--std"];
    let mut argv: Vec<&str> = argv.into();
    argv.extend(["0.3081", "--image-folder", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    models::cli::run(Network::SimpleCnn, &Args::try_parse_from(argv).unwrap()).unwrap();
    let from_folder = last_accuracy(&out);

    // The same images through the IDX path, in the folder's order (classes by name, then files
    // by name) with the folder's labels (the class's index among the sorted names).
    let mut sorted: Vec<&str> = DIGITS.into();
    sorted.sort();
    let label_of = |digit: u32| sorted.iter().position(|&n| n == DIGITS[digit as usize]).unwrap() as u32;
    let split = |range: std::ops::Range<usize>| {
        let mut order: Vec<usize> = range.collect();
        order.sort_by_key(|&i| (label_of(mnist.labels()[i]), i));
        let set = mnist.select(&order).unwrap();
        let labels = set.labels().iter().map(|&l| label_of(l)).collect();
        LabelledImages::new(set.shape(), set.pixels().to_vec(), labels).unwrap()
    };
    let (train, test) = (split(0..1500), split(1500..2000));
    let graph = Network::SimpleCnn.build([1, 28, 28], 10).unwrap();
    let mut recipe = Recipe { epochs: 1, batch_size: 16, ..Recipe::default() };
    recipe.optimizer = Optimizer::Sgd(Sgd::new(0.04, 0.5));
    let mut trainer = Trainer::new(ctx, &graph, &train, Some(&test), recipe).unwrap();
    let from_idx = trainer.epoch(1, |_, _, _, _| {}).unwrap().test_accuracy();
    assert!((from_folder - from_idx).abs() < 1e-3, "folder {from_folder}% vs IDX {from_idx}%");
    assert!(from_folder > 80.0, "{from_folder}%");

    // predict names the class; test picture 1500 + k is `test/<class>/0150k.png`.
    let (index, digit) = (1501, DIGITS[mnist.labels()[1501] as usize]);
    let picture = dir.join("test").join(digit).join(format!("{index:05}.png"));
    let output = Command::new(env!("CARGO_BIN_EXE_predict"))
        .args(["--top", "10", "--model"])
        .args([out.join("model.safetensors"), picture])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(DIGITS.iter().all(|d| stdout.contains(&format!("{d} (p="))), "every class by name: {stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Red, green and blue squares on white, each class a colour: three channels, 16×16 pictures,
/// so simple_cnn's linear layer takes 20·1·1 inputs.
fn colour_folder(dir: &Path, side: u32) {
    for (class, colour) in [("blue", [0u8, 0, 255]), ("green", [0, 160, 0]), ("red", [220, 0, 0])] {
        for split in ["train", "test"] {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..24u32 {
                let inside = |x: u32, y: u32| x.abs_diff(side / 2 + i % 3) < 4 && y.abs_diff(side / 2 - i % 2) < 4;
                let picture =
                    ImageBuffer::from_fn(side, side, |x, y| Rgb(if inside(x, y) { colour } else { [255; 3] }));
                picture.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn colour_pictures_train_with_three_channels_and_the_networks_adapt_to_their_size() {
    let dir = scratch("colour");
    colour_folder(&dir, 16);
    let limited = FolderOptions { limits: [Some(30), Some(9)], seed: 3, ..FolderOptions::default() };
    let some = image_folder::load(&dir, &limited, &no_progress).unwrap();
    assert_eq!((some.train.len(), some.test.len(), some.found), (30, 9, [72, 72]), "chosen before decoding");
    assert_eq!(some.train.classes(), 3, "a seeded subset, not the first class's pictures");
    let data = load(&dir, None).unwrap();
    assert_eq!(data.classes, ["blue", "green", "red"]);
    assert_eq!((data.train.shape(), data.train.len(), data.test.len()), ([3, 16, 16], 72, 72));
    let blue = data.train.image(0);
    assert_eq!((blue[0], blue[256], blue[512]), (255, 255, 255), "white paper in all three planes");
    assert_eq!(data.train.labels()[24], 1, "green is class 1");
    let Some(_) = test_support::gpu::gpu() else { return };
    let out = dir.join("run");
    let run = |network: Network, extra: &[&str]| {
        let mut argv = vec![network.name(), "--image-folder", dir.to_str().unwrap(), "--batch-size", "8"];
        argv.extend(extra);
        models::cli::run(network, &Args::try_parse_from(argv).unwrap())
    };
    run(Network::SimpleCnn, &["--epochs", "3", "--lr", "0.05", "--out", out.to_str().unwrap()]).unwrap();
    assert!(last_accuracy(&out) > 90.0, "colours are easy: {}%", last_accuracy(&out));
    // 8×8 pictures are too small for simple_cnn's second convolution.
    let e = run(Network::SimpleCnn, &["--epochs", "0", "--resize", "8x8"]).expect_err("too small").to_string();
    assert!(e.contains("layer `conv2`") && e.contains("does not fit"), "{e}");
    let e = run(Network::SimpleCnn, &["--epochs", "0", "--mean", "0.5", "--std", "0.2"])
        .expect_err("one value")
        .to_string();
    assert!(e.contains("one value per channel") && e.contains("3"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn transparency_is_white_paper_and_gray_pictures_give_one_channel() {
    let dir = scratch("alpha");
    for (class, value) in [("dark", 10u8), ("light", 200u8)] {
        for split in ["train", "test"] {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            // Half of each picture transparent: it reads as white.
            let picture = ImageBuffer::from_fn(4, 2, |x, _| Rgba([value, value, value, if x < 2 { 255 } else { 0 }]));
            picture.save(folder.join("a.png")).unwrap();
        }
    }
    let data = load(&dir, Some([4, 8])).unwrap();
    assert_eq!(data.train.shape(), [1, 4, 8], "gray, resized to 4×8");
    let data = load(&dir, None).unwrap();
    assert_eq!(data.train.image(0), [10, 10, 255, 255, 10, 10, 255, 255]);
    // A channel of one value everywhere is centred, not blown up: its deviation is 1.
    let flat = LabelledImages::new([1, 2, 2], vec![1; 8], vec![0, 1]).unwrap();
    assert_eq!(flat.channel_statistics()[0].std, 1.0);
    assert_eq!(flat.channel_statistics()[0].mean, 1.0 / 255.0);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every broken folder is refused naming what is wrong, where, and the fix.
#[test]
fn broken_folders_are_refused_naming_the_file_and_the_fix() {
    let dir = scratch("broken");
    let expect = |what: &str, words: &[&str]| {
        let message = match load(&dir, None) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e.to_string(),
        };
        for w in words {
            assert!(message.contains(w), "{what}: `{message}` lacks `{w}`");
        }
    };
    expect("no train/", &["train", "missing", "DIR/train/<class>"]);
    let picture = ImageBuffer::<Luma<u8>, _>::from_pixel(6, 6, Luma([9]));
    for class in ["a", "b"] {
        for split in ["train", "test"] {
            std::fs::create_dir_all(dir.join(split).join(class)).unwrap();
            picture.save(dir.join(split).join(class).join("1.png")).unwrap();
        }
    }
    load(&dir, None).unwrap();

    std::fs::create_dir_all(dir.join("train/c")).unwrap();
    expect("class in one split", &["test/c", "class `c`", "same classes"]);
    std::fs::create_dir_all(dir.join("test/c")).unwrap();
    expect("empty class", &["train/c", "holds no picture"]);
    std::fs::remove_dir_all(dir.join("train/c")).unwrap();
    std::fs::remove_dir_all(dir.join("test/c")).unwrap();

    ImageBuffer::<Luma<u8>, _>::from_pixel(7, 6, Luma([9])).save(dir.join("train/b/2.png")).unwrap();
    expect("other size", &["train/b/2.png", "7×6", "6×6", "--resize"]);
    assert_eq!(load(&dir, Some([6, 6])).unwrap().train.shape(), [1, 6, 6], "--resize accepts them");

    std::fs::write(dir.join("train/b/2.pgm"), b"P5 0 6 255\n").unwrap();
    expect("no pixel", &["train/b/2.pgm", "holds no pixel"]);
    std::fs::remove_file(dir.join("train/b/2.pgm")).unwrap();
    // A link back up is not followed: no endless walk.
    std::os::unix::fs::symlink("..", dir.join("train/b/up")).unwrap();
    assert_eq!(load(&dir, Some([6, 6])).unwrap().train.len(), 3);
    std::fs::remove_file(dir.join("train/b/up")).unwrap();

    std::fs::write(dir.join("train/b/2.png"), b"not a picture at all").unwrap();
    expect("not a picture", &["train/b/2.png", "not a PNG"]);
    let bytes = std::fs::read(dir.join("train/a/1.png")).unwrap();
    std::fs::write(dir.join("train/b/2.png"), &bytes[..bytes.len() / 2]).unwrap();
    expect("cut short", &["train/b/2.png"]);
    std::fs::remove_file(dir.join("train/b/2.png")).unwrap();

    std::fs::remove_dir_all(dir.join("train/b")).unwrap();
    std::fs::remove_dir_all(dir.join("test/b")).unwrap();
    expect("one class", &["at least two class folders", "only `a`"]);
    std::fs::remove_dir_all(dir.join("test")).unwrap();
    expect("no test/", &["test", "missing"]);
    std::fs::remove_dir_all(&dir).unwrap();
    expect("no folder", &["no such folder"]);
}
