//! `faces`: learning a similarity function `d(x1, x2) = ||f(x1) - f(x2)||²` (seed eq. 1-2) and
//! measuring it.
//!
//! Built so far (issue 4, in progress): [`mining`] (online triplet selection: random, hardest,
//! semi-hard, batch-hard) and [`eval`] (verification accuracy, best threshold, k-fold protocol,
//! ROC, AUC, EER, VAL@FAR). The embedding networks, losses, DeepFace heads, data loaders and the
//! demo come next. The bundled ORL faces are in `assets/orl` (credit AT&T Laboratories
//! Cambridge).
#![warn(missing_docs)]

pub mod eval;
pub mod mining;
