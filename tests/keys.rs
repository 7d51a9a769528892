//! Cache keys cover exactly what a stage reads: for every stage kind, its key is a function of
//! its typed configuration, version and upstream keys; every field of a configuration is one
//! the stage reads (it survives a typed round trip) and changing it changes the key; a recipe
//! key no stage reads changes no key, and `unread_keys` names it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rlcd::plan::{Plan, stage_key};
use rlcd::recipe::{self, Resolved};
use rlcd::stages::registry;
use rlcd::stages::stage::StageKind;

/// A recipe reaching every stage kind but the world-oracle ones: a world task and a task on a
/// prompt file, every method kind, a DPO method, an LM judge and an RM judge, and `[theory]`.
const ALL_KINDS: &str = r#"
name = "keys"

[theory]
trials = 1000

[models.sim]
preset = "world-xs"

[tasks.harmless]
prompts = "world:harmless"
templates = "harmless"
axes = ["harm", "help"]

[tasks.helpful]
prompts = "recipes/examples/prompts/helpful.jsonl"
templates = "helpful"
axes = ["help"]

[methods.rlcd]
kind = "rlcd"
simulator = "sim"
policy = "sim"

[methods.rlaif]
kind = "rlaif"
simulator = "sim"
policy = "sim"

[methods.rescore]
kind = "rlcd-rescore"
simulator = "sim"
policy = "sim"

[methods.distilled]
kind = "context-distillation"
simulator = "sim"
policy = "sim"

[methods.dpo]
kind = "rlcd"
simulator = "sim"
policy = "sim"
trainer = "dpo"

[methods.base]
kind = "base"
policy = "sim"

[eval]
judges = ["lm:sim", "rm:rlcd"]
comparisons = [["rlcd", "rlaif"], ["rlcd", "rescore"], ["rlcd", "distilled"], ["rlcd", "base"], ["rlcd", "dpo"]]
"#;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `text` loaded as a recipe file of the project (overrides applied).
fn load_text(text: &str, overrides: &[String]) -> Resolved {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("recipe.toml");
    std::fs::write(&file, text).expect("write recipe");
    let mut r = recipe::load_with_env(&file, overrides, &[]).expect("recipe loads");
    r.root = root().to_path_buf();
    recipe::validate(&r).expect("recipe validates");
    r
}

fn load_file(rel: &str, overrides: &[String]) -> Resolved {
    let r = recipe::load_with_env(&root().join(rel), overrides, &[]).expect("recipe loads");
    recipe::validate(&r).expect("recipe validates");
    r
}

fn keys(plan: &Plan) -> BTreeMap<String, String> {
    plan.stages
        .iter()
        .map(|s| (s.id.clone(), s.key.clone()))
        .collect()
}

/// Every scalar leaf of `v` (numbers, strings, booleans) as a JSON pointer.
fn leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                leaves(x, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{at}/{i}"), out);
            }
        }
        serde_json::Value::Null => {}
        _ => out.push(at),
    }
}

/// A different value of the same type.
fn perturbed(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Bool(b) => serde_json::Value::Bool(!b),
        serde_json::Value::Number(n) if n.is_u64() => (n.as_u64().unwrap_or(0) + 1).into(),
        serde_json::Value::Number(n) if n.is_i64() => (n.as_i64().unwrap_or(0) + 1).into(),
        serde_json::Value::Number(n) => (n.as_f64().unwrap_or(0.0) * 1.5 + 0.25).into(),
        serde_json::Value::String(s) => format!("{s}x").into(),
        other => other.clone(),
    }
}

