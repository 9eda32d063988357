//! Face (and character) data as identities with images: a folder per identity (ORL's
//! `s1/1.pgm` layout, or any class-folder tree the `image` crate can read), LFW with its
//! official protocol files, Omniglot's `.npz` release and its 20 official one-shot runs.
//!
//! Every image goes through one [`Preprocess`]: optional crop box, resize, grey or RGB, and the
//! normalisation `4 * (v - 0.5)` of values `v` in `[0, 1]` (zero mean, unit-ish scale for the
//! usual face histogram). Models store their `Preprocess`, so evaluation matches training.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use nn::train::ImageFolder;
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tensor::Tensor;

/// A crop box in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CropBox {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl CropBox {
    /// `"X,Y,W,H"` (whole pixels, positive width and height), as the command line writes it.
    ///
    /// # Errors
    /// The reason, for the caller to prefix with the option's name.
    pub fn parse(text: &str) -> Result<CropBox, String> {
        let v: Vec<u32> = text
            .split(',')
            .map(|w| w.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("takes X,Y,W,H in whole pixels, not {text:?}"))?;
        match v[..] {
            [x, y, w, h] if w > 0 && h > 0 => Ok(CropBox { x, y, w, h }),
            _ => Err(format!(
                "takes X,Y,W,H (positive width and height), not {text:?}"
            )),
        }
    }
}

/// Parses a labelled pairs CSV (`image_a,image_b,same`, same = `1`/`true` or `0`/`false`; an
/// optional header line naming `same`; blank lines skipped): `(a, b, same)` as written.
///
/// # Errors
/// [`nn::Error::Corrupt`] naming the line; a file with no pairs.
pub fn parse_pairs_csv(text: &str, path: &Path) -> nn::Result<Vec<(String, String, bool)>> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.to_lowercase().contains("same")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let same = match f[..] {
            [_, _, "1" | "true"] => true,
            [_, _, "0" | "false"] => false,
            _ => {
                return Err(protocol_error(
                    path,
                    n + 1,
                    format!("expected `image_a,image_b,same` with same 1 or 0, got {line:?}"),
                ));
            }
        };
        out.push((f[0].to_string(), f[1].to_string(), same));
    }
    if out.is_empty() {
        return Err(nn::Error::corrupt(path, "no pairs"));
    }
    Ok(out)
}

/// How an image file becomes a `(C, H, W)` tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Output height and width.
    pub size: (u32, u32),
    /// Cropped before resizing, when given.
    pub crop: Option<CropBox>,
    /// How the (cropped) image is resized.
    #[serde(default)]
    pub resample: Resample,
    /// How pixel values become network inputs.
    #[serde(default)]
    pub normalise: Normalise,
}

/// Resizing rule of a [`Preprocess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Resample {
    /// The `image` crate's triangle filter on 8-bit pixels (antialiased when shrinking).
    #[default]
    Triangle,
    /// Bilinear with half-pixel centres, no antialiasing, float result (PyTorch's
    /// `interpolate(mode="bilinear", align_corners=False)`): source coordinate
    /// `(dst + 0.5) * in / out - 0.5`, clamped to the image.
    BilinearHalfPixel,
}

/// Pixel normalisation of a [`Preprocess`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum Normalise {
    /// `4 * (v - 0.5)` of values `v` in `[0, 1]` (models trained here).
    #[default]
    Centred,
    /// `(pixel - mean[c]) / 255` of pixels in `[0, 255]` (dlib's face ResNet).
    MeanOver255 {
        /// Per-channel mean on the 0-255 scale.
        mean: [f32; 3],
    },
}

impl Preprocess {
    /// Grey, resized to `h x w`, no crop (ORL).
    pub fn grey(h: u32, w: u32) -> Preprocess {
        Preprocess {
            channels: 1,
            size: (h, w),
            crop: None,
            resample: Resample::Triangle,
            normalise: Normalise::Centred,
        }
    }

    /// LFW deep-funneled (250 x 250, the face centred): the central `side x side` square.
    pub fn lfw(channels: usize, size: u32, side: u32) -> Preprocess {
        let off = (250 - side.min(250)) / 2;
        Preprocess {
            channels,
            size: (size, size),
            crop: Some(CropBox {
                x: off,
                y: off,
                w: side,
                h: side,
            }),
            resample: Resample::Triangle,
            normalise: Normalise::Centred,
        }
    }

