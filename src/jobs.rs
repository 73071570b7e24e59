//! Bounded background jobs (ablation runs, report generation): queued, run a few at a time,
//! cancellable, and forgotten some time after they finish.
//!
//! A handful of requests must never take the service down: at most `max_running` jobs of a
//! kind run at once (each on the store's job connections, never the request path's readers),
//! at most `max_queued` more wait their turn with a visible position, and one key has at most
//! one unfinished job of a kind. Anything beyond is refused ([`Refused`], a 429 with
//! `Retry-After` at the HTTP layer). Finished jobs are kept for [`Limits::keep_finished`] and
//! then dropped.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};

/// How many jobs of a kind may run and wait, and how long finished ones are kept.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_running: usize,
    pub max_queued: usize,
    pub keep_finished: Duration,
}

/// Why a job was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this key already has a {kind} job queued or running; wait for it or cancel it")]
    KeyBusy { kind: &'static str },
    #[error("too many {kind} jobs are queued; retry later")]
    Full { kind: &'static str },
}

impl Refused {
    /// Seconds a client should wait before trying again.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refused::KeyBusy { .. } => 5,
            Refused::Full { .. } => 15,
        }
    }
}

/// What a running job reports and reads.
#[derive(Debug, Default)]
pub struct Progress {
    /// The job's id.
    pub id: String,
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub cancel: AtomicBool,
}