#[test]
fn every_stage_kind_keys_exactly_its_typed_config() {
    let plans = [
        Plan::build(&load_text(ALL_KINDS, &[])).expect("plan"),
        // A label judge: its verdicts on simulated pairs and on a file task's held-out pairs.
        Plan::build(&load_text(
            ALL_KINDS,
            &["eval.label_judge=\"lm:sim\"".to_string()],
        ))
        .expect("plan"),
        Plan::build(&load_file("recipes/quickstart.toml", &[])).expect("plan"),
        Plan::build(&load_file("recipes/examples/imported-pairs.toml", &[])).expect("plan"),
        // Simulators with judging tables of their own, and the judge_skill table.
        Plan::build(&load_file("recipes/paper/judge-skill.toml", &[])).expect("plan"),
        // A judge pretrained with judge questions.
        Plan::build(&load_file("recipes/paper/world.toml", &[])).expect("plan"),
    ];
    let mut seen: BTreeSet<StageKind> = BTreeSet::new();
    let mut fields = 0usize;
    for plan in &plans {
        let by_id = keys(plan);
        for stage in &plan.stages {
            seen.insert(stage.kind);
            let upstream: BTreeMap<String, String> = stage
                .deps
                .iter()
                .map(|d| (d.clone(), by_id[d].clone()))
                .collect();
            // The key is recomputed from exactly the kind, version, config and upstream keys.
            assert_eq!(registry::version(stage.kind), stage.version);
            assert_eq!(
                stage_key(stage.kind, stage.version, &stage.config, &upstream),
                stage.key,
                "{}",
                stage.id
            );
            // Every field of the configuration is one the typed configuration reads.
            let back = registry::round_trip(stage.kind, &stage.config).expect("typed config");
            assert_eq!(back, stage.config, "{}: a field is not read", stage.id);
            // The inputs are the ones the configuration names.
            assert_eq!(
                registry::inputs(stage.kind, &stage.config).expect("inputs"),
                stage.deps,
                "{}",
                stage.id
            );
            let mut pointers = Vec::new();
            leaves(&stage.config, String::new(), &mut pointers);
            for pointer in pointers {
                let mut changed = stage.config.clone();
                let slot = changed.pointer_mut(&pointer).expect("leaf");
                *slot = perturbed(slot);
                if changed == stage.config {
                    continue;
                }
                // A changed value is still a configuration of the kind (so the stage reads it),
                // and it changes the key.
                if registry::round_trip(stage.kind, &changed).is_ok() {
                    fields += 1;
                    assert_ne!(
                        stage_key(stage.kind, stage.version, &changed, &upstream),
                        stage.key,
                        "{} {pointer}",
                        stage.id
                    );
                }
            }
            // A changed upstream key changes the key.
            for dep in &stage.deps {
                let mut up = upstream.clone();
                up.insert(dep.clone(), "0".repeat(32));
                assert_ne!(
                    stage_key(stage.kind, stage.version, &stage.config, &up),
                    stage.key
                );
            }
        }
    }
    let all: BTreeSet<StageKind> = StageKind::ALL.into_iter().collect();
    assert_eq!(seen, all, "the recipes reach every stage kind");
    assert!(fields > 200, "{fields} configuration fields checked");
}

/// Every numeric or boolean leaf of the resolved recipe, as a dotted key with its value.
fn recipe_leaves(v: &toml::Value, at: &str, out: &mut Vec<(String, toml::Value)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                let key = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                recipe_leaves(x, &key, out);
            }
        }
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
            out.push((at.to_string(), v.clone()))
        }
        _ => {}
    }
}

fn toml_perturbed(v: &toml::Value) -> String {
    match v {
        toml::Value::Integer(i) => (i + 1).to_string(),
        // Inside [0, 1] where the value is, so fractions and probabilities stay valid.
        toml::Value::Float(f) if *f < 0.5 => format!("{:?}", f + 0.25),
        toml::Value::Float(f) => format!("{:?}", f - 0.25),
        toml::Value::Boolean(b) => (!b).to_string(),
        other => other.to_string(),
    }
}

