//! The HTTP API: routes, request parsing, JSON answers and the OpenAPI document generated from
//! the handlers' annotations. Model work goes to [`crate::engine`] on rayon's pool; data to
//! [`crate::store`]; every error is an [`ApiError`] (one JSON shape).

use std::time::Instant;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Multipart, Path, Query, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, patch, post};
use faces::gallery::{Calibration, Enrolled, Gallery};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use utoipa::{OpenApi, ToSchema};

use crate::State;
use crate::auth::{self, Scope};
use crate::engine::{Encoded, on_pool};
use crate::error::{ApiError, ErrorBody};
use crate::live;
use crate::metrics::Gauge;
use crate::store::{JobState, JobStatus, KeyRecord, StyleParams, check_gallery_name};

type ApiResult<T> = Result<T, ApiError>;

/// Most photos one calibration request may carry.
const MAX_CALIBRATION_PHOTOS: usize = 400;

// ----- shapes of requests and answers -----

/// A face box in image pixels (`x, y` top-left).
#[derive(Serialize, ToSchema)]
pub struct FaceBox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

/// A detected face.
#[derive(Serialize, ToSchema)]
pub struct DetectedFace {
    /// Where it is.
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    /// Detector score in (0, 1).
    pub score: f32,
    /// The 68 landmarks (iBUG order) in image pixels.
    pub landmarks: Vec<[f64; 2]>,
}

/// Every face in a photo.
#[derive(Serialize, ToSchema)]
pub struct DetectResponse {
    /// Image width after EXIF orientation.
    pub width: u32,
    /// Image height after EXIF orientation.
    pub height: u32,
    /// Faces, best first.
    pub faces: Vec<DetectedFace>,
}

/// Whether two photos show the same person.
#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    /// `distance <= tau`.
    pub same: bool,
    /// Squared distance between the largest face of each photo.
    pub distance: f32,
    /// The threshold (the gallery's when `gallery` is given, else the model's).
    pub tau: f32,
    /// Faces found in photo `a` (the largest is compared).
    pub faces_a: usize,
    /// Faces found in photo `b`.
    pub faces_b: usize,
}

/// A gallery in the list.
#[derive(Serialize, ToSchema)]
pub struct GalleryInfo {
    /// Its name.
    pub name: String,
    /// People enrolled.
    pub people: usize,
    /// Encodings (enrolled photos).
    pub encodings: usize,
    /// Decision threshold on the squared distance.
    pub tau: f32,
    /// Whether tau was calibrated on labelled photos.
    pub calibrated: bool,
    /// The model that made the encodings, in words.
    pub model: String,
}

/// A new gallery.
#[derive(Deserialize, ToSchema)]
pub struct NewGallery {
    /// 1 to 64 letters, digits, `-` or `_`.
    pub name: String,
    /// Threshold (default: the model's).
    pub tau: Option<f32>,
}

/// A person in a gallery.
#[derive(Serialize, ToSchema)]
pub struct PersonInfo {
    /// The name.
    pub name: String,
    /// Enrolled photos.
    pub photos: usize,
    /// Their own threshold, if calibrated.
    pub tau: Option<f32>,
}

/// A name.
#[derive(Deserialize, ToSchema)]
pub struct Name {
    /// The (new) name.
    pub name: String,
}

/// What an enrolment did.
#[derive(Serialize, ToSchema)]
pub struct EnrolResponse {
    /// The person.
    pub person: String,
    /// False when this person already held this photo (same bytes).
    pub added: bool,
    /// Their photos now.
    pub photos: usize,
    /// The face that was enrolled.
    pub face: DetectedFace,
}

/// One candidate of a search.
#[derive(Serialize, ToSchema)]
pub struct Candidate {
    /// Person.
    pub name: String,
    /// Squared distance to their nearest photo.
    pub distance: f32,
}

/// A face of an identify request.
#[derive(Serialize, ToSchema)]
pub struct IdentifiedFace {
    /// Where it is.
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    /// Detector score.
    pub score: f32,
    /// The person, or null (unknown) when the nearest is beyond tau.
    pub identity: Option<String>,
    /// Squared distance to the nearest person (null with an empty gallery).
    pub distance: Option<f32>,
    /// The threshold used (that person's own, else the gallery's).
    pub tau: f32,
    /// Distance of the second person minus the first (null with fewer than two).
    pub margin: Option<f32>,
    /// The nearest people, nearest first.
    pub top: Vec<Candidate>,
}

/// Every face of a photo, named.
#[derive(Serialize, ToSchema)]
pub struct IdentifyResponse {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Faces, best detection first.
    pub faces: Vec<IdentifiedFace>,
}

