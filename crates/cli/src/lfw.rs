//! LFW for the commands that measure on it (`faces eval --lfw`, `faces openset`, `faces
//! heads`): where its images and protocol files are, and encoding the distinct images of a
//! set of pairs once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use faces::data::{LabelledPair, lfw_image_path};
use faces::embedder::Embedder;

use crate::common::embed_with_progress;

/// Finds LFW's image folder and protocol folder under `dir`.
pub(crate) fn lfw_dirs(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let images = ["lfw-deepfunneled", "lfw_funneled", "lfw"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| dir.to_path_buf());
    let protocol = [dir.join("protocol"), dir.to_path_buf()]
        .into_iter()
        .find(|p| p.join("pairs.txt").is_file() || p.join("pairsDevTest.txt").is_file())
        .with_context(|| {
            format!(
                "{} has no LFW protocol files (pairs.txt / pairsDevTest.txt, in it or in protocol/)",
                dir.display()
            )
        })?;
    Ok((images, protocol))
}

/// The distinct images of some LFW pairs, encoded: rows of `emb` (and of the pixel
/// baseline), and each pair as `(row, row, same)`.
pub(crate) struct PairEncodings {
    pub emb: Vec<f32>,
    pub pixels: Vec<f32>,
    pub pixel_dim: usize,
    pub idx: Vec<(usize, usize, bool)>,
}

/// Encodes the distinct images of `pairs` (read from `root`).
pub(crate) fn encode_lfw_pairs(
    model: &Embedder,
    root: &Path,
    pairs: &[LabelledPair],
    choice: &LfwAlign,
) -> Result<PairEncodings> {
    let mut keys: Vec<(String, usize)> = pairs
        .iter()
        .flat_map(|p| [(p.a.name.clone(), p.a.index), (p.b.name.clone(), p.b.index)])
        .collect();
    keys.sort();
    keys.dedup();
    let files: Vec<(PathBuf, usize)> = keys
        .iter()
        .enumerate()
        .map(|(i, (n, k))| (lfw_image_path(root, n, *k), i))
        .collect();
    let images = if model.detects() {
        lfw_subjects(model, &files, choice)?
    } else {
        // One input per image: the image (or its crop box), or a given aligned chip.
        nn::train::decode_all(&files, |p| {
            model
                .faces_in(p)?
                .pop()
                .map(|f| f.input)
                .ok_or_else(|| nn::Error::corrupt(p, "no face input"))
        })?
        .into_iter()
        .map(|s| s.image)
        .collect()
    };
    let refs: Vec<&tensor::Tensor> = images.iter().collect();
    let emb = embed_with_progress(model, &refs)?;
    let (pixels, pixel_dim) = faces::oneshot::pixel_rows(&refs);
    let index = |n: &str, k: usize| {
        keys.binary_search(&(n.to_string(), k))
            .expect("every pair image was embedded")
    };
    let idx = pairs
        .iter()
        .map(|p| {
            (
                index(&p.a.name, p.a.index),
                index(&p.b.name, p.b.index),
                p.same,
            )
        })
        .collect();
    Ok(PairEncodings {
        emb,
        pixels,
        pixel_dim,
        idx,
    })
}

/// The aligned chip of each LFW image's subject ([`faces::detect::FaceFinder::subject`]);
/// an image where no face box contains the centre falls back to the fixed LFW crop. Says
/// how each face was chosen.
fn lfw_subjects(
    model: &Embedder,
    files: &[(PathBuf, usize)],
    choice: &LfwAlign,
) -> Result<Vec<tensor::Tensor>> {
    use faces::detect::SubjectRule;
    use rayon::prelude::*;
    let bar = crate::common::progress_bar(files.len() as u64, "finding faces");
    let crop = faces::resnet29::preprocess(Some(faces::resnet29::LFW_CROP));
    let found: Vec<Result<(tensor::Tensor, SubjectRule)>> = files
        .par_iter()
        .map(|(f, _)| {
            let (face, rule) = model.subject_in(f, choice.subject)?;
            bar.inc(1);
            Ok(match face {
                Some(face) => {
                    if let Some(dir) = &choice.dump_chips {
                        dump_chip(model, &face.input, f, dir)?;
                    }
                    (face.input, rule)
                }
                None => (crop.load(f)?, rule),
            })
        })
        .collect();
    bar.finish_and_clear();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut out = vec![];
    for r in found {
        let (t, rule) = r?;
        *counts.entry(format!("{rule:?}")).or_default() += 1;
        out.push(t);
    }
    eprintln!(
        "faces chosen in {} images: {} (NotFound: the fixed LFW crop instead)",
        files.len(),
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(out)
}

/// How `eval --align` treats LFW images.
#[derive(Default)]
pub(crate) struct LfwAlign {
    /// Which face is the subject.
    pub subject: faces::detect::SubjectChoice,
    /// Write each aligned chip here (`NAME/FILE.png`), for comparisons with other pipelines.
    pub dump_chips: Option<PathBuf>,
}

/// Writes the chip of a network input as `dir/<person folder>/<file stem>.png`.
fn dump_chip(model: &Embedder, input: &tensor::Tensor, src: &Path, dir: &Path) -> Result<()> {
    let img = model.preprocess().to_image(input);
    let person = src.parent().and_then(Path::file_name).unwrap_or_default();
    let out = dir
        .join(person)
        .join(src.file_stem().unwrap_or_default())
        .with_extension("png");
    std::fs::create_dir_all(out.parent().unwrap_or(dir))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    img.save(&out)
        .with_context(|| format!("cannot write {}", out.display()))
}
