//! Images in and out of tensors: decoding with the `image` crate (any format it reads, PGM
//! included), resizing, and the ImageNet normalisation.

use std::path::Path;

use image::imageops::FilterType;
use tensor::Tensor;

use crate::{Error, Result};

/// ImageNet channel means (RGB), as torchvision uses them.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The largest image [`read_image`] decodes by default: 100 million pixels (a 12,000 x 8,000
/// panorama; a phone photo is 12-50 million). Checked from the header, before decoding.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Decodes an image file in any format the `image` crate reads here (JPEG, PNG, GIF, BMP,
/// TIFF, WebP, PNM), with its EXIF orientation applied (a phone picture stored sideways comes
/// out upright). Grey, 16-bit and alpha images keep their pixel type; convert with
/// `to_rgb8()` and the like.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Corrupt`] naming the file when it
/// does not decode or declares more than `max_pixels` pixels (with both counts).
pub fn read_image(path: &Path, max_pixels: u64) -> Result<image::DynamicImage> {
    let bytes = crate::checkpoint::read_bounded(path)?;
    decode_image(&bytes, max_pixels).map_err(|reason| Error::corrupt(path, reason))
}

/// [`read_image`] on bytes in memory; the error is the reason alone.
///
/// # Errors
/// Undecodable bytes, or more than `max_pixels` pixels.
pub fn decode_image(
    bytes: &[u8],
    max_pixels: u64,
) -> std::result::Result<image::DynamicImage, String> {
    use image::ImageDecoder;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("not a readable image: {e}"))?;
    let reader_format = reader.format();
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("not a readable image: {e}"))?;
    if reader_format == Some(image::ImageFormat::Jpeg) && !jpeg_has_end(bytes) {
        // The JPEG decoder fills a cut-off scan with grey and reports success: a half-copied
        // photo would be encoded as a face with a grey chin.
        return Err("truncated JPEG: no end-of-image marker after the last scan".into());
    }
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(format!(
            "image of {w} x {h} = {pixels} pixels is larger than the limit of {max_pixels} pixels"
        ));
    }
    if pixels == 0 {
        return Err(format!("image of {w} x {h} pixels is empty"));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("not a readable image: {e}"))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// True when a JPEG stream has an end-of-image marker (`FF D9`) after its last start-of-scan
/// (`FF DA`). In entropy-coded data `FF` is always followed by `00` or a restart marker, so the
/// pair cannot occur there by chance; an EXIF thumbnail's own markers come before the main
/// image's scans.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(at) => bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// `"HxW"` (e.g. `"112x92"`) -> `(height, width)`, each side `1..=max_side` pixels.
///
/// # Errors
/// The reason, for the caller to prefix with the option's name.
pub fn parse_hw(text: &str, max_side: u32) -> std::result::Result<(u32, u32), String> {
    let (h, w) = text
        .split_once('x')
        .ok_or_else(|| format!("wants HxW such as 112x92, got {text:?}"))?;
    let side = |v: &str, what: &str| -> std::result::Result<u32, String> {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max_side).contains(n))
            .ok_or_else(|| format!("{text:?}: the {what} must be 1..={max_side} pixels"))
    };
    Ok((side(h, "height")?, side(w, "width")?))
}

/// Decodes an image file to 8-bit RGB ([`read_image`] with the default limit).
///
/// # Errors
/// As [`read_image`].
pub fn load_rgb(path: &Path) -> Result<image::RgbImage> {
    Ok(read_image(path, DEFAULT_MAX_PIXELS)?.to_rgb8())
}

/// Decodes an image file to 8-bit grey ([`read_image`] with the default limit).
///
/// # Errors
/// As [`read_image`].
pub fn load_gray(path: &Path) -> Result<image::GrayImage> {
    Ok(read_image(path, DEFAULT_MAX_PIXELS)?.to_luma8())
}

