//! Every problem a run would meet is found before any stage runs. For each bad input below,
//! `rlcd validate` exits non-zero with a first line naming the recipe file and the key, and
//! the message gives a fix; `rlcd run` prints the same first line and computes nothing (no
//! results directory appears); a sweep over the recipe fails with the same first line before
//! running any cell.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::gguf_writer::GgufWriter;
use rlcd::model::gguf::{GgmlType, MetaValue};

const BIN: &str = env!("CARGO_BIN_EXE_rlcd");

/// A valid recipe on a prompt file with both splits; each case changes one thing.
const BASE: &str = r#"name = "cases"

[models.small]
preset = "world-xs"

[tasks.harmless]
prompts = "prompts/harmless.jsonl"
templates = "harmless"
axes = ["harm"]

[methods.rlcd]
kind = "rlcd"
simulator = "small"
policy = "small"

[methods.rlaif]
kind = "rlaif"
simulator = "small"
policy = "small"

[eval]
judges = ["lm:small"]
comparisons = [["rlcd", "rlaif"]]
"#;

const PROMPTS: &str = r#"{"id": "a", "split": "train", "turns": ["How do I bake bread?"]}
{"id": "b", "split": "train", "turns": ["Hi", "Hello!", "How are you?"]}
{"id": "c", "split": "test", "turns": ["What is a good book?"]}
"#;

/// A throwaway project: the templates, `prompts/harmless.jsonl`, a recipe and extra files.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("prompt-templates"),
            &dir.path().join("prompt-templates"),
        );
        let p = Self { dir };
        p.write("prompts/harmless.jsonl", PROMPTS.as_bytes());
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write");
    }

    fn rlcd(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("the rlcd binary runs")
    }
}

/// The first line of a failed command's stderr, asserting a clean failure.
fn first_error_line(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} succeeded:\n{err}");
    assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
    let first = err.lines().next().unwrap_or_default();
    first
        .strip_prefix("error: ")
        .unwrap_or_else(|| panic!("{what}: first line is not an error line:\n{err}"))
        .to_string()
}

/// One bad input: the recipe text, extra files, overrides, the key its first line names and
/// a phrase of its fix.
struct Case<'a> {
    recipe: Vec<u8>,
    files: Vec<(&'a str, Vec<u8>)>,
    overrides: Vec<&'a str>,
    key: &'a str,
    fix: &'a str,
}

impl<'a> Case<'a> {
    fn new(recipe: impl Into<Vec<u8>>, key: &'a str, fix: &'a str) -> Self {
        Self {
            recipe: recipe.into(),
            files: Vec::new(),
            overrides: Vec::new(),
            key,
            fix,
        }
    }

    fn file(mut self, rel: &'a str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((rel, bytes.into()));
        self
    }

    fn overrides(mut self, overrides: &[&'a str]) -> Self {
        self.overrides = overrides.to_vec();
        self
    }

    /// Asserts the case fails the same way under `validate`, `run` and a sweep, before any
    /// stage runs.
    fn check(self) {
        let p = Project::new();
        for (rel, bytes) in &self.files {
            p.write(rel, bytes);
        }
        p.write("recipe.toml", &self.recipe);
        let recipe = p.path("recipe.toml");
        let recipe_arg = recipe.display().to_string();
        let mut args = vec!["validate", recipe_arg.as_str()];
        args.extend(&self.overrides);
        let out = p.rlcd(&args);
        let first = first_error_line(&out, "validate");
        eprintln!("first line: {first}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            first.starts_with(&format!("{recipe_arg}: ")),
            "the first line names the recipe file:\n{err}"
        );
        assert!(
            first.contains(self.key),
            "the first line names `{}`:\n{err}",
            self.key
        );
        assert!(
            err.contains(self.fix),
            "the message says `{}`:\n{err}",
            self.fix
        );

        let mut args = vec!["run", recipe_arg.as_str()];
        args.extend(&self.overrides);
        let run = p.rlcd(&args);
        assert_eq!(
            first_error_line(&run, "run"),
            first,
            "run and validate agree"
        );
        assert!(
            !p.path("results").exists(),
            "run computed or stored something before failing"
        );

        // A sweep whose cell carries the problem fails with the same line (its axis, the
        // results root, is one no case is about).
        let overrides: Vec<String> = self.overrides.iter().map(|s| s.to_string()).collect();
        let opts = rlcd::sweep::SweepOptions {
            overrides,
            quiet: true,
            ..Default::default()
        };
        let grid = vec![("results".to_string(), vec!["\"results\"".to_string()])];
        let err = rlcd::sweep::sweep_with(&recipe, &grid, None, &p.path("sweep"), &opts)
            .expect_err("the sweep fails");
        let sweep_first = err
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(sweep_first, first, "sweep and validate agree");
        assert!(!p.path("results").exists(), "the sweep ran a cell");
    }
}

/// `BASE` with `old` replaced by `new` (which must occur).
fn edit(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "BASE lacks {old:?}");
    BASE.replacen(old, new, 1)
}

