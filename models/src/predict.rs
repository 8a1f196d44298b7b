//! Running a trained network on people's own pictures: any PNG, JPEG, BMP or PGM/PPM, of any size
//! and colour type. For an MNIST network the picture is turned into an MNIST-like digit (gray,
//! light ink on dark, the digit scaled into a 20×20 box and centred by its mass in 28×28, as
//! MNIST's digits were made); for a network trained on an image folder it is resized to the
//! network's input, as the folder's pictures were. Either is classified on the GPU, or with the
//! CPU executor where there is none.

use crate::state_dict::TensorFile;
use crate::train::MNIST_NORMALIZATION;
use crate::Network;
use engine::data::Normalization;
use engine::graph::plan::{Parameters, Plan};
use engine::graph::program::{Pass, Program};
use engine::graph::Shape;
use engine::graph::{cpu, Graph};
use engine::GpuContext;
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, Luma, RgbaImage};
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::picture::MAX_SIDE;
/// MNIST's geometry: the digit fits a 20×20 box inside a 28×28 image.
const SIDE: usize = 28;
const BOX: f32 = 20.0;

/// What a weights file says of the images its network takes: their shape, each channel's
/// normalization and the class names, from its metadata; MNIST's where it says nothing (as
/// PyTorch's `save_file` writes only `{"format": "pt"}`).
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    /// Each image's shape [channels, height, width].
    pub shape: Shape,
    /// Each channel's mean and standard deviation.
    pub norm: Vec<Normalization>,
    /// The class names of an image folder's network; None for MNIST's digits.
    pub classes: Option<Vec<String>>,
}

impl InputSpec {
    /// Reads the spec from `metadata` (`input_shape`, `mean`, `std`, `classes`), refusing values
    /// that do not parse or do not agree.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<InputSpec, String> {
        let numbers = |key: &str| -> Result<Option<Vec<f32>>, String> {
            let parse = |v: &str| v.trim().parse::<f32>().ok().filter(|x| x.is_finite());
            metadata
                .get(key)
                .map(|text| text.split(',').map(parse).collect::<Option<Vec<f32>>>())
                .map(|list| list.ok_or_else(|| format!("its metadata's `{key}` is not a list of numbers")))
                .transpose()
        };
        let side = |d: f32| (1.0..=MAX_SIDE as f32).contains(&d) && d.fract() == 0.0;
        let shape = match numbers("input_shape")? {
            None => [1, SIDE, SIDE],
            Some(dims) => match dims[..] {
                [c, h, w] if (c == 1.0 || c == 3.0) && side(h) && side(w) => [c as usize, h as usize, w as usize],
                _ => {
                    return Err(format!(
                        "its metadata's `input_shape` is not 1 or 3 channels and two sides from 1 to {MAX_SIDE}"
                    ))
                }
            },
        };
        let norm = match (numbers("mean")?, numbers("std")?) {
            (Some(mean), Some(std))
                if mean.len() == shape[0] && std.len() == shape[0] && std.iter().all(|&s| s > 0.0) =>
            {
                mean.into_iter().zip(std).map(|(mean, std)| Normalization { mean, std }).collect()
            }
            (None, None) if shape[0] == 1 => vec![MNIST_NORMALIZATION],
            _ => return Err("its metadata's `mean` and `std` do not give one normalization per channel".into()),
        };
        let classes = match metadata.get("classes") {
            None => None,
            Some(text) => Some(
                serde_json::from_str::<Vec<String>>(text)
                    .map_err(|e| format!("its metadata's `classes` is not a JSON list of names ({e})"))?,
            ),
        };
        Ok(InputSpec { shape, norm, classes })
    }

    /// The number of classes the network scores: the names' count, else MNIST's ten digits.
    pub fn class_count(&self) -> usize {
        self.classes.as_ref().map_or(10, Vec::len)
    }

    /// Whether the network takes MNIST's digits (pictures are made MNIST-like for it).
    pub fn is_mnist(&self) -> bool {
        self.shape == [1, SIDE, SIDE] && self.classes.is_none()
    }
}

