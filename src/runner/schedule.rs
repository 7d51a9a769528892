//! Running a plan's stages: up to `jobs` at a time, each computed through the stage registry
//! into the store, or reused when the store already holds its key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Log, RunError, RunOptions, StageOutcome};
use crate::plan::{Plan, Stage};
use crate::stages::registry;
use crate::stages::stage::Ctx;
use crate::store::{Slot, Store, StoreError};

/// Computes or reuses one stage; returns whether it was cached and the store's notes.
pub(super) fn run_stage(
    stage: &Stage,
    plan: &Plan,
    root: &Path,
    store: &Store,
    opts: &RunOptions,
) -> Result<(bool, Vec<String>), RunError> {
    if store.lookup(&stage.id, &stage.key).is_some() {
        return Ok((true, vec![]));
    }
    match begin_waiting(store, stage, opts)? {
        Slot::Ready(_) => Ok((true, vec![])),
        Slot::Open(pending) => {
            let notes = pending.notes().to_vec();
            let inputs: BTreeMap<String, String> = stage
                .deps
                .iter()
                .filter_map(|d| plan.stage(d).map(|s| (d.clone(), s.key.clone())))
                .collect();
            let ctx = Ctx {
                id: &stage.id,
                key: &stage.key,
                dir: pending.dir(),
                store,
                inputs: &inputs,
                root,
                quiet: opts.quiet,
            };
            let meta = registry::run(stage.kind, &ctx, &stage.config).map_err(|source| {
                RunError::Stage {
                    stage: stage.id.clone(),
                    source: Box::new(source),
                }
            })?;
            pending.commit(meta)?;
            let work = store.work_dir(&stage.id, &stage.key);
            if work.exists() {
                std::fs::remove_dir_all(&work).map_err(crate::error::IoError::at(&work))?;
            }
            Ok((false, notes))
        }
    }
}

/// How often a stage waiting for another process's lock says so again.
const WAITING_LINE_EVERY: Duration = Duration::from_secs(300);

/// [`Store::begin`], polling while another live process holds the key (up to
/// `opts.wait_for_locks`), with a line on stderr naming the holder when the wait starts and
/// every [`WAITING_LINE_EVERY`] after.
fn begin_waiting(store: &Store, stage: &Stage, opts: &RunOptions) -> Result<Slot, StoreError> {
    let t0 = Instant::now();
    let mut said: Option<Instant> = None;
    loop {
        match store.begin(&stage.id, &stage.key) {
            Err(StoreError::Locked { pid, path, .. })
                if opts
                    .wait_for_locks
                    .is_some_and(|limit| t0.elapsed() < limit) =>
            {
                if said.is_none_or(|at| at.elapsed() >= WAITING_LINE_EVERY) {
                    eprintln!(
                        "waiting for stage `{}`: process {pid} is computing it (lock {}; {:.0} s so far)",
                        stage.id,
                        path.display(),
                        t0.elapsed().as_secs_f64()
                    );
                    said = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Where every stage of a run stands.
struct Schedule {
    started: Vec<bool>,
    done: Vec<Option<StageOutcome>>,
    running: usize,
    failed: Option<RunError>,
}

/// Runs every stage of `plan`, up to `jobs` at a time: a worker takes the first stage (in plan
/// order) whose upstream stages are done. After a failure no new stage starts; running ones
/// finish, and the first error is returned. Outcomes come back in plan order.
pub(super) fn execute_all(
    plan: &Plan,
    root: &Path,
    store: &Store,
    opts: &RunOptions,
    log: &mut Log,
    jobs: usize,
) -> Result<Vec<StageOutcome>, RunError> {
    let n = plan.stages.len();
    let index: std::collections::HashMap<&str, usize> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = plan
        .stages
        .iter()
        .map(|s| {
            s.deps
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let state = Mutex::new(Schedule {
        started: vec![false; n],
        done: (0..n).map(|_| None).collect(),
        running: 0,
        failed: None,
    });
    let wake = Condvar::new();
    let log = Mutex::new(log);
    let workers = jobs.clamp(1, n.max(1));
    // One stage at a time runs on the kernels' pool (faster, same results); concurrent stages
    // stay on their own threads, where none can end up nested inside another's wait.
    let compute = |stage| {
        if workers == 1 {
            crate::model::on_pool(|| run_stage(stage, plan, root, store, opts))
        } else {
            run_stage(stage, plan, root, store, opts)
        }
    };
    let worker = || loop {
        let i = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if st.failed.is_some() || st.done.iter().all(Option::is_some) {
                    return;
                }
                let ready = (0..n)
                    .find(|&i| !st.started[i] && deps[i].iter().all(|&d| st.done[d].is_some()));
                match ready {
                    Some(i) => {
                        st.started[i] = true;
                        st.running += 1;
                        break i;
                    }
                    None if st.running == 0 => return,
                    None => st = wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                }
            }
        };
        let stage = &plan.stages[i];
        let t0 = Instant::now();
        let result = compute(stage).and_then(|(cached, notes)| {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            for note in notes {
                log.always(&format!("note: {note}"))?;
            }
            let seconds = t0.elapsed().as_secs_f64();
            log.line(&format!(
                "{:<8} {}  key {}  {seconds:.2}s",
                if cached { "cached" } else { "computed" },
                stage.id,
                stage.key
            ))?;
            Ok(StageOutcome {
                id: stage.id.clone(),
                key: stage.key.clone(),
                cached,
                seconds,
            })
        });
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.running -= 1;
        match result {
            Ok(outcome) => st.done[i] = Some(outcome),
            Err(e) => {
                // Record the failure in the run's log; the error itself goes to the caller.
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.record(&format!("failed   {}  key {}: {e}", stage.id, stage.key));
                if st.failed.is_none() {
                    st.failed = Some(e);
                }
            }
        }
        wake.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(worker);
        }
    });
    let st = state.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = st.failed {
        return Err(e);
    }
    Ok(st.done.into_iter().flatten().collect())
}