/// A calibration's outcome.
#[derive(Serialize, ToSchema)]
pub struct CalibrateResponse {
    /// The new threshold.
    pub tau: f32,
    /// `best-accuracy` or `far<=X`.
    pub rule: String,
    /// Same-person pairs used.
    pub same_pairs: usize,
    /// Different-person pairs used.
    pub different_pairs: usize,
    /// Accuracy at tau on those pairs.
    pub accuracy: f64,
    /// False-accept rate at tau.
    pub far: f64,
    /// False-reject rate at tau.
    pub frr: f64,
    /// Area under the ROC.
    pub auc: f64,
}

/// A queued job.
#[derive(Serialize, ToSchema)]
pub struct JobCreated {
    /// Its id.
    pub id: i64,
    /// Where its status is.
    pub status_url: String,
    /// Where its PNG will be.
    pub result_url: String,
}

/// A new key's request.
#[derive(Deserialize, ToSchema)]
pub struct NewKey {
    /// What it is for.
    pub label: String,
    /// read, write, admin.
    pub scopes: Vec<Scope>,
}

/// A new key: shown once.
#[derive(Serialize, ToSchema)]
pub struct KeyCreated {
    /// The key: send it as `Authorization: Bearer KEY`. It is not stored and cannot be shown
    /// again.
    pub key: String,
    /// Its record.
    pub record: KeyRecord,
}

/// The server's state.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// This worker.
    pub worker: String,
    /// `files` or `postgres`.
    pub store: String,
    /// The face model, in words.
    pub model: String,
    /// The face model's fingerprint (galleries record it).
    pub fingerprint: String,
    /// This program's version.
    pub version: String,
}

/// A photo upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PhotoForm {
    /// The photo (JPEG, PNG, GIF, BMP, TIFF, WebP, PNM).
    #[schema(format = Binary, value_type = String)]
    photo: Vec<u8>,
}

/// Two photos.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PairForm {
    /// First photo.
    #[schema(format = Binary, value_type = String)]
    a: Vec<u8>,
    /// Second photo.
    #[schema(format = Binary, value_type = String)]
    b: Vec<u8>,
}

/// A style job's inputs.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StyleForm {
    /// The photo to repaint.
    #[schema(format = Binary, value_type = String)]
    content: Vec<u8>,
    /// The painting.
    #[schema(format = Binary, value_type = String)]
    style: Vec<u8>,
    /// Longest side of the result (default 256).
    size: Option<u32>,
    /// Iterations (default 100).
    iterations: Option<usize>,
}

/// Labelled photos: each part's name is the person's label, e.g. `-F alice=@a1.jpg
/// -F alice=@a2.jpg -F bob=@b1.jpg`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LabelledForm {
    /// Photos, each under its person's label (one face each).
    #[schema(format = Binary, value_type = String)]
    label: Vec<u8>,
}

/// `?top_k=`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct IdentifyQuery {
    /// How many people to list per face (1-20, default 3).
    #[param(minimum = 1, maximum = 20)]
    pub top_k: Option<usize>,
}

/// `?largest=`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct EnrolQuery {
    /// Enrol the largest face when the photo shows several (default: refuse).
    pub largest: Option<bool>,
}

/// `?gallery=`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct VerifyQuery {
    /// Take tau from this gallery (calibrated) instead of the model's default.
    pub gallery: Option<String>,
}

/// `?far=`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct CalibrateQuery {
    /// Choose the largest tau whose false-accept rate is at most this (default: best
    /// accuracy).
    #[param(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub far: Option<f64>,
}

// ----- request plumbing -----

/// `Query` whose rejection is an [`ApiError`] (JSON), naming the parameter.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// `Path` whose rejection is an [`ApiError`] (JSON).
pub struct P<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for P<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// One part of a multipart upload.
struct Part {
    name: String,
    bytes: Vec<u8>,
}

/// Reads every part of a multipart body, mapping the body limit to a 413 that names it.
async fn parts(state: &State, form: Result<Multipart, MultipartRejection>) -> ApiResult<Vec<Part>> {
    let mut form = form.map_err(|e| {
        ApiError::unsupported(format!(
            "expected a multipart/form-data upload ({})",
            e.body_text()
        ))
    })?;
    let limit = state.config.max_body_bytes;
    let mut out = vec![];
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, limit)),
        };
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|e| multipart_error(e, limit))?;
        out.push(Part {
            name,
            bytes: bytes.to_vec(),
        });
    }
    Ok(out)
}