/// The network a weights file holds, for images as `spec` says: the one its metadata names,
/// else the one whose names and shapes its tensors have.
pub fn network_of(file: &TensorFile, spec: &InputSpec) -> Option<(Network, Graph)> {
    let named = file.metadata().get("network").cloned();
    Network::ALL.into_iter().filter(|n| named.as_deref().is_none_or(|name| name == n.name())).find_map(|n| {
        let graph = n.build(spec.shape, spec.class_count()).ok()?;
        file.params(&graph, "").is_ok().then_some((n, graph))
    })
}

/// The picture at `path` as a network of input `shape` takes it (u8, CHW): composited over
/// white, resized to the input's size, gray (luma) for one channel, else RGB, as an image
/// folder's pictures are read for training.
pub fn picture_input(path: &Path, shape: Shape) -> Result<Vec<u8>, String> {
    let [channels, h, w] = shape;
    if channels != 1 && channels != 3 {
        return Err(format!("the network takes {channels} channels; pictures have 1 (gray) or 3 (RGB)"));
    }
    let rgba = crate::picture::on_white(crate::picture::decode(path)?.to_rgba8());
    let rgba = imageops::resize(&rgba, w as u32, h as u32, FilterType::Triangle);
    if channels == 1 {
        return Ok(DynamicImage::ImageRgba8(rgba).to_luma8().into_raw());
    }
    let mut out = vec![0; 3 * h * w];
    crate::picture::write_planes(&rgba, &mut out);
    Ok(out)
}

/// Decodes the picture at `path` into ink in 0..1 (light ink on a dark background), width,
/// height. Transparent pixels count as white paper.
fn ink(path: &Path) -> Result<(Vec<f32>, usize, usize), String> {
    Ok(ink_of(&crate::picture::decode(path)?))
}

/// A picture's ink in 0..1 (light ink on a dark background), width, height.
fn ink_of(picture: &DynamicImage) -> (Vec<f32>, usize, usize) {
    let picture = picture.to_luma_alpha32f();
    let (w, h) = (picture.width() as usize, picture.height() as usize);
    let gray: Vec<f32> = picture.pixels().map(|p| p[0] * p[1] + (1.0 - p[1])).collect();
    // Dark ink on light paper (the border is light) is inverted to MNIST's light on dark.
    let border: Vec<f32> = (0..w)
        .flat_map(|x| [gray[x], gray[(h - 1) * w + x]])
        .chain((0..h).flat_map(|y| [gray[y * w], gray[y * w + w - 1]]))
        .collect();
    let light_paper = border.iter().sum::<f32>() / border.len() as f32 > 0.5;
    (gray.into_iter().map(|v| if light_paper { 1.0 - v } else { v }).collect(), w, h)
}

/// The 28×28 MNIST-like image (u8, 255 = ink) of the digit in the picture at `path`.
pub fn mnist_digit(path: &Path) -> Result<Vec<u8>, String> {
    let (ink, w, h) = ink(path)?;
    digit_of_ink(&ink, w, h)
}

/// [`mnist_digit`] of an RGBA picture in memory (a canvas's pixels, say).
pub fn mnist_digit_rgba(rgba: Vec<u8>, width: u32, height: u32) -> Result<Vec<u8>, String> {
    let picture = RgbaImage::from_raw(width, height, rgba)
        .ok_or_else(|| format!("{width}×{height} RGBA pixels need {} bytes", width as u64 * height as u64 * 4))?;
    let (ink, w, h) = ink_of(&DynamicImage::ImageRgba8(picture));
    digit_of_ink(&ink, w, h)
}