/// `BASE` refusing over-long prompts rather than cutting them.
fn strict() -> String {
    format!("truncate = \"error\"\n{BASE}")
}

/// A prompt set whose train prompt `long` (20,000 words) overflows every world preset.
fn long_prompt_set() -> String {
    format!(
        "{PROMPTS}{{\"id\": \"long\", \"split\": \"train\", \"turns\": [\"{}\"]}}\n",
        "word ".repeat(20_000)
    )
}

/// `BASE` with the small model replaced by model table `model`.
fn with_model(model: &str) -> String {
    edit("[models.small]\npreset = \"world-xs\"\n", model)
}

/// A complete GGUF file of one tensor, then the same file cut short.
fn gguf_bytes() -> (Vec<u8>, Vec<u8>) {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", MetaValue::String("llama".into()));
    w.tensor(
        "token_embd.weight",
        &[64, 64],
        GgmlType::F32,
        &[0.5; 64 * 64],
    )
    .expect("tensor");
    let full = w.to_bytes();
    let cut = full[..full.len() - 1000].to_vec();
    (full, cut)
}

/// `BASE` with a Latin-1 byte in a comment on line 3.
fn non_utf8_on_line_3() -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = BASE.lines().map(|l| l.as_bytes().to_vec()).collect();
    lines.insert(2, b"# caf\xe9".to_vec());
    lines.join(&b'\n')
}

