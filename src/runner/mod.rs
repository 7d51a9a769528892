//! Executes a plan: computes missing stages, reuses cached ones, writes the run directory
//! (ARCHITECTURE.md, "Runs").
//!
//! A run directory (`results/runs/<recipe>/<run-id>/`) holds `resolved.toml` (the recipe as
//! run), `plan.json` (every stage with its configuration and key), `run.log` (one line per
//! stage: computed or cached, key, seconds) and `tables/` (each table as Parquet, CSV and
//! Markdown). A killed run resumes: finished stages are in the cache, half-written ones are
//! discarded.

mod schedule;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::DataFrame;

use crate::error::IoError;
use crate::plan::{Plan, PlanError, stage_key};
use crate::recipe::Resolved;
use crate::stages::registry;
use crate::stages::stage::{StageError, StageKind};
use crate::store::{Store, StoreError};
use crate::tables::{self, TableError, TableFiles};

/// How a run reports progress.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// No progress: no progress bars and no stage lines on stderr. The line naming the run
    /// directory and the notes are printed either way; the tables are the caller's to print
    /// ([`RunSummary::tables`]).
    pub quiet: bool,
    /// When another live process holds a stage's lock (e.g. a concurrent sweep shard computing
    /// the same shared stage), wait up to this long for it to finish and reuse its artifact;
    /// `None` fails at once with an error naming that process.
    pub wait_for_locks: Option<std::time::Duration>,
    /// Stages computed at the same time (independent stages only; 0: one per available CPU
    /// core). Results do not depend on it: every stage reads only its upstream artifacts and
    /// its own seeds.
    pub jobs: usize,
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The recipe failed validation.
    #[error(transparent)]
    Recipe(#[from] Box<crate::recipe::RecipeError>),
    /// A stage failed.
    #[error("stage `{stage}`: {source}")]
    Stage {
        /// The stage.
        stage: String,
        /// What failed.
        #[source]
        source: Box<StageError>,
    },
    /// The plan could not be built.
    #[error(transparent)]
    Plan(#[from] Box<PlanError>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A table could not be built or written.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A run directory file could not be written or read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// `plan.json` of a run could not be read or written.
    #[error(
        "{}: not a plan of this build of `rlcd run`; pass a run directory under results/runs/ or rerun its recipe",
        path.display()
    )]
    PlanFile {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A table stage's artifact is gone from the store.
    #[error(
        "stage `{stage}` (key {key}) is no longer in the cache under {root}; rerun the \
         recipe (`rlcd run {run_dir}/resolved.toml`) to recompute it"
    )]
    Missing {
        /// The stage.
        stage: String,
        /// Its key.
        key: String,
        /// The results root searched.
        root: PathBuf,
        /// The run directory.
        run_dir: PathBuf,
    },
    /// A table's plot could not be drawn.
    #[error("tables: {0}")]
    Plot(#[from] crate::plots::PlotError),
}

/// What happened to one stage in a run.
#[derive(Clone, Debug, PartialEq)]
pub struct StageOutcome {
    /// Stage id.
    pub id: String,
    /// Its key.
    pub key: String,
    /// `true` when reused from the cache.
    pub cached: bool,
    /// Wall-clock seconds spent (lookup only when cached).
    pub seconds: f64,
}

/// A result table of a run.
#[derive(Clone, Debug)]
pub struct TableReport {
    /// File stem (`appendix-n`).
    pub stem: String,
    /// The table.
    pub frame: DataFrame,
    /// Its Markdown rendering.
    pub markdown: String,
    /// The files written under the run's `tables/`.
    pub files: TableFiles,
}

/// The outcome of [`run`].
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// `<results>/runs/<recipe>/<run-id>/`.
    pub run_dir: PathBuf,
    /// The run id.
    pub run_id: String,
    /// The executed plan.
    pub plan: Plan,
    /// Every stage, in plan order.
    pub stages: Vec<StageOutcome>,
    /// The tables written.
    pub tables: Vec<TableReport>,
}

/// The run's log: `run.log`, and stderr.
struct Log {
    path: PathBuf,
    file: fs::File,
    quiet: bool,
}

impl Log {
    /// A progress line (a stage computed or reused): `run.log`, and stderr unless quiet.
    fn line(&mut self, text: &str) -> Result<(), RunError> {
        if !self.quiet {
            crate::progress::println(text);
        }
        self.file_line(text)
    }

    /// A line printed on stderr even when quiet (the run directory, notes), and `run.log`.
    fn always(&mut self, text: &str) -> Result<(), RunError> {
        crate::progress::println(text);
        self.file_line(text)
    }

    /// A line of `run.log` only.
    fn file_line(&mut self, text: &str) -> Result<(), RunError> {
        writeln!(self.file, "{text}").map_err(IoError::at(&self.path))?;
        self.file.flush().map_err(IoError::at(&self.path))?;
        Ok(())
    }

