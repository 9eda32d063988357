//! `cnn serve`: the face-recognition and style service (REST API, web page), on a folder of
//! gallery files (one worker) or on PostgreSQL (many workers); `cnn serve-keys`: its API keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use service::auth::{self, Scope};
use service::store::{Store, files::FileStore, pg::PgStore};

use crate::common::EmbedderArgs;

/// Where the service keeps its data.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// PostgreSQL shared by several workers (`postgres://user@host:port/db`, or
    /// `host=/run/postgresql dbname=cnn`); also read from CNN_DATABASE_URL. Without it: the
    /// embedded store in --data.
    #[arg(long, env = "CNN_DATABASE_URL")]
    pub(crate) db: Option<String>,
    /// The embedded store's folder: gallery files, the keys' hashes (one worker).
    #[arg(long, default_value = "cnn-data")]
    pub(crate) data: PathBuf,
    /// Connections to PostgreSQL per worker.
    #[arg(long, default_value_t = 8)]
    pub(crate) db_connections: usize,
}

impl StoreArgs {
    async fn open(&self) -> Result<Store> {
        match &self.db {
            Some(url) => Ok(Store::Postgres(
                PgStore::connect(url, self.db_connections)
                    .await
                    .map_err(anyhow::Error::msg)
                    .context("opening the PostgreSQL store (--db)")?,
            )),
            None => Ok(Store::Files(FileStore::open(&self.data).with_context(
                || format!("cannot create the data folder {}", self.data.display()),
            )?)),
        }
    }
}

/// `cnn serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (127.0.0.1: this machine only; put a TLS reverse proxy in front
    /// to serve others, see docs/SERVICE.md).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// This worker's name in job records (default: host name and process id).
    #[arg(long)]
    pub(crate) worker: Option<String>,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) max_upload_mb: f64,
    /// Largest image, in decoded pixels.
    #[arg(long, default_value_t = 50_000_000)]
    pub(crate) max_pixels: u64,
    /// Longest a request may take, in seconds (then 503).
    #[arg(long, default_value_t = 60.0)]
    pub(crate) request_timeout: f64,
    /// Seconds a job stays with its worker without a heartbeat; then another worker takes it.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) job_lease: f64,
    /// Style jobs this worker runs at once (0: none, it only answers requests).
    #[arg(long, default_value_t = 1)]
    pub(crate) job_slots: usize,
    #[command(flatten)]
    pub(crate) model: EmbedderArgs,
}

/// `cnn serve-keys`.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Creates a key and prints it (the only time it is shown).
    Create {
        /// What it is for.
        #[arg(long, default_value = "")]
        label: String,
        /// read, write, admin (comma separated).
        #[arg(long, default_value = "read,write,admin")]
        scopes: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Lists the keys' ids, labels and scopes.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revokes a key.
    Revoke {
        /// The key's id (from `list`).
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn positive(value: f64, flag: &str) -> Result<Duration> {
    anyhow::ensure!(
        value.is_finite() && value > 0.0 && value < 1e6,
        "{flag} {value} is not a positive number of seconds"
    );
    Ok(Duration::from_secs_f64(value))
}

pub(crate) fn serve(a: &ServeArgs) -> Result<()> {
    anyhow::ensure!(
        a.max_upload_mb > 0.0 && a.max_upload_mb <= 4096.0,
        "--max-upload-mb {} is outside (0, 4096]",
        a.max_upload_mb
    );
    anyhow::ensure!(a.max_pixels >= 1, "--max-pixels must be at least 1");
    let config = service::Config {
        listen: a.listen,
        worker: a.worker.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "worker".into());
            format!("{host}-{}", std::process::id())
        }),
        max_body_bytes: (a.max_upload_mb * 1048576.0) as usize,
        request_timeout: positive(a.request_timeout, "--request-timeout")?,
        job_lease: positive(a.job_lease, "--job-lease")?,
        job_slots: a.job_slots,
    };
    let embedder = a.model.load(None, true)?;
    let engine = service::engine::Engine::new(embedder, a.max_pixels)?;
    runtime()?.block_on(async {
        let store = a.store.open().await?;
        if store
            .keys()
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?
            .is_empty()
        {
            bootstrap_key(&store, a).await?;
        }
        let state = service::AppState::new(config, engine, store);
        service::serve(state)
            .await
            .with_context(|| format!("cannot serve on {}", a.listen))
    })
}

/// A store without keys gets an admin key, so the first user can sign in: written to
/// `--data/admin.key` (readable by its owner only) for the embedded store, printed once for
/// PostgreSQL (whoever starts the first worker is its administrator).
async fn bootstrap_key(store: &Store, a: &ServeArgs) -> Result<()> {
    let (key, record) = auth::new_key(
        "bootstrap admin",
        vec![Scope::Read, Scope::Write, Scope::Admin],
    );
    store
        .add_key(&record)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    match store {
        Store::Files(_) => {
            let path = a.store.data.join("admin.key");
            nn::checkpoint::write_atomic(&path, format!("{key}\n").as_bytes())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            eprintln!(
                "no API keys yet: an admin key (id {}) is in {} — use it on the web page or as `Authorization: Bearer KEY`",
                record.id,
                path.display()
            );
        }
        Store::Postgres(_) => {
            eprintln!(
                "no API keys yet: created an admin key (id {}), shown once:\n{key}",
                record.id
            );
        }
    }
    Ok(())
}

pub(crate) fn keys(c: &KeysCommand) -> Result<()> {
    runtime()?.block_on(async {
        let err = |e: service::error::ApiError| anyhow::anyhow!(e.message);
        match c {
            KeysCommand::Create {
                label,
                scopes,
                store,
            } => {
                let scopes =
                    Scope::parse_list(scopes).map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
                let store = store.open().await?;
                let (key, record) = auth::new_key(label, scopes);
                store.add_key(&record).await.map_err(err)?;
                eprintln!("key {} created; it is shown once:", record.id);
                println!("{key}");
            }
            KeysCommand::List { store } => {
                let store = store.open().await?;
                println!("id,label,scopes,created");
                for k in store.keys().await.map_err(err)? {
                    let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                    println!("{},{:?},{},{}", k.id, k.label, scopes.join("+"), k.created);
                }
            }
            KeysCommand::Revoke { id, store } => {
                let store = store.open().await?;
                store.delete_key(id).await.map_err(err)?;
                eprintln!("key {id} revoked");
            }
        }
        Ok(())
    })
}
