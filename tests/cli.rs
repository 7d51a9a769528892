//! The `rlcd` binary end to end: exit codes, one-line-first error messages, no panics, caching.

mod common;

use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_rlcd");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rlcd(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the rlcd binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a clean failure: non-zero exit, no panic, a first line that starts with `error:` and
/// contains every `needle`. A run that has started names its directory first (even with
/// `--quiet`); the error line follows it.
fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "panicked:\n{err}");
    let mut lines = err.lines().peekable();
    lines.next_if(|l| l.starts_with("run ") && l.contains("results/runs/"));
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("error: "),
        "first line is not an error line: {first:?}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

/// A scratch project: a copy of the recipe and the real templates, with its own results/.
fn scratch(recipe: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_dir(
        &root().join("prompt-templates"),
        &dir.path().join("prompt-templates"),
    );
    let path = dir.path().join("recipe.toml");
    fs::write(&path, recipe).expect("write recipe");
    (dir, path)
}

/// The first artifact directory (one holding `manifest.json`) under `dir`, depth first.
fn find_artifact(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir).ok()?.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.join("manifest.json").is_file() {
                return Some(path);
            }
            if let Some(found) = find_artifact(&path) {
                return Some(found);
            }
        }
    }
    None
}

const SMALL_THEORY: &str = "name = \"cli-theory\"\nseed = 5\n\n[theory]\ntrials = 20000\n";

#[test]
fn validate_accepts_the_shipped_recipes() {
    fn recipes_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read recipes/")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                recipes_under(&path, out);
            } else if path.extension().is_some_and(|x| x == "toml") {
                out.push(path);
            }
        }
    }
    let mut recipes = Vec::new();
    recipes_under(&root().join("recipes"), &mut recipes);
    assert!(recipes.len() >= 6, "{recipes:?}");
    for path in &recipes {
        let recipe = path.to_str().expect("utf-8 path");
        let mut args = vec!["validate", recipe, "results=target/cli-validate-results"];
        // A GPU recipe is checked on the CPU backend by a build without CUDA (that it
        // refuses CUDA there is a case of tests/validate_cases.rs).
        let text = fs::read_to_string(path).expect("recipe");
        if !cfg!(feature = "cuda") && text.lines().any(|l| l.trim() == "backend = \"cuda\"") {
            args.push("backend=\"cpu\"");
        }
        let out = rlcd(&root(), &args);
        // Recipes on fetched models and prompt sets need them first; the error says how.
        if !out.status.success() && stderr(&out).contains("rlcd assets fetch") {
            panic!(
                "{recipe}: {}\nfetch what it names with `cargo run --release -- assets fetch …`",
                stderr(&out)
            );
        }
        assert!(out.status.success(), "{recipe}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(": ok"), "{text}");
        assert!(text.contains("plan:"), "{text}");
    }
}

#[test]
fn run_then_rerun_is_fully_cached_with_identical_tables() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let recipe = recipe.to_str().unwrap();
    let first = rlcd(dir.path(), &["run", recipe, "--quiet"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = rlcd(dir.path(), &["run", recipe]);
    assert!(second.status.success(), "{}", stderr(&second));
    let log = stderr(&second);
    assert!(
        log.contains("cached"),
        "second run should report cached stages:\n{log}"
    );
    assert!(
        !log.contains("computed"),
        "second run recomputed a stage:\n{log}"
    );

    let runs = dir.path().join("results/runs/cli-theory");
    let mut run_dirs: Vec<PathBuf> = fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    run_dirs.sort();
    assert_eq!(run_dirs.len(), 2);
    let table = |d: &Path| fs::read(d.join("tables/appendix-n.csv")).expect("table written");
    assert_eq!(table(&run_dirs[0]), table(&run_dirs[1]));
    for d in &run_dirs {
        assert!(d.join("resolved.toml").is_file());
        assert!(d.join("run.log").is_file());
    }

    let report = rlcd(dir.path(), &["report", run_dirs[0].to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    assert!(stdout(&report).contains("| rlaif"), "{}", stdout(&report));
}

#[test]
fn show_names_the_source_of_every_value() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let out = Command::new(BIN)
        .args(["show", recipe.to_str().unwrap(), "theory.delta=2"])
        .current_dir(dir.path())
        .env("RLCD_THEORY__SIGMA_D", "0.5")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{text}"))
            .to_string()
    };
    assert!(line("theory.delta").contains("override"), "{text}");
    assert!(
        line("theory.sigma_d").contains("env RLCD_THEORY__SIGMA_D"),
        "{text}"
    );
    assert!(line("theory.trials").contains("recipe.toml:"), "{text}");
    assert!(line("theory.hard_threshold").contains("default"), "{text}");
}

#[test]
fn render_prints_contrast_prompts() {
    let out = rlcd(
        &root(),
        &[
            "render",
            "recipes/examples/contrast.toml",
            "--task",
            "harmless",
            "--n",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("--- p+ ---").count(), 2, "{text}");
    assert!(text.contains("Assistant ("), "{text}");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let recipe = recipe.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["validate", "no/such/recipe.toml"],
            vec!["no/such/recipe.toml"],
        ),
        (
            vec!["validate", recipe, "theory.detla=1"],
            vec!["theory.detla", "delta"],
        ),
        (vec!["validate", recipe, "seed"], vec!["seed"]),
        (
            vec!["validate", recipe, "theory.trials=\"many\""],
            vec!["theory.trials"],
        ),
        (
            vec!["validate", recipe, "theory.trials=0"],
            vec!["theory.trials"],
        ),
        (vec!["render", recipe, "--task", "nope"], vec!["nope"]),
        (vec!["report", "no/such/run"], vec!["no/such/run"]),
        (
            vec!["lm", "score", "--model", "smolm2-135m", "--text", "hi"],
            vec!["smolm2-135m"],
        ),
        (
            vec!["assets", "fetch", "no-such-asset"],
            vec!["no-such-asset"],
        ),
    ];
    for (args, needles) in cases {
        let out = rlcd(dir.path(), &args);
        assert_clean_failure(&out, &needles);
    }
}

