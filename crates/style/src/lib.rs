//! `style`: Gatys et al.'s neural style transfer, exactly as the seed writes it (section 2.2):
//! `J(G) = alpha * J_content(C, G) + beta * J_style(S, G)` (eq. 8), the content cost of one layer
//! (eq. 9), Gram matrices (eq. 10-11), the per-layer style cost with its `1/(2 n_H n_W n_C)²`
//! normalisation (eq. 12) summed with weights lambda (eq. 13), minimised by gradient descent on
//! the pixels of G through a pretrained CNN.
//!
//! - [`net`]: the loss network (bundled SqueezeNet 1.1, or VGG16/19 from torchvision weights),
//!   layers by name;
//! - [`cost`]: the costs and total variation;
//! - [`transfer`]: targets computed once, L-BFGS or Adam on the pixels, lowest-loss image kept;
//! - [`image_io`]: loading, resizing, saving, and the luminance split for keeping colours.
//!
//! ```no_run
//! use style::net::{LossNetwork, NetworkKind};
//! use style::transfer::{Init, Optimizer, Targets, TransferConfig, transfer};
//! # fn main() -> nn::Result<()> {
//! let net = LossNetwork::load(NetworkKind::SqueezeNet, None, false)?;
//! let content = style::image_io::load_image("photo.jpg".as_ref(), Some(256))?;
//! let painting = style::image_io::load_image("painting.jpg".as_ref(), Some(256))?;
//! let (c, s) = net.default_layers();
//! let cfg = TransferConfig {
//!     content_layer: c.into(),
//!     style_layers: s.iter().map(|l| l.to_string()).collect(),
//!     style_layer_weights: vec![],
//!     alpha: 1.0,
//!     beta: 1e4,
//!     tv: 0.0,
//!     optimizer: Optimizer::Lbfgs,
//!     iterations: 100,
//!     init: Init::Content,
//!     seed: 0,
//! };
//! let targets = Targets::new(&net, &content, &[(painting, 1.0)], &cfg)?;
//! let out = transfer(&net, &targets, &content, &cfg, None, |_, _| true)?;
//! style::image_io::save_image(&out.image, "out.png".as_ref())?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod cost;
pub mod image_io;
pub mod net;
pub mod transfer;
