//! A gallery of enrolled people: their encodings (never the images), the fingerprint of the
//! model that made them, the decision threshold, and a content hash per source image, so that
//! recognising someone only encodes the probe and re-enrolling a folder encodes only what
//! changed.
//!
//! The file is `nn::checkpoint`'s container (magic, version, length, CRC-32, bincode: data
//! only, nothing that can run code), written atomically (temporary file, fsync, rename); a
//! lock file next to it keeps two writers apart.

use std::path::{Path, PathBuf};

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The first bytes of a gallery file.
pub const MAGIC: &[u8; 8] = b"CNNGALRY";
/// The gallery format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What can go wrong with a gallery.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// Reading, writing or decoding failed (the file is named).
    #[error(transparent)]
    File(#[from] nn::Error),
    /// The gallery was made with another model.
    #[error(
        "{path} was enrolled with another model or input ({gallery_description}; fingerprint {gallery}) than the one in use ({model_description}; fingerprint {model}): encodings of different models or inputs cannot be compared (re-enroll with this model and input, or use the ones the gallery was made with)"
    )]
    ModelMismatch {
        /// The gallery file.
        path: PathBuf,
        /// Fingerprint stored in the gallery.
        gallery: String,
        /// Fingerprint of the model in use.
        model: String,
        /// The gallery's model, in words (network, input: crop box, detected faces, chips).
        gallery_description: String,
        /// The model in use, in words.
        model_description: String,
    },
    /// No identity of this name.
    #[error("no identity {name:?} in the gallery (it has {known} identities: {sample})")]
    UnknownIdentity {
        /// The name asked for.
        name: String,
        /// How many there are.
        known: usize,
        /// The first few names.
        sample: String,
    },
    /// The name is taken.
    #[error("identity {name:?} already exists")]
    DuplicateIdentity {
        /// The name.
        name: String,
    },
    /// An encoding of another size.
    #[error("encoding of size {got}, the gallery holds size {expected}")]
    Dim {
        /// The gallery's size.
        expected: usize,
        /// The offered size.
        got: usize,
    },
    /// A person's name that cannot be one (empty, blank, control characters, too long).
    #[error(
        "{name:?} cannot name a person: a name has 1..={MAX_NAME_CHARS} characters, not only spaces, and no control characters"
    )]
    BadName {
        /// The name offered.
        name: String,
    },
    /// Another process holds the lock.
    #[error(
        "{lock}: another writer ({holder}) holds this gallery; run again when it has finished (its lock goes when it exits, even if it is killed)"
    )]
    Locked {
        /// The lock file.
        lock: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
}

/// The longest name of a person, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The largest encoding a gallery may hold: face embeddings have 64 to 512 values; a gallery
/// claiming more is damaged or crafted (a probe of that size would be allocated per search).
pub const MAX_DIM: usize = 1 << 16;

/// Refuses a name that cannot be shown or told apart: empty or blank, with control characters
/// (a newline would break every listing), or longer than [`MAX_NAME_CHARS`].
///
/// # Errors
/// [`GalleryError::BadName`].
pub fn check_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if name.trim().is_empty() || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(GalleryError::BadName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Result of gallery operations.
pub type Result<T> = std::result::Result<T, GalleryError>;

/// One enrolled image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrolled {
    /// Where it came from (the path as given at enrolment).
    pub source: String,
    /// SHA-256 of the file's bytes (hex).
    pub content_hash: String,
    /// Its encoding.
    pub encoding: Vec<f32>,
}

/// A person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The name.
    pub name: String,
    /// A threshold of this person's own, if calibrated.
    pub tau: Option<f32>,
    /// Enrolled images.
    pub images: Vec<Enrolled>,
}

/// How tau was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `best-accuracy` or `far=<rate>`.
    pub rule: String,
    /// Same-person and different-person pairs used.
    pub pairs: (usize, usize),
    /// Accuracy at tau on those pairs.
    pub accuracy: f64,
    /// False-accept rate at tau.
    pub far: f64,
    /// False-reject rate at tau.
    pub frr: f64,
    /// Area under the ROC.
    pub auc: f64,
}