    /// Writes `text` to `run.log` only, ignoring failure (used while reporting another error).
    fn record(&mut self, text: &str) {
        let _ = writeln!(self.file, "{text}");
    }
}

/// Runs a resolved recipe: builds its plan, computes the stages missing from the store (reusing
/// cached ones and saying so on stderr unless `opts.quiet`), and writes
/// `results/runs/<name>/<run-id>/` and its tables. The tables come back in the summary; the
/// runner prints none of them.
pub fn run(resolved: &Resolved, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let notes = crate::preflight::check(resolved).map_err(Box::new)?;
    let plan = Plan::build(resolved).map_err(Box::new)?;
    let store = Store::open(&resolved.resolve_path(&resolved.recipe.results))?;
    let (run_id, run_dir) = store.create_run(&plan.recipe, &plan.short_key())?;
    crate::error::write(&run_dir.join("resolved.toml"), resolved.to_toml_string())?;
    let plan_path = run_dir.join("plan.json");
    let plan_json = serde_json::to_string_pretty(&plan).map_err(|source| RunError::PlanFile {
        path: plan_path.clone(),
        source,
    })?;
    crate::error::write(&plan_path, plan_json + "\n")?;
    let machine = crate::machine::Machine::detect();
    let machine_json = serde_json::to_string_pretty(&machine).unwrap_or_default();
    crate::error::write(&run_dir.join("machine.json"), machine_json + "\n")?;
    let log_path = run_dir.join("run.log");
    let mut log = Log {
        file: fs::File::create(&log_path).map_err(IoError::at(&log_path))?,
        path: log_path,
        quiet: opts.quiet,
    };
    log.always(&format!(
        "run {run_id} of `{}` ({} stages) in {}",
        plan.recipe,
        plan.stages.len(),
        run_dir.display()
    ))?;
    log.file_line(&format!("machine: {}", machine.summary()))?;
    for warning in &resolved.warnings {
        log.file_line(&format!("warning: {warning}"))?;
    }
    for note in &notes {
        log.always(&format!("note: {note}"))?;
    }
    for (key, source) in plan.unread_keys(resolved) {
        log.always(&format!(
            "note: recipe key `{key}` ({source}) reaches no stage of this plan"
        ))?;
    }

    let jobs = match opts.jobs {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let outcomes = schedule::execute_all(&plan, &resolved.root, &store, opts, &mut log, jobs)?;

    let tables = write_tables(&plan, &store, &run_dir)?;
    for t in &tables {
        log.file_line(&format!("table {}", t.files.markdown.display()))?;
    }
    Ok(RunSummary {
        run_dir,
        run_id,
        plan,
        stages: outcomes,
        tables,
    })
}

/// Rebuilds a finished run's tables from the store, following its `plan.json`, and rewrites
/// them under its `tables/`. The store is the results root holding the run
/// (`<results>/runs/<recipe>/<run-id>/`). A table whose format changed since the run (its
/// stage's version in `plan.json` is not this build's) is computed again from its inputs in
/// the store, so the tables are always in this build's format.
pub fn report(run_dir: &Path) -> Result<Vec<TableReport>, RunError> {
    let (plan, store) = open_run(run_dir)?;
    let plan = current_tables(plan, &store, run_dir)?;
    write_tables(&plan, &store, run_dir)
}

/// The plan of run directory `run_dir` (`results/runs/<recipe>/<run-id>/`) and the store of
/// the results root above it.
pub fn open_run(run_dir: &Path) -> Result<(Plan, Store), RunError> {
    let plan_path = run_dir.join("plan.json");
    let text = crate::error::read_to_string(&plan_path)?;
    let plan: Plan = serde_json::from_str(&text).map_err(|source| RunError::PlanFile {
        path: plan_path.clone(),
        source,
    })?;
    let root = run_dir
        .ancestors()
        .nth(3)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let store = Store::open(root)?;
    Ok((plan, store))
}

/// `plan` with every table stage of an older format re-keyed at this build's version, and
/// computed from its inputs when the store does not hold it yet.
fn current_tables(mut plan: Plan, store: &Store, run_dir: &Path) -> Result<Plan, RunError> {
    let keys: BTreeMap<String, String> = plan
        .stages
        .iter()
        .map(|s| (s.id.clone(), s.key.clone()))
        .collect();
    let missing = |stage: &str, key: &str| RunError::Missing {
        stage: stage.to_string(),
        key: key.to_string(),
        root: store.root().to_path_buf(),
        run_dir: run_dir.to_path_buf(),
    };
    let opts = RunOptions {
        quiet: true,
        ..Default::default()
    };
    for i in 0..plan.stages.len() {
        let stage = &plan.stages[i];
        let version = registry::version(stage.kind);
        if registry::table(stage.kind).is_none() || version == stage.version {
            continue;
        }
        let mut upstream = BTreeMap::new();
        for dep in &stage.deps {
            let key = keys.get(dep).cloned().unwrap_or_default();
            if store.lookup(dep, &key).is_none() {
                return Err(missing(dep, &key));
            }
            upstream.insert(dep.clone(), key);
        }
        let current = crate::plan::Stage {
            key: stage_key(stage.kind, version, &stage.config, &upstream),
            version,
            ..stage.clone()
        };
        schedule::run_stage(&current, &plan, Path::new("."), store, &opts)?;
        plan.stages[i] = current;
    }
    Ok(plan)
}

/// The per-step PPO curves of the policies behind the `policy_training` table `stage`, as
/// `policy_curves.{csv,md,parquet}` and `policy_training.svg` in `dir` (nothing when no
/// policy was trained with PPO).
fn write_curves(
    plan: &Plan,
    store: &Store,
    stage: &crate::plan::Stage,
    dir: &Path,
) -> Result<(), RunError> {
    use crate::stages::policy_training::{CURVES_STEM, STEM, curves, curves_frame};
    let mut inputs = Vec::new();
    for dep in &stage.deps {
        let key = plan
            .stages
            .iter()
            .find(|s| &s.id == dep)
            .map(|s| s.key.clone())
            .unwrap_or_default();
        let artifact = stored(store, dep, &key, dir.parent().unwrap_or(dir))?;
        inputs.push(artifact);
    }
    let curves = curves(&inputs).map_err(|source| RunError::Stage {
        stage: stage.id.clone(),
        source: Box::new(source),
    })?;
    if curves.is_empty() {
        return Ok(());
    }
    tables::write_table(dir, CURVES_STEM, &curves_frame(&curves)?)?;
    let svg = crate::plots::training_curves_svg(&curves)?;
    crate::error::write(&dir.join(format!("{STEM}.svg")), svg)?;
    Ok(())
}

/// The artifact of stage `id` at `key` in `store`, or the error naming run `run_dir`.
fn stored(
    store: &Store,
    id: &str,
    key: &str,
    run_dir: &Path,
) -> Result<crate::store::Artifact, RunError> {
    store.lookup(id, key).ok_or_else(|| RunError::Missing {
        stage: id.to_string(),
        key: key.to_string(),
        root: store.root().to_path_buf(),
        run_dir: run_dir.to_path_buf(),
    })
}

/// Per task of `plan`, every method's evaluation samples on the first test prompts side by
/// side, as `samples-<task>.md` in `dir`.
fn write_samples(plan: &Plan, store: &Store, dir: &Path) -> Result<(), RunError> {
    use crate::stages::generate::{SAMPLES, Sample};
    let mut tasks: BTreeMap<&str, Vec<(String, Vec<Sample>)>> = BTreeMap::new();
    for stage in plan.stages.iter().filter(|s| s.kind == StageKind::Generate) {
        let Some((method, task)) = stage
            .id
            .strip_prefix("generate/")
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let artifact = stored(store, &stage.id, &stage.key, dir.parent().unwrap_or(dir))?;
        let samples: Vec<Sample> =
            crate::stages::stage::read_json(&artifact, SAMPLES).map_err(|source| {
                RunError::Stage {
                    stage: stage.id.clone(),
                    source: Box::new(source),
                }
            })?;
        tasks
            .entry(task)
            .or_default()
            .push((method.to_string(), samples));
    }
    if !tasks.is_empty() {
        fs::create_dir_all(dir).map_err(IoError::at(dir))?;
    }
    for (task, methods) in tasks {
        let page = crate::side_by_side::render(task, &methods, crate::side_by_side::PROMPTS);
        let path = dir.join(format!("{}.md", crate::side_by_side::stem(task)));
        crate::error::write(&path, page)?;
    }
    Ok(())
}

fn write_tables(plan: &Plan, store: &Store, run_dir: &Path) -> Result<Vec<TableReport>, RunError> {
    let dir = run_dir.join("tables");
    let mut out = Vec::new();
    write_samples(plan, store, &dir)?;
    for stage in &plan.stages {
        let Some(stem) = registry::table(stage.kind) else {
            continue;
        };
        let artifact = stored(store, &stage.id, &stage.key, run_dir)?;
        let frame = tables::read_parquet(&artifact.path(&format!("{stem}.parquet")))?;
        let files = tables::write_table(&dir, stem, &frame)?;
        if stem == crate::stages::winrates::STEM {
            let rows = crate::stages::winrates::rows_of_frame(&frame)?;
            let svg = crate::plots::winrates_svg(&rows)?;
            crate::error::write(&dir.join(format!("{stem}.svg")), svg)?;
        }
        if stem == crate::stages::policy_training::STEM {
            write_curves(plan, store, stage, &dir)?;
        }
        out.push(TableReport {
            stem: stem.to_string(),
            markdown: tables::render_markdown(&frame)?,
            frame,
            files,
        });
    }
    Ok(out)
}