    /// The most pixels of a network input (4096 x 4096): a model's preprocessing is read from
    /// its file, and a size there must not make every image allocate gigabytes.
    pub const MAX_INPUT_PIXELS: u64 = 1 << 24;

    /// Refuses a channel count other than 1 or 3, an empty output size, or one above
    /// [`Preprocess::MAX_INPUT_PIXELS`].
    ///
    /// # Errors
    /// [`nn::Error::InvalidArgument`] naming the field and the valid range.
    pub fn check(&self) -> nn::Result<()> {
        if self.channels != 1 && self.channels != 3 {
            return Err(nn::Error::arg(
                "Preprocess",
                format!("channels must be 1 or 3, not {}", self.channels),
            ));
        }
        let (h, w) = self.size;
        if h == 0 || w == 0 || u64::from(h) * u64::from(w) > Self::MAX_INPUT_PIXELS {
            return Err(nn::Error::arg(
                "Preprocess",
                format!(
                    "input size {h} x {w}: each side must be >= 1 and the two at most {} pixels",
                    Self::MAX_INPUT_PIXELS
                ),
            ));
        }
        Ok(())
    }

    /// Refuses to decode `images` images when, preprocessed, they would take more than one
    /// input's worth of memory (`nn::limits::max_input_bytes`): the whole set is held at once.
    ///
    /// # Errors
    /// [`nn::Error::InvalidArgument`] with the size and the way out (a smaller input size).
    pub fn check_dataset(&self, images: usize) -> nn::Result<()> {
        self.check()?;
        let (h, w) = self.size;
        let per = 4 * self.channels as u64 * u64::from(h) * u64::from(w);
        if nn::limits::checked_bytes(images as u64, per).is_none() {
            return Err(nn::Error::arg(
                "Preprocess",
                format!(
                    "{images} images of {} x {h} x {w}: {}; use a smaller --size",
                    self.channels,
                    nn::limits::too_large("the decoded set", (images as u64).checked_mul(per))
                ),
            ));
        }
        Ok(())
    }

    /// Reads and preprocesses one image file.
    ///
    /// # Errors
    /// An unreadable or undecodable file, a crop box outside the image, a channel count other
    /// than 1 or 3 (each naming the file).
    pub fn load(&self, path: &Path) -> nn::Result<Tensor> {
        self.apply(
            nn::data::read_image(path, nn::data::DEFAULT_MAX_PIXELS)?,
            path,
        )
    }

    /// The pixels (0-255 scale) of an image this preprocessing produced: the normalisation
    /// undone.
    pub fn to_pixels(&self, input: &Tensor) -> Tensor {
        match self.normalise {
            Normalise::Centred => input.affine(255.0 / 4.0, 127.5),
            Normalise::MeanOver255 { mean } => {
                let mut v = input.to_vec();
                let plane = v.len() / self.channels.max(1);
                for (c, chunk) in v.chunks_mut(plane.max(1)).enumerate() {
                    chunk
                        .iter_mut()
                        .for_each(|p| *p = *p * 255.0 + mean[c.min(2)]);
                }
                Tensor::from_vec(v, input.shape()).expect("same shape")
            }
        }
    }

