//! Recipe loading and validation errors: every bad input is reported with the file, the key
//! (and its line where known) on the first line, and a fix; independent problems are reported
//! together.

mod common;

use std::path::{Path, PathBuf};

use rlcd::recipe::{self, RecipeError, Resolved};

const BASE: &str = r#"# RLCD test recipe (arXiv 2307.12950, §3).
name = "t"
seed = 0

[models.small]
preset = "world-xs"

[tasks.harmless]
prompts = "prompts/harmless.jsonl"
templates = "harmless"
axes = ["harm", "help"]

[simulate]
temperature = 1.0
top_p = 1.0

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

const PROMPTS: &str = r#"{"id": "a", "split": "train", "turns": ["Hello?"]}
{"id": "b", "split": "test", "turns": ["Hi", "Hello!", "How are you?"]}
"#;

/// A throwaway project root: a copy of prompt-templates/, a prompt file, a recipe.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompt-templates");
        common::copy_dir(&src, &dir.path().join("prompt-templates"));
        std::fs::create_dir_all(dir.path().join("prompts")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("recipes")).expect("mkdir");
        std::fs::write(dir.path().join("prompts/harmless.jsonl"), PROMPTS).expect("write");
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).expect("write");
    }

    fn recipe(&self, text: &str) -> PathBuf {
        let p = self.path("recipes/x.toml");
        std::fs::write(&p, text).expect("write recipe");
        p
    }

    /// Loads (schema, env, overrides) and validates.
    fn check(
        &self,
        text: &str,
        overrides: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Resolved, RecipeError> {
        let file = self.recipe(text);
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let resolved = recipe::load_with_env(&file, &overrides, &env)?;
        recipe::validate(&resolved)?;
        Ok(resolved)
    }

    /// The error of a bad recipe; asserts its first line names the file and `key` and the
    /// message contains `fix`.
    fn fails(
        &self,
        text: &str,
        overrides: &[&str],
        env: &[(&str, &str)],
        key: &str,
        fix: &str,
    ) -> RecipeError {
        let err = match self.check(text, overrides, env) {
            Ok(_) => panic!("expected an error naming `{key}`"),
            Err(e) => e,
        };
        let msg = err.to_string();
        let first = msg.lines().next().unwrap_or_default();
        let file = self.path("recipes/x.toml").display().to_string();
        assert!(
            first.starts_with(&format!("{file}: ")),
            "first line must name the file:\n{msg}"
        );
        assert!(first.contains(key), "first line must name `{key}`:\n{msg}");
        assert!(msg.contains(fix), "message must suggest `{fix}`:\n{msg}");
        err
    }
}

#[test]
fn the_base_recipe_is_valid() {
    let p = Project::new();
    let r = p.check(BASE, &[], &[]).expect("valid");
    assert_eq!(r.root, p.dir.path());
    assert_eq!(r.recipe.tasks["harmless"].templates, "harmless");
}

#[test]
fn malformed_toml_names_the_line() {
    let p = Project::new();
    let bad = BASE.replace("seed = 0", "seed = = 0");
    let err = p.fails(&bad, &[], &[], "line 3", "correct the TOML syntax");
    assert!(
        matches!(err, RecipeError::Syntax { line: Some(3), .. }),
        "{err:?}"
    );
}

#[test]
fn duplicate_toml_key_is_a_syntax_error() {
    let p = Project::new();
    let bad = BASE.replace("seed = 0", "seed = 0\nseed = 1");
    p.fails(&bad, &[], &[], "line 4", "fix: correct the TOML syntax");
}

#[test]
fn unknown_top_level_key_suggests_the_closest() {
    let p = Project::new();
    let bad = BASE.replace("seed = 0", "seeds = 0");
    p.fails(
        &bad,
        &[],
        &[],
        "unknown key `seeds` (line 3)",
        "did you mean `seed`?",
    );
}

#[test]
fn unknown_nested_key_names_its_path_line_and_suggestion() {
    let p = Project::new();
    let bad = BASE.replace("prompts = \"prompts/", "prompt = \"prompts/");
    p.fails(
        &bad,
        &[],
        &[],
        "unknown key `tasks.harmless.prompt` (line 9)",
        "did you mean `prompts`?",
    );
}

#[test]
fn wrong_type_says_expected_and_found() {
    let p = Project::new();
    let bad = BASE.replace("seed = 0", "seed = \"zero\"");
    p.fails(
        &bad,
        &[],
        &[],
        "`seed`",
        "expected u64, found string \"zero\"",
    );
    let bad = BASE.replace("axes = [\"harm\", \"help\"]", "axes = \"harm\"");
    p.fails(&bad, &[], &[], "wrong type for `tasks.harmless.axes`: expected a sequence, found string \"harm\" (line 11)", "write `tasks.harmless.axes` as a sequence");
}