/// Crops the digit, scales it into a 20×20 box and centres it by mass in 28×28.
fn digit_of_ink(ink: &[f32], w: usize, h: usize) -> Result<Vec<u8>, String> {
    if w == 0 || h == 0 {
        return Err("no digit found: the picture is empty".into());
    }
    let strongest = ink.iter().fold(0f32, |m, &v| m.max(v));
    if strongest < 0.2 {
        return Err("no digit found: the picture is blank".into());
    }
    // The digit's bounding box: the pixels with at least a third of the strongest ink.
    let inked = |i: usize| ink[i] >= strongest / 3.0;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for i in (0..w * h).filter(|&i| inked(i)) {
        let (x, y) = (i % w, i / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = ImageBuffer::<Luma<f32>, Vec<f32>>::from_fn(bw as u32, bh as u32, |x, y| {
        Luma([ink[(y0 + y as usize) * w + x0 + x as usize]])
    });
    let scale = BOX / bw.max(bh) as f32;
    let (tw, th) = (((bw as f32 * scale).round() as u32).max(1), ((bh as f32 * scale).round() as u32).max(1));
    let digit = imageops::resize(&crop, tw, th, FilterType::Triangle);
    Ok(centre_by_mass(&digit))
}

/// Places `digit` in a 28×28 image so that its centre of mass falls on the centre.
fn centre_by_mass(digit: &ImageBuffer<Luma<f32>, Vec<f32>>) -> Vec<u8> {
    let (mut mass, mut my, mut mx) = (0f32, 0f32, 0f32);
    for (x, y, p) in digit.enumerate_pixels() {
        mass += p[0];
        (mx, my) = (mx + x as f32 * p[0], my + y as f32 * p[0]);
    }
    let (tw, th) = (digit.width() as i64, digit.height() as i64);
    let centre = (SIDE as f32 - 1.0) / 2.0;
    let place = |c: f32, size: i64| ((centre - c / mass.max(1e-6)).round() as i64).clamp(0, SIDE as i64 - size);
    let (ox, oy) = (place(mx, tw), place(my, th));
    let mut out = vec![0u8; SIDE * SIDE];
    for (x, y, p) in digit.enumerate_pixels() {
        let at = (oy + y as i64) as usize * SIDE + (ox + x as i64) as usize;
        out[at] = (p[0].clamp(0.0, 1.0) * 255.0).round() as u8;
    }
    out
}

/// Class probabilities of each image of `images` (u8, CHW, back to back, of the graph's input
/// shape), normalized with `norm` (one entry a channel): on the GPU when `ctx` is given, else
/// with the CPU executor.
#[cfg(not(target_arch = "wasm32"))]
pub fn classify(
    ctx: Option<&GpuContext>,
    graph: &Graph,
    params: &[f32],
    images: &[u8],
    norm: &[Normalization],
) -> engine::Result<Vec<Vec<f32>>> {
    engine::block_on(classify_async(ctx, graph, params, images, norm))
}

/// [`classify`] for callers that must not block (a web page). The images run through a
/// forward-only inference plan: no labels, no loss.
pub async fn classify_async(
    ctx: Option<&GpuContext>,
    graph: &Graph,
    params: &[f32],
    images: &[u8],
    norm: &[Normalization],
) -> engine::Result<Vec<Vec<f32>>> {
    let shape = graph.input_shape()?;
    let (image_len, plane) = (shape.iter().product::<usize>(), shape[1] * shape[2]);
    if norm.len() != shape[0] || images.len() % image_len != 0 {
        return Err(engine::Error::Shape(format!(
            "{} pixels and {} normalizations for images of shape {shape:?}",
            images.len(),
            norm.len()
        )));
    }
    let n = images.len() / image_len;
    let x: Vec<f32> = images.iter().enumerate().map(|(i, &p)| norm[i % image_len / plane].apply(p)).collect();
    let logits = match ctx {
        Some(ctx) => {
            let plan = Plan::inference(ctx, graph, n, &Parameters::upload(ctx, graph, params)?)?;
            ctx.write(&plan.input(), &x);
            plan.submit(ctx, None)?;
            ctx.read_async(&plan.logits()).await?
        }
        None => cpu::run(graph, &Program::build(graph, n, Pass::Inference)?, params, &x, &[]).logits,
    };
    Ok(logits.chunks(logits.len() / n.max(1)).map(softmax).collect())
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The `top` most probable classes, most probable first, as `cat (p=0.910)` where the classes
/// have `names`, else by index (MNIST's digit) as `7 (p=0.973)`.
pub fn describe(probabilities: &[f32], top: usize, names: Option<&[String]>) -> String {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let name = |d: usize| names.and_then(|n| n.get(d)).cloned().unwrap_or_else(|| d.to_string());
    let parts: Vec<String> = ranked.iter().take(top).map(|&(d, p)| format!("{} (p={p:.3})", name(d))).collect();
    parts.join(", ")
}