impl Calibration {
    /// Chooses tau on labelled pairs by `rule` and measures it there (accuracy, error rates,
    /// the area under the ROC).
    ///
    /// # Errors
    /// Pairs the rule cannot use (none of one kind; the reason).
    pub fn measure(
        pairs: &[crate::eval::ScoredPair],
        rule: crate::eval::ThresholdRule,
    ) -> std::result::Result<(f32, Calibration), String> {
        use crate::eval::{accuracy_at, auc, choose_threshold, error_rates, roc};
        let tau = choose_threshold(pairs, rule)?;
        let (far, frr) = error_rates(pairs, tau);
        let cal = Calibration {
            rule: rule.to_string(),
            pairs: (
                pairs.iter().filter(|p| p.same).count(),
                pairs.iter().filter(|p| !p.same).count(),
            ),
            accuracy: accuracy_at(pairs, tau),
            far,
            frr,
            auc: auc(&roc(pairs)),
        };
        Ok((tau, cal))
    }
}

/// The stored gallery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gallery {
    /// Fingerprint of the model that made the encodings.
    pub model: String,
    /// What that model is, for people reading `gallery list`.
    pub model_description: String,
    /// Encoding size.
    pub dim: usize,
    /// Decision threshold on the squared distance (same person when `<= tau`).
    pub tau: f32,
    /// How tau was set (`None`: the model's default).
    pub calibration: Option<Calibration>,
    /// The people, in enrolment order.
    pub identities: Vec<Identity>,
}

impl Gallery {
    /// An empty gallery for a model.
    pub fn new(model: String, model_description: String, dim: usize, tau: f32) -> Gallery {
        Gallery {
            model,
            model_description,
            dim,
            tau,
            calibration: None,
            identities: vec![],
        }
    }

    /// Reads a gallery.
    ///
    /// # Errors
    /// A missing, truncated, damaged or foreign file, or a newer format (each naming the file);
    /// encodings whose size disagrees with the header.
    pub fn load(path: &Path) -> Result<Gallery> {
        Gallery::from_bytes(&nn::checkpoint::read_bounded(path)?, path)
    }

    /// [`Gallery::load`] on the file's bytes (`path` is used in errors).
    ///
    /// # Errors
    /// As [`Gallery::load`].
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Gallery> {
        let g: Gallery =
            nn::checkpoint::decode_container(bytes, path, MAGIC, FORMAT_VERSION, "gallery")?;
        let bad = |reason: String| -> GalleryError { nn::Error::corrupt(path, reason).into() };
        if !(g.tau.is_finite() && g.tau >= 0.0) {
            return Err(bad(format!(
                "tau {} is not a distance (finite, >= 0)",
                g.tau
            )));
        }
        if g.dim == 0 || g.dim > MAX_DIM {
            return Err(bad(format!(
                "encodings of size {}: a size is 1..={MAX_DIM}",
                g.dim
            )));
        }
        if !g.model.chars().all(|c| c.is_ascii_graphic()) {
            return Err(bad(format!("model fingerprint {:?} is not text", g.model)));
        }
        for id in &g.identities {
            check_name(&id.name).map_err(|e| bad(e.to_string()))?;
            if let Some(t) = id.tau
                && !(t.is_finite() && t >= 0.0)
            {
                return Err(bad(format!("{}: tau {t} is not a distance", id.name)));
            }
        }
        for id in &g.identities {
            for e in &id.images {
                if e.encoding.len() != g.dim {
                    return Err(nn::Error::corrupt(
                        path,
                        format!(
                            "{} / {}: encoding of size {}, the gallery says {}",
                            id.name,
                            e.source,
                            e.encoding.len(),
                            g.dim
                        ),
                    )
                    .into());
                }
            }
        }
        Ok(g)
    }