/// A recipe key changes some stage key exactly when the plan records that a stage reads it.
fn check_reads(text: Option<&str>, file: &str) {
    let load = |o: &[String]| match text {
        Some(t) => load_text(t, o),
        None => load_file(file, o),
    };
    let base = load(&[]);
    let plan = Plan::build(&base).expect("plan");
    let before = keys(&plan);
    let mut leaves = Vec::new();
    recipe_leaves(&base.value, "", &mut leaves);
    assert!(leaves.len() > 30, "{file}: {} leaves", leaves.len());
    for (key, value) in leaves {
        let o = [format!("{key}={}", toml_perturbed(&value))];
        let dir = tempfile::tempdir().expect("tempdir");
        let file_path = dir.path().join("r.toml");
        let changed = match text {
            Some(t) => {
                std::fs::write(&file_path, t).expect("write");
                recipe::load_with_env(&file_path, &o, &[])
            }
            None => recipe::load_with_env(&root().join(file), &o, &[]),
        };
        let Ok(mut changed) = changed else { continue };
        changed.root = base.root.clone();
        if recipe::validate(&changed).is_err() {
            continue;
        }
        let after = keys(&Plan::build(&changed).expect("plan"));
        let read = plan
            .reads
            .iter()
            .any(|r| key == *r || key.starts_with(&format!("{r}.")));
        let differs = after != before;
        assert_eq!(
            differs,
            read,
            "{file}: `{key}` {} a key but is {}recorded as read",
            if differs { "changes" } else { "changes no" },
            if read { "" } else { "not " }
        );
    }
}

#[test]
fn recipe_keys_change_keys_exactly_when_a_stage_reads_them() {
    check_reads(None, "recipes/quickstart.toml");
    check_reads(Some(ALL_KINDS), "all-kinds recipe");
}

#[test]
fn keys_no_stage_reads_are_named_and_change_nothing() {
    let text = format!("{ALL_KINDS}\n[dpo]\nbeta = 0.1\n");
    let quickstart = load_file("recipes/quickstart.toml", &["dpo.beta=0.5".into()]);
    let plan = Plan::build(&quickstart).expect("plan");
    let unread: Vec<String> = plan
        .unread_keys(&quickstart)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(unread, ["dpo.beta"], "quickstart has no DPO method");
    let plain = Plan::build(&load_file("recipes/quickstart.toml", &[])).expect("plan");
    assert_eq!(keys(&plan), keys(&plain));
    // The same key reaches a stage where a method trains with DPO.
    let r = load_text(&text, &["dpo.beta=0.5".into()]);
    let plan = Plan::build(&r).expect("plan");
    assert!(
        plan.unread_keys(&r).is_empty(),
        "{:?}",
        plan.unread_keys(&r)
    );
    // Run-level keys (name, results) are not stage inputs and are not reported.
    let r = load_file(
        "recipes/quickstart.toml",
        &["results=/tmp/elsewhere".into()],
    );
    let plan = Plan::build(&r).expect("plan");
    assert!(plan.unread_keys(&r).is_empty());
    assert_eq!(keys(&plan), keys(&plain));
}

#[test]
fn held_out_pairs_sample_at_the_temperature_their_key_holds() {
    let r = load_file(
        "recipes/quickstart.toml",
        &[
            "simulate.temperature=0.7".into(),
            "simulate.top_p=0.9".into(),
        ],
    );
    let plan = Plan::build(&r).expect("plan");
    let heldout: Vec<_> = plan
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::HeldoutPairs)
        .collect();
    assert!(!heldout.is_empty());
    for s in heldout {
        assert_eq!(s.config["sampling"]["temperature"], 0.7, "{}", s.id);
        assert_eq!(s.config["sampling"]["top_p"], 0.9, "{}", s.id);
        let typed: rlcd::stages::heldout_pairs::Config =
            serde_json::from_value(s.config.clone()).expect("typed");
        assert_eq!(typed.sampling.temperature, 0.7);
    }
}