#[test]
fn missing_required_key_says_where_to_add_it() {
    let p = Project::new();
    let bad = BASE.replace("templates = \"harmless\"\n", "");
    p.fails(
        &bad,
        &[],
        &[],
        "`tasks.harmless.templates`",
        "add `templates = …` to [tasks.harmless]",
    );
}

#[test]
fn override_without_equals_is_rejected() {
    let p = Project::new();
    let err = p.fails(BASE, &["seed"], &[], "override `seed`", "key=value");
    assert!(matches!(err, RecipeError::Argument { .. }));
}

#[test]
fn override_without_key_is_rejected() {
    let p = Project::new();
    p.fails(BASE, &["=3"], &[], "override `=3`", "seed=3");
}

#[test]
fn override_with_empty_key_part_is_rejected() {
    let p = Project::new();
    p.fails(
        BASE,
        &["a..b=1"],
        &[],
        "override `a..b=1`",
        "ppo.kl_coef=0.004",
    );
}

#[test]
fn override_with_malformed_value_is_rejected() {
    let p = Project::new();
    p.fails(
        BASE,
        &["eval.comparisons=[[\"rlcd\""],
        &[],
        "override `eval.comparisons",
        "not valid TOML",
    );
}

#[test]
fn override_of_unknown_key_is_located_at_the_override() {
    let p = Project::new();
    p.fails(
        BASE,
        &["ppo.kl_coeff=0.1"],
        &[],
        "unknown key `ppo.kl_coeff` (override ppo.kl_coeff=0.1)",
        "did you mean `kl_coef`?",
    );
}

#[test]
fn override_of_wrong_type_is_located_at_the_override() {
    let p = Project::new();
    p.fails(
        BASE,
        &["seed=abc"],
        &[],
        "wrong type for `seed`: expected u64, found string \"abc\" (override seed=abc)",
        "write `seed` as u64",
    );
}

#[test]
fn unknown_env_key_is_ignored_with_a_suggestion() {
    let p = Project::new();
    let r = p
        .check(BASE, &[], &[("RLCD_SEEDS", "3"), ("RLCD_SEED", "4")])
        .expect("an unknown RLCD_ variable does not stop loading");
    assert_eq!(r.recipe.seed, 4);
    assert_eq!(r.sources["seed"], "env RLCD_SEED");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let warning = &r.warnings[0];
    assert!(warning.contains("RLCD_SEEDS"), "{warning}");
    assert!(warning.contains("did you mean RLCD_SEED?"), "{warning}");
}

#[test]
fn unrelated_env_variable_is_ignored_with_one_warning() {
    let p = Project::new();
    let r = p
        .check(BASE, &[], &[("RLCD_HOME", "/x")])
        .expect("RLCD_HOME does not stop loading");
    assert_eq!(r.recipe.seed, 0);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("RLCD_HOME"), "{:?}", r.warnings);
    assert!(!r.warnings[0].contains("did you mean"), "{:?}", r.warnings);
    assert!(r.sources.values().all(|s| !s.contains("RLCD_HOME")));
}

#[test]
fn malformed_env_name_is_ignored_with_a_warning() {
    let p = Project::new();
    let r = p
        .check(BASE, &[], &[("RLCD_PPO____KL", "3")])
        .expect("a malformed RLCD_ name does not stop loading");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let warning = &r.warnings[0];
    assert!(warning.contains("RLCD_PPO____KL"), "{warning}");
    assert!(warning.contains("RLCD_PPO__KL_COEF"), "{warning}");
}

#[test]
fn env_value_of_a_recipe_key_is_still_checked() {
    let p = Project::new();
    p.fails(
        BASE,
        &[],
        &[("RLCD_SEED", "abc"), ("RLCD_HOME", "/x")],
        "wrong type for `seed`: expected u64, found string \"abc\" (env RLCD_SEED)",
        "write `seed` as u64",
    );
}

#[test]
fn unknown_method_kind_suggests_a_kind() {
    let p = Project::new();
    let bad = BASE.replace("kind = \"rlaif\"", "kind = \"rlcf\"");
    p.fails(
        &bad,
        &[],
        &[],
        "`methods.rlaif.kind` (line 23)",
        "did you mean `rlcd`?",
    );
}

#[test]
fn unknown_backend_lists_the_backends() {
    let p = Project::new();
    let bad = BASE.replace("seed = 0", "seed = 0\nbackend = \"cudaa\"");
    p.fails(&bad, &[], &[], "`backend` (line 4)", "did you mean `cuda`?");
}

