//! `faces`: learning a similarity function `d(x1, x2) = ||f(x1) - f(x2)||²` (seed eq. 1-2) and
//! measuring it.
//!
//! - [`model`]: the L2-normalised embedding network (conv blocks from scratch or a pretrained
//!   SqueezeNet body), shared by construction between twins and triplets, and [`model::FaceModel`]
//!   (network + optional head + tau, saved as one versioned file);
//! - [`heads`]: the DeepFace heads, eq. 3 (weighted |f_i - f_j|) and eq. 4 (weighted chi-square);
//! - [`detect`]: faces in photos (SSD or tiny detector, 68 landmarks); [`align`]: dlib's
//!   aligned face chip from the landmarks;
//! - [`data`]: identities from a folder per person, LFW with its protocol files, Omniglot,
//!   identity-balanced P x K batches;
//! - [`mining`]: online triplet selection (random, hardest, semi-hard, batch-hard);
//! - [`train`]: triplet, contrastive and DeepFace-head training with checkpoints and resume;
//! - [`eval`]: verification accuracy, best threshold, k-fold protocol, ROC, AUC, EER, VAL@FAR,
//!   N-way k-shot episodes;
//! - [`oneshot`]: all pairs, one-shot identification from stored encodings, rejection of
//!   strangers.
//!
//! The bundled ORL faces are in `assets/orl` (credit AT&T Laboratories Cambridge).
#![warn(missing_docs)]

pub mod align;
pub mod data;
pub mod detect;
pub mod embedder;
pub mod eval;
pub mod explain;
pub mod gallery;
pub mod heads;
pub mod mining;
pub mod model;
pub mod oneshot;
pub mod resnet29;
pub mod train;