/// `models.<name>.weights = "q8_0"` reaches exactly the stages that run the model without
/// gradients (simulation, held-out samples, evaluation samples, LM judging and pair labelling);
/// the configurations of the stages that train from it stay those of an `f32` run.
#[test]
fn q8_weights_reach_the_stages_that_run_models_without_gradients() {
    let configs = |overrides: &[String]| -> BTreeMap<String, (StageKind, serde_json::Value)> {
        Plan::build(&load_text(ALL_KINDS, overrides))
            .expect("plan")
            .stages
            .into_iter()
            .map(|s| (s.id, (s.kind, s.config)))
            .collect()
    };
    let f32 = configs(&["eval.label_judge=\"lm:sim\"".into()]);
    let q8 = configs(&[
        "eval.label_judge=\"lm:sim\"".into(),
        "models.sim.weights=\"q8_0\"".into(),
    ]);
    assert_eq!(
        f32.keys().collect::<Vec<_>>(),
        q8.keys().collect::<Vec<_>>(),
        "the weight format adds or removes no stage"
    );
    let frozen = [
        StageKind::Simulate,
        StageKind::HeldoutPairs,
        StageKind::Generate,
        StageKind::Judge,
        StageKind::PairJudge,
    ];
    let mut changed = BTreeSet::new();
    for (id, (kind, before)) in &f32 {
        let after = &q8[id].1;
        assert!(
            !before.to_string().contains("q8_0"),
            "{id}: an f32 run names q8_0"
        );
        if before != after {
            assert!(frozen.contains(kind), "{id} ({kind:?}) changed: {after}");
            assert!(after.to_string().contains("\"q8_0\""), "{id}: {after}");
            changed.insert(*kind);
        }
    }
    // The RM judge and the oracle read no language model, so only the LM judge changes.
    for kind in frozen {
        assert!(
            changed.contains(&kind),
            "no {kind:?} stage reads the weight format"
        );
    }
    for (id, (kind, config)) in &q8 {
        if matches!(kind, StageKind::Reward | StageKind::Policy) {
            assert_eq!(config, &f32[id].1, "{id} trains from f32 weights");
        }
    }
}

#[test]
fn shipped_recipes_set_no_key_that_reaches_no_stage() {
    fn recipes(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("recipes dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                recipes(&path, out);
            } else if path.extension().is_some_and(|x| x == "toml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    recipes(&root().join("recipes"), &mut files);
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let r = recipe::load_with_env(&file, &[], &[]).expect("recipe loads");
        let plan = Plan::build(&r).expect("plan");
        assert!(
            plan.unread_keys(&r).is_empty(),
            "{}: {:?}",
            file.display(),
            plan.unread_keys(&r)
        );
    }
}

/// A copy of the project's template directory and example prompts under a temporary root.
fn project_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(
        &root().join("prompt-templates"),
        &dir.path().join("prompt-templates"),
    );
    common::copy_dir(
        &root().join("recipes/examples/prompts"),
        &dir.path().join("recipes/examples/prompts"),
    );
    dir
}

fn keys_under(project: &Path, text: &str, overrides: &[String]) -> BTreeMap<String, String> {
    let file = project.join("recipe.toml");
    std::fs::write(&file, text).expect("write recipe");
    let r = recipe::load_with_env(&file, overrides, &[]).expect("recipe loads");
    assert_eq!(r.root, project, "the copy is the project root");
    recipe::validate(&r).expect("recipe validates");
    keys(&Plan::build(&r).expect("plan"))
}