fn body_too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!(
        "the request body is larger than the limit of {limit} bytes ({:.1} MiB)",
        limit as f64 / 1048576.0
    ))
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body_too_large(limit)
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// The one part called `name` (400 naming it when missing or repeated).
fn one<'a>(parts: &'a [Part], name: &str) -> ApiResult<&'a [u8]> {
    let mut found = parts.iter().filter(|p| p.name == name);
    match (found.next(), found.next()) {
        (Some(p), None) if !p.bytes.is_empty() => Ok(&p.bytes),
        (Some(_), None) => Err(ApiError::bad_request(format!("field {name:?} is empty"))),
        (None, _) => Err(ApiError::bad_request(format!(
            "missing field {name:?} (multipart/form-data)"
        ))),
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!("field {name:?} given twice"))),
    }
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(v)| v).map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::unsupported("expected Content-Type: application/json")
        }
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large(b.body_text())
        }
        other => ApiError::bad_request(other.body_text()),
    })
}

/// Checks the request's key for `scope`.
async fn authorize(state: &State, headers: &HeaderMap, scope: Scope) -> ApiResult<KeyRecord> {
    let key = auth::presented_key(headers)?;
    let record = state
        .store
        .key_by_hash(&auth::hash_key(&key))
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
    auth::require(&record, scope)?;
    Ok(record)
}

fn face_out(f: &faces::detect::Face) -> DetectedFace {
    let d = &f.detection;
    DetectedFace {
        bbox: FaceBox {
            x: d.x,
            y: d.y,
            width: d.width,
            height: d.height,
        },
        score: d.score,
        landmarks: f.landmarks.clone().unwrap_or_default(),
    }
}

fn content_hash(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn area(f: &Encoded) -> f64 {
    f.face.detection.width * f.face.detection.height
}

/// The one face of an enrolment photo: 422 naming the count unless `largest`.
fn single_face(mut found: Vec<Encoded>, what: &str, largest: bool) -> ApiResult<Encoded> {
    match found.len() {
        0 => Err(ApiError::unprocessable(format!("{what}: no face found"))),
        1 => Ok(found.remove(0)),
        n if largest => {
            let at = (0..n)
                .max_by(|&i, &j| area(&found[i]).total_cmp(&area(&found[j])))
                .expect("n > 1");
            Ok(found.swap_remove(at))
        }
        n => Err(ApiError::unprocessable(format!(
            "{what}: {n} faces found; enrol a photo with one face, or add ?largest=true to take the largest"
        ))),
    }
}

/// Decodes a photo and finds its faces on the pool, then encodes them in a shared batch.
async fn encode_photo(
    state: &State,
    bytes: Vec<u8>,
    field: &'static str,
) -> ApiResult<(u32, u32, Vec<Encoded>)> {
    let s = state.clone();
    let (w, h, faces) = on_pool(state, move || {
        let img = s.engine.decode(&bytes, field)?;
        let faces = s.engine.faces(&img)?;
        Ok((img.width(), img.height(), faces))
    })
    .await?;
    Ok((w, h, state.engine.embed(faces).await?))
}

fn check_model(state: &State, g: &Gallery, name: &str) -> ApiResult<()> {
    let model = state.engine.embedder.fingerprint();
    if g.model != model {
        return Err(ApiError::conflict(format!(
            "gallery {name:?} was enrolled with another model ({}; fingerprint {}) than this server's ({}; fingerprint {model}): its encodings cannot be compared",
            g.model_description,
            g.model,
            state.engine.embedder.describe()
        )));
    }
    Ok(())
}

// ----- handlers -----

/// The server's state (no key needed).
#[utoipa::path(get, path = "/v1/health", tag = "service", responses((status = 200, body = Health)))]
async fn health(axum::extract::State(state): axum::extract::State<State>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        worker: state.config.worker.clone(),
        store: state.store.kind().into(),
        model: state.engine.embedder.describe(),
        fingerprint: state.engine.embedder.fingerprint(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Request counts, latency quantiles, queue depth and gallery sizes, as Prometheus text (no
/// key needed; bind to a private address or put it behind the proxy's access rules).
#[utoipa::path(get, path = "/v1/metrics", tag = "service", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(axum::extract::State(state): axum::extract::State<State>) -> ApiResult<Response> {
    let depth = state.store.queue_depth().await?;
    let sizes = state
        .live
        .sizes()
        .into_iter()
        .map(|(g, n)| (format!("{{gallery=\"{g}\"}}"), n as f64))
        .collect();
    let text = state.metrics.render(&[
        Gauge {
            name: "cnn_queue_depth",
            help: "Jobs queued or running (all workers).",
            values: vec![(String::new(), depth as f64)],
        },
        Gauge {
            name: "cnn_gallery_encodings",
            help: "Encodings of the galleries in this worker's memory.",
            values: sizes,
        },
    ]);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "service", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Every face in a photo: box, score, 68 landmarks.
#[utoipa::path(post, path = "/v1/detect", tag = "faces",
    request_body(content = PhotoForm, content_type = "multipart/form-data"),
    responses((status = 200, body = DetectResponse), (status = "4XX", body = ErrorBody)),
    security(("key" = ["read"])))]
async fn detect(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<DetectResponse>> {
    // The body is read first: answering before it (401, 404) would close the connection
    // on a client still sending it, which then sees a broken pipe instead of the answer.
    let parts = parts(&state, form).await?;
    authorize(&state, &headers, Scope::Read).await?;
    let bytes = one(&parts, "photo")?.to_vec();
    let s = state.clone();
    let (w, h, found) = on_pool(&state, move || {
        let img = s.engine.decode(&bytes, "photo")?;
        Ok((img.width(), img.height(), s.engine.detect(&img)?))
    })
    .await?;
    Ok(Json(DetectResponse {
        width: w,
        height: h,
        faces: found.iter().map(face_out).collect(),
    }))
}

/// Whether two photos show the same person (the largest face of each).
#[utoipa::path(post, path = "/v1/verify", tag = "faces", params(VerifyQuery),
    request_body(content = PairForm, content_type = "multipart/form-data"),
    responses((status = 200, body = VerifyResponse), (status = "4XX", body = ErrorBody)),
    security(("key" = ["read"])))]
async fn verify(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    Q(q): Q<VerifyQuery>,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<VerifyResponse>> {
    // The body is read first: answering before it (401, 404) would close the connection
    // on a client still sending it, which then sees a broken pipe instead of the answer.
    let parts = parts(&state, form).await?;
    authorize(&state, &headers, Scope::Read).await?;
    let tau = match &q.gallery {
        Some(g) => {
            check_gallery_name(g)?;
            let live = live::get(&state, g).await?;
            check_model(&state, &live.gallery, g)?;
            live.gallery.tau
        }
        None => state.engine.embedder.tau(),
    };
    let (a, b) = (one(&parts, "a")?.to_vec(), one(&parts, "b")?.to_vec());
    let (_, _, fa) = encode_photo(&state, a, "a").await?;
    let (_, _, fb) = encode_photo(&state, b, "b").await?;
    let (na, nb) = (fa.len(), fb.len());
    let pick = |found: Vec<Encoded>, what: &str| single_face(found, what, true);
    let (ea, eb) = (pick(fa, "photo a")?, pick(fb, "photo b")?);
    let distance = faces::model::squared_l2(&ea.encoding, &eb.encoding);
    Ok(Json(VerifyResponse {
        same: distance <= tau,
        distance,
        tau,
        faces_a: na,
        faces_b: nb,
    }))
}

/// Galleries.
#[utoipa::path(get, path = "/v1/galleries", tag = "galleries",
    responses((status = 200, body = Vec<GalleryInfo>), (status = "4XX", body = ErrorBody)), security(("key" = ["read"])))]