    /// An 8-bit RGB picture of an image this preprocessing produced (grey repeated in the
    /// three channels): [`Preprocess::to_pixels`], rounded and clamped.
    pub fn to_image(&self, input: &Tensor) -> image::RgbImage {
        let p = self.to_pixels(input);
        let s = p.shape().to_vec();
        let (c, h, w) = (s[0], s[1], s[2]);
        let v = p.contiguous_data();
        image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let at = |ch: usize| {
                v[(ch.min(c - 1) * h + y as usize) * w + x as usize]
                    .round()
                    .clamp(0.0, 255.0) as u8
            };
            image::Rgb([at(0), at(1), at(2)])
        })
    }

    /// Preprocesses a decoded image (`path` is used in errors).
    ///
    /// # Errors
    /// As [`Preprocess::load`].
    pub fn apply(&self, img: image::DynamicImage, path: &Path) -> nn::Result<Tensor> {
        self.check()?;
        let img = match self.crop {
            Some(c) => {
                let fits =
                    |at: u32, len: u32, size: u32| at.checked_add(len).is_some_and(|e| e <= size);
                if !fits(c.x, c.w, img.width())
                    || !fits(c.y, c.h, img.height())
                    || c.w == 0
                    || c.h == 0
                {
                    return Err(nn::Error::arg(
                        "Preprocess",
                        format!(
                            "crop box {}x{}+{}+{} does not fit {} ({}x{})",
                            c.w,
                            c.h,
                            c.x,
                            c.y,
                            path.display(),
                            img.width(),
                            img.height()
                        ),
                    ));
                }
                img.crop_imm(c.x, c.y, c.w, c.h)
            }
            None => img,
        };
        let (h, w) = self.size;
        // (C, H, W) pixels and their full scale (1 or 255): the triangle path keeps the
        // [0, 1] values models trained here have always seen, bit for bit.
        let (pixels, full) = match (self.resample, self.channels) {
            (Resample::Triangle, 1) => {
                let g = image::imageops::resize(&img.to_luma8(), w, h, FilterType::Triangle);
                (nn::data::gray_to_tensor(&g), 1.0)
            }
            (Resample::Triangle, _) => {
                let rgb = image::imageops::resize(&img.to_rgb8(), w, h, FilterType::Triangle);
                (nn::data::rgb_to_tensor(&rgb, [0.0; 3], [1.0; 3]), 1.0)
            }
            (Resample::BilinearHalfPixel, 1) => {
                let g = img.to_luma8();
                let t = bilinear_half_pixel(g.as_raw(), g.width(), g.height(), 1, w, h);
                (t, 255.0)
            }
            (Resample::BilinearHalfPixel, _) => {
                let rgb = img.to_rgb8();
                let t = bilinear_half_pixel(rgb.as_raw(), rgb.width(), rgb.height(), 3, w, h);
                (t, 255.0)
            }
        };
        Ok(match self.normalise {
            Normalise::Centred => pixels.affine(4.0 / full, -2.0),
            Normalise::MeanOver255 { mean } => {
                let plane = (h * w) as usize;
                let mut v = pixels.into_vec();
                for (c, chunk) in v.chunks_mut(plane).enumerate() {
                    let m = mean[c.min(2)];
                    chunk
                        .iter_mut()
                        .for_each(|p| *p = (*p * (255.0 / full) - m) / 255.0);
                }
                Tensor::from_vec(v, &[self.channels, h as usize, w as usize])?
            }
        })
    }
}

