//! Face data as identities with images, from a folder per identity (ORL's `s1/1.pgm` layout,
//! or any class-folder tree the `image` crate can read).

use std::path::Path;

use nn::train::ImageFolder;
use rand::Rng;
use rand::seq::SliceRandom;
use tensor::Tensor;

/// Images grouped by identity.
#[derive(Debug, Clone)]
pub struct Identities {
    /// Identity names (folder names), in natural order.
    pub names: Vec<String>,
    /// `images[i]` are the images `(C, H, W)` of identity `i`.
    pub images: Vec<Vec<Tensor>>,
}

impl Identities {
    /// Loads a folder-per-identity tree, resizing every image to `height x width` grey and
    /// normalising it to mean 0.5, scale 0.25.
    ///
    /// # Errors
    /// An unreadable folder or image (named), a folder without identities or an identity
    /// folder without images.
    pub fn load_grey(dir: &Path, height: u32, width: u32) -> nn::Result<Identities> {
        let folder = ImageFolder::scan(dir)?;
        let decoded = nn::train::decode_all(&folder.files, |p| {
            let g = nn::data::load_gray(p)?;
            let g =
                image::imageops::resize(&g, width, height, image::imageops::FilterType::Triangle);
            Ok(nn::data::gray_to_tensor(&g).affine(4.0, -2.0))
        })?;
        let mut images = vec![vec![]; folder.classes.len()];
        for s in decoded {
            images[s.label].push(s.image);
        }
        Ok(Identities {
            names: folder.classes,
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

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
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
