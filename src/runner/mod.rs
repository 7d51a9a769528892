//! Executes a plan: computes missing stages, reuses cached ones, writes the run directory.
//!
//! A run directory (`results/runs/<recipe>/<run-id>/`) holds `resolved.toml` (the recipe as
//! run), `plan.json` (every stage with its key), `run.log` (one line per stage: computed or
//! cached, key, seconds) and `tables/` (each table as Parquet, CSV and Markdown). A killed run
//! resumes: finished stages are in the cache, half-written ones are discarded.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use polars::prelude::DataFrame;

use crate::plan::{Plan, PlanError, Stage, StageKind};
use crate::recipe::Resolved;
use crate::stages::appendix_n::{CellResult, CellSpec};
use crate::stages::prompts::{self, PromptError, Split};
use crate::store::{Artifact, Slot, Store, StoreError};
use crate::tables::{self, TableError, TableFiles};
use crate::templates::{TemplateError, Templates};

/// How a run reports progress.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// No progress bars, no stage lines on stderr, no tables on stdout.
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
    /// A preference stage (simulation, preference model) failed.
    #[error("stage `{stage}`: {message}")]
    Stage {
        /// The stage.
        stage: String,
        /// What failed, with its fix.
        message: String,
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
    /// A task's prompts could not be loaded.
    #[error("stage `{stage}`: {source}")]
    Prompts {
        /// The stage.
        stage: String,
        /// The prompt error.
        #[source]
        source: Box<PromptError>,
    },
    /// A task's templates could not be rendered.
    #[error("stage `{stage}`: {source}")]
    Templates {
        /// The stage.
        stage: String,
        /// The template error.
        #[source]
        source: Box<TemplateError>,
    },
    /// A stage's stored configuration or upstream output is not what this build writes.
    #[error("stage `{stage}`: {detail}; delete {path} and run again to recompute it")]
    BadArtifact {
        /// The stage.
        stage: String,
        /// What is wrong.
        detail: String,
        /// The artifact or file to delete.
        path: PathBuf,
    },
    /// A model stage (pretraining, evaluation) failed.
    #[error("stage `{stage}`: {source}")]
    Model {
        /// The stage.
        stage: String,
        /// What failed.
        #[source]
        source: Box<crate::stages::world_report::ReportError>,
    },
    /// The recipe asks for CUDA but this binary was built without it.
    #[error(
        "recipe {file} sets backend = \"cuda\", but this binary was built without CUDA; rebuild with \
         `cargo build --release --features cuda` or set backend = \"cpu\""
    )]
    NoCuda {
        /// The recipe file.
        file: PathBuf,
    },
    /// A run directory file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `plan.json` of a run could not be read.
    #[error(
        "{path}: not a plan written by `rlcd run` ({detail}); pass a run directory under results/runs/"
    )]
    PlanFile {
        /// The file.
        path: PathBuf,
        /// The parse error.
        detail: String,
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
}

/// Runs `$body` with `$B` bound to the recipe's backend type and `$device` to its device.
macro_rules! with_backend {
    ($resolved:expr, $B:ident, $device:ident => $body:expr) => {
        match $resolved.recipe.backend {
            crate::recipe::BackendKind::Cpu => {
                type $B = crate::model::Cpu;
                let $device: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            crate::recipe::BackendKind::Cuda => {
                crate::model::persist_cuda_kernel_cache();
                type $B = crate::model::CudaBackend;
                let $device: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(not(feature = "cuda"))]
            crate::recipe::BackendKind::Cuda => Err(RunError::NoCuda {
                file: $resolved.file.clone(),
            }),
        }
    };
}

mod policy;
mod preference;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
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

struct Log {
    path: PathBuf,
    file: fs::File,
    quiet: bool,
}

impl Log {
    fn line(&mut self, text: &str) -> Result<(), RunError> {
        if !self.quiet {
            if std::io::stderr().is_terminal() {
                let _ = bars().println(text);
            } else {
                eprintln!("{text}");
            }
        }
        writeln!(self.file, "{text}").map_err(io(&self.path))?;
        self.file.flush().map_err(io(&self.path))
    }
}

/// The progress bars of the stages running at the same time, drawn together on stderr.
fn bars() -> &'static indicatif::MultiProgress {
    static BARS: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    BARS.get_or_init(indicatif::MultiProgress::new)
}