    /// Writes the gallery atomically (the old file stays intact until the new one is
    /// complete).
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(nn::checkpoint::save_container(
            path,
            MAGIC,
            FORMAT_VERSION,
            self,
        )?)
    }

    /// The bytes [`Gallery::save`] writes (a gallery exported from the service reads back
    /// with [`Gallery::from_bytes`] and [`Gallery::load`]).
    ///
    /// # Errors
    /// A gallery that cannot be encoded.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        nn::checkpoint::encode_container(MAGIC, FORMAT_VERSION, self)
            .map_err(|e| nn::Error::arg("Gallery::to_bytes", e).into())
    }

    /// Adds one image to person `name` (created when new); an image with the same content
    /// hash already held by that person is not added twice. Returns whether it was added.
    ///
    /// # Errors
    /// A bad name or an encoding of the wrong size.
    pub fn add_image(&mut self, name: &str, image: Enrolled) -> Result<bool> {
        check_name(name)?;
        if image.encoding.len() != self.dim {
            return Err(GalleryError::Dim {
                expected: self.dim,
                got: image.encoding.len(),
            });
        }
        let p = match self.identities.iter().position(|i| i.name == name) {
            Some(p) => p,
            None => {
                self.identities.push(Identity {
                    name: name.to_string(),
                    tau: None,
                    images: vec![],
                });
                self.identities.len() - 1
            }
        };
        let images = &mut self.identities[p].images;
        if images.iter().any(|e| e.content_hash == image.content_hash) {
            return Ok(false);
        }
        images.push(image);
        Ok(true)
    }

    /// Refuses a model other than the one that made the encodings.
    ///
    /// # Errors
    /// [`GalleryError::ModelMismatch`] naming both fingerprints and describing both models
    /// (`description`: the model in use, in words), so a different crop box or input reads as
    /// such.
    pub fn check_model(&self, fingerprint: &str, description: &str, path: &Path) -> Result<()> {
        if self.model != fingerprint {
            return Err(GalleryError::ModelMismatch {
                path: path.to_path_buf(),
                gallery: self.model.clone(),
                model: fingerprint.to_string(),
                gallery_description: self.model_description.clone(),
                model_description: description.to_string(),
            });
        }
        Ok(())
    }

    /// Number of enrolled images.
    pub fn len(&self) -> usize {
        self.identities.iter().map(|i| i.images.len()).sum()
    }

    /// True when nobody is enrolled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn position(&self, name: &str) -> Result<usize> {
        self.identities
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| GalleryError::UnknownIdentity {
                name: name.to_string(),
                known: self.identities.len(),
                sample: self
                    .identities
                    .iter()
                    .take(5)
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Which of `files` (`(source, content hash)`) person `name` does not already hold with
    /// that content: the ones that need encoding.
    pub fn needs_encoding<'a>(&self, name: &str, files: &'a [(String, String)]) -> Vec<&'a str> {
        let held = self.identities.iter().find(|i| i.name == name);
        files
            .iter()
            .filter(|(src, hash)| {
                !held.is_some_and(|i| {
                    i.images
                        .iter()
                        .any(|e| &e.source == src && &e.content_hash == hash)
                })
            })
            .map(|(s, _)| s.as_str())
            .collect()
    }

    /// Enrols (or updates) person `name` with exactly these images: new or changed ones are
    /// added from `encoded`, unchanged ones kept, ones no longer listed dropped. Returns
    /// `(added, kept, dropped)`.
    ///
    /// # Errors
    /// An encoding of the wrong size, or a listed file that is neither held unchanged nor in
    /// `encoded`.
    pub fn enroll(
        &mut self,
        name: &str,
        files: &[(String, String)],
        encoded: Vec<Enrolled>,
    ) -> Result<(usize, usize, usize)> {
        check_name(name)?;
        for e in &encoded {
            if e.encoding.len() != self.dim {
                return Err(GalleryError::Dim {
                    expected: self.dim,
                    got: e.encoding.len(),
                });
            }
        }
        let old = match self.identities.iter().position(|i| i.name == name) {
            Some(p) => std::mem::take(&mut self.identities[p].images),
            None => {
                self.identities.push(Identity {
                    name: name.to_string(),
                    tau: None,
                    images: vec![],
                });
                vec![]
            }
        };
        let (mut added, mut kept) = (0, 0);
        let mut images = vec![];
        for (src, hash) in files {
            let same = |e: &&Enrolled| &e.source == src && &e.content_hash == hash;
            if let Some(e) = encoded.iter().find(same) {
                images.push(e.clone());
                added += 1;
            } else if let Some(e) = old.iter().find(same) {
                images.push(e.clone());
                kept += 1;
            } else {
                return Err(nn::Error::arg(
                    "Gallery::enroll",
                    format!("{src} is neither encoded nor held unchanged"),
                )
                .into());
            }
        }
        let dropped = old
            .iter()
            .filter(|e| !images.iter().any(|n| n.source == e.source))
            .count();
        let p = self.position(name)?;
        self.identities[p].images = images;
        Ok((added, kept, dropped))
    }

    /// Removes a person.
    ///
    /// # Errors
    /// [`GalleryError::UnknownIdentity`].
    pub fn remove(&mut self, name: &str) -> Result<Identity> {
        let p = self.position(name)?;
        Ok(self.identities.remove(p))
    }

    /// Renames a person.
    ///
    /// # Errors
    /// [`GalleryError::UnknownIdentity`], or [`GalleryError::DuplicateIdentity`] when `to` is
    /// taken.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let p = self.position(from)?;
        check_name(to)?;
        if self.identities.iter().any(|i| i.name == to) {
            return Err(GalleryError::DuplicateIdentity {
                name: to.to_string(),
            });
        }
        self.identities[p].name = to.to_string();
        Ok(())
    }

    /// Sets one person's own threshold.
    ///
    /// # Errors
    /// [`GalleryError::UnknownIdentity`]; a tau that is not a distance (NaN, infinite,
    /// negative).
    pub fn set_identity_tau(&mut self, name: &str, tau: Option<f32>) -> Result<()> {
        if let Some(t) = tau
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(nn::Error::arg(
                "Gallery::set_identity_tau",
                format!("tau {t} is not a distance (finite, >= 0)"),
            )
            .into());
        }
        let p = self.position(name)?;
        self.identities[p].tau = tau;
        Ok(())
    }

    /// The search structure over every enrolled encoding.
    pub fn index(&self, precision: Precision) -> Index {
        let mut owners = Vec::with_capacity(self.len());
        let mut rows = Vec::with_capacity(self.len() * self.dim);
        for (i, id) in self.identities.iter().enumerate() {
            for e in &id.images {
                owners.push(i as u32);
                rows.extend_from_slice(&e.encoding);
            }
        }
        Index::new(rows, owners, self.dim, precision)
    }

    /// The decision for one probe's search result: the nearest person when within their
    /// threshold (their own, else the gallery's), otherwise unknown.
    pub fn decide(&self, found: &[(u32, f32)]) -> Decision {
        let top: Vec<(String, f32)> = found
            .iter()
            .map(|&(i, d)| (self.identities[i as usize].name.clone(), d))
            .collect();
        let Some(&(best, distance)) = found.first() else {
            return Decision {
                identity: None,
                distance: f32::INFINITY,
                tau: self.tau,
                margin: f32::INFINITY,
                top,
            };
        };
        let tau = self.identities[best as usize].tau.unwrap_or(self.tau);
        Decision {
            identity: (distance <= tau).then(|| self.identities[best as usize].name.clone()),
            distance,
            tau,
            margin: found.get(1).map_or(f32::INFINITY, |r| r.1 - distance),
            top,
        }
    }
}