#[test]
fn malformed_toml_names_file_and_line() {
    let (dir, recipe) = scratch("name = \"x\"\nseed = = 3\n");
    let out = rlcd(dir.path(), &["run", recipe.to_str().unwrap()]);
    assert_clean_failure(&out, &["recipe.toml", "line 2"]);
}

#[test]
fn results_dir_that_cannot_be_created_is_an_error() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let blocker = dir.path().join("blocker");
    fs::write(&blocker, "a file, not a directory").unwrap();
    let results = format!("results=\"{}\"", blocker.join("results").display());
    let out = rlcd(dir.path(), &["run", recipe.to_str().unwrap(), &results]);
    assert_clean_failure(&out, &["blocker"]);
}

#[test]
fn a_stale_lock_is_reclaimed_and_a_live_one_refuses() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let recipe = recipe.to_str().unwrap();
    // Find the stage keys from a first run, then clear the cache and plant locks.
    let first = rlcd(dir.path(), &["run", recipe, "--quiet"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let key_dir = find_artifact(&dir.path().join("results/cache")).expect("an artifact dir");
    let stage_dir = key_dir.parent().unwrap().to_path_buf();
    let key = key_dir.file_name().unwrap().to_string_lossy().into_owned();
    fs::remove_dir_all(&key_dir).unwrap();

    // Stale: a lock file naming a process that does not exist.
    let lock = stage_dir.join(format!("{key}.lock"));
    fs::write(&lock, "999999999\n").unwrap();
    let out = rlcd(dir.path(), &["run", recipe]);
    assert!(
        out.status.success(),
        "stale lock should be reclaimed: {}",
        stderr(&out)
    );

    // Live: this test process holds the lock.
    fs::remove_dir_all(&key_dir).unwrap();
    let held = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    held.try_lock().expect("lock");
    fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    let out = rlcd(dir.path(), &["run", recipe, "--quiet"]);
    assert_clean_failure(&out, &["lock"]);
    drop(held);
}

#[test]
fn readme_recipe_reference_is_generated_from_the_schema() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let block = rlcd::recipe::reference::markdown();
    assert!(
        readme.contains(&block),
        "README.md's recipe-key reference is stale: run `cargo xtask readme` to regenerate it"
    );
    // Every key of the schema is in it, with its default.
    for key in rlcd::recipe::reference::keys() {
        assert!(block.contains(&format!("`{}`", key.key)), "{}", key.key);
    }
    assert!(
        block.contains("| `ppo.kl_coef` | number | `0.003` |"),
        "{block}"
    );
    assert!(
        block.contains("| `world.documents` | integer | `24000` |"),
        "{block}"
    );
}