impl Progress {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
enum State {
    Queued,
    Running,
    Done(Value),
    Failed(String),
    Cancelled,
}

/// A job's work, not started yet.
type Work = Box<dyn FnOnce(Arc<Progress>) -> BoxFuture<'static, Result<Value, String>> + Send>;

struct Entry {
    /// Submission order: queued jobs start in this order.
    number: u64,
    project: String,
    owner: String,
    created_at: String,
    state: State,
    finished: Option<Instant>,
    progress: Arc<Progress>,
    /// Taken when the job starts.
    work: Option<Work>,
}

/// A job as its status route shows it.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub id: String,
    pub status: &'static str,
    pub created_at: String,
    /// Place in the queue (1 = next), while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    pub progress: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The jobs of one kind.
pub struct Jobs {
    kind: &'static str,
    limits: Limits,
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    next: AtomicU64,
}

impl Jobs {
    pub fn new(kind: &'static str, limits: Limits) -> Self {
        Jobs {
            kind,
            limits,
            entries: Arc::new(Mutex::new(BTreeMap::new())),
            next: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts queued jobs, oldest first, while fewer than `max_running` run.
    fn schedule(
        kind: &'static str,
        entries: &Arc<Mutex<BTreeMap<String, Entry>>>,
        max_running: usize,
    ) {
        let mut guard = entries.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let running = guard
                .values()
                .filter(|e| matches!(e.state, State::Running))
                .count();
            if running >= max_running.max(1) {
                return;
            }
            let Some((id, entry)) = guard
                .iter_mut()
                .filter(|(_, e)| matches!(e.state, State::Queued))
                .min_by_key(|(_, e)| e.number)
            else {
                return;
            };
            let Some(work) = entry.work.take() else {
                return;
            };
            entry.state = State::Running;
            let (id, progress) = (id.clone(), entry.progress.clone());
            metrics::gauge!("audittrail_jobs", "kind" => kind, "state" => "queued").decrement(1.0);
            metrics::gauge!("audittrail_jobs", "kind" => kind, "state" => "running").increment(1.0);
            let entries = entries.clone();
            tokio::spawn(async move {
                let outcome = tokio::spawn(work(progress.clone())).await;
                metrics::gauge!("audittrail_jobs", "kind" => kind, "state" => "running")
                    .decrement(1.0);
                {
                    let mut guard = entries.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(e) = guard.get_mut(&id) {
                        e.finished = Some(Instant::now());
                        e.state = match outcome {
                            _ if progress.cancelled() => State::Cancelled,
                            Ok(Ok(v)) => State::Done(v),
                            Ok(Err(msg)) => State::Failed(msg),
                            Err(_) => State::Failed("the job failed unexpectedly".into()),
                        };
                    }
                }
                Jobs::schedule(kind, &entries, max_running);
            });
        }
    }

    /// Queues `work` for `project` on behalf of key `owner`; it starts when a slot is free.
    /// `work` gets the job's [`Progress`] (report into it, stop when cancelled) and returns
    /// the job's result as JSON, or an error message for the client.
    pub fn submit<F, Fut>(&self, project: &str, owner: &str, work: F) -> Result<View, Refused>
    where
        F: FnOnce(Arc<Progress>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        let id = uuid::Uuid::now_v7().to_string();
        let progress = Arc::new(Progress {
            id: id.clone(),
            ..Default::default()
        });
        {
            let mut entries = self.lock();
            purge(&mut entries, self.limits.keep_finished);
            let unfinished = |e: &&Entry| matches!(e.state, State::Queued | State::Running);
            if entries
                .values()
                .filter(unfinished)
                .any(|e| e.owner == owner)
            {
                return Err(Refused::KeyBusy { kind: self.kind });
            }
            if entries.values().filter(unfinished).count()
                >= self.limits.max_running + self.limits.max_queued
            {
                return Err(Refused::Full { kind: self.kind });
            }
            entries.insert(
                id.clone(),
                Entry {
                    number: self.next.fetch_add(1, Ordering::Relaxed),
                    project: project.to_owned(),
                    owner: owner.to_owned(),
                    created_at: crate::event::format_time(&chrono::Utc::now()),
                    state: State::Queued,
                    finished: None,
                    progress,
                    work: Some(Box::new(move |p| Box::pin(work(p)))),
                },
            );
        }
        metrics::gauge!("audittrail_jobs", "kind" => self.kind, "state" => "queued").increment(1.0);
        Jobs::schedule(self.kind, &self.entries, self.limits.max_running);
        Ok(self
            .view(&id, project)
            .expect("the job was inserted just now"))
    }

    /// The job `id` of `project` (another project's job is `None`, like a missing one).
    pub fn view(&self, id: &str, project: &str) -> Option<View> {
        let mut entries = self.lock();
        purge(&mut entries, self.limits.keep_finished);
        let e = entries.get(id).filter(|e| e.project == project)?;
        let queue_position = matches!(e.state, State::Queued).then(|| {
            entries
                .values()
                .filter(|o| matches!(o.state, State::Queued) && o.number <= e.number)
                .count()
        });
        let (status, result, error) = match &e.state {
            State::Queued => ("queued", None, None),
            State::Running if e.progress.cancelled() => ("cancelling", None, None),
            State::Running => ("running", None, None),
            State::Done(v) => ("done", Some(v.clone()), None),
            State::Failed(m) => ("failed", None, Some(m.clone())),
            State::Cancelled => ("cancelled", None, None),
        };
        Some(View {
            id: id.to_owned(),
            status,
            created_at: e.created_at.clone(),
            queue_position,
            progress: json!({
                "done": e.progress.done.load(Ordering::Relaxed),
                "total": e.progress.total.load(Ordering::Relaxed),
            }),
            result,
            error,
        })
    }

    /// The queued and running jobs of `project` (and those that failed recently), oldest first.
    pub fn unfinished(&self, project: &str) -> Vec<View> {
        let ids: Vec<String> = {
            let entries = self.lock();
            entries
                .iter()
                .filter(|(_, e)| {
                    e.project == project && !matches!(e.state, State::Done(_) | State::Cancelled)
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        ids.iter().filter_map(|id| self.view(id, project)).collect()
    }

    /// Asks job `id` of `project` to stop (a queued job never starts); `None` if there is no
    /// such job.
    pub fn cancel(&self, id: &str, project: &str) -> Option<View> {
        {
            let mut entries = self.lock();
            let e = entries.get_mut(id).filter(|e| e.project == project)?;
            e.progress.cancel.store(true, Ordering::Relaxed);
            if matches!(e.state, State::Queued) {
                e.state = State::Cancelled;
                e.work = None;
                e.finished = Some(Instant::now());
                metrics::gauge!("audittrail_jobs", "kind" => self.kind, "state" => "queued")
                    .decrement(1.0);
            }
        }
        self.view(id, project)
    }
}

/// Drops jobs finished longer than `keep` ago.
fn purge(entries: &mut BTreeMap<String, Entry>, keep: Duration) {
    entries.retain(|_, e| e.finished.is_none_or(|at| at.elapsed() < keep));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(max_running: usize, max_queued: usize) -> Jobs {
        Jobs::new(
            "test",
            Limits {
                max_running,
                max_queued,
                keep_finished: Duration::from_secs(3600),
            },
        )
    }

    /// A job that runs until cancelled.
    async fn until_cancelled(p: Arc<Progress>) -> Result<Value, String> {
        while !p.cancelled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err("cancelled".into())
    }

    #[tokio::test]
    async fn jobs_are_bounded_per_key_and_in_all_and_queue_in_order() {
        let j = jobs(1, 2);
        let a = j.submit("p", "k1", until_cancelled).unwrap();
        assert_eq!(
            j.submit("p", "k1", until_cancelled).unwrap_err(),
            Refused::KeyBusy { kind: "test" }
        );
        let b = j.submit("p", "k2", until_cancelled).unwrap();
        let c = j.submit("p", "k3", until_cancelled).unwrap();
        assert_eq!(
            j.submit("p", "k4", until_cancelled).unwrap_err(),
            Refused::Full { kind: "test" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(j.view(&a.id, "p").unwrap().status, "running");
        assert_eq!(j.view(&b.id, "p").unwrap().queue_position, Some(1));
        assert_eq!(j.view(&c.id, "p").unwrap().queue_position, Some(2));
        assert!(
            j.view(&a.id, "other").is_none(),
            "other projects see nothing"
        );
        // Cancelling the queued one frees its place; cancelling the running one starts the next.
        assert_eq!(j.cancel(&b.id, "p").unwrap().status, "cancelled");
        assert_eq!(j.view(&c.id, "p").unwrap().queue_position, Some(1));
        j.cancel(&a.id, "p").unwrap();
        for _ in 0..100 {
            if j.view(&c.id, "p").unwrap().status == "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(j.view(&a.id, "p").unwrap().status, "cancelled");
        assert_eq!(j.view(&c.id, "p").unwrap().status, "running");
        j.cancel(&c.id, "p");
    }

    #[tokio::test]
    async fn finished_jobs_keep_their_result_then_expire() {
        let j = Jobs::new(
            "test",
            Limits {
                max_running: 1,
                max_queued: 1,
                keep_finished: Duration::from_millis(100),
            },
        );
        let v = j
            .submit("p", "k", |p| async move {
                p.total.store(2, Ordering::Relaxed);
                p.done.store(2, Ordering::Relaxed);
                Ok(json!({"answer": 42}))
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let done = j.view(&v.id, "p").unwrap();
        assert_eq!(
            (done.status, done.result),
            ("done", Some(json!({"answer": 42})))
        );
        assert_eq!(done.progress, json!({"done": 2, "total": 2}));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(j.view(&v.id, "p").is_none(), "expired");
    }
}