/// The answer for one probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The person recognised, or `None` (unknown) when the nearest is beyond tau.
    pub identity: Option<String>,
    /// Squared distance to the nearest person.
    pub distance: f32,
    /// The threshold applied.
    pub tau: f32,
    /// Runner-up's distance minus the nearest's (how clear the decision is).
    pub margin: f32,
    /// The nearest people, nearest first, with their distances.
    pub top: Vec<(String, f32)>,
}

/// How an [`Index`] stores encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 4 bytes a value.
    F32,
    /// 2 bytes a value (half the memory and memory traffic; distances change by about 1e-3).
    F16,
}

enum Rows {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// Exact nearest-neighbour search over encodings (each row owned by a person): every row is
/// compared, in parallel blocks, with `||p - g||² = ||p||² + ||g||² - 2 p·g`.
pub struct Index {
    rows: Rows,
    norms: Vec<f32>,
    owners: Vec<u32>,
    dim: usize,
}

/// Rows per parallel task of a single search.
const BLOCK: usize = 4096;
/// Rows per parallel task of a batch search: 512 KiB of f32 rows, which every probe of the
/// batch reads again, stay in L2.
const BATCH_BLOCK: usize = 1024;

impl Index {
    /// An index over `rows` (`owners.len() x dim`, row-major).
    pub fn new(rows: Vec<f32>, owners: Vec<u32>, dim: usize, precision: Precision) -> Index {
        assert_eq!(rows.len(), owners.len() * dim, "rows and owners disagree");
        let rows = match precision {
            Precision::F32 => Rows::F32(rows),
            Precision::F16 => Rows::F16(rows.iter().map(|&v| f16::from_f32(v)).collect()),
        };
        let mut idx = Index {
            rows,
            norms: vec![],
            owners,
            dim,
        };
        // Norms of the stored (possibly rounded) values, so distances are exact for them.
        let mut buf = vec![0f32; dim];
        idx.norms = (0..idx.owners.len())
            .map(|r| {
                let row = idx.row(r, &mut buf);
                row.iter().map(|v| v * v).sum()
            })
            .collect();
        idx
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Bytes held by the encodings, their norms and owners.
    pub fn memory_bytes(&self) -> usize {
        let per = match self.rows {
            Rows::F32(_) => 4,
            Rows::F16(_) => 2,
        };
        self.owners.len() * (self.dim * per + 4 + 4)
    }

    fn row<'a>(&'a self, r: usize, buf: &'a mut [f32]) -> &'a [f32] {
        let d = self.dim;
        match &self.rows {
            Rows::F32(v) => &v[r * d..(r + 1) * d],
            Rows::F16(v) => {
                // The slice conversion uses F16C when the CPU has it (detected at run time).
                v[r * d..(r + 1) * d].convert_to_f32_slice(buf);
                buf
            }
        }
    }

    /// The `k` nearest people (not rows: a person with several images counts once, at their
    /// nearest image) to `probe`, nearest first, as `(owner, squared distance)`.
    ///
    /// # Errors
    /// A probe of the wrong size.
    pub fn search(&self, probe: &[f32], k: usize) -> Result<Vec<(u32, f32)>> {
        if probe.len() != self.dim {
            return Err(GalleryError::Dim {
                expected: self.dim,
                got: probe.len(),
            });
        }
        let pn: f32 = probe.iter().map(|v| v * v).sum();
        let n = self.len();
        let partial: Vec<Vec<(u32, f32)>> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let mut buf = vec![0f32; self.dim];
                let mut best = TopK::new(k);
                for r in b * BLOCK..((b + 1) * BLOCK).min(n) {
                    let row = self.row(r, &mut buf);
                    let d = (pn + self.norms[r] - 2.0 * tensor::dot(probe, row)).max(0.0);
                    best.offer(self.owners[r], d);
                }
                best.items
            })
            .collect();
        let mut best = TopK::new(k);
        for (o, d) in partial.into_iter().flatten() {
            best.offer(o, d);
        }
        Ok(best.items)
    }
}

