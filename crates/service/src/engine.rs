//! The model work behind the API: decoding uploads within the limits, finding and encoding
//! faces, painting a style job. Everything here is blocking, CPU-bound code; the server runs
//! it on rayon's pool ([`on_pool`]) so the async threads stay free for I/O.

use faces::detect::Face;
use faces::embedder::Embedder;
use style::net::{LossNetwork, NetworkKind};
use style::transfer::{Init, Optimizer, Targets, TransferConfig};

use crate::error::ApiError;
use crate::store::{JobProgress, StyleParams};

/// The largest style result side (pixels) a job may ask for.
pub const MAX_STYLE_SIDE: u32 = 1024;
/// The most iterations a style job may ask for.
pub const MAX_STYLE_ITERATIONS: usize = 1000;

/// The models a server holds.
pub struct Engine {
    /// The face embedder, finding faces with its detector.
    pub embedder: Embedder,
    /// The style loss network (SqueezeNet, bundled).
    pub style_net: LossNetwork,
    /// The largest decoded image, in pixels.
    pub max_pixels: u64,
}

/// A face found in a photo with its encoding.
pub struct Encoded {
    /// Where it is.
    pub face: Face,
    /// Its embedding.
    pub encoding: Vec<f32>,
}

/// Runs blocking work on rayon's pool and awaits it. Work whose caller has gone (a timed-out
/// request) before it starts is skipped.
///
/// # Errors
/// 500 when the work panicked.
pub async fn on_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        if tx.is_closed() {
            return;
        }
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let _ = tx.send(out);
    });
    match rx.await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ApiError::internal("the model work panicked")),
        Err(_) => Err(ApiError::internal("the model work was dropped")),
    }
}

impl Engine {
    /// Loads the style network next to an embedder that detects faces.
    ///
    /// # Errors
    /// An embedder without a detector; unreadable style weights.
    pub fn new(embedder: Embedder, max_pixels: u64) -> nn::Result<Engine> {
        if embedder.finder().is_none() {
            return Err(nn::Error::arg(
                "Engine",
                "the service takes photos: the pretrained network with face detection",
            ));
        }
        Ok(Engine {
            embedder,
            style_net: LossNetwork::load(NetworkKind::SqueezeNet, None, false)?,
            max_pixels,
        })
    }

    /// Decodes an uploaded image (EXIF orientation applied) within the pixel limit.
    ///
    /// # Errors
    /// 413 beyond the limit (naming it), 415 for bytes that are not an image this server reads
    /// (naming the field).
    pub fn decode(&self, bytes: &[u8], field: &str) -> Result<image::RgbImage, ApiError> {
        let dims = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        if let Some((w, h)) = dims {
            let pixels = u64::from(w) * u64::from(h);
            if pixels > self.max_pixels {
                return Err(ApiError::too_large(format!(
                    "{field}: image of {w} x {h} = {pixels} pixels is larger than the limit of {} pixels",
                    self.max_pixels
                )));
            }
        }
        nn::data::decode_image(bytes, self.max_pixels)
            .map(|img| img.to_rgb8())
            .map_err(|why| {
                ApiError::unsupported(format!(
                    "{field}: {why} (JPEG, PNG, GIF, BMP, TIFF, WebP or PNM)"
                ))
            })
    }

