//! Where galleries, API keys and jobs live: a folder of gallery files and an in-process job
//! queue for one worker (nothing to install), or PostgreSQL shared by many workers. Both
//! answer the same operations; the server above does not know which one it talks to.

pub mod files;
pub mod pg;

use faces::gallery::{Calibration, Enrolled, Gallery};
use serde::{Deserialize, Serialize};

use crate::auth::Scope;
use crate::error::ApiError;

/// Result of store operations.
pub type Result<T> = std::result::Result<T, ApiError>;

/// A gallery's name: 1 to 64 letters, digits, `-` or `_` (it names a file in the embedded
/// store, so nothing else is let through).
///
/// # Errors
/// 400 naming the rule.
pub fn check_gallery_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "gallery name {name:?}: use 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRecord {
    /// Public identifier (the first characters of the key's hash), for listing and revoking.
    pub id: String,
    /// What the key is for, in words.
    pub label: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Seconds since 1970 when it was made.
    pub created: i64,
    /// SHA-256 of the key (hex).
    #[serde(skip)]
    #[schema(ignore)]
    pub hash: String,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds its lease and works on it.
    Running,
    /// Finished: the result is ready.
    Done,
    /// Failed: see the error.
    Failed,
}

impl JobState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }
}

/// What a style job asks for.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StyleParams {
    /// Longest side of the result, in pixels.
    pub size: u32,
    /// Optimiser iterations.
    pub iterations: usize,
}

/// A job as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    /// Job id.
    pub id: i64,
    /// `style`.
    pub kind: String,
    /// Where it is.
    pub state: JobState,
    /// Percent done (0-100).
    pub percent: f64,
    /// Estimated seconds left, once an iteration has run.
    pub eta_seconds: Option<f64>,
    /// The current loss.
    pub loss: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// The worker that holds (or held) it.
    pub worker: Option<String>,
    /// How many times a worker took it (more than 1: a worker died and another went on).
    pub attempts: i32,
    /// What was asked.
    pub params: StyleParams,
}

/// A job a worker has claimed: its inputs.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// Job id.
    pub id: i64,
    /// What was asked.
    pub params: StyleParams,
    /// The content photo's bytes.
    pub content: Vec<u8>,
    /// The painting's bytes.
    pub style: Vec<u8>,
}

/// Progress reported by the worker running a job.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobProgress {
    /// Percent done.
    pub percent: f64,
    /// Seconds left.
    pub eta_seconds: Option<f64>,
    /// Current loss.
    pub loss: Option<f64>,
}

/// The store behind a server.
pub enum Store {
    /// A folder of gallery files, keys in a file, jobs in memory.
    Files(files::FileStore),
    /// PostgreSQL.
    Postgres(pg::PgStore),
}

/// Calls the same method on whichever store this is.
macro_rules! each {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Files(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// `files` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Files(_) => "files",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Gallery names, sorted.
    pub async fn gallery_names(&self) -> Result<Vec<String>> {
        each!(self.gallery_names())
    }

    /// A whole gallery (404 when unknown).
    pub async fn load_gallery(&self, name: &str) -> Result<Gallery> {
        each!(self.load_gallery(name))
    }

    /// Stores a new gallery (409 when the name is taken, unless `replace`).
    pub async fn put_gallery(&self, name: &str, gallery: &Gallery, replace: bool) -> Result<()> {
        each!(self.put_gallery(name, gallery, replace))
    }

    /// Removes a gallery with everything in it.
    pub async fn delete_gallery(&self, name: &str) -> Result<()> {
        each!(self.delete_gallery(name))
    }

    /// Adds a person (409 when the name is taken).
    pub async fn add_person(&self, gallery: &str, person: &str) -> Result<()> {
        each!(self.add_person(gallery, person))
    }

    /// Adds one encoded photo to a person (created when new); false when that person already
    /// holds a photo with the same content.
    pub async fn add_image(&self, gallery: &str, person: &str, image: Enrolled) -> Result<bool> {
        each!(self.add_image(gallery, person, image))
    }

    /// Renames a person.
    pub async fn rename_person(&self, gallery: &str, from: &str, to: &str) -> Result<()> {
        each!(self.rename_person(gallery, from, to))
    }

    /// Removes a person and their encodings.
    pub async fn remove_person(&self, gallery: &str, person: &str) -> Result<()> {
        each!(self.remove_person(gallery, person))
    }

    /// Sets the gallery's threshold and how it was chosen.
    pub async fn set_calibration(&self, gallery: &str, tau: f32, cal: &Calibration) -> Result<()> {
        each!(self.set_calibration(gallery, tau, cal))
    }

    /// Every API key.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>> {
        each!(self.keys())
    }

    /// The key with this hash.
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>> {
        each!(self.key_by_hash(hash))
    }

    /// Stores a new key.
    pub async fn add_key(&self, key: &KeyRecord) -> Result<()> {
        each!(self.add_key(key))
    }

    /// Revokes a key (404 when unknown).
    pub async fn delete_key(&self, id: &str) -> Result<()> {
        each!(self.delete_key(id))
    }

    /// Queues a style job; returns its id.
    pub async fn submit_job(
        &self,
        params: &StyleParams,
        content: &[u8],
        style: &[u8],
    ) -> Result<i64> {
        each!(self.submit_job(params, content, style))
    }

    /// Takes the oldest queued job, or a running one whose lease has run out (its worker died),
    /// for `lease_seconds`.
    pub async fn claim_job(&self, worker: &str, lease_seconds: f64) -> Result<Option<ClaimedJob>> {
        each!(self.claim_job(worker, lease_seconds))
    }

    /// Records progress and renews the lease; false when this worker no longer holds the job.
    pub async fn job_progress(
        &self,
        id: i64,
        worker: &str,
        progress: JobProgress,
        lease_seconds: f64,
    ) -> Result<bool> {
        each!(self.job_progress(id, worker, progress, lease_seconds))
    }

    /// Stores the result (PNG) or the error; false when this worker no longer holds the job.
    pub async fn finish_job(
        &self,
        id: i64,
        worker: &str,
        result: std::result::Result<Vec<u8>, String>,
    ) -> Result<bool> {
        each!(self.finish_job(id, worker, result))
    }

    /// A job's status (404 when unknown).
    pub async fn job(&self, id: i64) -> Result<JobStatus> {
        each!(self.job(id))
    }

    /// A finished job's PNG (404 unknown, 409 not done).
    pub async fn job_result(&self, id: i64) -> Result<Vec<u8>> {
        each!(self.job_result(id))
    }

    /// Jobs queued or running.
    pub async fn queue_depth(&self) -> Result<i64> {
        each!(self.queue_depth())
    }
}