async fn list_galleries(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<GalleryInfo>>> {
    authorize(&state, &headers, Scope::Read).await?;
    let mut out = vec![];
    for name in state.store.gallery_names().await? {
        let Ok(l) = live::get(&state, &name).await else {
            continue; // deleted meanwhile
        };
        out.push(GalleryInfo {
            name,
            people: l.gallery.identities.len(),
            encodings: l.gallery.len(),
            tau: l.gallery.tau,
            calibrated: l.gallery.calibration.is_some(),
            model: l.gallery.model_description.clone(),
        });
    }
    Ok(Json(out))
}

/// Creates an empty gallery for this server's model.
#[utoipa::path(post, path = "/v1/galleries", tag = "galleries", request_body = NewGallery,
    responses((status = 201, body = GalleryInfo), (status = "4XX", body = ErrorBody)),
    security(("key" = ["admin"])))]
async fn create_gallery(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    body: Result<Json<NewGallery>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<GalleryInfo>)> {
    authorize(&state, &headers, Scope::Admin).await?;
    let req = json_body(body)?;
    check_gallery_name(&req.name)?;
    let e = &state.engine.embedder;
    let tau = req.tau.unwrap_or_else(|| e.tau());
    if !(tau.is_finite() && tau >= 0.0) {
        return Err(ApiError::bad_request(format!(
            "tau {tau} is not a distance (finite, >= 0)"
        )));
    }
    let g = Gallery::new(e.fingerprint(), e.describe(), e.dim(), tau);
    state.store.put_gallery(&req.name, &g, false).await?;
    live::refresh(&state, &req.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(GalleryInfo {
            name: req.name,
            people: 0,
            encodings: 0,
            tau,
            calibrated: false,
            model: g.model_description,
        }),
    ))
}

/// Deletes a gallery with its people and encodings.
#[utoipa::path(delete, path = "/v1/galleries/{gallery}", tag = "galleries",
    params(("gallery" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)), security(("key" = ["admin"])))]
