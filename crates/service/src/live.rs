//! The galleries a worker serves, in memory: each one's people and its search index, built
//! once per change. A worker reloads a gallery after its own changes and, on PostgreSQL, when
//! another worker announces one (LISTEN/NOTIFY).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use faces::gallery::{Gallery, Index, Precision};

use crate::State;
use crate::error::ApiError;
use crate::store::pg::Change;

/// One gallery ready to search.
pub struct Live {
    /// People and encodings.
    pub gallery: Gallery,
    /// The exact search over every encoding.
    pub index: Index,
}

/// Galleries in memory, by name.
#[derive(Default)]
pub struct LiveGalleries {
    map: RwLock<HashMap<String, Arc<Live>>>,
}

impl LiveGalleries {
    fn cached(&self, name: &str) -> Option<Arc<Live>> {
        self.map.read().expect("not poisoned").get(name).cloned()
    }

    fn put(&self, name: &str, live: Option<Arc<Live>>) {
        let mut map = self.map.write().expect("not poisoned");
        match live {
            Some(l) => map.insert(name.to_string(), l),
            None => map.remove(name),
        };
    }

    /// Names and encoding counts of the galleries in memory.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let map = self.map.read().expect("not poisoned");
        let mut v: Vec<(String, usize)> = map
            .iter()
            .map(|(k, l)| (k.clone(), l.index.len()))
            .collect();
        v.sort();
        v
    }

    /// Names of the galleries in memory.
    pub fn names(&self) -> Vec<String> {
        self.sizes().into_iter().map(|(n, _)| n).collect()
    }
}

fn build(gallery: Gallery) -> Arc<Live> {
    let index = gallery.index(Precision::F32);
    Arc::new(Live { gallery, index })
}

/// A gallery ready to search: from memory, else loaded from the store.
///
/// # Errors
/// 404 for an unknown gallery; store errors.
pub async fn get(state: &State, name: &str) -> Result<Arc<Live>, ApiError> {
    if let Some(l) = state.live.cached(name) {
        return Ok(l);
    }
    refresh(state, name).await?;
    state
        .live
        .cached(name)
        .ok_or_else(|| ApiError::not_found(format!("no gallery {name:?}")))
}

/// Reloads a gallery from the store (dropping it when it is gone).
///
/// # Errors
/// Store errors other than "not found".
pub async fn refresh(state: &State, name: &str) -> Result<(), ApiError> {
    match state.store.load_gallery(name).await {
        Ok(g) => {
            let live = tokio::task::spawn_blocking(move || build(g))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            state.live.put(name, Some(live));
            Ok(())
        }
        Err(e) if e.status.as_u16() == 404 => {
            state.live.put(name, None);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Follows other workers' changes: reloads the galleries it serves when they change, wakes the
/// job runner when a job is queued.
pub fn follow(state: State, mut changes: tokio::sync::mpsc::UnboundedReceiver<Change>) {
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            match change {
                Change::Gallery(name) => {
                    if state.live.cached(&name).is_some()
                        && let Err(e) = refresh(&state, &name).await
                    {
                        crate::error::log(&format!("reloading gallery {name}: {}", e.message));
                    }
                }
                Change::Job => state.job_wakeup.notify_waiters(),
                Change::Reconnected => {
                    for name in state.live.names() {
                        let _ = refresh(&state, &name).await;
                    }
                    state.job_wakeup.notify_waiters();
                }
            }
        }
    });
}
