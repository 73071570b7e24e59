//! The rule set in force, and its hot reload.
//!
//! [`LiveRules`] holds the current [`RuleSet`] behind an `Arc` that is swapped atomically: an
//! evaluation uses one whole rule set, old or new, never a mix. Edits to the rules directory
//! (watched with `notify`) and SIGHUP trigger a reload. Each file is accepted or rejected on its
//! own: a broken file never switches the other rules off (fail-closed for governance). At
//! start-up the good files run; on reload a broken edit keeps that file's previous version.
//! Every rejection is recorded with file, line and column (log, `/api/v1/rules`,
//! `/api/v1/health/deep`; `/api/v1/health` is `degraded`). Nothing here writes to the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde::Serialize;

use super::{RuleLoadError, RuleSet};

/// Called after every reload with (success, details), e.g. to audit it.
pub type ReloadHook = Box<dyn Fn(bool, serde_json::Value) + Send + Sync>;

/// A load problem as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadProblem {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl From<&RuleLoadError> for LoadProblem {
    /// The file's name only: the API does not show where the server keeps its rules.
    fn from(e: &RuleLoadError) -> Self {
        LoadProblem {
            file: e
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| e.file.display().to_string()),
            line: e.line,
            column: e.column,
            message: e.message.clone(),
        }
    }
}

pub struct LiveRules {
    dir: PathBuf,
    current: RwLock<Arc<RuleSet>>,
    /// Problems of the last load attempt; empty when it succeeded.
    problems: RwLock<Vec<LoadProblem>>,
    /// Last runtime error per rule (script error or limit), since start.
    last_errors: Mutex<BTreeMap<String, String>>,
    /// Told about every reload once the server attached it (the audit log).
    on_reload: OnceLock<ReloadHook>,
}

impl LiveRules {
    /// Loads `dir`, file by file: the good rules run, every rejected file is reported (health:
    /// degraded) until a good edit replaces it.
    pub fn load(dir: &Path) -> Self {
        let live = LiveRules {
            dir: dir.to_owned(),
            current: RwLock::new(Arc::new(empty())),
            problems: RwLock::new(Vec::new()),
            last_errors: Mutex::new(BTreeMap::new()),
            on_reload: OnceLock::new(),
        };
        live.reload();
        live
    }

    /// A fixed rule set (tests, `rules replay`).
    pub fn fixed(set: RuleSet) -> Self {
        LiveRules {
            dir: PathBuf::new(),
            current: RwLock::new(Arc::new(set)),
            problems: RwLock::new(Vec::new()),
            last_errors: Mutex::new(BTreeMap::new()),
            on_reload: OnceLock::new(),
        }
    }

    /// Reports every later reload (success or failure) to `hook`.
    pub fn on_reload(&self, hook: ReloadHook) {
        let _ = self.on_reload.set(hook);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn audit_reload(&self, ok: bool, detail: serde_json::Value) {
        if let Some(hook) = self.on_reload.get() {
            hook(ok, detail);
        }
    }

    pub fn current(&self) -> Arc<RuleSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn problems(&self) -> Vec<LoadProblem> {
        self.problems
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn last_errors(&self) -> BTreeMap<String, String> {
        self.last_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn record_rule_error(&self, rule_id: &str, message: &str) {
        self.last_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rule_id.to_owned(), message.to_owned());
    }

    /// Reloads the directory, file by file; returns whether every file was accepted. A file
    /// that fails keeps its previous version (if it had one); the others' edits apply.
    pub fn reload(&self) -> bool {
        let previous = self.current();
        let (set, errors) = RuleSet::load_dir_per_file(&self.dir, Some(&previous));
        let ids: Vec<String> = set.rules().iter().map(|r| r.id().to_owned()).collect();
        for e in &errors {
            tracing::error!(file = %e.file.display(), line = e.line, column = e.column, message = %e.message, "rule file rejected; its previous version, if any, stays in force and the other rules run");
        }
        if errors.is_empty() {
            tracing::info!(dir = %self.dir.display(), rules = ?ids, "rules loaded");
        } else {
            metrics::counter!("audittrail_rule_reload_failures_total").increment(1);
            tracing::warn!(dir = %self.dir.display(), rules = ?ids, rejected = errors.len(), "rules loaded with problems");
        }
        let problems: Vec<LoadProblem> = errors.iter().map(LoadProblem::from).collect();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        *self.problems.write().unwrap_or_else(|p| p.into_inner()) = problems.clone();
        metrics::gauge!("audittrail_rules_loaded").set(ids.len() as f64);
        metrics::gauge!("audittrail_rule_load_problems").set(problems.len() as f64);
        self.audit_reload(
            errors.is_empty(),
            serde_json::json!({ "rules": ids, "problems": problems }),
        );
        errors.is_empty()
    }
}

fn empty() -> RuleSet {
    RuleSet::from_sources(Vec::<(PathBuf, String)>::new())
        .expect("an empty source list has nothing that can fail to compile")
}

/// Reloads on changes to the rules directory and on SIGHUP, until the process ends.
/// Changes are debounced (editors write files in several steps).
pub fn watch(live: Arc<LiveRules>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let fs_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| !e.kind.is_access()) {
            let _ = fs_tx.try_send(());
        }
    });
    let watcher = match watcher {
        Ok(mut w) => match w.watch(&live.dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %live.dir.display(), error = %e, "cannot watch the rules directory; reload with SIGHUP");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher available; reload rules with SIGHUP");
            None
        }
    };
    #[cfg(unix)]
    tokio::spawn(async move {
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading rules");
                let _ = tx.try_send(());
            }
        }
    });
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            let live = live.clone();
            let _ = tokio::task::spawn_blocking(move || live.reload()).await;
        }
    });
    watcher
}
