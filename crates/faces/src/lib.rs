//! `faces`: learning a similarity function `d(x1, x2) = ||f(x1) - f(x2)||²` (seed eq. 1-2) and
//! measuring it.
//!
//! Built so far (issue 4, in progress): [`model`] (the L2-normalised embedding CNN, shared by
//! construction between twins and triplets), [`data`] (identities from a folder per person,
//! identity-balanced P x K batches), [`mining`] (online triplet selection: random, hardest,
//! semi-hard, batch-hard), [`train`] (triplet training, eq. 6-7), [`eval`] (verification
//! accuracy, best threshold, k-fold protocol, ROC, AUC, EER, VAL@FAR) and [`oneshot`] (pairs,
//! one-shot identification from a gallery of stored encodings, rejection of strangers). The
//! DeepFace heads, contrastive training, LFW and Omniglot loaders come next. The bundled ORL
//! faces are in `assets/orl` (credit AT&T Laboratories Cambridge).
#![warn(missing_docs)]

pub mod data;
pub mod eval;
pub mod mining;
pub mod model;
pub mod oneshot;
pub mod train;