#[test]
fn validate_names_recipe_keys_that_reach_no_stage() {
    let out = rlcd(
        &root(),
        &[
            "validate",
            "recipes/quickstart.toml",
            "dpo.beta=0.5",
            "results=target/cli-validate-results",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("recipe keys that reach no stage")
            && text.contains("dpo.beta  (override dpo.beta=0.5)"),
        "{text}"
    );
    let out = rlcd(
        &root(),
        &[
            "validate",
            "recipes/quickstart.toml",
            "results=target/cli-validate-results",
        ],
    );
    assert!(!stdout(&out).contains("reach no stage"), "{}", stdout(&out));
}

/// The run directories of recipe `name` under `dir`'s results/, oldest first.
fn run_dirs(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir.join("results/runs").join(name))
        .expect("runs written")
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

/// How a reader of `rlcd`'s stdout goes away early.
#[derive(Clone, Copy, Debug)]
enum Reader {
    /// Reads the first line, then closes the pipe (`| head -1`).
    FirstLine,
    /// Closes the pipe before anything is written, so the first write fails.
    Closed,
}

/// Runs `rlcd args` in `dir` with its stdout read by `reader`; asserts that it exits with
/// status 0 and prints nothing about it on stderr.
fn assert_quiet_when_stdout_closes(dir: &Path, args: &[&str], reader: Reader) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the rlcd binary starts");
    let pipe = child.stdout.take().expect("piped stdout");
    match reader {
        Reader::FirstLine => {
            let mut first = String::new();
            std::io::BufReader::new(pipe)
                .read_line(&mut first)
                .expect("read stdout");
            assert!(!first.is_empty(), "{args:?} printed nothing on stdout");
        }
        Reader::Closed => drop(pipe),
    }
    let out = child.wait_with_output().expect("rlcd exits");
    let err = stderr(&out);
    assert!(
        !err.contains("panicked"),
        "{args:?} ({reader:?}) panicked:\n{err}"
    );
    assert!(
        !err.to_lowercase().contains("error") && !err.contains("Broken pipe"),
        "{args:?} ({reader:?}) reported the closed pipe:\n{err}"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?} ({reader:?}) with stdout closed early:\n{err}"
    );
}

#[test]
fn every_command_ends_quietly_when_stdout_is_closed() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let recipe = recipe.to_str().unwrap();
    // Sweeps write runs of their own, kept apart from the two counted below.
    let (sweep_dir, sweep_recipe) = scratch(SMALL_THEORY);
    let sweep_recipe = sweep_recipe.to_str().unwrap();
    let results = format!("results={}", dir.path().join("results").display());
    let root = root();
    let cases: Vec<(&Path, Vec<&str>)> = vec![
        (&root, vec!["validate", "recipes/quickstart.toml", &results]),
        (dir.path(), vec!["validate", recipe]),
        (dir.path(), vec!["show", recipe]),
        (
            &root,
            vec![
                "render",
                "recipes/examples/contrast.toml",
                "--task",
                "harmless",
                "--n",
                "3",
            ],
        ),
        (dir.path(), vec!["schema"]),
        (dir.path(), vec!["schema", "--json"]),
        (dir.path(), vec!["assets", "list"]),
        (
            sweep_dir.path(),
            vec![
                "sweep",
                sweep_recipe,
                "--grid",
                "theory.delta=0,1",
                "--quiet",
            ],
        ),
        // The first run computes its stages, the second finds them in the cache.
        (dir.path(), vec!["run", recipe]),
    ];
    for (cwd, args) in &cases {
        for reader in [Reader::Closed, Reader::FirstLine] {
            assert_quiet_when_stdout_closes(cwd, args, reader);
        }
    }
    let runs = run_dirs(dir.path(), "cli-theory");
    assert_eq!(runs.len(), 2, "{runs:?}");
    let log = fs::read_to_string(runs[1].join("run.log")).unwrap();
    assert!(log.contains("cached") && !log.contains("computed"), "{log}");
    for reader in [Reader::Closed, Reader::FirstLine] {
        assert_quiet_when_stdout_closes(dir.path(), &["report", runs[0].to_str().unwrap()], reader);
    }
}

#[test]
fn quiet_run_hides_progress_only() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let out = rlcd(dir.path(), &["run", recipe.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = run_dirs(dir.path(), "cli-theory").remove(0);
    let err = stderr(&out);
    // The run directory is named; no stage lines.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("run ") && err.contains(&run_dir.display().to_string()),
        "{err}"
    );
    assert!(
        !err.contains("computed") && !err.contains("cached"),
        "{err}"
    );
    // The tables are printed as without --quiet.
    let text = stdout(&out);
    assert!(text.starts_with("## appendix-n ("), "{text}");
    assert!(text.contains("| rlaif"), "{text}");
    // The stage lines are still in run.log.
    let log = fs::read_to_string(run_dir.join("run.log")).unwrap();
    assert!(log.contains("computed"), "{log}");
}