#[test]
fn method_naming_a_missing_model_is_reported() {
    let p = Project::new();
    let bad = BASE.replacen("simulator = \"small\"", "simulator = \"smal\"", 1);
    p.fails(
        &bad,
        &[],
        &[],
        "`methods.rlcd.simulator` names unknown model `smal` (line 19)",
        "did you mean `small`?",
    );
}

#[test]
fn method_without_simulator_is_reported() {
    let p = Project::new();
    let bad = BASE.replacen("simulator = \"small\"\n", "", 1);
    p.fails(
        &bad,
        &[],
        &[],
        "`methods.rlcd.simulator`",
        "add `simulator = \"<model>\"`",
    );
}

#[test]
fn comparison_naming_an_unknown_method_is_reported() {
    let p = Project::new();
    let bad = BASE.replace("[[\"rlcd\", \"rlaif\"]]", "[[\"rlcd\", \"rlaf\"]]");
    p.fails(
        &bad,
        &[],
        &[],
        "`eval.comparisons` names unknown method `rlaf` (line 29)",
        "did you mean `rlaif`?",
    );
}

#[test]
fn duplicate_comparison_is_reported() {
    let p = Project::new();
    let bad = BASE.replace(
        "[[\"rlcd\", \"rlaif\"]]",
        "[[\"rlcd\", \"rlaif\"], [\"rlaif\", \"rlcd\"]]",
    );
    p.fails(
        &bad,
        &[],
        &[],
        "`eval.comparisons`",
        "list each pair of methods once",
    );
}

#[test]
fn unknown_judge_is_reported() {
    let p = Project::new();
    let bad = BASE.replace(
        "judges = [\"lm:small\"]",
        "judges = [\"oracel\", \"lm:big\"]",
    );
    let err = p.fails(&bad, &[], &[], "`eval.judges`", "did you mean `oracle`?");
    assert_eq!(err.problems().len(), 2, "{err}");
    assert!(err.to_string().contains("unknown model `big`"), "{err}");
}

#[test]
fn oracle_judge_on_prompts_outside_the_world_is_reported() {
    let p = Project::new();
    let bad = BASE.replace(
        "judges = [\"lm:small\"]",
        "judges = [\"oracle\", \"rm:rlcd\"]",
    );
    p.fails(
        &bad,
        &[],
        &[],
        "`eval.judges`",
        "scores only built-in world prompts",
    );
    let bad = BASE.replace("judges = [\"lm:small\"]", "judges = [\"rm:rlcdd\"]");
    p.fails(&bad, &[], &[], "`eval.judges`", "rlcd");
}

#[test]
fn missing_template_directory_is_reported() {
    let p = Project::new();
    let bad = BASE.replace("templates = \"harmless\"", "templates = \"harmles\"");
    p.fails(
        &bad,
        &[],
        &[],
        "`tasks.harmless.templates` does not exist (line 10)",
        "create it with plain.j2, positive.j2, negative.j2",
    );
}

#[test]
fn missing_template_file_is_reported() {
    let p = Project::new();
    std::fs::remove_file(p.path("prompt-templates/harmless/negative.j2")).expect("rm");
    p.fails(
        BASE,
        &[],
        &[],
        "negative.j2: not found",
        "create `harmless/negative.j2`",
    );
}

#[test]
fn template_syntax_error_names_the_template() {
    let p = Project::new();
    p.write(
        "prompt-templates/harmless/positive.j2",
        "{% if %}oops{% endif %}",
    );
    p.fails(
        BASE,
        &[],
        &[],
        "positive.j2:1: syntax error",
        "correct the template syntax",
    );
}

#[test]
fn undefined_template_variable_fails_under_strict_mode() {
    let p = Project::new();
    p.write(
        "prompt-templates/harmless/negative.j2",
        "{{ turns[0] }} ({{ affix.neutral }}):",
    );
    p.fails(
        BASE,
        &[],
        &[],
        "negative.j2:1: undefined value",
        "`affix.positive`, `affix.negative`",
    );
}

#[test]
fn missing_affix_file_is_reported() {
    let p = Project::new();
    std::fs::remove_file(p.path("prompt-templates/affixes/harmless.toml")).expect("rm");
    p.fails(
        BASE,
        &[],
        &[],
        "affixes/harmless.toml: not found",
        "create `affixes/harmless.toml`",
    );
}

#[test]
fn empty_prompt_file_is_reported() {
    let p = Project::new();
    p.write("prompts/harmless.jsonl", "\n\n");
    p.fails(
        BASE,
        &[],
        &[],
        "harmless.jsonl: prompt file is empty",
        "add prompts",
    );
}

