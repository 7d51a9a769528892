//! README.md's examples as test fixtures, so they cannot drift from the code:
//!
//! - every concrete `rlcd …` / `cargo run --release -- …` command it shows runs and succeeds.
//!   `run` goes through every stage of its recipe at smoke scale: world presets become world-xs
//!   and prompt counts, PPO steps and Monte-Carlo trials shrink, so a run takes seconds;
//! - every `RLCD_*` variable it shows reaches the recipe key it names;
//! - every TOML block is a valid recipe and agrees with the file its first comment names;
//! - every prompt-record shape it shows loads as a prompt set;
//! - the test command it gives is the one CI runs.
//!
//! Command patterns (`RECIPE`, `…`, `[--flag]`, `a|b`) and bare command names (`rlcd
//! validate`) are references, not examples. `cargo xtask readme`'s output is checked by
//! `tests/cli.rs` (the key reference equals a fresh `rlcd schema --markdown`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

const BIN: &str = env!("CARGO_BIN_EXE_rlcd");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md's inline code spans and its fenced blocks (language, text), in order.
struct Examples {
    spans: Vec<String>,
    blocks: Vec<(String, String)>,
}

fn examples() -> Examples {
    let text = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut out = Examples {
        spans: Vec::new(),
        blocks: Vec::new(),
    };
    let mut block: Option<(String, String)> = None;
    for event in Parser::new(&text) {
        match event {
            Event::Code(code) => out.spans.push(code.to_string()),
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(lang) => lang.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                block = Some((lang, String::new()));
            }
            Event::Text(t) => {
                if let Some((_, body)) = block.as_mut() {
                    body.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => out.blocks.extend(block.take()),
            _ => {}
        }
    }
    out
}

/// Every command line of the README: inline spans and the lines of `sh` blocks.
fn command_lines(ex: &Examples) -> Vec<String> {
    let mut lines = ex.spans.clone();
    for (lang, body) in &ex.blocks {
        if lang == "sh" {
            lines.extend(body.lines().map(str::to_string));
        }
    }
    lines
}

/// The `rlcd` arguments of `line` when it is an invocation of the binary.
fn rlcd_args(line: &str) -> Option<Vec<String>> {
    let rest = line
        .trim()
        .strip_prefix("cargo run --release -- ")
        .or_else(|| line.trim().strip_prefix("rlcd "))?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `args` is an example to run rather than a pattern or a bare command name.
fn is_example(args: &[String]) -> bool {
    let placeholder = |a: &str| {
        a.contains('…')
            || a.contains('[')
            || a.contains('|')
            || a.contains('<')
            || a.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    };
    const BARE: &[&[&str]] = &[
        &["validate"],
        &["run"],
        &["show"],
        &["render"],
        &["report"],
        &["assets", "fetch"],
        &["export", "model"],
        &["export", "pairs"],
        &["lm"],
    ];
    !args.is_empty() && !args.iter().any(|a| placeholder(a)) && !BARE.iter().any(|b| args == *b)
}

fn rlcd(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(root())
        .env_remove("RUST_BACKTRACE")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the rlcd binary runs")
}

/// Runs a sweep example in `dir`. A `--shard auto` sweep runs as both tasks of a two-task
/// Slurm array, as a cluster would run it; the merge example that follows merges them.
fn sweep(args: &[String], dir: &Path) -> Output {
    let tasks: &[&str] = if args.iter().any(|a| a == "auto") {
        &["0", "1"]
    } else {
        &[""]
    };
    let mut last = None;
    for task in tasks {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(dir)
            .env_remove("RUST_BACKTRACE")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX");
        if !task.is_empty() {
            cmd.env("SLURM_ARRAY_TASK_ID", task)
                .env("SLURM_ARRAY_TASK_COUNT", tasks.len().to_string());
        }
        let out = cmd.output().expect("the rlcd binary runs");
        if !out.status.success() {
            return out;
        }
        last = Some(out);
    }
    last.expect("at least one task")
}

/// Overrides that shrink a run of `recipe` to seconds while every stage still runs.
fn smoke_scale(recipe: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(recipe).expect("recipe");
    let value: toml::Table = toml::from_str(&text).expect("recipe TOML");
    let mut out = Vec::new();
    let mut world = false;
    if let Some(models) = value.get("models").and_then(toml::Value::as_table) {
        for (name, spec) in models {
            if spec
                .get("preset")
                .and_then(toml::Value::as_str)
                .is_some_and(|p| p.starts_with("world-"))
            {
                world = true;
                out.push(format!("models.{name}.preset=\"world-xs\""));
            }
        }
    }
    if world {
        out.extend(
            [
                "world.documents=2000",
                "pretrain.report.prompts=8",
                "pretrain.report.pairs=8",
            ]
            .map(String::from),
        );
    }
    if value.contains_key("tasks") {
        out.extend(
            [
                "simulate.n_prompts=8",
                "reward.heldout_pairs=4",
                "ppo.steps=1",
                "ppo.rollouts=4",
                "ppo.step_batch=4",
                "eval.n_prompts=4",
            ]
            .map(String::from),
        );
    }
    if value.contains_key("theory") {
        out.push("theory.trials=20000".into());
    }
    out
}

#[test]
fn every_command_example_runs() {
    let ex = examples();
    let results = tempfile::tempdir().expect("tempdir");
    let results_arg = format!("results={}", results.path().display());
    // Sweeps write under `results/sweeps/` of their working directory: a copy of the recipes.
    let cluster = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&root().join("recipes"), &cluster.path().join("recipes"));
    common::copy_dir(
        &root().join("prompt-templates"),
        &cluster.path().join("prompt-templates"),
    );
    let mut ran = Vec::new();
    for line in command_lines(&ex) {
        let Some(args) = rlcd_args(&line) else {
            continue;
        };
        if !is_example(&args) || ran.contains(&args.join(" ")) {
            continue;
        }
        let mut run_args = args.clone();
        let takes_recipe = ["run", "validate", "show", "render"].contains(&args[0].as_str());
        let sweeps = args[0] == "sweep";
        let merges = args.iter().any(|a| a == "--merge");
        if args[0] == "run" || (sweeps && !merges) {
            run_args.extend(smoke_scale(&root().join(&args[1])));
        }
        if takes_recipe || (sweeps && !merges) {
            run_args.push(results_arg.clone());
        }
        let t0 = std::time::Instant::now();
        let out = if sweeps {
            sweep(&run_args, cluster.path())
        } else {
            rlcd(&run_args, &[])
        };
        eprintln!(
            "{:6.1} s  rlcd {}",
            t0.elapsed().as_secs_f64(),
            run_args.join(" ")
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "README example `{line}` failed (as `rlcd {}`):\n{stderr}",
            run_args.join(" ")
        );
        if args.iter().any(|a| a == "--shard") {
            assert!(stderr.contains("shard 1/2: "), "`{line}`: {stderr}");
        } else {
            assert!(!stdout.trim().is_empty(), "`{line}` printed nothing");
        }
        if args[0] == "run" {
            assert!(
                stdout.lines().any(|l| l.starts_with("## ")),
                "`{line}` printed no table:\n{stdout}"
            );
        }
        ran.push(args.join(" "));
    }
    for expected in [
        "run recipes/quickstart.toml",
        "run recipes/theory/appendix-n.toml",
        "run recipes/theory/appendix-n.toml theory.delta=2 seed=1",
        "run recipes/world/pretrain.toml",
        "run recipes/paper/pairs.toml",
        "assets list",
        "schema --markdown",
        "sweep --merge results/sweeps/delta",
    ] {
        assert!(
            ran.iter().any(|r| r == expected),
            "`{expected}` not found among the README's examples: {ran:?}"
        );
    }
}

#[test]
fn environment_examples_reach_their_keys() {
    let ex = examples();
    let vars: Vec<(String, String)> = ex
        .spans
        .iter()
        .filter_map(|s| {
            let (name, value) = s.split_once('=')?;
            (name.starts_with("RLCD_")
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && !value.is_empty()
                && !value.contains(' '))
            .then(|| (name.to_string(), value.to_string()))
        })
        .collect();
    assert!(!vars.is_empty(), "the README shows an RLCD_* example");
    for (name, value) in vars {
        let key = name["RLCD_".len()..].to_lowercase().replace("__", ".");
        let recipe = if key.starts_with("theory.") {
            "recipes/theory/appendix-n.toml"
        } else {
            "recipes/quickstart.toml"
        };
        let out = rlcd(&["show".into(), recipe.into()], &[(&name, &value)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("`{key}` is not shown:\n{stdout}"));
        assert!(
            line.contains(&format!("env {name}")),
            "{name}={value} does not set `{key}`: {line}"
        );
    }
}

/// Every `a.b.c = value` leaf of a TOML table.
fn leaves(t: &toml::Table, at: &str, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let key = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match v {
            toml::Value::Table(inner) => leaves(inner, &key, out),
            other => out.push((key, other.clone())),
        }
    }
}

#[test]
fn toml_examples_are_valid_recipes_that_agree_with_their_files() {
    let ex = examples();
    let blocks: Vec<&String> = ex
        .blocks
        .iter()
        .filter(|(lang, _)| lang == "toml")
        .map(|(_, body)| body)
        .collect();
    assert!(!blocks.is_empty(), "the README shows a recipe");
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, body) in blocks.into_iter().enumerate() {
        let first = body.lines().next().unwrap_or_default();
        let file = first
            .strip_prefix("# ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("block {i} does not start with `# <recipe file>`"));
        let shipped: toml::Table = toml::from_str(
            &std::fs::read_to_string(root().join(file)).expect("the named recipe exists"),
        )
        .expect("the recipe parses");
        let shown: toml::Table = toml::from_str(body).expect("the README block parses");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        leaves(&shown, "", &mut a);
        leaves(&shipped, "", &mut b);
        for (key, value) in &a {
            assert_eq!(
                b.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                Some(value),
                "README's `{key}` differs from {file}"
            );
        }
        let path = dir.path().join(format!("block-{i}.toml"));
        std::fs::write(&path, body).expect("write");
        let out = rlcd(
            &[
                "validate".into(),
                path.display().to_string(),
                format!("results={}", dir.path().join("results").display()),
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "README block {i} is not a valid recipe:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn prompt_record_examples_load() {
    let ex = examples();
    let records: Vec<String> = ex
        .spans
        .iter()
        .filter(|s| s.starts_with('{'))
        .map(|s| s.replace('…', "How do I bake bread?"))
        .collect();
    assert!(records.len() >= 2, "record shapes shown: {records:?}");
    for r in &records {
        serde_json::from_str::<serde_json::Value>(r)
            .unwrap_or_else(|e| panic!("README record {r} is not JSON: {e}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("prompts.jsonl");
    std::fs::write(&path, records.join("\n") + "\n").expect("write");
    let set = rlcd::prompts::load_prompt_set(
        &path.display().to_string(),
        dir.path(),
        &Default::default(),
        0,
        rlcd::recipe::OnMalformed::Error,
    )
    .unwrap_or_else(|e| panic!("README's record shapes do not load: {e}"));
    assert_eq!(set.len(), records.len());
}

#[test]
fn the_test_command_is_the_one_ci_runs() {
    let ex = examples();
    let tests: Vec<&str> = ex
        .blocks
        .iter()
        .filter(|(lang, _)| lang == "sh")
        .flat_map(|(_, body)| body.lines())
        .filter(|l| l.starts_with("cargo test"))
        .collect();
    assert_eq!(tests.len(), 1, "one test command in README: {tests:?}");
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == tests[0]),
        "CI does not run `{}`",
        tests[0]
    );
}