#[test]
fn comment_edits_and_other_families_principles_change_no_key() {
    let project = project_copy();
    let before = keys_under(project.path(), ALL_KINDS, &[]);
    let templates = project.path().join("prompt-templates");
    let mut edited = 0;
    for family in [
        "common",
        "harmless",
        "helpful",
        "judge",
        "outlining",
        "rlaif",
    ] {
        for entry in std::fs::read_dir(templates.join(family)).expect("read_dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let new = if path.extension().is_some_and(|e| e == "j2") {
                // Rewrite the body of the first comment, keeping its whitespace markers.
                let open = text
                    .find("{#")
                    .expect("every shipped template has a comment");
                let close = open + text[open..].find("#}").expect("closed");
                let body = &text[open + 2..close];
                let left = if body.starts_with('-') { "-" } else { "" };
                let right = if body.ends_with('-') { "-" } else { "" };
                format!(
                    "{}{{#{left} an edited note, longer than before {right}#}}{}",
                    &text[..open],
                    &text[close + 2..]
                )
            } else {
                format!("# a new comment line\n{text}\n# and one at the end\n")
            };
            std::fs::write(&path, new).expect("write");
            edited += 1;
        }
    }
    let affixes = templates.join("affixes");
    for entry in std::fs::read_dir(&affixes).expect("read_dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, format!("# edited\n{text}")).expect("write");
        edited += 1;
    }
    let principles = templates.join("rlaif/principles.toml");
    let text = std::fs::read_to_string(&principles).expect("read");
    std::fs::write(
        &principles,
        format!("{text}\nlimericks = [\"Please choose the funnier limerick.\"]\n"),
    )
    .expect("write");
    assert!(edited >= 19, "{edited} files edited");
    let after = keys_under(project.path(), ALL_KINDS, &[]);
    assert_eq!(before, after);
    // A change to what a template renders still changes the keys that read it.
    let plain = templates.join("helpful/plain.j2");
    let text = std::fs::read_to_string(&plain).expect("read");
    std::fs::write(&plain, format!("Answer briefly.\n{text}")).expect("write");
    let rendered = keys_under(project.path(), ALL_KINDS, &[]);
    let changed: Vec<&String> = rendered
        .iter()
        .filter(|(id, key)| after.get(*id) != Some(key))
        .map(|(id, _)| id)
        .collect();
    assert!(
        changed.iter().any(|id| id.starts_with("contrast/helpful")),
        "{changed:?}"
    );
    assert!(
        !changed
            .iter()
            .any(|id| id.starts_with("pretrain/") || id.contains("harmless")),
        "only the helpful task's stages read helpful/plain.j2: {changed:?}"
    );
}

#[test]
fn evaluation_only_keys_change_only_evaluation_stages() {
    let plain = keys(&Plan::build(&load_text(ALL_KINDS, &[])).expect("plan"));
    let r = load_text(ALL_KINDS, &["reward.heldout_pairs=57".into()]);
    let changed: BTreeSet<String> = keys(&Plan::build(&r).expect("plan"))
        .into_iter()
        .filter(|(id, key)| plain.get(id) != Some(key))
        .map(|(id, _)| id)
        .collect();
    assert!(!changed.is_empty());
    for id in &changed {
        let kind = id.split('/').next().unwrap_or_default();
        assert!(
            ["heldout_pairs", "pm_eval", "pm_agreement"].contains(&kind),
            "`reward.heldout_pairs` changed the key of {id}: {changed:?}"
        );
    }
    assert!(changed.iter().any(|id| id.starts_with("pm_eval/")));
}

#[test]
fn the_truncation_mode_reaches_generating_stages_but_no_key() {
    let left = Plan::build(&load_text(ALL_KINDS, &[])).expect("plan");
    let strict = Plan::build(&load_text(ALL_KINDS, &["truncate=\"error\"".into()])).expect("plan");
    assert_eq!(keys(&left), keys(&strict));
    let mut carried = BTreeSet::new();
    for stage in &strict.stages {
        if let Some(mode) = stage.config.pointer("/unkeyed/truncate") {
            assert_eq!(mode, "error", "{}", stage.id);
            carried.insert(stage.id.split('/').next().unwrap_or_default().to_string());
        }
    }
    assert_eq!(
        carried,
        BTreeSet::from(["generate", "judge", "simulate"].map(String::from)),
        "the stages that feed prompts to a model carry the mode"
    );
}

