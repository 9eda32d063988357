//! The job runner: claims a queued style job (or one whose worker died: its lease ran out),
//! runs it on rayon's pool, and renews the lease with each progress report. When the lease
//! is lost (this worker stalled and another took the job over), the run stops and its result
//! is thrown away: only the lease holder writes a result.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::State;
use crate::error::log;
use crate::store::{ClaimedJob, JobProgress};

/// How often a waiting runner looks for jobs even without a wake-up (a job whose lease ran out
/// announces nothing).
const POLL: Duration = Duration::from_secs(1);

/// Runs jobs until the process ends.
pub async fn run(state: State) {
    loop {
        let lease = state.config.job_lease.as_secs_f64();
        match state.store.claim_job(&state.config.worker, lease).await {
            Ok(Some(job)) => run_one(&state, job).await,
            Ok(None) => {
                let _ = tokio::time::timeout(POLL, state.job_wakeup.notified()).await;
            }
            Err(e) => {
                log(&format!("claiming a job: {}", e.message));
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn run_one(state: &State, job: ClaimedJob) {
    let id = job.id;
    let worker = state.config.worker.clone();
    let lease = state.config.job_lease.as_secs_f64();
    log(&format!(
        "job {id}: style {} px, {} iterations",
        job.params.size, job.params.iterations
    ));
    // The job takes one of the pool's admission slots for its whole run, like a request.
    let Ok(_slot) = state.engine.slots.acquire().await else {
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<JobProgress>();
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let state = state.clone();
        let stop = stop.clone();
        rayon::spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                state
                    .engine
                    .style(&job.content, &job.style, &job.params, |p| {
                        let _ = tx.send(p);
                        !stop.load(Ordering::Relaxed)
                    })
            }))
            .unwrap_or_else(|_| Err("the style transfer panicked".to_string()));
            let _ = done_tx.send(out);
        });
    }
    // Heartbeats: every progress report, and at least every third of the lease.
    let mut latest = JobProgress::default();
    let mut last_beat = Instant::now();
    let beat_every = state.config.job_lease / 3;
    let mut done_rx = done_rx;
    let result = loop {
        tokio::select! {
            out = &mut done_rx => break out.unwrap_or_else(|_| Err("the job runner stopped".into())),
            Some(p) = rx.recv() => latest = p,
            () = tokio::time::sleep(beat_every) => {}
        }
        if last_beat.elapsed() >= beat_every.min(Duration::from_millis(500)) {
            last_beat = Instant::now();
            match state.store.job_progress(id, &worker, latest, lease).await {
                Ok(true) => {}
                Ok(false) => {
                    log(&format!(
                        "job {id}: another worker holds it now; stopping here"
                    ));
                    stop.store(true, Ordering::Relaxed);
                }
                Err(e) => log(&format!("job {id}: progress not recorded: {}", e.message)),
            }
        }
    };
    if stop.load(Ordering::Relaxed) {
        return;
    }
    let failed = result.as_ref().err().cloned();
    match state.store.finish_job(id, &worker, result).await {
        Ok(true) => match failed {
            None => log(&format!("job {id}: done")),
            Some(e) => log(&format!("job {id}: failed: {e}")),
        },
        Ok(false) => log(&format!(
            "job {id}: another worker holds it now; result dropped"
        )),
        Err(e) => log(&format!("job {id}: result not stored: {}", e.message)),
    }
}