async fn delete_gallery(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(gallery): P<String>,
) -> ApiResult<StatusCode> {
    authorize(&state, &headers, Scope::Admin).await?;
    state.store.delete_gallery(&gallery).await?;
    live::refresh(&state, &gallery).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The gallery as a file the CLI reads (`cnn faces gallery list --gallery FILE`): people,
/// encodings byte for byte, tau and its calibration.
#[utoipa::path(get, path = "/v1/galleries/{gallery}/export", tag = "galleries",
    params(("gallery" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = "4XX", body = ErrorBody)),
    security(("key" = ["admin"])))]
async fn export_gallery(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(gallery): P<String>,
) -> ApiResult<Response> {
    authorize(&state, &headers, Scope::Admin).await?;
    let g = state.store.load_gallery(&gallery).await?;
    let bytes = g.to_bytes()?;
    let disposition = format!("attachment; filename=\"{gallery}.gallery\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Imports a gallery file written by the CLI (its model must be this server's); `?replace=true`
/// overwrites an existing gallery of that name.
#[utoipa::path(put, path = "/v1/galleries/{gallery}/import", tag = "galleries",
    params(("gallery" = String, Path), ("replace" = Option<bool>, Query)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = GalleryInfo), (status = "4XX", body = ErrorBody)),
    security(("key" = ["admin"])))]
async fn import_gallery(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(gallery): P<String>,
    Q(q): Q<std::collections::HashMap<String, String>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<GalleryInfo>)> {
    authorize(&state, &headers, Scope::Admin).await?;
    check_gallery_name(&gallery)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large(state.config.max_body_bytes)
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    let g = Gallery::from_bytes(&body, std::path::Path::new("upload"))
        .map_err(|e| ApiError::bad_request(format!("not a gallery file: {e}")))?;
    check_model(&state, &g, &gallery)?;
    let replace = q.get("replace").is_some_and(|v| v == "true");
    state.store.put_gallery(&gallery, &g, replace).await?;
    live::refresh(&state, &gallery).await?;
    Ok((
        StatusCode::CREATED,
        Json(GalleryInfo {
            name: gallery,
            people: g.identities.len(),
            encodings: g.len(),
            tau: g.tau,
            calibrated: g.calibration.is_some(),
            model: g.model_description,
        }),
    ))
}

/// People of a gallery.
#[utoipa::path(get, path = "/v1/galleries/{gallery}/people", tag = "people",
    params(("gallery" = String, Path)),
    responses((status = 200, body = Vec<PersonInfo>), (status = "4XX", body = ErrorBody)),
    security(("key" = ["read"])))]
async fn list_people(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(gallery): P<String>,
) -> ApiResult<Json<Vec<PersonInfo>>> {
    authorize(&state, &headers, Scope::Read).await?;
    check_gallery_name(&gallery)?;
    let l = live::get(&state, &gallery).await?;
    Ok(Json(
        l.gallery
            .identities
            .iter()
            .map(|i| PersonInfo {
                name: i.name.clone(),
                photos: i.images.len(),
                tau: i.tau,
            })
            .collect(),
    ))
}

/// Adds a person with no photo yet.
#[utoipa::path(post, path = "/v1/galleries/{gallery}/people", tag = "people",
    params(("gallery" = String, Path)), request_body = Name,
    responses((status = 201, body = PersonInfo), (status = "4XX", body = ErrorBody)),
    security(("key" = ["write"])))]
async fn add_person(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(gallery): P<String>,
    body: Result<Json<Name>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<PersonInfo>)> {
    authorize(&state, &headers, Scope::Write).await?;
    let req = json_body(body)?;
    state.store.add_person(&gallery, &req.name).await?;
    live::refresh(&state, &gallery).await?;
    Ok((
        StatusCode::CREATED,
        Json(PersonInfo {
            name: req.name,
            photos: 0,
            tau: None,
        }),
    ))
}

/// Renames a person.
#[utoipa::path(patch, path = "/v1/galleries/{gallery}/people/{person}", tag = "people",
    params(("gallery" = String, Path), ("person" = String, Path)), request_body = Name,
    responses((status = 204), (status = "4XX", body = ErrorBody)), security(("key" = ["write"])))]
async fn rename_person(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P((gallery, person)): P<(String, String)>,
    body: Result<Json<Name>, JsonRejection>,
) -> ApiResult<StatusCode> {
    authorize(&state, &headers, Scope::Write).await?;
    let req = json_body(body)?;
    state
        .store
        .rename_person(&gallery, &person, &req.name)
        .await?;
    live::refresh(&state, &gallery).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a person and their photos' encodings.
#[utoipa::path(delete, path = "/v1/galleries/{gallery}/people/{person}", tag = "people",
    params(("gallery" = String, Path), ("person" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)), security(("key" = ["write"])))]