/// With `world.seed`, the recipe seed moves simulation, preference models, policies and
/// evaluation but not the world's pretrained models; without it, pretraining moves too.
#[test]
fn a_world_seed_keeps_the_pretrained_world_across_recipe_seeds() {
    let at = |overrides: &[&str]| {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        keys(&Plan::build(&load_text(ALL_KINDS, &o)).expect("plan"))
    };
    let same = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, prefix: &str| {
        let ids: Vec<&String> = a.keys().filter(|id| id.starts_with(prefix)).collect();
        assert!(!ids.is_empty(), "no {prefix} stage");
        ids.iter().all(|id| a[*id] == b[*id])
    };
    let differ = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, prefix: &str| {
        let ids: Vec<&String> = a.keys().filter(|id| id.starts_with(prefix)).collect();
        assert!(!ids.is_empty(), "no {prefix} stage");
        ids.iter().all(|id| a[*id] != b[*id])
    };
    let (fixed0, fixed1) = (
        at(&["world.seed=5", "seed=0"]),
        at(&["world.seed=5", "seed=1"]),
    );
    assert!(same(&fixed0, &fixed1, "pretrain/"));
    for prefix in ["simulate/", "reward/", "policy/", "generate/", "judge/"] {
        assert!(differ(&fixed0, &fixed1, prefix), "{prefix}");
    }
    let (plain0, plain1) = (at(&["seed=0"]), at(&["seed=1"]));
    assert!(differ(&plain0, &plain1, "pretrain/"));
    // A world seed equal to the recipe seed is the world the recipe seed gives: every key the
    // same (a seed sweep that fixes the world reuses a plain run's stages).
    assert_eq!(at(&["world.seed=0", "seed=0"]), plain0);
}

#[test]
fn a_tuned_judge_is_read_from_its_tuning_and_tuning_keys_reach_only_judging() {
    let plan = |overrides: &[&str]| {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Plan::build(&load_file("recipes/paper/world.toml", &o)).expect("plan")
    };
    let tuned = plan(&[]);
    for stage in tuned
        .stages
        .iter()
        .filter(|s| s.id.starts_with("judge/lm-judge/"))
    {
        assert!(
            stage.deps.iter().any(|d| d == "judge_tuning/world-m-judge"),
            "{}: {:?}",
            stage.id,
            stage.deps
        );
        assert!(!stage.deps.iter().any(|d| d == "pretrain/world-m-judge"));
    }
    // A tuning setting changes the tuning, the LM judge's verdicts and the tables over them,
    // and nothing the judge does not feed.
    let (a, b) = (
        keys(&tuned),
        keys(&plan(&["models.judge.judging.tuning.lr=1e-4"])),
    );
    let changed: BTreeSet<&str> = a
        .keys()
        .filter(|id| a[*id] != b[*id])
        .map(|id| id.split('/').next().unwrap_or_default())
        .collect();
    assert_eq!(
        changed,
        BTreeSet::from([
            "judge",
            "judge_agreement",
            "judge_skill",
            "judge_tuning",
            "winrates"
        ])
    );
    // The responder is read through its pretraining: another responder is another tuning,
    // and without sampled questions it is not read at all.
    let deps = |plan: &Plan| {
        plan.stage("judge_tuning/world-m-judge")
            .unwrap()
            .deps
            .clone()
    };
    assert!(deps(&tuned).iter().any(|d| d == "pretrain/world-s"));
    let other = plan(&["models.judge.judging.tuning.responder=\"sim-m\""]);
    assert!(deps(&other).iter().any(|d| d == "pretrain/world-m"));
    assert_ne!(
        a["judge_tuning/world-m-judge"],
        keys(&other)["judge_tuning/world-m-judge"]
    );
    // Degraded responses are other tuning questions.
    let degraded = plan(&["models.judge.judging.tuning.degraded.hot_frac=0.2"]);
    assert_ne!(
        a["judge_tuning/world-m-judge"],
        keys(&degraded)["judge_tuning/world-m-judge"]
    );
    let unsampled = plan(&["models.judge.judging.tuning.sampled_pairs=0"]);
    assert_eq!(deps(&unsampled), ["pretrain/world-m-judge"]);
    // Without a tuning table the judge is read from its pretraining.
    let text = std::fs::read_to_string(root().join("recipes/paper/world.toml")).unwrap();
    let start = text.find("[models.judge.judging.tuning]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let untuned = Plan::build(&load_text(&text.replace(&text[start..end], ""), &[])).expect("plan");
    assert!(untuned.stage("judge_tuning/world-m-judge").is_none());
    let judge = untuned.stage("judge/lm-judge/helpful").unwrap();
    assert!(judge.deps.iter().any(|d| d == "pretrain/world-m-judge"));
}