fn progress_bar(quiet: bool, len: u64, label: &str) -> ProgressBar {
    let pb = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden())
    } else {
        bars().add(ProgressBar::new(len))
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label.to_string());
    pb
}

/// Runs a resolved recipe: builds its plan, computes the stages missing from the store (reusing
/// cached ones and saying so), writes `results/runs/<name>/<run-id>/` and its tables, and prints
/// the tables (unless `opts.quiet`).
pub fn run(resolved: &Resolved, opts: &RunOptions) -> Result<RunSummary, RunError> {
    crate::recipe::validate(resolved).map_err(Box::new)?;
    let plan = Plan::build(resolved).map_err(Box::new)?;
    let store = Store::open(&resolved.resolve_path(&resolved.recipe.results))?;
    let (run_id, run_dir) = store.create_run(&plan.recipe, &plan.short_key())?;
    let resolved_path = run_dir.join("resolved.toml");
    fs::write(&resolved_path, resolved.to_toml_string()).map_err(io(&resolved_path))?;
    let plan_path = run_dir.join("plan.json");
    let plan_json = serde_json::to_string_pretty(&plan).map_err(|e| RunError::PlanFile {
        path: plan_path.clone(),
        detail: e.to_string(),
    })?;
    fs::write(&plan_path, plan_json + "\n").map_err(io(&plan_path))?;
    let log_path = run_dir.join("run.log");
    let mut log = Log {
        file: fs::File::create(&log_path).map_err(io(&log_path))?,
        path: log_path,
        quiet: opts.quiet,
    };
    log.line(&format!(
        "run {run_id} of `{}` ({} stages) in {}",
        plan.recipe,
        plan.stages.len(),
        run_dir.display()
    ))?;

    let jobs = match opts.jobs {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let outcomes = execute_all(&plan, resolved, &store, opts, &mut log, jobs)?;

    let tables = write_tables(&plan, &store, &run_dir)?;
    for t in &tables {
        log.line(&format!("table {}", t.files.markdown.display()))?;
        if !opts.quiet {
            println!("{}", t.markdown);
        }
    }
    Ok(RunSummary {
        run_dir,
        run_id,
        plan,
        stages: outcomes,
        tables,
    })
}

/// Computes or reuses one stage; returns whether it was cached and the store's notes.
fn run_stage(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    opts: &RunOptions,
) -> Result<(bool, Vec<String>), RunError> {
    Ok(match store.lookup(&stage.id, &stage.key) {
        Some(_) => (true, vec![]),
        None => match begin_waiting(store, stage, opts)? {
            Slot::Ready(_) => (true, vec![]),
            Slot::Open(pending) => {
                let notes = pending.notes().to_vec();
                let meta = execute(stage, plan, resolved, store, pending.dir(), opts)?;
                pending.commit(meta)?;
                let work = store.work_dir(&stage.id, &stage.key);
                if work.exists() {
                    fs::remove_dir_all(&work).map_err(io(&work))?;
                }
                (false, notes)
            }
        },
    })
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
fn execute_all(
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    opts: &RunOptions,
    log: &mut Log,
    jobs: usize,
) -> Result<Vec<StageOutcome>, RunError> {
    use std::sync::{Condvar, Mutex};
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
        let result = run_stage(stage, plan, resolved, store, opts).and_then(|(cached, notes)| {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            for note in notes {
                log.line(&format!("note: {note}"))?;
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
                let _ = writeln!(log.file, "failed   {}  key {}: {e}", stage.id, stage.key);
                if st.failed.is_none() {
                    st.failed = Some(e);
                }
            }
        }
        wake.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            scope.spawn(worker);
        }
    });
    let st = state.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = st.failed {
        return Err(e);
    }
    Ok(st.done.into_iter().flatten().collect())
}

/// Rebuilds a finished run's tables from the store, following its `plan.json`, and rewrites
/// them under its `tables/`. The store is the results root holding the run
/// (`<results>/runs/<recipe>/<run-id>/`).
pub fn report(run_dir: &Path) -> Result<Vec<TableReport>, RunError> {
    let plan_path = run_dir.join("plan.json");
    let text = fs::read_to_string(&plan_path).map_err(io(&plan_path))?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| RunError::PlanFile {
        path: plan_path.clone(),
        detail: e.to_string(),
    })?;
    let root = run_dir
        .ancestors()
        .nth(3)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let store = Store::open(root)?;
    write_tables(&plan, &store, run_dir)
}