    /// Every face in a photo, best first, with its 68 landmarks.
    ///
    /// # Errors
    /// 500 when the detector fails.
    pub fn detect(&self, img: &image::RgbImage) -> Result<Vec<Face>, ApiError> {
        let (finder, _) = self.embedder.finder().expect("checked in new");
        finder
            .find(img)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Every face in a photo with its encoding.
    ///
    /// # Errors
    /// 500 when the networks fail.
    pub fn encode(&self, img: &image::RgbImage) -> Result<Vec<Encoded>, ApiError> {
        let (finder, template) = self.embedder.finder().expect("checked in new");
        let inputs = self
            .embedder
            .faces_in_image(img, finder, template)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let refs: Vec<&tensor::Tensor> = inputs.iter().map(|f| &f.input).collect();
        let vectors = self
            .embedder
            .embed(&refs, 16)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let dim = self.embedder.dim();
        Ok(inputs
            .into_iter()
            .zip(vectors.chunks(dim))
            .map(|(f, v)| Encoded {
                face: f.face.expect("detected faces carry their box"),
                encoding: v.to_vec(),
            })
            .collect())
    }

    /// Checks a style job's parameters.
    ///
    /// # Errors
    /// 400 naming the parameter and its range.
    pub fn check_style(&self, p: &StyleParams) -> Result<(), ApiError> {
        let min = self.style_min_side()?;
        if !(min as u32..=MAX_STYLE_SIDE).contains(&p.size) {
            return Err(ApiError::bad_request(format!(
                "size {} is outside {min}..={MAX_STYLE_SIDE} pixels",
                p.size
            )));
        }
        if !(1..=MAX_STYLE_ITERATIONS).contains(&p.iterations) {
            return Err(ApiError::bad_request(format!(
                "iterations {} is outside 1..={MAX_STYLE_ITERATIONS}",
                p.iterations
            )));
        }
        Ok(())
    }

    fn style_config(&self, iterations: usize) -> TransferConfig {
        let (content_layer, style_layers) = self.style_net.default_layers();
        TransferConfig {
            content_layer: content_layer.to_string(),
            style_layers: style_layers.iter().map(|s| s.to_string()).collect(),
            style_layer_weights: vec![],
            alpha: 1.0,
            beta: 1e4,
            tv: 0.0,
            optimizer: Optimizer::Lbfgs,
            iterations,
            init: Init::Content,
            seed: 0,
        }
    }

    fn style_min_side(&self) -> Result<usize, ApiError> {
        let cfg = self.style_config(1);
        let internal = |e: nn::Error| ApiError::internal(e.to_string());
        let mut taps = vec![
            self.style_net
                .layer_index(&cfg.content_layer)
                .map_err(internal)?,
        ];
        for l in &cfg.style_layers {
            taps.push(self.style_net.layer_index(l).map_err(internal)?);
        }
        self.style_net.min_side(&taps).map_err(internal)
    }

    /// Paints `content` in the style of `painting` (Gatys et al., the CLI's defaults:
    /// SqueezeNet, L-BFGS from the content image, alpha 1, beta 1e4) and returns the PNG.
    /// `progress` sees every iteration; returning false stops the job.
    ///
    /// # Errors
    /// Unreadable images, images too small for the network, a diverging optimisation (the
    /// reason, for the job's error field).
    pub fn style(
        &self,
        content: &[u8],
        painting: &[u8],
        params: &StyleParams,
        mut progress: impl FnMut(JobProgress) -> bool,
    ) -> Result<Vec<u8>, String> {
        self.check_style(params).map_err(|e| e.message)?;
        let min = self.style_min_side().map_err(|e| e.message)?;
        let content = self.decode(content, "content").map_err(|e| e.message)?;
        let painting = self.decode(painting, "style").map_err(|e| e.message)?;
        let text = |e: nn::Error| e.to_string();
        let content = style::image_io::image_tensor(content, Some(params.size)).map_err(text)?;
        let painting = style::image_io::image_tensor(painting, Some(params.size)).map_err(text)?;
        for (what, t) in [("content", &content), ("style", &painting)] {
            let (h, w) = (t.shape()[2], t.shape()[3]);
            if h.min(w) < min {
                return Err(format!(
                    "the {what} image is {w} x {h} at size {}; the network needs {min} pixels on each side: ask for a larger size",
                    params.size
                ));
            }
        }
        let cfg = self.style_config(params.iterations);
        let targets =
            Targets::new(&self.style_net, &content, &[(painting, 1.0)], &cfg).map_err(text)?;
        let total = params.iterations as f64;
        let out =
            style::transfer::transfer(&self.style_net, &targets, &content, &cfg, None, |p, _| {
                let done = p.iteration as f64;
                progress(JobProgress {
                    percent: 100.0 * done / total,
                    eta_seconds: Some(p.seconds / done * (total - done)),
                    loss: Some(p.loss),
                })
            })
            .map_err(text)?;
        let img = style::image_io::to_rgb8(&out.image);
        let mut png = std::io::Cursor::new(vec![]);
        img.write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| format!("cannot encode the result: {e}"))?;
        Ok(png.into_inner())
    }
}