async fn remove_person(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P((gallery, person)): P<(String, String)>,
) -> ApiResult<StatusCode> {
    authorize(&state, &headers, Scope::Write).await?;
    state.store.remove_person(&gallery, &person).await?;
    live::refresh(&state, &gallery).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enrols a photo of a person (created when new): the photo must show one face (422 names
/// how many it shows), unless `?largest=true`.
#[utoipa::path(post, path = "/v1/galleries/{gallery}/people/{person}/photos", tag = "people",
    params(("gallery" = String, Path), ("person" = String, Path), EnrolQuery),
    request_body(content = PhotoForm, content_type = "multipart/form-data"),
    responses((status = 201, body = EnrolResponse), (status = "4XX", body = ErrorBody)),
    security(("key" = ["write"])))]
async fn enrol(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P((gallery, person)): P<(String, String)>,
    Q(q): Q<EnrolQuery>,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<EnrolResponse>)> {
    // The body is read first: answering before it (401, 404) would close the connection
    // on a client still sending it, which then sees a broken pipe instead of the answer.
    let parts = parts(&state, form).await?;
    authorize(&state, &headers, Scope::Write).await?;
    check_gallery_name(&gallery)?;
    faces::gallery::check_name(&person)?;
    let l = live::get(&state, &gallery).await?;
    check_model(&state, &l.gallery, &gallery)?;
    let bytes = one(&parts, "photo")?.to_vec();
    let hash = content_hash(&bytes);
    let (_, _, found) = encode_photo(&state, bytes, "photo").await?;
    let face = single_face(found, "photo", q.largest.unwrap_or(false))?;
    let added = state
        .store
        .add_image(
            &gallery,
            &person,
            Enrolled {
                source: format!("upload:{}", &hash[..16]),
                content_hash: hash,
                encoding: face.encoding,
            },
        )
        .await?;
    live::refresh(&state, &gallery).await?;
    let l = live::get(&state, &gallery).await?;
    let photos = l
        .gallery
        .identities
        .iter()
        .find(|i| i.name == person)
        .map_or(0, |i| i.images.len());
    Ok((
        if added {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(EnrolResponse {
            person,
            added,
            photos,
            face: face_out(&face.face),
        }),
    ))
}

/// Names every face in a photo: the nearest person within tau, or unknown.
#[utoipa::path(post, path = "/v1/galleries/{gallery}/identify", tag = "faces",
    params(("gallery" = String, Path), IdentifyQuery),
    request_body(content = PhotoForm, content_type = "multipart/form-data"),
    responses((status = 200, body = IdentifyResponse), (status = "4XX", body = ErrorBody)),
    security(("key" = ["read"])))]
async fn identify(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(gallery): P<String>,
    Q(q): Q<IdentifyQuery>,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<IdentifyResponse>> {
    // The body is read first: answering before it (401, 404) would close the connection
    // on a client still sending it, which then sees a broken pipe instead of the answer.
    let parts = parts(&state, form).await?;
    authorize(&state, &headers, Scope::Read).await?;
    check_gallery_name(&gallery)?;
    let top_k = q.top_k.unwrap_or(3);
    if !(1..=20).contains(&top_k) {
        return Err(ApiError::bad_request(format!(
            "top_k {top_k} is outside 1..=20"
        )));
    }
    let l = live::get(&state, &gallery).await?;
    check_model(&state, &l.gallery, &gallery)?;
    let bytes = one(&parts, "photo")?.to_vec();
    let (w, h, found) = encode_photo(&state, bytes, "photo").await?;
    let mut out = vec![];
    for f in found {
        let hits = l
            .index
            .search(&f.encoding, top_k.max(2))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let d = l.gallery.decide(&hits);
        let b = face_out(&f.face);
        out.push(IdentifiedFace {
            bbox: b.bbox,
            score: b.score,
            identity: d.identity,
            distance: d.distance.is_finite().then_some(d.distance),
            tau: d.tau,
            margin: d.margin.is_finite().then_some(d.margin),
            top: d
                .top
                .into_iter()
                .take(top_k)
                .map(|(name, distance)| Candidate { name, distance })
                .collect(),
        });
    }
    Ok(Json(IdentifyResponse {
        width: w,
        height: h,
        faces: out,
    }))
}

/// Sets the gallery's tau from labelled photos (each part named by its person's label, one
/// face per photo): every pair of photos is scored, tau chosen at the best accuracy or at
/// `?far=`.
#[utoipa::path(post, path = "/v1/galleries/{gallery}/calibrate", tag = "galleries",
    params(("gallery" = String, Path), CalibrateQuery),
    request_body(content = LabelledForm, content_type = "multipart/form-data"),
    responses((status = 200, body = CalibrateResponse), (status = "4XX", body = ErrorBody)),
    security(("key" = ["write"])))]