#[test]
fn table_titles_and_tables_share_stdout_and_the_log_stays_on_stderr() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let out = rlcd(dir.path(), &["run", recipe.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = run_dirs(dir.path(), "cli-theory").remove(0);
    let markdown = run_dir.join("tables/appendix-n.md");
    let text = stdout(&out);
    let table = fs::read_to_string(&markdown).expect("table written");
    assert_eq!(
        text,
        format!("## appendix-n ({})\n\n{table}\n", markdown.display())
    );
    let err = stderr(&out);
    assert!(err.contains("computed"), "stage lines go to stderr:\n{err}");
    assert!(
        !err.contains("## ") && !err.contains("appendix-n.md") && !err.contains("| rlaif"),
        "no table or title on stderr:\n{err}"
    );
    // `report` prints the same.
    let report = rlcd(dir.path(), &["report", run_dir.to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    assert_eq!(stdout(&report), text);
    assert_eq!(stderr(&report), "");
}

#[test]
fn rlcd_variables_of_no_recipe_key_are_ignored_with_one_warning_each() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let recipe = recipe.to_str().unwrap();
    for args in [vec!["show", recipe], vec!["run", recipe, "--quiet"]] {
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(dir.path())
            .env_remove("RUST_BACKTRACE")
            .env("RLCD_HOME", "/x")
            .env("RLCD_SEEDS", "3")
            .env("RLCD_THEORY__TRIALS", "5000")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{args:?}: {err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 2, "{args:?}: {err}");
        assert!(warnings[0].contains("RLCD_HOME"), "{err}");
        assert!(
            warnings[1].contains("RLCD_SEEDS") && warnings[1].contains("did you mean RLCD_SEED?"),
            "{err}"
        );
    }
    // The recipe key among them still applies.
    let run_dir = run_dirs(dir.path(), "cli-theory").remove(0);
    let resolved = fs::read_to_string(run_dir.join("resolved.toml")).unwrap();
    assert!(resolved.contains("trials = 5000"), "{resolved}");
    let log = fs::read_to_string(run_dir.join("run.log")).unwrap();
    assert!(
        log.contains("warning: ignoring environment variable RLCD_HOME"),
        "{log}"
    );
}

/// `rlcd sweep` in one process, and as a two-task Slurm array (`--shard auto` reading the
/// array's variables) merged afterwards, give byte-identical summaries; a shard outside an
/// array is refused naming the variables.
#[test]
fn sweep_shards_from_a_slurm_array_merge_to_the_single_process_summary() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let recipe = recipe.to_str().unwrap();
    let sweep = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["sweep", recipe, "--grid", "theory.delta=0,1,2", "--quiet"])
            .args(extra)
            .current_dir(dir.path())
            .env_remove("RUST_BACKTRACE")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("rlcd sweep runs")
    };
    let whole = sweep(&["--out", "whole"], &[]);
    assert!(whole.status.success(), "{}", stderr(&whole));
    assert!(
        stdout(&whole).starts_with("## summary ("),
        "{}",
        stdout(&whole)
    );
    for task in ["0", "1"] {
        let out = sweep(
            &["--out", &format!("array/task-{task}"), "--shard", "auto"],
            &[
                ("SLURM_ARRAY_TASK_ID", task),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_STEP", "1"),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("shard {task}/2:")),
            "{}",
            stderr(&out)
        );
    }
    let merged = rlcd(dir.path(), &["sweep", "--merge", "array"]);
    assert!(merged.status.success(), "{}", stderr(&merged));
    assert_eq!(
        fs::read(dir.path().join("array/summary.csv")).unwrap(),
        fs::read(dir.path().join("whole/summary.csv")).unwrap()
    );
    let alone = sweep(&["--out", "alone", "--shard", "auto"], &[]);
    assert_clean_failure(&alone, &["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]);
}

/// A shard that needs a stage another process is computing waits for it, saying who holds it,
/// and computes it once the lock is free; `--lock-timeout` bounds the wait.
#[test]
fn a_sweep_waits_for_a_stage_another_process_holds() {
    let (dir, recipe) = scratch(SMALL_THEORY);
    let resolved = rlcd::recipe::load(&recipe, &[]).expect("recipe");
    let plan = rlcd::plan::Plan::build(&resolved).expect("plan");
    let stage = &plan.stages[0];
    let store = rlcd::store::Store::open(&dir.path().join("results")).expect("store");
    let held = match store.begin(&stage.id, &stage.key).expect("lock") {
        rlcd::store::Slot::Open(p) => p,
        rlcd::store::Slot::Ready(_) => panic!("nothing is computed yet"),
    };
    let sweep = |timeout: &str| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "sweep",
            recipe.to_str().unwrap(),
            "--grid",
            "theory.trials=20000",
            "--quiet",
        ])
        .args(["--lock-timeout", timeout])
        .current_dir(dir.path())
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd
    };
    // Bounded: gives up after the timeout, naming the holder.
    let out = sweep("1").output().expect("rlcd sweep runs");
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let me = std::process::id().to_string();
    assert!(
        err.contains(&format!("waiting for stage `{}`: process {me}", stage.id)),
        "{err}"
    );
    assert!(err.contains("is being computed by process"), "{err}");
    // Released while a shard waits: the shard computes the stage and finishes.
    let child = sweep("600").spawn().expect("rlcd sweep starts");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(held);
    let out = child.wait_with_output().expect("rlcd sweep ends");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("waiting for stage"),
        "{}",
        stderr(&out)
    );
    assert!(store.lookup(&stage.id, &stage.key).is_some());
}