macro_rules! cases {
    ($($name:ident => $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                $case.check();
            }
        )*

        /// The cases, counted.
        const CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

cases! {
    model_sha256_mismatch => Case::new(
        with_model("[models.small]\ngguf = \"models/m.gguf\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n"),
        "models.small.sha256",
        "sha256sum",
    )
    .file("models/m.gguf", gguf_bytes().0);
    model_file_truncated => Case::new(
        with_model("[models.small]\ngguf = \"models/m.gguf\"\n"),
        "models.small.gguf",
        "complete GGUF file",
    )
    .file("models/m.gguf", gguf_bytes().1);
    model_file_not_gguf => Case::new(
        with_model("[models.small]\ngguf = \"models/m.gguf\"\n"),
        "models.small.gguf",
        "complete GGUF file",
    )
    .file("models/m.gguf", "this is not a model\n");
    model_file_unsupported_architecture => Case::new(
        with_model("[models.small]\ngguf = \"models/m.gguf\"\n"),
        "models.small.gguf",
        "llama or qwen2",
    )
    .file("models/m.gguf", gguf_bytes().0);
    model_file_missing => Case::new(
        with_model("[models.small]\ngguf = \"models/absent.gguf\"\n"),
        "models.small.gguf",
        "assets fetch",
    );
    asset_not_fetched => Case::new(
        with_model("[models.small]\nasset = \"smollm2-135m\"\n"),
        "models.small.asset",
        "assets fetch smollm2-135m",
    );
    simulate_max_new_tokens_past_the_context => Case::new(BASE, "simulate.max_new_tokens", "below 1024")
        .overrides(&["simulate.max_new_tokens=5000"]);
    eval_max_new_tokens_past_the_context => Case::new(BASE, "eval.max_new_tokens", "below 1024")
        .overrides(&["eval.max_new_tokens=1024"]);
    judge_prompt_past_the_context => Case::new(strict(), "eval.max_new_tokens", "lower `eval.max_new_tokens` to at most")
        .overrides(&["eval.max_new_tokens=500"]);
    scoring_prompt_past_the_context => Case::new(strict(), "simulate.max_new_tokens", "lower `simulate.max_new_tokens` to at most")
        .overrides(&["simulate.max_new_tokens=500"]);
    ppo_lengths_past_the_context => Case::new(BASE, "ppo.max_response_tokens", "below 1024")
        .overrides(&["ppo.max_query_tokens=1000", "ppo.max_response_tokens=100"]);
    prompt_longer_than_the_context => Case::new(strict(), "tasks.harmless.prompts", "shorten or drop prompt `long`")
        .file("prompts/harmless.jsonl", long_prompt_set());
    unknown_truncate_mode => Case::new(format!("truncate = \"right\"\n{BASE}"), "truncate", "expected one of `left`, `error`");
    prompt_set_without_test_prompts => Case::new(BASE, "tasks.harmless.prompts", "\"split\": \"test\"")
        .file(
            "prompts/harmless.jsonl",
            "{\"id\": \"a\", \"split\": \"train\", \"turns\": [\"Hello?\"]}\n",
        );
    prompt_set_without_train_prompts => Case::new(BASE, "tasks.harmless.prompts", "\"split\": \"train\"")
        .file(
            "prompts/harmless.jsonl",
            "{\"id\": \"a\", \"split\": \"test\", \"turns\": [\"Hello?\"]}\n",
        );
    comparison_of_three_methods => Case::new(
        edit("comparisons = [[\"rlcd\", \"rlaif\"]]", "comparisons = [[\"rlcd\", \"rlaif\", \"base\"]]"),
        "eval.comparisons",
        "pair of its own",
    );
    simulator_on_a_base_method => Case::new(
        format!("{BASE}\n[methods.base]\nkind = \"base\"\nsimulator = \"small\"\npolicy = \"small\"\n"),
        "methods.base.simulator",
        "remove `simulator`",
    );
    cuda_backend_without_cuda => Case::new(format!("backend = \"cuda\"\n{BASE}"), "backend", "--features cuda");
    unknown_top_level_key => Case::new(format!("seeds = 3\n{BASE}"), "seeds", "did you mean `seed`");
    unknown_nested_key => Case::new(
        edit("[eval]\n", "[eval]\njudge = [\"oracle\"]\n"),
        "eval.judge",
        "did you mean `judges`",
    );
    wrong_value_type => Case::new(format!("seed = \"zero\"\n{BASE}"), "seed", "write `seed` as");
    missing_name => Case::new(BASE.replacen("name = \"cases\"\n", "", 1), "name", "name = ");
    unknown_method_kind => Case::new(edit("kind = \"rlaif\"", "kind = \"rlaf\""), "methods.rlaif.kind", "rlaif");
    method_naming_a_missing_model => Case::new(
        edit("simulator = \"small\"\npolicy = \"small\"\n\n[methods.rlaif]", "simulator = \"large\"\npolicy = \"small\"\n\n[methods.rlaif]"),
        "methods.rlcd.simulator",
        "[models.large]",
    );
    unknown_judge => Case::new(edit("judges = [\"lm:small\"]", "judges = [\"gpt4\"]"), "eval.judges", "lm:<model>");
    comparison_of_an_unknown_method => Case::new(
        edit("[[\"rlcd\", \"rlaif\"]]", "[[\"rlcd\", \"rlaiff\"]]"),
        "eval.comparisons",
        "did you mean `rlaif`",
    );
    duplicate_comparison => Case::new(
        edit("[[\"rlcd\", \"rlaif\"]]", "[[\"rlcd\", \"rlaif\"], [\"rlaif\", \"rlcd\"]]"),
        "eval.comparisons",
        "list each pair of methods once",
    );
    missing_template_family => Case::new(edit("templates = \"harmless\"", "templates = \"harmles\""), "tasks.harmless.templates", "create it");
    template_syntax_error => Case::new(BASE, "tasks.harmless.templates", "correct the template syntax")
        .file("prompt-templates/harmless/positive.j2", "{% if %}broken");
    missing_affix_file => Case::new(edit("templates = \"harmless\"", "templates = \"mine\""), "tasks.harmless.templates", "affixes/mine.toml")
        .file("prompt-templates/mine/plain.j2", "{{ turns[0] }}")
        .file("prompt-templates/mine/positive.j2", "{{ turns[0] }} {{ affix }}")
        .file("prompt-templates/mine/negative.j2", "{{ turns[0] }} {{ affix }}");
    missing_prompt_file => Case::new(edit("prompts/harmless.jsonl", "prompts/absent.jsonl"), "tasks.harmless.prompts", "prompts/absent.jsonl");
    malformed_prompt_record => Case::new(BASE, "tasks.harmless.prompts", "harmless.jsonl:2")
        .file("prompts/harmless.jsonl", "{\"id\": \"a\", \"split\": \"train\", \"turns\": [\"Hi\"]}\n{not json\n");
    empty_prompt_file => Case::new(BASE, "tasks.harmless.prompts", "add")
        .file("prompts/harmless.jsonl", "");
    negative_temperature => Case::new(BASE, "simulate.temperature", "[0, ∞)")
        .overrides(&["simulate.temperature=-1"]);
    top_p_above_one => Case::new(BASE, "simulate.top_p", "(0, 1]")
        .overrides(&["simulate.top_p=1.5"]);
    model_with_two_sources => Case::new(
        with_model("[models.small]\npreset = \"world-xs\"\nasset = \"smollm2-135m\"\n"),
        "models.small",
        "keep one",
    );
    ppo_step_batch_above_rollouts => Case::new(BASE, "ppo.step_batch", "at most `ppo.rollouts`")
        .overrides(&["ppo.step_batch=9", "ppo.rollouts=8"]);
    override_of_an_unknown_key => Case::new(BASE, "ppo.kl_coeff", "did you mean `kl_coef`")
        .overrides(&["ppo.kl_coeff=0.1"]);
    judge_pair_correlation_of_one => Case::new(
        format!("{BASE}\n[models.small.judging]\nquestions_frac = 0.5\npair_correlation = 1.0\n"),
        "models.small.judging.pair_correlation",
        "use e.g. 0.8",
    );
    judge_pair_correlation_without_questions => Case::new(
        format!("{BASE}\n[models.small.judging]\npair_correlation = 0.8\n"),
        "models.small.judging.pair_correlation",
        "set `questions_frac` above 0",
    );
    judge_tuning_without_pairs => Case::new(
        format!("{BASE}\n[models.small.judging.tuning]\npairs = 0\n"),
        "models.small.judging.tuning.pairs",
        "under [models.small.judging.tuning]",
    );
    judge_tuning_unknown_key => Case::new(
        format!("{BASE}\n[models.small.judging.tuning]\nsteps = 10\n"),
        "steps",
        "epochs",
    );
    judge_tuning_sampled_without_responder => Case::new(
        format!("{BASE}\n[models.small.judging.tuning]\nsampled_pairs = 100\n"),
        "models.small.judging.tuning.responder",
        "e.g. responder = \"sim-s\"",
    );
    judge_tuning_degraded_without_sampled_pairs => Case::new(
        format!("{BASE}\n[models.small.judging.tuning.degraded]\nhot_frac = 0.2\n"),
        "models.small.judging.tuning.degraded",
        "set sampled_pairs and a responder",
    );
    judge_tuning_degraded_shares_above_one => Case::new(
        format!(
            "{BASE}\n[models.small.judging.tuning]\nsampled_pairs = 100\nresponder = \"small\"\n\n\
             [models.small.judging.tuning.degraded]\noff_topic_frac = 0.6\nhot_frac = 0.5\n"
        ),
        "models.small.judging.tuning.degraded.hot_frac",
        "lower one of them",
    );
    judge_tuning_unknown_responder => Case::new(
        format!("{BASE}\n[models.small.judging.tuning]\nsampled_pairs = 100\nresponder = \"smal\"\n"),
        "models.small.judging.tuning.responder",
        "did you mean `small`?",
    );
    ppo_lora_rank_zero => Case::new(
        format!("{BASE}\n[ppo.lora]\nrank = 0\n"),
        "ppo.lora.rank",
        "set rank ≥ 1",
    );
    reward_lora_unknown_target => Case::new(
        format!("{BASE}\n[reward.lora]\ntargets = [\"q\"]\n"),
        "reward.lora.targets",
        "q_proj",
    );
    label_judge_unknown_model => Case::new(
        edit("[eval]\n", "[eval]\nlabel_judge = \"lm:smal\"\n"),
        "eval.label_judge",
        "did you mean `small`?",
    );
    label_judge_not_a_model => Case::new(
        edit("[eval]\n", "[eval]\nlabel_judge = \"oracle\"\n"),
        "eval.label_judge",
        "write `lm:<model>`",
    );
    label_pairs_zero => Case::new(
        edit("[eval]\n", "[eval]\nlabel_judge = \"lm:small\"\nlabel_pairs = 0\n"),
        "eval.label_pairs",
        "at least 1",
    );
    chat_on_a_preset => Case::new(
        with_model("[models.small]\npreset = \"world-xs\"\nchat = true\n"),
        "models.small.chat",
        "remove `models.small.chat`",
    );
    q8_weights_on_cuda => Case::new(
        format!(
            "backend = \"cuda\"\n{}",
            with_model("[models.small]\npreset = \"world-xs\"\nweights = \"q8_0\"\n")
        ),
        "models.small.weights",
        "set `backend = \"cpu\"`",
    );
    non_utf8_recipe_line => Case::new(non_utf8_on_line_3(), "line 3", "UTF-8");
    non_utf8_prompt_line => Case::new(BASE, "harmless.jsonl:4", "UTF-8")
        .file("prompts/harmless.jsonl", [PROMPTS.as_bytes(), b"{\"id\": \"d\", \"turns\": [\"caf\xe9\"]}\n"].concat());
}

#[test]
fn at_least_thirty_cases() {
    assert!(CASES.len() >= 30, "{} cases", CASES.len());
}

#[test]
fn over_long_prompts_are_cut_by_default_and_validate_says_so() {
    let p = Project::new();
    p.write("prompts/harmless.jsonl", long_prompt_set().as_bytes());
    p.write("recipe.toml", BASE.as_bytes());
    let out = p.rlcd(&["validate", "recipe.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let note = err
        .lines()
        .find(|l| l.starts_with("note: "))
        .unwrap_or_else(|| panic!("no note on stderr:\n{err}"));
    for part in [
        "1 of 3 train prompts of `tasks.harmless.prompts`",
        "`models.small`",
        "longest: `long`",
        "`truncate = \"left\"` drops their oldest tokens",
    ] {
        assert!(note.contains(part), "{part:?} not in {note}");
    }
}

#[test]
fn a_sweep_checks_every_cell_before_running_any() {
    let p = Project::new();
    p.write("recipe.toml", BASE.as_bytes());
    let recipe = p.path("recipe.toml");
    let grid = vec![(
        "ppo.kl_coef".to_string(),
        vec!["0.01".to_string(), "high".to_string()],
    )];
    let opts = rlcd::sweep::SweepOptions {
        quiet: true,
        ..Default::default()
    };
    let err = rlcd::sweep::sweep_with(&recipe, &grid, None, &p.path("sweep"), &opts)
        .expect_err("cell 1 is invalid");
    let msg = err.to_string();
    let first = msg.lines().next().unwrap_or_default();
    assert!(first.contains("ppo.kl_coef"), "{msg}");
    assert!(msg.contains("sweep cell 1"), "{msg}");
    assert!(
        !p.path("results").exists(),
        "cell 0 ran before cell 1 was checked"
    );
}

#[test]
fn show_labels_inline_table_values_with_their_line() {
    let p = Project::new();
    let text = edit(
        "name = \"cases\"\n",
        "name = \"cases\"\nppo = { steps = 1 }\n",
    );
    p.write("recipe.toml", text.as_bytes());
    let out = p.rlcd(&["show", "recipe.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    let line = shown
        .lines()
        .find(|l| l.starts_with("ppo.steps = "))
        .expect("ppo.steps is shown");
    let at = 2;
    assert!(
        line.contains(&format!("recipe.toml:{at}")),
        "ppo.steps comes from line {at}: {line}"
    );
}