#[test]
fn missing_prompt_file_is_reported() {
    let p = Project::new();
    let bad = BASE.replace("prompts/harmless.jsonl", "prompts/nothing.jsonl");
    p.fails(
        &bad,
        &[],
        &[],
        "nothing.jsonl: prompt file not found",
        "correct the path",
    );
}

#[test]
fn missing_asset_prompt_set_names_the_fetch_command() {
    let p = Project::new();
    let bad = BASE.replace("\"prompts/harmless.jsonl\"", "\"assets:harmless\"");
    p.fails(
        &bad,
        &[],
        &[],
        "assets/prompts/harmless.jsonl",
        "rlcd assets fetch",
    );
}

#[test]
fn malformed_prompt_record_names_its_line() {
    let p = Project::new();
    p.write(
        "prompts/harmless.jsonl",
        "{\"id\": \"a\", \"turns\": [\"q\"]}\n{\"id\": \"b\", \"turns\": [\"q\", \"r\"]}\n",
    );
    p.fails(
        BASE,
        &[],
        &[],
        "harmless.jsonl:2: `turns` has 2 entries",
        "end the dialogue with a human turn",
    );
}

#[test]
fn zero_prompt_count_is_reported() {
    let p = Project::new();
    let bad = BASE.replace(
        "axes = [\"harm\", \"help\"]",
        "axes = [\"harm\", \"help\"]\nn_prompts = 0",
    );
    p.fails(
        &bad,
        &[],
        &[],
        "`tasks.harmless.n_prompts` is 0 (line 12)",
        "use at least 1",
    );
}

#[test]
fn negative_temperature_is_reported() {
    let p = Project::new();
    let bad = BASE.replace("temperature = 1.0", "temperature = -0.5");
    p.fails(
        &bad,
        &[],
        &[],
        "`simulate.temperature` = -0.5 is outside its range [0, ∞) (line 14)",
        "set `simulate.temperature`",
    );
}

#[test]
fn top_p_above_one_is_reported() {
    let p = Project::new();
    let bad = BASE.replace("top_p = 1.0", "top_p = 1.5");
    p.fails(
        &bad,
        &[],
        &[],
        "`simulate.top_p` = 1.5",
        "a value in (0, 1]",
    );
}

#[test]
fn model_with_two_sources_is_reported() {
    let p = Project::new();
    let bad = BASE.replace(
        "preset = \"world-xs\"",
        "preset = \"world-xs\"\ngguf = \"m.gguf\"",
    );
    let err = p.fails(
        &bad,
        &[],
        &[],
        "2 problems: `models.small`, `models.small.gguf`",
        "keep one",
    );
    assert!(err.to_string().contains("`preset` and `gguf`"), "{err}");
}

#[test]
fn model_with_no_source_is_reported() {
    let p = Project::new();
    let bad = BASE.replace("preset = \"world-xs\"", "sha256 = \"00\"");
    let err = p.fails(&bad, &[], &[], "`models.small`", "keep one");
    assert!(err.to_string().contains("none of them"), "{err}");
    assert!(err.to_string().contains("64 hex digits"), "{err}");
}

#[test]
fn missing_gguf_names_the_fetch_command() {
    let p = Project::new();
    let bad = BASE.replace(
        "preset = \"world-xs\"",
        "gguf = \"assets/models/none.gguf\"",
    );
    p.fails(
        &bad,
        &[],
        &[],
        "`models.small.gguf` does not exist (line 6)",
        "rlcd assets fetch",
    );
}

#[test]
fn unknown_preset_and_axis_are_suggested() {
    let p = Project::new();
    let bad = BASE
        .replace("preset = \"world-xs\"", "preset = \"world-x\"")
        .replace("[\"harm\", \"help\"]", "[\"harm\", \"helpp\"]");
    let err = p.fails(
        &bad,
        &[],
        &[],
        "`models.small.preset`",
        "did you mean `world-xs`?",
    );
    assert!(err.to_string().contains("did you mean `help`?"), "{err}");
}

#[test]
fn theory_problems_come_from_the_theory_config() {
    let p = Project::new();
    let bad = format!("{BASE}\n[theory]\ntrials = 0\n");
    p.fails(
        &bad,
        &[],
        &[],
        "`theory.trials`: trials = 0 simulates nothing (line 32)",
        "set trials to a positive count",
    );
}