/// Bilinear resize with half-pixel centres of interleaved 8-bit pixels (`channels` per pixel,
/// `in_w x in_h`) to a `(channels, out_h, out_w)` float tensor on the 0-255 scale, unrounded.
pub fn bilinear_half_pixel(
    pixels: &[u8],
    in_w: u32,
    in_h: u32,
    channels: usize,
    out_w: u32,
    out_h: u32,
) -> Tensor {
    // Source index pairs and weights along one axis.
    let taps = |n_in: u32, n_out: u32| -> Vec<(usize, usize, f32)> {
        let scale = f64::from(n_in) / f64::from(n_out);
        (0..n_out)
            .map(|d| {
                let src = ((f64::from(d) + 0.5) * scale - 0.5).max(0.0);
                let lo = (src.floor() as usize).min(n_in as usize - 1);
                let hi = (lo + 1).min(n_in as usize - 1);
                (lo, hi, (src - lo as f64) as f32)
            })
            .collect()
    };
    let (xs, ys) = (taps(in_w, out_w), taps(in_h, out_h));
    let (ow, oh) = (out_w as usize, out_h as usize);
    let at =
        |x: usize, y: usize, c: usize| f32::from(pixels[(y * in_w as usize + x) * channels + c]);
    let mut out = vec![0f32; channels * oh * ow];
    for c in 0..channels {
        for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
                let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
                let bottom = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
                out[(c * oh + oy) * ow + ox] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    Tensor::from_vec(out, &[channels, oh, ow]).expect("sizes agree")
}

/// Images grouped by identity.
#[derive(Debug, Clone)]
pub struct Identities {
    /// Identity names (folder names), in natural order.
    pub names: Vec<String>,
    /// `images[i]` are the images `(C, H, W)` of identity `i`.
    pub images: Vec<Vec<Tensor>>,
}

impl Identities {
    /// Loads a folder-per-identity tree.
    ///
    /// # Errors
    /// An unreadable folder or image (named), a folder without identities or an identity
    /// folder without images.
    pub fn load(dir: &Path, pre: &Preprocess) -> nn::Result<Identities> {
        let folder = ImageFolder::scan(dir)?;
        pre.check_dataset(folder.files.len())?;
        let decoded = nn::train::decode_all(&folder.files, |p| pre.load(p))?;
        let mut images = vec![vec![]; folder.classes.len()];
        for s in decoded {
            images[s.label].push(s.image);
        }
        Ok(Identities {
            names: folder.classes,
            images,
        })
    }

    /// Loads LFW people (`name/name_0001.jpg` ... `name_{count}.jpg`) from `root`.
    ///
    /// # Errors
    /// A missing or unreadable image (named); an empty list.
    pub fn load_lfw(
        root: &Path,
        people: &[(String, usize)],
        pre: &Preprocess,
    ) -> nn::Result<Identities> {
        if people.is_empty() {
            return Err(nn::Error::arg("load_lfw", "the people list is empty"));
        }
        pre.check_dataset(people.iter().fold(0usize, |n, p| n.saturating_add(p.1)))?;
        let files: Vec<(PathBuf, usize)> = people
            .iter()
            .enumerate()
            .flat_map(|(i, (name, count))| {
                (1..=*count).map(move |k| (lfw_image_path(root, name, k), i))
            })
            .collect();
        let decoded = nn::train::decode_all(&files, |p| pre.load(p))?;
        let mut images = vec![vec![]; people.len()];
        for s in decoded {
            images[s.label].push(s.image);
        }
        Ok(Identities {
            names: people.iter().map(|p| p.0.clone()).collect(),
            images,
        })
    }

    /// The identities `range` (e.g. ORL's s1-s30 for training, s31-s40 unseen).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Identities {
        Identities {
            names: self.names[range.clone()].to_vec(),
            images: self.images[range].to_vec(),
        }
    }

    /// Every identity outside `range`, in order.
    pub fn without(&self, range: std::ops::Range<usize>) -> Identities {
        let keep = |i: &usize| !range.contains(i);
        Identities {
            names: (0..self.len())
                .filter(keep)
                .map(|i| self.names[i].clone())
                .collect(),
            images: (0..self.len())
                .filter(keep)
                .map(|i| self.images[i].clone())
                .collect(),
        }
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Number of images.
    pub fn num_images(&self) -> usize {
        self.images.iter().map(Vec::len).sum()
    }

    /// All images with their identity index, in order.
    pub fn flat(&self) -> Vec<(usize, &Tensor)> {
        self.images
            .iter()
            .enumerate()
            .flat_map(|(i, v)| v.iter().map(move |t| (i, t)))
            .collect()
    }
}

/// One identity-balanced batch: `p` identities (with at least 2 images) and `k` images of each
/// (drawn with replacement when an identity has fewer than `k`). Returns (identity, image) index
/// pairs.
pub fn pk_batch(ids: &Identities, p: usize, k: usize, rng: &mut impl Rng) -> Vec<(usize, usize)> {
    let mut eligible: Vec<usize> = (0..ids.len())
        .filter(|&i| ids.images[i].len() >= 2)
        .collect();
    eligible.shuffle(rng);
    let mut out = vec![];
    for &i in eligible.iter().take(p) {
        let n = ids.images[i].len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        for j in 0..k {
            out.push((
                i,
                if j < n {
                    order[j]
                } else {
                    rng.random_range(0..n)
                },
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// LFW protocol files

/// `root/name/name_%04d.jpg`, LFW's layout.
pub fn lfw_image_path(root: &Path, name: &str, index: usize) -> PathBuf {
    root.join(name).join(format!("{name}_{index:04}.jpg"))
}

/// One image of a pairs file: a person and a 1-based image number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Person (folder) name.
    pub name: String,
    /// 1-based image number.
    pub index: usize,
}

/// One labelled pair, with its line in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledPair {
    /// First image.
    pub a: ImageRef,
    /// Second image.
    pub b: ImageRef,
    /// Same person.
    pub same: bool,
    /// 1-based line number.
    pub line: usize,
    /// 0-based fold.
    pub fold: usize,
}

fn protocol_error(path: &Path, line: usize, why: impl std::fmt::Display) -> nn::Error {
    nn::Error::corrupt(path, format!("line {line}: {why}"))
}

/// Parses an LFW pairs file (`pairs.txt`: header `10\t300`, then per fold 300 same-person lines
/// `name\ti\tj` and 300 different-person lines `name1\ti\tname2\tj`; `pairsDevTrain.txt` /
/// `pairsDevTest.txt`: header `N`, one fold of N + N). `path` is used in errors.
///
/// # Errors
/// [`nn::Error::Corrupt`] naming the line: a bad header, a line with the wrong number of
/// fields or a non-numeric image number, a same-person line where a different-person line
/// belongs (or the reverse), too few or too many lines.
pub fn parse_pairs(text: &str, path: &Path) -> nn::Result<Vec<LabelledPair>> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end()));
    let (_, header) = lines
        .next()
        .ok_or_else(|| protocol_error(path, 1, "empty file (expected a header)"))?;
    let nums: Vec<usize> = header
        .split_whitespace()
        .map(|t| t.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| protocol_error(path, 1, format!("bad header {header:?}")))?;
    let (folds, per) = match nums[..] {
        [n] => (1, n),
        [f, n] => (f, n),
        _ => return Err(protocol_error(path, 1, format!("bad header {header:?}"))),
    };
    if folds == 0 || per == 0 {
        return Err(protocol_error(
            path,
            1,
            format!("header {header:?} announces no pairs: nothing to evaluate"),
        ));
    }
    let body: Vec<(usize, &str)> = lines.filter(|(_, l)| !l.trim().is_empty()).collect();
    let want = folds.checked_mul(per).and_then(|n| n.checked_mul(2));
    if want != Some(body.len()) {
        return Err(protocol_error(
            path,
            body.last().map_or(1, |l| l.0),
            format!(
                "header says {folds} fold(s) of {per} + {per} pairs, the file has {} lines",
                body.len()
            ),
        ));
    }
    let num = |line: usize, t: &str| -> nn::Result<usize> {
        t.parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| protocol_error(path, line, format!("bad image number {t:?}")))
    };
    body.iter()
        .enumerate()
        .map(|(k, &(line, l))| {
            let fold = k / (2 * per);
            let want_same = k % (2 * per) < per;
            let f: Vec<&str> = l.split('\t').collect();
            let pair = match (f.len(), want_same) {
                (3, true) => LabelledPair {
                    a: ImageRef {
                        name: f[0].into(),
                        index: num(line, f[1])?,
                    },
                    b: ImageRef {
                        name: f[0].into(),
                        index: num(line, f[2])?,
                    },
                    same: true,
                    line,
                    fold,
                },
                (4, false) => LabelledPair {
                    a: ImageRef {
                        name: f[0].into(),
                        index: num(line, f[1])?,
                    },
                    b: ImageRef {
                        name: f[2].into(),
                        index: num(line, f[3])?,
                    },
                    same: false,
                    line,
                    fold,
                },
                (n, same) => {
                    return Err(protocol_error(
                        path,
                        line,
                        format!(
                            "expected a {} line ({} tab-separated fields), found {n} fields: {l:?}",
                            if same {
                                "same-person"
                            } else {
                                "different-person"
                            },
                            if same { 3 } else { 4 }
                        ),
                    ));
                }
            };
            Ok(pair)
        })
        .collect()
}