/// [`Store::begin`], polling while another live process holds the key (up to
/// `opts.wait_for_locks`).
fn begin_waiting(store: &Store, stage: &Stage, opts: &RunOptions) -> Result<Slot, StoreError> {
    let t0 = Instant::now();
    loop {
        match store.begin(&stage.id, &stage.key) {
            Err(StoreError::Locked { .. })
                if opts
                    .wait_for_locks
                    .is_some_and(|limit| t0.elapsed() < limit) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

fn write_tables(plan: &Plan, store: &Store, run_dir: &Path) -> Result<Vec<TableReport>, RunError> {
    let dir = run_dir.join("tables");
    let mut out = Vec::new();
    for stage in &plan.stages {
        let Some(stem) = stage.kind.table_stem() else {
            continue;
        };
        let artifact = store
            .lookup(&stage.id, &stage.key)
            .ok_or_else(|| RunError::Missing {
                stage: stage.id.clone(),
                key: stage.key.clone(),
                root: store.root().to_path_buf(),
                run_dir: run_dir.to_path_buf(),
            })?;
        let frame = tables::read_parquet(&artifact.path(&format!("{stem}.parquet")))?;
        let files = tables::write_table(&dir, stem, &frame)?;
        if stem == tables::WINRATES {
            let svg = crate::plots::winrates_svg(&tables::winrate_rows(&frame)?).map_err(|e| {
                RunError::Stage {
                    stage: stage.id.clone(),
                    message: e.to_string(),
                }
            })?;
            let path = dir.join(format!("{stem}.svg"));
            fs::write(&path, svg).map_err(io(&path))?;
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

fn model_err(stage: &Stage, source: crate::stages::world_report::ReportError) -> RunError {
    RunError::Model {
        stage: stage.id.clone(),
        source: Box::new(source),
    }
}

fn config_str(stage: &Stage, key: &str, dir: &Path) -> Result<String, RunError> {
    stage
        .config
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            bad(
                stage,
                format!("configuration lacks `{key}`"),
                dir.to_path_buf(),
            )
        })
}

/// The recipe's built-in world and its templates.
fn world_and_templates(
    stage: &Stage,
    resolved: &Resolved,
) -> Result<(crate::world::World, Templates), RunError> {
    let recipe = &resolved.recipe;
    let world = crate::world::World::new(&recipe.world, crate::world::world_seed(recipe.seed))
        .map_err(|e| model_err(stage, e.into()))?;
    let tdir = resolved.resolve_path(&recipe.templates_dir);
    let templates = Templates::open(&tdir).map_err(|source| RunError::Templates {
        stage: stage.id.clone(),
        source: Box::new(source),
    })?;
    Ok((world, templates))
}

/// The dialogues of prompt set `spec` in `split`, at most `n_prompts` of them, in order.
fn task_dialogues(
    stage: &Stage,
    resolved: &Resolved,
    spec: &str,
    n_prompts: Option<usize>,
    split: Split,
) -> Result<Vec<prompts::Dialogue>, RunError> {
    let all = prompts::load_prompt_set(resolved, spec).map_err(|source| RunError::Prompts {
        stage: stage.id.clone(),
        source: Box::new(source),
    })?;
    Ok(all
        .into_iter()
        .filter(|d| d.split == split)
        .take(n_prompts.unwrap_or(usize::MAX))
        .collect())
}

fn bad(stage: &Stage, detail: String, path: PathBuf) -> RunError {
    RunError::BadArtifact {
        stage: stage.id.clone(),
        detail,
        path,
    }
}

fn upstream(
    store: &Store,
    plan_stage: &Stage,
    dep: &str,
    key: Option<String>,
) -> Result<Artifact, RunError> {
    let key = key.ok_or_else(|| {
        bad(
            plan_stage,
            format!("upstream `{dep}` has no key in the plan"),
            PathBuf::from("plan.json"),
        )
    })?;
    store.lookup(dep, &key).ok_or_else(|| {
        bad(
            plan_stage,
            format!("upstream `{dep}` (key {key}) is missing from the cache"),
            store.artifact_dir(dep, &key),
        )
    })
}

/// Computes one stage into `dir`; returns the manifest metadata.
fn execute(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    dir: &Path,
    opts: &RunOptions,
) -> Result<serde_json::Value, RunError> {
    let t0 = Instant::now();
    let write = |name: &str, bytes: &[u8]| -> Result<(), RunError> {
        let p = dir.join(name);
        fs::write(&p, bytes).map_err(io(&p))
    };
    match stage.kind {
        StageKind::AppendixNCell => {
            let spec: CellSpec = serde_json::from_value(stage.config.clone()).map_err(|e| {
                bad(
                    stage,
                    format!("unreadable cell configuration ({e})"),
                    dir.to_path_buf(),
                )
            })?;
            let pb = progress_bar(opts.quiet, spec.trials, &stage.id);
            let counts = spec.run(stage.seed, &|n| pb.inc(n));
            pb.finish_and_clear();
            let result = CellResult {
                spec,
                seed: stage.seed,
                counts,
            };
            let text = serde_json::to_vec_pretty(&result).map_err(|e| {
                bad(
                    stage,
                    format!("cannot serialise the cell ({e})"),
                    dir.to_path_buf(),
                )
            })?;
            write("cell.json", &text)?;
            Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "counts": counts }))
        }
        StageKind::AppendixNTable => {
            let mut rows = Vec::new();
            for dep in &stage.deps {
                // The plan is in topological order, so upstream artifacts exist by now.
                let a = upstream(store, stage, dep, plan.stage(dep).map(|s| s.key.clone()))?;
                let bytes = a.read("cell.json")?;
                let cell: CellResult = serde_json::from_slice(&bytes).map_err(|e| {
                    bad(
                        stage,
                        format!("unreadable cell.json of `{dep}` ({e})"),
                        a.dir.clone(),
                    )
                })?;
                rows.push(cell.spec.row(cell.counts));
            }
            let frame = tables::appendix_n_frame(&rows)?;
            write(
                &format!("{}.parquet", tables::APPENDIX_N),
                &tables::render_parquet(&frame)?,
            )?;
            Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "rows": rows.len() }))
        }
        StageKind::Contrast => {
            let field = |k: &str| {
                stage
                    .config
                    .get(k)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let (Some(task), Some(spec), Some(task_templates)) =
                (field("task"), field("prompts"), field("templates"))
            else {
                return Err(bad(
                    stage,
                    "incomplete contrast configuration".into(),
                    dir.to_path_buf(),
                ));
            };
            let n_prompts = stage
                .config
                .get("n_prompts")
                .and_then(|v| v.as_u64())
                .map(|n| n as usize);
            let tdir = resolved.resolve_path(&resolved.recipe.templates_dir);
            let templates = Templates::open(&tdir).map_err(|source| RunError::Templates {
                stage: stage.id.clone(),
                source: Box::new(source),
            })?;
            let train = task_dialogues(stage, resolved, &spec, n_prompts, Split::Train)?;
            let contrast =
                prompts::contrast_prompts(&templates, &task_templates, &train, stage.seed)
                    .map_err(|source| RunError::Templates {
                        stage: stage.id.clone(),
                        source: Box::new(source),
                    })?;
            let mut text = String::new();
            for c in &contrast {
                let line = serde_json::json!({
                    "id": c.id,
                    "affix_index": c.affix_index,
                    "plain": c.plain,
                    "positive": c.positive,
                    "negative": c.negative,
                });
                text.push_str(&line.to_string());
                text.push('\n');
            }
            write("contrast.jsonl", text.as_bytes())?;
            Ok(serde_json::json!({
                "seconds": t0.elapsed().as_secs_f64(),
                "task": task,
                "prompts": contrast.len(),
            }))
        }
        StageKind::Pretrain => {
            let (world, templates) = world_and_templates(stage, resolved)?;
            let preset = config_str(stage, "preset", dir)?;
            let train = resolved
                .recipe
                .pretrain
                .config_for(&preset)
                .ok_or_else(|| {
                    bad(
                        stage,
                        format!("`{preset}` is not a world preset"),
                        dir.to_path_buf(),
                    )
                })?;
            let pb = progress_bar(opts.quiet, train.steps as u64, &stage.id);
            let job = crate::stages::pretrain::WorldPretrain {
                world: &world,
                templates: &templates,
                preset: &preset,
                config: train,
                heldout_documents: resolved.recipe.pretrain.heldout_documents,
                seed: stage.seed,
            };
            let mut on_step = |_: usize, loss: f64| {
                pb.inc(1);
                pb.set_message(format!("loss {loss:.3}"));
            };
            let record = with_backend!(resolved, B, device => {
                crate::stages::pretrain::pretrain_world::<burn::backend::Autodiff<B>>(&job, &device, dir, &mut on_step)
                    .map_err(|e| model_err(stage, e))
            })?;
            pb.finish_and_clear();
            Ok(serde_json::json!({
                "seconds": t0.elapsed().as_secs_f64(),
                "params": record.params,
                "vocab": record.vocab,
                "corpus_tokens": record.corpus_tokens,
                "corpus_blake3": record.corpus_blake3,
                "perplexity": record.perplexity,
                "train_tokens_per_s": record.log.tokens_per_s,
            }))
        }
        StageKind::WorldEval => {
            let (world, templates) = world_and_templates(stage, resolved)?;
            let dep = stage.deps.first().cloned().unwrap_or_default();
            let a = upstream(store, stage, &dep, plan.stage(&dep).map(|s| s.key.clone()))?;
            let record = crate::stages::pretrain::read_record(&a.dir)
                .map_err(|e| bad(stage, e.to_string(), a.dir.clone()))?;
            let cfg = &resolved.recipe.pretrain.report;
            let pb = progress_bar(opts.quiet, crate::world::Task::ALL.len() as u64, &stage.id);
            let rows = with_backend!(resolved, B, device => {
                let lm = crate::stages::pretrain::load_world_lm::<B>(&a.dir, &device)
                    .map_err(|e| model_err(stage, e.into()))?;
                crate::stages::world_report::evaluate_preset(
                    &lm, &world, &templates, &record, cfg, stage.seed, &mut |_| pb.inc(1),
                )
                .map_err(|e| model_err(stage, e))
            })?;
            pb.finish_and_clear();
            let json = serde_json::to_vec_pretty(&rows).map_err(|e| {
                bad(
                    stage,
                    format!("cannot serialise the report ({e})"),
                    dir.to_path_buf(),
                )
            })?;
            write("report.json", &json)?;
            Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "rows": rows.len() }))
        }
        StageKind::Simulate => preference::simulate(stage, plan, resolved, store, dir, opts.quiet),
        StageKind::HeldoutPairs => preference::heldout_pairs(stage, plan, resolved, store, dir),
        StageKind::Reward => preference::reward(stage, plan, resolved, store, dir, opts.quiet),
        StageKind::PairLabels => preference::pair_labels(stage, plan, resolved, store, dir),
        StageKind::PmAgreement => preference::pm_agreement_table(stage, plan, store, dir),
        StageKind::Policy => policy::policy(stage, plan, resolved, store, dir, opts.quiet),
        StageKind::Generate => policy::generate(stage, plan, resolved, store, dir, opts.quiet),
        StageKind::Judge => policy::judge(stage, plan, resolved, store, dir),
        StageKind::Winrates => policy::winrates_table(stage, plan, store, dir),
        StageKind::PolicyTraining => policy::policy_training_table(stage, plan, store, dir),
        StageKind::WorldReport => {
            let mut rows: Vec<tables::WorldReportRow> = Vec::new();
            for dep in &stage.deps {
                let a = upstream(store, stage, dep, plan.stage(dep).map(|s| s.key.clone()))?;
                let bytes = a.read("report.json")?;
                let part: Vec<tables::WorldReportRow> =
                    serde_json::from_slice(&bytes).map_err(|e| {
                        bad(
                            stage,
                            format!("unreadable report.json of `{dep}` ({e})"),
                            a.dir.clone(),
                        )
                    })?;
                rows.extend(part);
            }
            let frame = tables::world_report_frame(&rows)?;
            write(
                &format!("{}.parquet", tables::WORLD_REPORT),
                &tables::render_parquet(&frame)?,
            )?;
            Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "rows": rows.len() }))
        }
    }
}