#[test]
fn several_problems_are_reported_together() {
    let p = Project::new();
    let bad = BASE
        .replace("top_p = 1.0", "top_p = 0.0")
        .replacen("simulator = \"small\"", "simulator = \"nobody\"", 1)
        .replace("[[\"rlcd\", \"rlaif\"]]", "[[\"rlcd\", \"dpo\"]]")
        .replace("templates = \"harmless\"", "templates = \"nowhere\"");
    let err = p.fails(&bad, &[], &[], "4 problems", "define `[models.nobody]`");
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    for key in [
        "simulate.top_p",
        "methods.rlcd.simulator",
        "eval.comparisons",
        "tasks.harmless.templates",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
        assert!(
            err.summary().contains(&format!("`{key}`")),
            "{}",
            err.summary()
        );
    }
}

#[test]
fn several_schema_errors_are_reported_together() {
    let p = Project::new();
    let bad = BASE
        .replace("seed = 0", "seed = -1\ncolour = \"red\"")
        .replace("prompts = \"prompts/", "promts = \"prompts/")
        .replace("top_p = 1.0", "top_p = \"high\"");
    let err = p.fails(&bad, &[], &[], "problems", "did you mean `prompts`?");
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    for key in ["seed", "colour", "tasks.harmless.promts", "simulate.top_p"] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}: {err}");
    }
}

#[test]
fn unreadable_recipe_file_is_reported() {
    let p = Project::new();
    let file = p.path("recipes/absent.toml");
    let err = recipe::load(&file, &[]).expect_err("missing file");
    let first = err.summary();
    assert!(first.starts_with(&file.display().to_string()), "{err}");
    assert!(err.to_string().contains("fix: check the path"), "{err}");
}

#[test]
fn layers_apply_in_order_and_record_their_sources() {
    let p = Project::new();
    let r = p
        .check(
            BASE,
            &[
                "simulate.top_p=0.5",
                "eval.comparisons=[[\"rlaif\",\"rlcd\"]]",
                "name=run-2",
            ],
            &[
                ("RLCD_SEED", "7"),
                ("RLCD_SIMULATE__TOP_P", "0.9"),
                ("OTHER", "x"),
            ],
        )
        .expect("valid");
    let file = p.path("recipes/x.toml").display().to_string();
    assert_eq!(r.recipe.seed, 7);
    assert_eq!(r.recipe.simulate.top_p, 0.5, "override beats env");
    assert_eq!(r.recipe.name, "run-2");
    assert_eq!(
        r.recipe.eval.comparisons,
        Some(vec![["rlaif".to_string(), "rlcd".to_string()]])
    );
    assert_eq!(r.sources["seed"], "env RLCD_SEED");
    assert_eq!(r.sources["simulate.top_p"], "override simulate.top_p=0.5");
    assert_eq!(r.sources["simulate.temperature"], format!("{file}:14"));
    assert_eq!(r.sources["tasks.harmless.prompts"], format!("{file}:9"));
    assert_eq!(r.sources["ppo.kl_coef"], "default");
    assert_eq!(
        r.sources["eval.comparisons"],
        "override eval.comparisons=[[\"rlaif\",\"rlcd\"]]"
    );
}

#[test]
fn resolved_recipe_round_trips_through_toml() {
    let p = Project::new();
    let r = p.check(BASE, &["ppo.kl_coef=0.004"], &[]).expect("valid");
    let text = r.to_toml_string();
    assert!(text.contains("kl_coef = 0.004"), "{text}");
    let again = p.check(&text, &[], &[]).expect("resolved recipe reloads");
    assert_eq!(again.recipe, r.recipe);
    assert_eq!(
        again.sources.keys().collect::<Vec<_>>(),
        r.sources.keys().collect::<Vec<_>>()
    );
    assert!(
        again.sources.values().all(|s| s != "default"),
        "every key is now set in the file"
    );
    assert_eq!(r.resolve_path(Path::new("prompts")), p.path("prompts"));
}

#[test]
fn example_recipe_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("recipes/examples/contrast.toml");
    let r = recipe::load_with_env(&file, &[], &[]).expect("example loads");
    recipe::validate(&r).expect("example validates");
    assert_eq!(r.root, root);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.starts_with("# "),
        "recipes start with a header comment"
    );
    assert!(text.contains("2307.12950"), "the header cites the paper");
    for (name, task) in &r.recipe.tasks {
        let d = rlcd::prompts::load_prompt_set(
            &task.prompts,
            &r.root,
            &r.recipe.world,
            r.recipe.seed,
            task.malformed_prompts,
        )
        .expect("prompts load");
        assert!(d.len() >= 3, "{name}");
        assert!(
            d.iter().any(|d| d.turns.len() > 1) || name == "outlining",
            "{name} has a multi-turn prompt"
        );
    }
}
