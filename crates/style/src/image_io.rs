//! Images in and out of style transfer: `(1, 3, H, W)` RGB tensors in `[0, 1]`, resizing, and
//! the luminance (YIQ) split used to keep the content's colours (Gatys et al. 2016).

use std::path::Path;

use image::imageops::FilterType;
use tensor::Tensor;

/// Reads an image as `(1, 3, H, W)` in `[0, 1]`, resized so its longest side is `longest`
/// (aspect kept; `None` keeps the size).
///
/// # Errors
/// A missing or unreadable file (named).
pub fn load_image(path: &Path, longest: Option<u32>) -> nn::Result<Tensor> {
    image_tensor(nn::data::load_rgb(path)?, longest)
}

/// [`load_image`] on a decoded image.
///
/// # Errors
/// None in practice (the tensor's shape is the image's).
pub fn image_tensor(img: image::RgbImage, longest: Option<u32>) -> nn::Result<Tensor> {
    let img = match longest {
        Some(l) => {
            let (w, h) = (img.width(), img.height());
            let s = l as f64 / w.max(h) as f64;
            let (nw, nh) = (
                ((w as f64 * s).round() as u32).max(1),
                ((h as f64 * s).round() as u32).max(1),
            );
            image::imageops::resize(&img, nw, nh, FilterType::Triangle)
        }
        None => img,
    };
    Ok(nn::data::rgb_to_tensor(&img, [0.0; 3], [1.0; 3]).unsqueeze(0)?)
}

/// A `(1, 3, H, W)` image clamped to `[0, 1]` as 8-bit RGB.
pub fn to_rgb8(t: &Tensor) -> image::RgbImage {
    let s = t.shape();
    let (h, w) = (s[2], s[3]);
    let v = t.to_vec();
    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let at = |c: usize| {
            (v[c * h * w + y as usize * w + x as usize].clamp(0.0, 1.0) * 255.0).round() as u8
        };
        image::Rgb([at(0), at(1), at(2)])
    })
}

/// Writes a `(1, 3, H, W)` image as PNG (or any format by extension), atomically.
///
/// # Errors
/// I/O errors naming the file.
pub fn save_image(t: &Tensor, path: &Path) -> nn::Result<()> {
    let img = to_rgb8(t);
    let format = image::ImageFormat::from_path(path).unwrap_or(image::ImageFormat::Png);
    let mut bytes = std::io::Cursor::new(vec![]);
    img.write_to(&mut bytes, format)
        .map_err(|e| nn::Error::corrupt(path, format!("cannot encode: {e}")))?;
    nn::checkpoint::write_atomic(path, bytes.get_ref())
}

/// Resizes a `(1, 3, H, W)` image (bilinear, values not clamped).
pub fn resize(t: &Tensor, h: usize, w: usize) -> Tensor {
    let s = t.shape();
    let (sh, sw) = (s[2], s[3]);
    let v = t.to_vec();
    let mut out = vec![0.0f32; 3 * h * w];
    // Half-pixel centres, edge clamped.
    let map = |o: usize, n: usize, m: usize| -> (usize, usize, f32) {
        let x = ((o as f32 + 0.5) * n as f32 / m as f32 - 0.5).clamp(0.0, (n - 1) as f32);
        let i = x.floor() as usize;
        (i, (i + 1).min(n - 1), x - i as f32)
    };
    for y in 0..h {
        let (y0, y1, fy) = map(y, sh, h);
        for x in 0..w {
            let (x0, x1, fx) = map(x, sw, w);
            for c in 0..3 {
                let p = |yy: usize, xx: usize| v[c * sh * sw + yy * sw + xx];
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bot = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                out[c * h * w + y * w + x] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    Tensor::from_vec(out, &[1, 3, h, w]).expect("3 h w values")
}

const RGB_TO_YIQ: [[f32; 3]; 3] = [
    [0.299, 0.587, 0.114],
    [0.595_716, -0.274_453, -0.321_263],
    [0.211_456, -0.522_591, 0.311_135],
];
const YIQ_TO_RGB: [[f32; 3]; 3] = [
    [1.0, 0.956_3, 0.621_0],
    [1.0, -0.272_1, -0.647_4],
    [1.0, -1.106_9, 1.703_2],
];

fn mix(t: &Tensor, m: &[[f32; 3]; 3]) -> Tensor {
    let s = t.shape().to_vec();
    let n = s[2] * s[3];
    let v = t.to_vec();
    let mut out = vec![0.0f32; 3 * n];
    for i in 0..n {
        for (r, row) in m.iter().enumerate() {
            out[r * n + i] = row[0] * v[i] + row[1] * v[n + i] + row[2] * v[2 * n + i];
        }
    }
    Tensor::from_vec(out, &s).expect("same shape")
}

/// RGB -> YIQ (channel 0 is the luminance).
pub fn rgb_to_yiq(t: &Tensor) -> Tensor {
    mix(t, &RGB_TO_YIQ)
}

/// YIQ -> RGB.
pub fn yiq_to_rgb(t: &Tensor) -> Tensor {
    mix(t, &YIQ_TO_RGB)
}

/// The luminance of an RGB image as a grey RGB image (Y in all three channels), its mean and
/// standard deviation matched to `reference`'s luminance when given (so a style's brightness
/// does not leak into the content).
pub fn luminance_image(t: &Tensor, reference: Option<&Tensor>) -> Tensor {
    let y = |x: &Tensor| -> Vec<f32> {
        let n = x.shape()[2] * x.shape()[3];
        rgb_to_yiq(x).to_vec()[..n].to_vec()
    };
    let mut lum = y(t);
    if let Some(r) = reference {
        let stats = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            let s = (v.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / v.len() as f32).sqrt();
            (m, s.max(1e-6))
        };
        let (m0, s0) = stats(&lum);
        let (m1, s1) = stats(&y(r));
        lum.iter_mut().for_each(|v| *v = (*v - m0) / s0 * s1 + m1);
    }
    let mut out = lum.clone();
    out.extend_from_slice(&lum);
    out.extend_from_slice(&lum);
    let s = t.shape();
    Tensor::from_vec(out, &[1, 3, s[2], s[3]]).expect("3 planes")
}

/// Puts the luminance of `stylised` (channel 0 of a grey RGB image's YIQ, i.e. its mean over
/// channels) under the colours (I, Q) of `content`.
pub fn keep_colours(stylised: &Tensor, content: &Tensor) -> Tensor {
    let s = content.shape().to_vec();
    let n = s[2] * s[3];
    let y = rgb_to_yiq(stylised).to_vec();
    let mut c = rgb_to_yiq(content).to_vec();
    c[..n].copy_from_slice(&y[..n]);
    yiq_to_rgb(&Tensor::from_vec(c, &s).expect("same shape"))
}