async fn calibrate(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(gallery): P<String>,
    Q(q): Q<CalibrateQuery>,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<CalibrateResponse>> {
    // The body is read first: answering before it (401, 404) would close the connection
    // on a client still sending it, which then sees a broken pipe instead of the answer.
    let parts = parts(&state, form).await?;
    authorize(&state, &headers, Scope::Write).await?;
    check_gallery_name(&gallery)?;
    let l = live::get(&state, &gallery).await?;
    check_model(&state, &l.gallery, &gallery)?;
    let rule = match q.far {
        None => faces::eval::ThresholdRule::BestAccuracy,
        Some(f) if f > 0.0 && f < 1.0 => faces::eval::ThresholdRule::TargetFar(f),
        Some(f) => return Err(ApiError::bad_request(format!("far {f} is outside (0, 1)"))),
    };
    if parts.len() > MAX_CALIBRATION_PHOTOS {
        return Err(ApiError::too_large(format!(
            "{} photos; a calibration takes at most {MAX_CALIBRATION_PHOTOS}",
            parts.len()
        )));
    }
    let mut encoded: Vec<(String, Vec<f32>)> = vec![];
    for (k, p) in parts.into_iter().enumerate() {
        if p.name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "part {k} has no name (its person's label)"
            )));
        }
        let (_, _, found) = encode_photo(&state, p.bytes, "photo").await?;
        let face = single_face(found, &format!("photo {k} ({})", p.name), false)?;
        encoded.push((p.name, face.encoding));
    }
    let mut pairs = vec![];
    for i in 0..encoded.len() {
        for j in i + 1..encoded.len() {
            pairs.push(faces::eval::ScoredPair {
                distance: faces::model::squared_l2(&encoded[i].1, &encoded[j].1),
                same: encoded[i].0 == encoded[j].0,
            });
        }
    }
    let (tau, cal): (f32, Calibration) = Calibration::measure(&pairs, rule).map_err(|why| {
        ApiError::unprocessable(format!(
            "{why} (send at least two photos of one person and photos of two people)"
        ))
    })?;
    state.store.set_calibration(&gallery, tau, &cal).await?;
    live::refresh(&state, &gallery).await?;
    Ok(Json(CalibrateResponse {
        tau,
        rule: cal.rule,
        same_pairs: cal.pairs.0,
        different_pairs: cal.pairs.1,
        accuracy: cal.accuracy,
        far: cal.far,
        frr: cal.frr,
        auc: cal.auc,
    }))
}

/// Queues a style transfer: `content` repainted in the style of `style` (202 with the job's
/// id; follow `status_url`, fetch `result_url` when done).
#[utoipa::path(post, path = "/v1/jobs/style", tag = "style",
    request_body(content = StyleForm, content_type = "multipart/form-data"),
    responses((status = 202, body = JobCreated), (status = "4XX", body = ErrorBody)),
    security(("key" = ["write"])))]
async fn submit_style(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<JobCreated>)> {
    // The body is read first: answering before it (401, 404) would close the connection
    // on a client still sending it, which then sees a broken pipe instead of the answer.
    let parts = parts(&state, form).await?;
    authorize(&state, &headers, Scope::Write).await?;
    let number = |name: &str, default: usize| -> ApiResult<usize> {
        match parts.iter().find(|p| p.name == name) {
            None => Ok(default),
            Some(p) => std::str::from_utf8(&p.bytes)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| ApiError::bad_request(format!("{name} is not a whole number"))),
        }
    };
    let params = StyleParams {
        size: u32::try_from(number("size", 256)?)
            .map_err(|_| ApiError::bad_request("size is too large"))?,
        iterations: number("iterations", 100)?,
    };
    state.engine.check_style(&params)?;
    let (content, painting) = (one(&parts, "content")?, one(&parts, "style")?);
    // Undecodable inputs are refused now, not found later by a worker.
    for (bytes, field) in [(content, "content"), (painting, "style")] {
        let s = state.clone();
        let b = bytes.to_vec();
        on_pool(&state, move || s.engine.decode(&b, field).map(|_| ())).await?;
    }
    let id = state.store.submit_job(&params, content, painting).await?;
    state.job_wakeup.notify_waiters();
    Ok((
        StatusCode::ACCEPTED,
        Json(JobCreated {
            id,
            status_url: format!("/v1/jobs/{id}"),
            result_url: format!("/v1/jobs/{id}/result"),
        }),
    ))
}

/// A job's state and progress.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "style", params(("id" = i64, Path)),
    responses((status = 200, body = JobStatus), (status = "4XX", body = ErrorBody)),
    security(("key" = ["read"])))]
async fn job_status(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(id): P<i64>,
) -> ApiResult<Json<JobStatus>> {
    authorize(&state, &headers, Scope::Read).await?;
    Ok(Json(state.store.job(id).await?))
}

/// A finished job's image (409 while it is queued or running, with its state).
#[utoipa::path(get, path = "/v1/jobs/{id}/result", tag = "style", params(("id" = i64, Path)),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = "4XX", body = ErrorBody)),
    security(("key" = ["read"])))]
