//! Reading people's pictures under size limits: any PNG, JPEG, BMP or PGM/PPM, whatever its
//! extension says, refused with a reason a person can act on when it is not one, is damaged, is
//! cut short, or is larger than the limits.

use image::{DynamicImage, ImageError, ImageReader, RgbaImage};
use std::path::Path;

/// The largest picture decoded, per side; the decoder's allocations are capped too.
pub const MAX_SIDE: u32 = 8192;
const MAX_DECODE_BYTES: u64 = 160 << 20;

/// A reader of the picture at `path`, its format guessed from its first bytes, under the limits.
fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, String> {
    let unreadable = |e: std::io::Error| format!("cannot read it ({e})");
    let mut reader = ImageReader::open(path).map_err(unreadable)?.with_guessed_format().map_err(unreadable)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    Ok(reader)
}

fn reason(e: ImageError) -> String {
    match e {
        ImageError::Limits(_) => format!(
            "the picture is larger than {MAX_SIDE}×{MAX_SIDE} pixels or needs more than {} MB to decode",
            MAX_DECODE_BYTES >> 20
        ),
        ImageError::IoError(e) => format!("not a complete picture: the file is empty or cut short ({e})"),
        e => format!("not a PNG, JPEG, BMP or PGM/PPM picture, or a damaged one ({e})"),
    }
}

/// Refuses a picture with no pixel (some formats' headers allow a side of 0).
fn not_empty((w, h): (u32, u32)) -> Result<(u32, u32), String> {
    match w == 0 || h == 0 {
        true => Err(format!("the picture is {w}×{h} pixels: it holds no pixel")),
        false => Ok((w, h)),
    }
}

/// The picture at `path`, decoded.
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let picture = reader(path)?.decode().map_err(reason)?;
    not_empty((picture.width(), picture.height()))?;
    Ok(picture)
}

/// The picture's (width, height), from its header alone.
pub fn dimensions(path: &Path) -> Result<(u32, u32), String> {
    not_empty(reader(path)?.into_dimensions().map_err(reason)?)
}

/// Composites a picture over white paper: transparent pixels count as white.
pub fn on_white(mut rgba: RgbaImage) -> RgbaImage {
    for p in rgba.pixels_mut() {
        let alpha = u32::from(p[3]);
        for c in 0..3 {
            p[c] = ((u32::from(p[c]) * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        }
        p[3] = 255;
    }
    rgba
}

/// Writes the red, green and blue planes of `rgba` into `slot` (CHW, three planes of its
/// pixels); returns whether the picture is gray (red, green and blue equal everywhere).
pub fn write_planes(rgba: &RgbaImage, slot: &mut [u8]) -> bool {
    let plane = slot.len() / 3;
    let mut gray = true;
    for (i, p) in rgba.pixels().enumerate() {
        (slot[i], slot[plane + i], slot[2 * plane + i]) = (p[0], p[1], p[2]);
        gray &= p[0] == p[1] && p[1] == p[2];
    }
    gray
}
