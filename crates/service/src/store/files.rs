//! The embedded store: one gallery file per gallery (the same format the CLI writes, written
//! atomically), the keys' hashes in `keys.json`, jobs in memory (one process; a restart loses
//! queued jobs, which is why several workers need PostgreSQL).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faces::gallery::{Calibration, Enrolled, Gallery};
use tokio::sync::Mutex;

use super::{
    ClaimedJob, JobProgress, JobState, JobStatus, KeyRecord, Result, StyleParams,
    check_gallery_name,
};
use crate::error::ApiError;

/// A key as `keys.json` holds it (the record with its hash).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    id: String,
    label: String,
    scopes: Vec<crate::auth::Scope>,
    created: i64,
    hash: String,
}

struct MemJob {
    status: JobStatus,
    content: Vec<u8>,
    style: Vec<u8>,
    result: Option<Vec<u8>>,
    lease_until: Option<Instant>,
}

/// A folder of gallery files and an in-memory job queue.
pub struct FileStore {
    dir: PathBuf,
    /// Serialises every read-modify-write of a file.
    writes: Mutex<()>,
    jobs: Mutex<Vec<MemJob>>,
}

fn io_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

impl FileStore {
    /// Opens (creating) the folder.
    ///
    /// # Errors
    /// A folder that cannot be created.
    pub fn open(dir: &Path) -> std::io::Result<FileStore> {
        std::fs::create_dir_all(dir.join("galleries"))?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
            writes: Mutex::new(()),
            jobs: Mutex::new(vec![]),
        })
    }

    fn gallery_path(&self, name: &str) -> Result<PathBuf> {
        check_gallery_name(name)?;
        Ok(self.dir.join("galleries").join(format!("{name}.gallery")))
    }

    fn keys_path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    pub(super) async fn gallery_names(&self) -> Result<Vec<String>> {
        let mut names = vec![];
        for entry in std::fs::read_dir(self.dir.join("galleries")).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            if path.extension().is_some_and(|e| e == "gallery")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && check_gallery_name(stem).is_ok()
            {
                names.push(stem.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    pub(super) async fn load_gallery(&self, name: &str) -> Result<Gallery> {
        let path = self.gallery_path(name)?;
        if !path.exists() {
            return Err(ApiError::not_found(format!("no gallery {name:?}")));
        }
        tokio::task::block_in_place(|| Gallery::load(&path)).map_err(ApiError::from)
    }

    /// Loads, changes and writes back one gallery under the write lock.
    async fn modify<T>(
        &self,
        name: &str,
        change: impl FnOnce(&mut Gallery) -> Result<T>,
    ) -> Result<T> {
        let _guard = self.writes.lock().await;
        let mut g = self.load_gallery(name).await?;
        let out = change(&mut g)?;
        let path = self.gallery_path(name)?;
        tokio::task::block_in_place(|| g.save(&path))?;
        Ok(out)
    }

    pub(super) async fn put_gallery(
        &self,
        name: &str,
        gallery: &Gallery,
        replace: bool,
    ) -> Result<()> {
        let _guard = self.writes.lock().await;
        let path = self.gallery_path(name)?;
        if !replace && path.exists() {
            return Err(ApiError::conflict(format!("gallery {name:?} exists")));
        }
        tokio::task::block_in_place(|| gallery.save(&path))?;
        Ok(())
    }

    pub(super) async fn delete_gallery(&self, name: &str) -> Result<()> {
        let _guard = self.writes.lock().await;
        let path = self.gallery_path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ApiError::not_found(format!("no gallery {name:?}")))
            }
            Err(e) => Err(io_error(e)),
        }
    }

    pub(super) async fn add_person(&self, gallery: &str, person: &str) -> Result<()> {
        self.modify(gallery, |g| {
            faces::gallery::check_name(person)?;
            if g.identities.iter().any(|i| i.name == person) {
                return Err(ApiError::conflict(format!("person {person:?} exists")));
            }
            g.identities.push(faces::gallery::Identity {
                name: person.to_string(),
                tau: None,
                images: vec![],
            });
            Ok(())
        })
        .await
    }

    pub(super) async fn add_image(
        &self,
        gallery: &str,
        person: &str,
        image: Enrolled,
    ) -> Result<bool> {
        self.modify(gallery, |g| Ok(g.add_image(person, image)?))
            .await
    }

    pub(super) async fn rename_person(&self, gallery: &str, from: &str, to: &str) -> Result<()> {
        self.modify(gallery, |g| Ok(g.rename(from, to)?)).await
    }

    pub(super) async fn remove_person(&self, gallery: &str, person: &str) -> Result<()> {
        self.modify(gallery, |g| Ok(g.remove(person).map(|_| ())?))
            .await
    }

    pub(super) async fn set_calibration(
        &self,
        gallery: &str,
        tau: f32,
        cal: &Calibration,
    ) -> Result<()> {
        self.modify(gallery, |g| {
            g.tau = tau;
            g.calibration = Some(cal.clone());
            Ok(())
        })
        .await
    }

    fn read_keys(&self) -> Result<Vec<KeyRecord>> {
        let path = self.keys_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io_error(format!("{}: {e}", path.display()))),
        };
        let stored: Vec<StoredKey> = serde_json::from_slice(&bytes)
            .map_err(|e| io_error(format!("{}: {e}", path.display())))?;
        Ok(stored
            .into_iter()
            .map(|s| KeyRecord {
                id: s.id,
                label: s.label,
                scopes: s.scopes,
                created: s.created,
                hash: s.hash,
            })
            .collect())
    }

    fn write_keys(&self, keys: &[KeyRecord]) -> Result<()> {
        let stored: Vec<StoredKey> = keys
            .iter()
            .map(|k| StoredKey {
                id: k.id.clone(),
                label: k.label.clone(),
                scopes: k.scopes.clone(),
                created: k.created,
                hash: k.hash.clone(),
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&stored).map_err(io_error)?;
        nn::checkpoint::write_atomic(&self.keys_path(), &bytes).map_err(io_error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(self.keys_path(), std::fs::Permissions::from_mode(0o600))
                .map_err(io_error)?;
        }
        Ok(())
    }

    pub(super) async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.read_keys()
    }

    pub(super) async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>> {
        Ok(self.read_keys()?.into_iter().find(|k| k.hash == hash))
    }

    pub(super) async fn add_key(&self, key: &KeyRecord) -> Result<()> {
        let _guard = self.writes.lock().await;
        let mut keys = self.read_keys()?;
        keys.push(key.clone());
        self.write_keys(&keys)
    }

    pub(super) async fn delete_key(&self, id: &str) -> Result<()> {
        let _guard = self.writes.lock().await;
        let mut keys = self.read_keys()?;
        let before = keys.len();
        keys.retain(|k| k.id != id);
        if keys.len() == before {
            return Err(ApiError::not_found(format!("no key {id:?}")));
        }
        self.write_keys(&keys)
    }

    pub(super) async fn submit_job(
        &self,
        params: &StyleParams,
        content: &[u8],
        style: &[u8],
    ) -> Result<i64> {
        let mut jobs = self.jobs.lock().await;
        let id = jobs.len() as i64 + 1;
        jobs.push(MemJob {
            status: JobStatus {
                id,
                kind: "style".into(),
                state: JobState::Queued,
                percent: 0.0,
                eta_seconds: None,
                loss: None,
                error: None,
                worker: None,
                attempts: 0,
                params: params.clone(),
            },
            content: content.to_vec(),
            style: style.to_vec(),
            result: None,
            lease_until: None,
        });
        Ok(id)
    }

    pub(super) async fn claim_job(
        &self,
        worker: &str,
        lease_seconds: f64,
    ) -> Result<Option<ClaimedJob>> {
        let mut jobs = self.jobs.lock().await;
        let now = Instant::now();
        let Some(job) = jobs.iter_mut().find(|j| {
            j.status.state == JobState::Queued
                || (j.status.state == JobState::Running && j.lease_until.is_some_and(|t| t < now))
        }) else {
            return Ok(None);
        };
        job.status.state = JobState::Running;
        job.status.worker = Some(worker.to_string());
        job.status.attempts += 1;
        job.lease_until = Some(now + Duration::from_secs_f64(lease_seconds));
        Ok(Some(ClaimedJob {
            id: job.status.id,
            params: job.status.params.clone(),
            content: job.content.clone(),
            style: job.style.clone(),
        }))
    }

    fn held<'a>(jobs: &'a mut [MemJob], id: i64, worker: &str) -> Option<&'a mut MemJob> {
        jobs.iter_mut().find(|j| {
            j.status.id == id
                && j.status.state == JobState::Running
                && j.status.worker.as_deref() == Some(worker)
        })
    }

    pub(super) async fn job_progress(
        &self,
        id: i64,
        worker: &str,
        progress: JobProgress,
        lease_seconds: f64,
    ) -> Result<bool> {
        let mut jobs = self.jobs.lock().await;
        let Some(job) = Self::held(&mut jobs, id, worker) else {
            return Ok(false);
        };
        job.status.percent = progress.percent;
        job.status.eta_seconds = progress.eta_seconds;
        job.status.loss = progress.loss;
        job.lease_until = Some(Instant::now() + Duration::from_secs_f64(lease_seconds));
        Ok(true)
    }

    pub(super) async fn finish_job(
        &self,
        id: i64,
        worker: &str,
        result: std::result::Result<Vec<u8>, String>,
    ) -> Result<bool> {
        let mut jobs = self.jobs.lock().await;
        let Some(job) = Self::held(&mut jobs, id, worker) else {
            return Ok(false);
        };
        match result {
            Ok(png) => {
                job.status.state = JobState::Done;
                job.status.percent = 100.0;
                job.status.eta_seconds = Some(0.0);
                job.result = Some(png);
            }
            Err(e) => {
                job.status.state = JobState::Failed;
                job.status.error = Some(e);
            }
        }
        // The inputs are no longer needed.
        job.content = vec![];
        job.style = vec![];
        Ok(true)
    }

    pub(super) async fn job(&self, id: i64) -> Result<JobStatus> {
        let jobs = self.jobs.lock().await;
        jobs.iter()
            .find(|j| j.status.id == id)
            .map(|j| j.status.clone())
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
    }

    pub(super) async fn job_result(&self, id: i64) -> Result<Vec<u8>> {
        let jobs = self.jobs.lock().await;
        let job = jobs
            .iter()
            .find(|j| j.status.id == id)
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        job.result
            .clone()
            .ok_or_else(|| ApiError::conflict(format!("job {id} is {}", job.status.state.as_str())))
    }

    pub(super) async fn queue_depth(&self) -> Result<i64> {
        let jobs = self.jobs.lock().await;
        Ok(jobs
            .iter()
            .filter(|j| matches!(j.status.state, JobState::Queued | JobState::Running))
            .count() as i64)
    }
}