async fn job_result(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(id): P<i64>,
) -> ApiResult<Response> {
    authorize(&state, &headers, Scope::Read).await?;
    let status = state.store.job(id).await?;
    if status.state == JobState::Failed {
        return Err(ApiError::conflict(format!(
            "job {id} failed: {}",
            status.error.unwrap_or_default()
        )));
    }
    let png = state.store.job_result(id).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// API keys (their records; keys themselves are never stored).
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = Vec<KeyRecord>), (status = "4XX", body = ErrorBody)), security(("key" = ["admin"])))]
async fn list_keys(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<KeyRecord>>> {
    authorize(&state, &headers, Scope::Admin).await?;
    Ok(Json(state.store.keys().await?))
}

/// Creates a key; the answer is the only time it is shown.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, body = KeyCreated), (status = "4XX", body = ErrorBody)),
    security(("key" = ["admin"])))]
async fn create_key(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    body: Result<Json<NewKey>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<KeyCreated>)> {
    authorize(&state, &headers, Scope::Admin).await?;
    let req = json_body(body)?;
    if req.scopes.is_empty() {
        return Err(ApiError::bad_request(
            "scopes is empty (read, write, admin)",
        ));
    }
    if req.label.chars().count() > 200 || req.label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "label: at most 200 characters, no control characters",
        ));
    }
    let mut scopes = req.scopes;
    scopes.sort_by_key(|s| *s as u8);
    scopes.dedup();
    let (key, record) = auth::new_key(&req.label, scopes);
    state.store.add_key(&record).await?;
    Ok((StatusCode::CREATED, Json(KeyCreated { key, record })))
}

/// Revokes a key.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)), security(("key" = ["admin"])))]
async fn delete_key(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    P(id): P<String>,
) -> ApiResult<StatusCode> {
    authorize(&state, &headers, Scope::Admin).await?;
    state.store.delete_key(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The web page.
async fn page() -> Html<&'static str> {
    Html(include_str!("../web/index.html"))
}

/// Unknown routes answer a JSON 404 too.
async fn fallback(req: Request) -> ApiError {
    ApiError::not_found(format!("no route {} {}", req.method(), req.uri().path()))
}

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`cnn serve-keys create`); scopes read, write, admin",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document: every handler above, with its request and answer shapes.
#[derive(OpenApi)]
#[openapi(
    info(title = "cnn service", description = "Face detection, verification and recognition against shared galleries; style transfer jobs."),
    paths(health, metrics, openapi, detect, verify, list_galleries, create_gallery, delete_gallery,
          export_gallery, import_gallery, list_people, add_person, rename_person, remove_person,
          enrol, identify, calibrate, submit_style, job_status, job_result, list_keys, create_key,
          delete_key),
    modifiers(&SecurityAddon)
)]
pub struct ApiDoc;

/// Counts the request and bounds its time.
async fn observe(
    axum::extract::State(state): axum::extract::State<State>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let t0 = Instant::now();
    let limit = state.config.request_timeout;
    // A declared length beyond the limit is refused before the body is read: a client that
    // waits for `100 Continue` (curl with large uploads) never sends it.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max = state.config.max_body_bytes;
    let response = if declared.is_some_and(|n| n > max as u64) {
        body_too_large(max).into_response()
    } else {
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::unavailable(format!(
                "the request took longer than the server's limit of {} s",
                limit.as_secs_f64()
            ))
            .into_response(),
        }
    };
    state.metrics.record(
        &route,
        response.status().as_u16(),
        t0.elapsed().as_secs_f64(),
    );
    response
}

/// The routes.
pub fn router(state: State) -> axum::Router {
    let limit = state.config.max_body_bytes;
    axum::Router::new()
        .route("/", get(page))
        .route("/v1/health", get(health))
        .route("/v1/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/detect", post(detect))
        .route("/v1/verify", post(verify))
        .route("/v1/galleries", get(list_galleries).post(create_gallery))
        .route(
            "/v1/galleries/{gallery}",
            axum::routing::delete(delete_gallery),
        )
        .route("/v1/galleries/{gallery}/export", get(export_gallery))
        .route(
            "/v1/galleries/{gallery}/import",
            axum::routing::put(import_gallery),
        )
        .route(
            "/v1/galleries/{gallery}/people",
            get(list_people).post(add_person),
        )
        .route(
            "/v1/galleries/{gallery}/people/{person}",
            patch(rename_person).delete(remove_person),
        )
        .route(
            "/v1/galleries/{gallery}/people/{person}/photos",
            post(enrol),
        )
        .route("/v1/galleries/{gallery}/identify", post(identify))
        .route("/v1/galleries/{gallery}/calibrate", post(calibrate))
        .route("/v1/jobs/style", post(submit_style))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/result", get(job_result))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", axum::routing::delete(delete_key))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
