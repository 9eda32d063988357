//! The model work behind the API: decoding uploads within the limits, finding and encoding
//! faces, painting a style job. Everything here is blocking, CPU-bound code; the server runs
//! it on rayon's pool ([`on_pool`]) so the async threads stay free for I/O.

use std::sync::Arc;

use faces::detect::Face;
use faces::embedder::Embedder;
use faces::embedder::FaceInput;
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
    pub embedder: Arc<Embedder>,
    /// Encodes the faces of concurrent requests together (see [`Engine::embed`]).
    batches: std::sync::Mutex<std::sync::mpsc::Sender<BatchItem>>,
    /// The style loss network (SqueezeNet, bundled).
    pub style_net: LossNetwork,
    /// The largest decoded image, in pixels.
    pub max_pixels: u64,
    /// Admission to the pool: one permit per pool thread (see [`on_pool`]).
    pub slots: tokio::sync::Semaphore,
}

/// The faces of one request waiting to be encoded, and where their encodings go.
type BatchItem = (
    Vec<tensor::Tensor>,
    tokio::sync::oneshot::Sender<Result<Vec<f32>, String>>,
);

/// The most faces encoded in one batch.
const MAX_BATCH: usize = 64;

/// Encodes the faces of whatever requests are waiting, together: one forward pass of a batch
/// costs less per face than one per request (the CLI encodes in batches of 64 too). Each
/// batch runs on rayon's pool as one task.
fn run_batches(embedder: Arc<Embedder>, queue: std::sync::mpsc::Receiver<BatchItem>) {
    while let Ok(first) = queue.recv() {
        let mut items = vec![first];
        let mut faces = items[0].0.len();
        while faces < MAX_BATCH {
            match queue.try_recv() {
                Ok(item) => {
                    faces += item.0.len();
                    items.push(item);
                }
                Err(_) => break,
            }
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let e = embedder.clone();
        rayon::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let refs: Vec<&tensor::Tensor> = items.iter().flat_map(|i| i.0.iter()).collect();
                e.embed(&refs, MAX_BATCH).map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("the face encoder panicked".into()));
            let dim = e.dim();
            let mut at = 0;
            for (inputs, reply) in items {
                let n = inputs.len() * dim;
                let mine = match &result {
                    Ok(v) => Ok(v[at..at + n].to_vec()),
                    Err(why) => Err(why.clone()),
                };
                at += n;
                let _ = reply.send(mine);
            }
            let _ = done_tx.send(());
        });
        // One batch at a time: the next one gathers the requests that arrived meanwhile.
        let _ = done_rx.recv();
    }
}

/// A face found in a photo with its encoding.
pub struct Encoded {
    /// Where it is.
    pub face: Face,
    /// Its embedding.
    pub encoding: Vec<f32>,
}

/// Runs blocking model work on rayon's pool and awaits it. At most one piece of work per pool
/// thread runs at a time, admitted in arrival order (a fair queue: without it, under load the
/// pool's work stealing answers some requests several times later than others). Work whose
/// caller has gone (a timed-out request) before it starts is skipped.
///
/// # Errors
/// 500 when the work panicked.
pub async fn on_pool<T: Send + 'static>(
    state: &crate::State,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let _slot = state
        .engine
        .slots
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("the server is stopping"))?;
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
        let embedder = Arc::new(embedder);
        let (tx, rx) = std::sync::mpsc::channel();
        let e = embedder.clone();
        std::thread::Builder::new()
            .name("face-batches".into())
            .spawn(move || run_batches(e, rx))
            .map_err(|e| {
                nn::Error::arg("Engine", format!("cannot start the encoder thread: {e}"))
            })?;
        Ok(Engine {
            embedder,
            batches: std::sync::Mutex::new(tx),
            style_net: LossNetwork::load(NetworkKind::SqueezeNet, None, false)?,
            max_pixels,
            slots: tokio::sync::Semaphore::new(rayon::current_num_threads().max(1)),
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

    /// Every face in a photo, aligned and ready to encode (blocking: run it on the pool).
    ///
    /// # Errors
    /// 500 when the networks fail.
    pub fn faces(&self, img: &image::RgbImage) -> Result<Vec<FaceInput>, ApiError> {
        let (finder, template) = self.embedder.finder().expect("checked in new");
        self.embedder
            .faces_in_image(img, finder, template)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Encodes faces, batched with other requests' faces (awaits the batch).
    ///
    /// # Errors
    /// 500 when the encoder fails.
    pub async fn embed(&self, faces: Vec<FaceInput>) -> Result<Vec<Encoded>, ApiError> {
        if faces.is_empty() {
            return Ok(vec![]);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (boxes, inputs): (Vec<Face>, Vec<tensor::Tensor>) = faces
            .into_iter()
            .map(|f| (f.face.expect("detected faces carry their box"), f.input))
            .unzip();
        self.batches
            .lock()
            .expect("not poisoned")
            .send((inputs, tx))
            .map_err(|_| ApiError::internal("the face encoder stopped"))?;
        let vectors = rx
            .await
            .map_err(|_| ApiError::internal("the face encoder stopped"))?
            .map_err(ApiError::internal)?;
        let dim = self.embedder.dim();
        Ok(boxes
            .into_iter()
            .zip(vectors.chunks(dim))
            .map(|(face, v)| Encoded {
                face,
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