impl Index {
    /// [`Index::search`] for many probes at once (`probes` is `n x dim`): each block of rows
    /// is read (and widened from f16) once for all of them, so a batch costs far less memory
    /// traffic than its probes one by one.
    ///
    /// # Errors
    /// A probe matrix whose length is not a multiple of the encoding size.
    pub fn search_batch(&self, probes: &[f32], k: usize) -> Result<Vec<Vec<(u32, f32)>>> {
        if !probes.len().is_multiple_of(self.dim) {
            return Err(GalleryError::Dim {
                expected: self.dim,
                got: probes.len() % self.dim,
            });
        }
        let np = probes.len() / self.dim;
        let pn: Vec<f32> = probes
            .chunks(self.dim)
            .map(|p| p.iter().map(|v| v * v).sum())
            .collect();
        let n = self.len();
        // The probes times each block of rows is one matrix product on the tensor core's
        // GEMM kernels.
        let probe_matrix =
            tensor::Tensor::from_vec(probes.to_vec(), &[np, self.dim]).map_err(nn::Error::from)?;
        let partial: Vec<Vec<TopK>> = (0..n.div_ceil(BATCH_BLOCK))
            .into_par_iter()
            .map(|b| -> Result<Vec<TopK>> {
                let rows = b * BATCH_BLOCK..((b + 1) * BATCH_BLOCK).min(n);
                let mut wide = vec![0f32; rows.len() * self.dim];
                let mut buf = vec![0f32; self.dim];
                for (i, r) in rows.clone().enumerate() {
                    wide[i * self.dim..(i + 1) * self.dim].copy_from_slice(self.row(r, &mut buf));
                }
                let block = tensor::Tensor::from_vec(wide, &[rows.len(), self.dim])
                    .and_then(|w| probe_matrix.matmul(&w.transpose(0, 1)?))
                    .map_err(nn::Error::from)?;
                let dots = block.contiguous_data();
                Ok((0..np)
                    .map(|q| {
                        let mut best = TopK::new(k);
                        let row_dots = &dots[q * rows.len()..(q + 1) * rows.len()];
                        for (i, r) in rows.clone().enumerate() {
                            let d = (pn[q] + self.norms[r] - 2.0 * row_dots[i]).max(0.0);
                            best.offer(self.owners[r], d);
                        }
                        best
                    })
                    .collect())
            })
            .collect::<Result<_>>()?;
        Ok((0..np)
            .map(|q| {
                let mut best = TopK::new(k);
                for block in &partial {
                    for &(o, d) in &block[q].items {
                        best.offer(o, d);
                    }
                }
                best.items
            })
            .collect())
    }
}

