//! PostgreSQL as the store shared by many workers: migrations applied at start (under an
//! advisory lock, so workers starting together do not race), every change in one transaction
//! followed by a NOTIFY naming the gallery, jobs claimed with `FOR UPDATE SKIP LOCKED` and a
//! lease that a live worker renews.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use faces::gallery::{Calibration, Enrolled, Gallery, Identity};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{
    ClaimedJob, JobProgress, JobState, JobStatus, KeyRecord, Result, StyleParams,
    check_gallery_name,
};
use crate::auth::Scope;
use crate::error::ApiError;

/// The migrations, in order; each runs once per database.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/001_init.sql"))];

/// The NOTIFY channel that names a gallery after each change.
pub const GALLERY_CHANNEL: &str = "cnn_gallery_changed";
/// The NOTIFY channel that announces a queued job.
pub const JOBS_CHANNEL: &str = "cnn_job_queued";

/// A pool of connections to one database.
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

/// A notification from another worker (or this one).
#[derive(Debug, Clone)]
pub enum Change {
    /// This gallery changed.
    Gallery(String),
    /// A job was queued.
    Job,
    /// The listening connection was re-established: anything may have changed meanwhile.
    Reconnected,
}

fn encoding_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn encoding_from(bytes: &[u8], dim: usize) -> Result<Vec<f32>> {
    if bytes.len() != dim * 4 {
        return Err(ApiError::internal(format!(
            "stored encoding of {} bytes for a gallery of {dim} dimensions",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl PgStore {
    /// Connects (`postgres://user@host:port/db` or `host=... user=... dbname=...`) and applies
    /// the migrations.
    ///
    /// # Errors
    /// A bad URL, an unreachable server, a failed migration.
    pub async fn connect(
        url: &str,
        max_connections: usize,
    ) -> std::result::Result<PgStore, String> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("--db {url:?} is not a PostgreSQL connection string: {e}"))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(2))
            .build()
            .map_err(|e| e.to_string())?;
        let store = PgStore { pool, config };
        store.migrate().await.map_err(|e| e.message)?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // One worker migrates at a time; the others wait here, then find nothing to do.
        tx.execute("SELECT pg_advisory_xact_lock(7274211)", &[])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        for (version, sql) in MIGRATIONS {
            let done = tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Listens for other workers' changes: galleries and queued jobs. The connection is
    /// re-established when it drops (with a [`Change::Reconnected`], since notifications sent
    /// meanwhile are lost).
    pub fn listen(&self) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = self.config.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                match config.connect(NoTls).await {
                    Ok((client, mut connection)) => {
                        let (msg_tx, mut msg_rx) = mpsc::unbounded_channel();
                        let mut messages =
                            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        let pump = tokio::spawn(async move {
                            while let Some(m) = messages.next().await {
                                match m {
                                    Ok(m) => {
                                        if msg_tx.send(m).is_err() {
                                            break;
                                        }
                                    }
                                    Err(_) => break,
                                }
                            }
                        });
                        let listening = client
                            .batch_execute(&format!(
                                "LISTEN {GALLERY_CHANNEL}; LISTEN {JOBS_CHANNEL}"
                            ))
                            .await;
                        if listening.is_ok() {
                            if !first && tx.send(Change::Reconnected).is_err() {
                                return;
                            }
                            first = false;
                            while let Some(m) = msg_rx.recv().await {
                                if let AsyncMessage::Notification(n) = m {
                                    let change = if n.channel() == GALLERY_CHANNEL {
                                        Change::Gallery(n.payload().to_string())
                                    } else {
                                        Change::Job
                                    };
                                    if tx.send(change).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        pump.abort();
                        drop(client);
                    }
                    Err(e) => crate::error::log(&format!("listening connection: {e}")),
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
        rx
    }

    async fn gallery_id(client: &impl deadpool_postgres::GenericClient, name: &str) -> Result<i64> {
        check_gallery_name(name)?;
        client
            .query_opt("SELECT id FROM galleries WHERE name = $1", &[&name])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| ApiError::not_found(format!("no gallery {name:?}")))
    }

    async fn notify(tx: &deadpool_postgres::Transaction<'_>, gallery: &str) -> Result<()> {
        tx.execute("SELECT pg_notify($1, $2)", &[&GALLERY_CHANNEL, &gallery])
            .await?;
        Ok(())
    }

    pub(super) async fn gallery_names(&self) -> Result<Vec<String>> {
        let client = self.pool.get().await?;
        Ok(client
            .query("SELECT name FROM galleries ORDER BY name", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    pub(super) async fn load_gallery(&self, name: &str) -> Result<Gallery> {
        let mut client = self.pool.get().await?;
        // One snapshot: a change committed between the reads cannot tear the gallery.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        check_gallery_name(name)?;
        let row = tx
            .query_opt(
                "SELECT id, model, model_description, dim, tau, calibration FROM galleries WHERE name = $1",
                &[&name],
            )
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no gallery {name:?}")))?;
        let id: i64 = row.get(0);
        let dim = row.get::<_, i32>(3) as usize;
        let calibration: Option<serde_json::Value> = row.get(5);
        let mut g = Gallery::new(row.get(1), row.get(2), dim, row.get(4));
        g.calibration = calibration
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| ApiError::internal(format!("stored calibration: {e}")))?;
        let people = tx
            .query(
                "SELECT id, name, tau FROM people WHERE gallery_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        let mut position = std::collections::HashMap::new();
        for p in &people {
            position.insert(p.get::<_, i64>(0), g.identities.len());
            g.identities.push(Identity {
                name: p.get(1),
                tau: p.get(2),
                images: vec![],
            });
        }
        let rows = tx
            .query(
                "SELECT e.person_id, e.source, e.content_hash, e.encoding FROM encodings e \
                 JOIN people p ON p.id = e.person_id WHERE p.gallery_id = $1 ORDER BY e.id",
                &[&id],
            )
            .await?;
        for r in &rows {
            let at = position[&r.get::<_, i64>(0)];
            g.identities[at].images.push(Enrolled {
                source: r.get(1),
                content_hash: r.get(2),
                encoding: encoding_from(r.get(3), dim)?,
            });
        }
        tx.commit().await?;
        Ok(g)
    }

    pub(super) async fn put_gallery(&self, name: &str, g: &Gallery, replace: bool) -> Result<()> {
        check_gallery_name(name)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if replace {
            tx.execute("DELETE FROM galleries WHERE name = $1", &[&name])
                .await?;
        }
        let calibration = g
            .calibration
            .as_ref()
            .map(|c| serde_json::to_value(c).expect("plain data"));
        let inserted = tx
            .query_opt(
                "INSERT INTO galleries (name, model, model_description, dim, tau, calibration) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING id",
                &[
                    &name,
                    &g.model,
                    &g.model_description,
                    &(g.dim as i32),
                    &g.tau,
                    &calibration,
                ],
            )
            .await?;
        let Some(row) = inserted else {
            return Err(ApiError::conflict(format!("gallery {name:?} exists")));
        };
        let id: i64 = row.get(0);
        let person_stmt = tx
            .prepare("INSERT INTO people (gallery_id, name, tau) VALUES ($1, $2, $3) RETURNING id")
            .await?;
        let image_stmt = tx
            .prepare("INSERT INTO encodings (person_id, source, content_hash, encoding) VALUES ($1, $2, $3, $4)")
            .await?;
        for identity in &g.identities {
            let pid: i64 = tx
                .query_one(&person_stmt, &[&id, &identity.name, &identity.tau])
                .await?
                .get(0);
            for e in &identity.images {
                tx.execute(
                    &image_stmt,
                    &[
                        &pid,
                        &e.source,
                        &e.content_hash,
                        &encoding_bytes(&e.encoding),
                    ],
                )
                .await?;
            }
        }
        Self::notify(&tx, name).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn delete_gallery(&self, name: &str) -> Result<()> {
        check_gallery_name(name)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute("DELETE FROM galleries WHERE name = $1", &[&name])
            .await?;
        if n == 0 {
            return Err(ApiError::not_found(format!("no gallery {name:?}")));
        }
        Self::notify(&tx, name).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn add_person(&self, gallery: &str, person: &str) -> Result<()> {
        faces::gallery::check_name(person)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let gid = Self::gallery_id(&tx, gallery).await?;
        let n = tx
            .execute(
                "INSERT INTO people (gallery_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&gid, &person],
            )
            .await?;
        if n == 0 {
            return Err(ApiError::conflict(format!("person {person:?} exists")));
        }
        Self::notify(&tx, gallery).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn add_image(
        &self,
        gallery: &str,
        person: &str,
        image: Enrolled,
    ) -> Result<bool> {
        faces::gallery::check_name(person)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt("SELECT id, dim FROM galleries WHERE name = $1", &[&gallery])
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no gallery {gallery:?}")))?;
        let (gid, dim): (i64, i32) = (row.get(0), row.get(1));
        if image.encoding.len() != dim as usize {
            return Err(faces::gallery::GalleryError::Dim {
                expected: dim as usize,
                got: image.encoding.len(),
            }
            .into());
        }
        // Insert-or-find in one statement: two workers enrolling the same new person at once
        // end with one row.
        tx.execute(
            "INSERT INTO people (gallery_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&gid, &person],
        )
        .await?;
        let pid: i64 = tx
            .query_one(
                "SELECT id FROM people WHERE gallery_id = $1 AND name = $2",
                &[&gid, &person],
            )
            .await?
            .get(0);
        let added = tx
            .execute(
                "INSERT INTO encodings (person_id, source, content_hash, encoding) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (person_id, content_hash) DO NOTHING",
                &[&pid, &image.source, &image.content_hash, &encoding_bytes(&image.encoding)],
            )
            .await?
            == 1;
        Self::notify(&tx, gallery).await?;
        tx.commit().await?;
        Ok(added)
    }

    pub(super) async fn rename_person(&self, gallery: &str, from: &str, to: &str) -> Result<()> {
        faces::gallery::check_name(to)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let gid = Self::gallery_id(&tx, gallery).await?;
        if tx
            .query_opt(
                "SELECT 1 FROM people WHERE gallery_id = $1 AND name = $2",
                &[&gid, &to],
            )
            .await?
            .is_some()
        {
            return Err(ApiError::conflict(format!("person {to:?} exists")));
        }
        let n = tx
            .execute(
                "UPDATE people SET name = $3 WHERE gallery_id = $1 AND name = $2",
                &[&gid, &from, &to],
            )
            .await?;
        if n == 0 {
            return Err(ApiError::not_found(format!(
                "no person {from:?} in gallery {gallery:?}"
            )));
        }
        Self::notify(&tx, gallery).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn remove_person(&self, gallery: &str, person: &str) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let gid = Self::gallery_id(&tx, gallery).await?;
        let n = tx
            .execute(
                "DELETE FROM people WHERE gallery_id = $1 AND name = $2",
                &[&gid, &person],
            )
            .await?;
        if n == 0 {
            return Err(ApiError::not_found(format!(
                "no person {person:?} in gallery {gallery:?}"
            )));
        }
        Self::notify(&tx, gallery).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn set_calibration(
        &self,
        gallery: &str,
        tau: f32,
        cal: &Calibration,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let gid = Self::gallery_id(&tx, gallery).await?;
        let cal = serde_json::to_value(cal).expect("plain data");
        tx.execute(
            "UPDATE galleries SET tau = $2, calibration = $3 WHERE id = $1",
            &[&gid, &tau, &cal],
        )
        .await?;
        Self::notify(&tx, gallery).await?;
        tx.commit().await?;
        Ok(())
    }

    fn key_from_row(r: &tokio_postgres::Row) -> Result<KeyRecord> {
        let scopes: Vec<String> = r.get(3);
        Ok(KeyRecord {
            id: r.get(0),
            hash: r.get(1),
            label: r.get(2),
            scopes: scopes
                .iter()
                .map(|s| Scope::parse(s))
                .collect::<std::result::Result<_, _>>()
                .map_err(ApiError::internal)?,
            created: r.get(4),
        })
    }

    pub(super) async fn keys(&self) -> Result<Vec<KeyRecord>> {
        let client = self.pool.get().await?;
        client
            .query(
                "SELECT id, hash, label, scopes, created FROM api_keys ORDER BY created, id",
                &[],
            )
            .await?
            .iter()
            .map(Self::key_from_row)
            .collect()
    }

    pub(super) async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                "SELECT id, hash, label, scopes, created FROM api_keys WHERE hash = $1",
                &[&hash],
            )
            .await?
            .as_ref()
            .map(Self::key_from_row)
            .transpose()
    }

    pub(super) async fn add_key(&self, key: &KeyRecord) -> Result<()> {
        let client = self.pool.get().await?;
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        client
            .execute(
                "INSERT INTO api_keys (id, hash, label, scopes, created) VALUES ($1, $2, $3, $4, $5)",
                &[&key.id, &key.hash, &key.label, &scopes, &key.created],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn delete_key(&self, id: &str) -> Result<()> {
        let client = self.pool.get().await?;
        let n = client
            .execute("DELETE FROM api_keys WHERE id = $1", &[&id])
            .await?;
        if n == 0 {
            return Err(ApiError::not_found(format!("no key {id:?}")));
        }
        Ok(())
    }

    pub(super) async fn submit_job(
        &self,
        params: &StyleParams,
        content: &[u8],
        style: &[u8],
    ) -> Result<i64> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let params = serde_json::to_value(params).expect("plain data");
        let id: i64 = tx
            .query_one(
                "INSERT INTO jobs (kind, params, content, style) VALUES ('style', $1, $2, $3) RETURNING id",
                &[&params, &content, &style],
            )
            .await?
            .get(0);
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&JOBS_CHANNEL, &id.to_string()],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(super) async fn claim_job(
        &self,
        worker: &str,
        lease_seconds: f64,
    ) -> Result<Option<ClaimedJob>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "UPDATE jobs SET state = 'running', worker = $1, attempts = attempts + 1, \
                   lease_until = now() + make_interval(secs => $2) \
                 WHERE id = (SELECT id FROM jobs \
                             WHERE state = 'queued' OR (state = 'running' AND lease_until < now()) \
                             ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) \
                 RETURNING id, params, content, style",
                &[&worker, &lease_seconds],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let params: serde_json::Value = r.get(1);
        Ok(Some(ClaimedJob {
            id: r.get(0),
            params: serde_json::from_value(params)
                .map_err(|e| ApiError::internal(format!("stored job parameters: {e}")))?,
            content: r.get::<_, Option<Vec<u8>>>(2).unwrap_or_default(),
            style: r.get::<_, Option<Vec<u8>>>(3).unwrap_or_default(),
        }))
    }

    pub(super) async fn job_progress(
        &self,
        id: i64,
        worker: &str,
        p: JobProgress,
        lease_seconds: f64,
    ) -> Result<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE jobs SET percent = $3, eta_seconds = $4, loss = $5, \
                   lease_until = now() + make_interval(secs => $6) \
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[
                    &id,
                    &worker,
                    &p.percent,
                    &p.eta_seconds,
                    &p.loss,
                    &lease_seconds,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn finish_job(
        &self,
        id: i64,
        worker: &str,
        result: std::result::Result<Vec<u8>, String>,
    ) -> Result<bool> {
        let client = self.pool.get().await?;
        let n = match result {
            Ok(png) => client
                .execute(
                    "UPDATE jobs SET state = 'done', result = $3, percent = 100, eta_seconds = 0, \
                           content = NULL, style = NULL, lease_until = NULL \
                         WHERE id = $1 AND worker = $2 AND state = 'running'",
                    &[&id, &worker, &png],
                )
                .await?,
            Err(e) => client
                .execute(
                    "UPDATE jobs SET state = 'failed', error = $3, content = NULL, style = NULL, \
                           lease_until = NULL \
                         WHERE id = $1 AND worker = $2 AND state = 'running'",
                    &[&id, &worker, &e],
                )
                .await?,
        };
        Ok(n == 1)
    }

    pub(super) async fn job(&self, id: i64) -> Result<JobStatus> {
        let client = self.pool.get().await?;
        let r = client
            .query_opt(
                "SELECT id, kind, state, percent, eta_seconds, loss, error, worker, attempts, params \
                 FROM jobs WHERE id = $1",
                &[&id],
            )
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let state: String = r.get(2);
        let params: serde_json::Value = r.get(9);
        Ok(JobStatus {
            id: r.get(0),
            kind: r.get(1),
            state: JobState::parse(&state)
                .ok_or_else(|| ApiError::internal(format!("stored job state {state:?}")))?,
            percent: r.get(3),
            eta_seconds: r.get(4),
            loss: r.get(5),
            error: r.get(6),
            worker: r.get(7),
            attempts: r.get(8),
            params: serde_json::from_value(params)
                .map_err(|e| ApiError::internal(format!("stored job parameters: {e}")))?,
        })
    }

    pub(super) async fn job_result(&self, id: i64) -> Result<Vec<u8>> {
        let client = self.pool.get().await?;
        let r = client
            .query_opt("SELECT state, result FROM jobs WHERE id = $1", &[&id])
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let state: String = r.get(0);
        r.get::<_, Option<Vec<u8>>>(1)
            .ok_or_else(|| ApiError::conflict(format!("job {id} is {state}")))
    }

    pub(super) async fn queue_depth(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one(
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')",
                &[],
            )
            .await?
            .get(0))
    }
}