/// `plane` (`h x w`) at the real point `(y, x)`, coordinates clamped to the image
/// (the edge replicated); pixel `i` is centred at `i`.
pub fn bilinear_clamped(plane: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    let y = y.clamp(0.0, (h - 1) as f32);
    let x = x.clamp(0.0, (w - 1) as f32);
    let (y0, x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
    let (fy, fx) = (y - y0 as f32, x - x0 as f32);
    let top = plane[y0 * w + x0] * (1.0 - fx) + plane[y0 * w + x1] * fx;
    let bottom = plane[y1 * w + x0] * (1.0 - fx) + plane[y1 * w + x1] * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Resizes with a triangle (bilinear) filter.
pub fn resize_rgb(img: &image::RgbImage, width: u32, height: u32) -> image::RgbImage {
    image::imageops::resize(img, width, height, FilterType::Triangle)
}

/// `(3, H, W)` floats in `[0, 1]`, then `(x - mean) / std` per channel.
pub fn rgb_to_tensor(img: &image::RgbImage, mean: [f32; 3], std: [f32; 3]) -> Tensor {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0.0f32; 3 * h * w];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            data[c * h * w + y as usize * w + x as usize] =
                (p[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    Tensor::from_vec(data, &[3, h, w]).expect("3 * h * w values")
}

/// `(1, H, W)` floats in `[0, 1]`.
pub fn gray_to_tensor(img: &image::GrayImage) -> Tensor {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = img.as_raw().iter().map(|&v| v as f32 / 255.0).collect();
    Tensor::from_vec(data, &[1, h, w]).expect("h * w values")
}

/// ImageNet's per-channel normalisation `(p - mean) / std` as graph ops, for inputs whose
/// pixels are `p = scale * x + offset` in `[0, 1]` (style transfer: `scale 1, offset 0`; the
/// face pipeline's `4 (p - 0.5)`: `scale 0.25, offset 0.5`). A grey input `(N, 1, H, W)` is
/// repeated into the three channels; the result is `(N, 3, H, W)`.
///
/// # Errors
/// An input with other than 1 or 3 channels.
pub fn imagenet_normalize<'g>(
    x: &autograd::Var<'g>,
    scale: f32,
    offset: f32,
) -> Result<autograd::Var<'g>> {
    let c = x.shape().get(1).copied().unwrap_or(0);
    if c != 1 && c != 3 {
        return Err(Error::arg(
            "imagenet_normalize",
            format!("expects 1 or 3 channels, got shape {:?}", x.shape()),
        ));
    }
    let channels: Vec<autograd::Var<'g>> = (0..3)
        .map(|ch| {
            let src = if c == 1 {
                x.clone()
            } else {
                x.narrow(1, ch, 1)?
            };
            let s = IMAGENET_STD[ch];
            Ok(src
                .scale(scale / s)
                .add_scalar((offset - IMAGENET_MEAN[ch]) / s))
        })
        .collect::<Result<_>>()?;
    Ok(autograd::Var::cat(&channels.iter().collect::<Vec<_>>(), 1)?)
}
/// True for a file or folder name that starts with a dot (`.git`, `.DS_Store`): never data.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The files under `path` (itself when it is a file), recursively, in natural order (`s2`
/// before `s10`); hidden files and folders skipped. The one listing rule of every command
/// that reads images: a file here that does not decode is reported as skipped, not ignored.
///
/// # Errors
/// [`Error::Io`] naming a path that cannot be read or listed.
pub fn image_files(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = vec![];
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let p = entry.map_err(|e| Error::io(&dir, e))?.path();
            if is_hidden(&p) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort_by_key(|p| crate::train::natural_key(&p.to_string_lossy()));
    Ok(out)
}

/// The subfolders of `dir` as (name, folder), in natural order; hidden folders skipped. A
/// folder per class (or per person: `what` names them in the error) is read this way
/// everywhere.
///
/// # Errors
/// [`Error::Io`] for an unreadable folder; [`Error::InvalidArgument`] when it has no
/// subfolder.
pub fn class_folders(dir: &Path, what: &str) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut classes: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !is_hidden(p))
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, p)
        })
        .collect();
    classes.sort_by_key(|c| crate::train::natural_key(&c.0));
    if classes.is_empty() {
        return Err(Error::arg(
            "folder",
            format!(
                "{} has no {what} folders (expected one subfolder of images per {what})",
                dir.display()
            ),
        ));
    }
    Ok(classes)
}