/// The `k` smallest distances with distinct owners, sorted.
struct TopK {
    k: usize,
    items: Vec<(u32, f32)>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k: k.max(1),
            items: Vec::with_capacity(k.max(1) + 1),
        }
    }

    fn offer(&mut self, owner: u32, d: f32) {
        if self.items.len() == self.k && d >= self.items[self.k - 1].1 {
            return;
        }
        if let Some(p) = self.items.iter().position(|x| x.0 == owner) {
            if d >= self.items[p].1 {
                return;
            }
            self.items.remove(p);
        }
        let at = self.items.partition_point(|x| x.1 <= d);
        self.items.insert(at, (owner, d));
        self.items.truncate(self.k);
    }
}

/// A lock file next to the gallery (`G.lock`) holding an OS file lock (`flock`) while a writer
/// works. The OS releases the lock when its holder exits, however it exits (a kill -9
/// included), so a lock left behind is never "held", and two processes taking over a left
/// lock at the same moment cannot both win: the kernel gives the lock to one. The file is
/// removed when the lock is dropped; a taker checks that the file it locked is still the one at
/// the path (not one a finishing writer just removed), and retries otherwise.
pub struct GalleryLock {
    path: PathBuf,
    // Held open: closing it releases the OS lock.
    _file: std::fs::File,
}

impl GalleryLock {
    /// Takes the lock of the gallery at `gallery`.
    ///
    /// # Errors
    /// [`GalleryError::Locked`] when another process (or another handle in this one) holds it,
    /// naming the holder's pid; I/O errors.
    pub fn acquire(gallery: &Path) -> Result<GalleryLock> {
        // One lock per gallery file, whichever link it is reached through.
        let gallery = nn::checkpoint::resolve_links(gallery)?;
        let mut name = gallery.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        // A few rounds: each retry means another writer removed the file between our open and
        // our lock, which only happens while locks change hands.
        for _ in 0..100 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| nn::Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path)
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    return Err(GalleryError::Locked { lock: path, holder });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(nn::Error::io(&path, e).into());
                }
            }
            if !same_file_at(&file, &path) {
                continue;
            }
            let mut file = file;
            use std::io::{Seek, Write};
            let note = (|| -> std::io::Result<()> {
                file.set_len(0)?;
                file.seek(std::io::SeekFrom::Start(0))?;
                writeln!(file, "pid {}", std::process::id())
            })();
            note.map_err(|e| nn::Error::io(&path, e))?;
            return Ok(GalleryLock { path, _file: file });
        }
        Err(GalleryError::Locked {
            lock: path,
            holder: "writers changing hands too fast".into(),
        })
    }
}

/// True when `path` still names the file `file` has open (same device and inode).
fn same_file_at(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

impl Drop for GalleryLock {
    fn drop(&mut self) {
        // Removed while still locked: a taker that opened this file meanwhile sees that the
        // path no longer names it and starts again.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// SHA-256 of a file's bytes (hex).
///
/// # Errors
/// An unreadable file (named).
pub fn content_hash(path: &Path) -> nn::Result<String> {
    use sha2::Digest;
    let bytes = nn::checkpoint::read_bounded(path)?;
    Ok(crate::resnet29::hex(&sha2::Sha256::digest(&bytes)))
}