/// The most images a people file may give one person (LFW's largest is 530).
pub const MAX_IMAGES_PER_PERSON: usize = 100_000;

/// Parses an LFW people file: `people.txt` (header = number of folds, then per fold a count and
/// that many `name\tcount` lines) or `peopleDevTrain.txt` / `peopleDevTest.txt` (a count, then
/// the lines). Returns the people of every fold, in order.
///
/// # Errors
/// [`nn::Error::Corrupt`] naming the line: a bad count, a line that is not `name\tcount`,
/// fewer lines than a count announces.
pub fn parse_people(text: &str, path: &Path) -> nn::Result<Vec<(String, usize)>> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let count = |i: usize| -> nn::Result<usize> {
        let (line, l) = *lines.get(i).ok_or_else(|| {
            protocol_error(
                path,
                lines.last().map_or(1, |l| l.0),
                "unexpected end of file",
            )
        })?;
        l.trim()
            .parse::<usize>()
            .map_err(|_| protocol_error(path, line, format!("expected a count, found {l:?}")))
    };
    // people.txt: "10" then "601" (two counts in a row); the Dev files: one count then people.
    let folded = lines.len() > 1 && lines[1].1.trim().parse::<usize>().is_ok();
    let (folds, mut i) = if folded { (count(0)?, 1) } else { (1, 0) };
    let mut out = vec![];
    for _ in 0..folds {
        let n = count(i)?;
        i += 1;
        for _ in 0..n {
            let (line, l) = *lines.get(i).ok_or_else(|| {
                protocol_error(
                    path,
                    lines.last().map_or(1, |l| l.0),
                    "fewer people than the count says",
                )
            })?;
            let f: Vec<&str> = l.split('\t').collect();
            let c = match f[..] {
                [_, c] => c
                    .parse::<usize>()
                    .ok()
                    .filter(|&c| (1..=MAX_IMAGES_PER_PERSON).contains(&c)),
                _ => None,
            }
            .ok_or_else(|| {
                protocol_error(
                    path,
                    line,
                    format!("expected name<TAB>count (1..={MAX_IMAGES_PER_PERSON}), found {l:?}"),
                )
            })?;
            out.push((f[0].to_string(), c));
            i += 1;
        }
    }
    if i != lines.len() {
        return Err(protocol_error(
            path,
            lines[i].0,
            "more lines than the counts announce",
        ));
    }
    Ok(out)
}

/// Reads and parses a protocol file with `parse` (`parse_pairs` or `parse_people`).
///
/// # Errors
/// An unreadable file; the parser's errors.
pub fn read_protocol<T>(
    path: &Path,
    parse: impl Fn(&str, &Path) -> nn::Result<T>,
) -> nn::Result<T> {
    let text = nn::limits::read_text(path).map_err(|e| nn::Error::io(path, e))?;
    parse(&text, path)
}

/// Checks that every image a pairs file names exists under `root`.
///
/// # Errors
/// [`nn::Error::Corrupt`] naming the pairs file, the line and the missing image.
pub fn check_pair_images(root: &Path, pairs: &[LabelledPair], pairs_file: &Path) -> nn::Result<()> {
    for p in pairs {
        for r in [&p.a, &p.b] {
            let img = lfw_image_path(root, &r.name, r.index);
            if !img.is_file() {
                return Err(protocol_error(
                    pairs_file,
                    p.line,
                    format!("names image {} which does not exist", img.display()),
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Omniglot

/// Omniglot images from a `.npz` release (`images`: `(characters, drawers, 105, 105)` bool,
/// `True` = background): one identity per character, ink as 1, resized to `size x size`,
/// normalised as every other image here.
///
/// # Errors
/// An unreadable or corrupt archive; an `images` array of another rank or type.
pub fn load_omniglot_npz(path: &Path, size: u32) -> nn::Result<Identities> {
    let mut arrays = nn::npy::read_npz(path)?;
    let images = nn::npy::take_array(&mut arrays, "images", path)?;
    omniglot_identities(&images, path, size)
}

/// [`load_omniglot_npz`] on the `images` array already read (`path` is used in errors).
///
/// # Errors
/// An array of another rank or type, or with a zero-sized dimension.
pub fn omniglot_identities(
    images: &nn::npy::NpyArray,
    path: &Path,
    size: u32,
) -> nn::Result<Identities> {
    if images.shape.len() != 4 || images.dtype != nn::npy::Dtype::Bool || images.shape.contains(&0)
    {
        return Err(nn::Error::corrupt(
            path,
            format!(
                "'images' should be (characters, drawers, H, W) bool, none of them 0, found {:?} {:?}",
                images.shape, images.dtype
            ),
        ));
    }
    let (c, d, h, w) = (
        images.shape[0],
        images.shape[1],
        images.shape[2],
        images.shape[3],
    );
    Preprocess::grey(size, size).check_dataset(c.saturating_mul(d))?;
    let mut out = Identities {
        names: (0..c).map(|i| format!("character{:04}", i + 1)).collect(),
        images: vec![vec![]; c],
    };
    let plane = h * w;
    for (ci, slot) in out.images.iter_mut().enumerate() {
        for k in 0..d {
            let off = (ci * d + k) * plane;
            let ink: Vec<u8> = images.bytes[off..off + plane]
                .iter()
                .map(|&b| if b == 0 { 255 } else { 0 })
                .collect();
            let img = image::GrayImage::from_raw(w as u32, h as u32, ink).expect("h * w bytes");
            slot.push(omniglot_tensor(&img, size));
        }
    }
    Ok(out)
}

/// Ink-as-white grey image -> `(1, size, size)`, normalised.
fn omniglot_tensor(ink: &image::GrayImage, size: u32) -> Tensor {
    let r = image::imageops::resize(ink, size, size, FilterType::Triangle);
    nn::data::gray_to_tensor(&r).affine(4.0, -2.0)
}

/// One official 20-way one-shot run (Lake et al. 2015).
#[derive(Debug, Clone)]
pub struct OneShotRun {
    /// The run's folder name.
    pub name: String,
    /// The 20 training images (one per class), `class01` ... `class20`.
    pub training: Vec<Tensor>,
    /// The 20 test images `item01` ... `item20`.
    pub test: Vec<Tensor>,
    /// `answer[i]`: index into `training` of test item `i`'s class.
    pub answer: Vec<usize>,
}

/// The lines of a run's `class_labels.txt`: `(line, test item, training class)`, paths as
/// written (relative to the runs folder).
///
/// # Errors
/// A non-empty line without exactly two paths (named with its line).
pub fn parse_class_labels(text: &str, path: &Path) -> nn::Result<Vec<(usize, String, String)>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(
            |(i, l)| match l.split_whitespace().collect::<Vec<_>>()[..] {
                [item, class] => Ok((i + 1, item.to_string(), class.to_string())),
                _ => Err(protocol_error(
                    path,
                    i + 1,
                    format!("expected two paths, found {l:?}"),
                )),
            },
        )
        .collect()
}

/// Reads the official runs from `dir` (`run01` ... with `class_labels.txt` lines
/// `runNN/test/itemMM.png runNN/training/classKK.png`; PNGs with black ink on white).
///
/// # Errors
/// A missing folder, an unreadable image, a malformed labels line (named with its line).
pub fn load_oneshot_runs(dir: &Path, size: u32) -> nn::Result<Vec<OneShotRun>> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| nn::Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.join("class_labels.txt").is_file())
        .collect();
    runs.sort();
    if runs.is_empty() {
        return Err(nn::Error::arg(
            "load_oneshot_runs",
            format!("{} has no runNN/class_labels.txt", dir.display()),
        ));
    }
    let load = |p: &Path| -> nn::Result<Tensor> {
        let g = nn::data::load_gray(p)?;
        let ink = image::GrayImage::from_fn(g.width(), g.height(), |x, y| {
            image::Luma([255 - g.get_pixel(x, y)[0]])
        });
        Ok(omniglot_tensor(&ink, size))
    };
    runs.iter()
        .map(|run| {
            let labels = run.join("class_labels.txt");
            let text = nn::limits::read_text(&labels).map_err(|e| nn::Error::io(&labels, e))?;
            let pairs = parse_class_labels(&text, &labels)?;
            // Every training image, sorted, whether or not a test item names it.
            let tdir = run.join("training");
            let mut training_files: Vec<PathBuf> = std::fs::read_dir(&tdir)
                .map_err(|e| nn::Error::io(&tdir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| nn::train::is_image_file(p))
                .collect();
            training_files.sort();
            let (mut test, mut answer) = (vec![], vec![]);
            for (line, test_item, class) in pairs {
                // Paths are relative to the runs folder (`run01/test/item01.png`).
                let class = dir.join(class);
                let pos = training_files
                    .iter()
                    .position(|p| *p == class)
                    .ok_or_else(|| {
                        protocol_error(
                            &labels,
                            line,
                            format!(
                                "names {} which is not in {}",
                                class.display(),
                                tdir.display()
                            ),
                        )
                    })?;
                test.push(load(&dir.join(test_item))?);
                answer.push(pos);
            }
            let training = training_files
                .iter()
                .map(|p| load(p))
                .collect::<nn::Result<Vec<_>>>()?;
            Ok(OneShotRun {
                name: run
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                training,
                test,
                answer,
            })
        })
        .collect()
}
