//! Recipe validation: every cross-reference, range and file a recipe depends on, checked before
//! anything runs, with all problems reported together.

use std::collections::BTreeSet;

use super::error::{Located, Problem, RecipeError};
use super::load::Resolved;
use super::schema::{
    AXES, BackendKind, MethodKind, PRESETS, Recipe, TaskSpec, Trainer, WeightFormat,
};
use crate::error::suggest;
use crate::model::LoraConfig;
use crate::prompts::load_prompt_set;
use crate::templates::{SCORE_TEMPLATE, TASK_TEMPLATES, Templates, judge_template};

/// Task families the built-in world provides prompts for (`prompts = "world:<family>"`).
pub const WORLD_PROMPT_SETS: &[&str] = &["harmless", "helpful", "outlining"];

/// Validates a loaded recipe; the error lists every problem, each located where its key was set.
pub fn validate(resolved: &Resolved) -> Result<(), RecipeError> {
    located(resolved, problems(resolved))
}

/// `problems` of `resolved` as one error, each located where its key was set; `Ok` when there
/// are none.
pub fn located(resolved: &Resolved, problems: Vec<Problem>) -> Result<(), RecipeError> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(RecipeError::Invalid {
        file: resolved.file.clone(),
        problems: problems
            .into_iter()
            .map(|problem| {
                let at = resolved.location(&problem.key);
                Located { problem, at }
            })
            .collect(),
    })
}

/// Every problem of a loaded recipe, in key order of the recipe's sections.
pub fn problems(resolved: &Resolved) -> Vec<Problem> {
    let r = &resolved.recipe;
    let mut out = Vec::new();
    if r.name.trim().is_empty() {
        out.push(Problem::new(
            "name",
            "`name` is empty",
            "name the run, e.g. `name = \"quickstart\"`",
        ));
    }
    let world_models = r.models.values().any(|m| {
        m.preset
            .as_deref()
            .is_some_and(crate::model::llama::is_world_preset)
    });
    if r.tasks.is_empty() && r.theory.is_none() && !world_models {
        out.push(Problem::new(
            "tasks",
            "the recipe has no `[tasks.<name>]`, no `[theory]` and no world-preset model: nothing to run",
            "add a task (see recipes/examples/contrast.toml), a `[theory]` table or a model with `preset = \"world-s\"`",
        ));
    }
    check_models(resolved, &mut out);
    check_tasks(resolved, &mut out);
    check_settings(r, &mut out);
    check_methods(r, &mut out);
    check_pair_files(resolved, &mut out);
    check_eval(r, &mut out);
    if let Some(theory) = &r.theory {
        out.extend(theory.problems("theory"));
    }
    for (key, problem) in r.world.problems() {
        let key = format!("world.{key}");
        out.push(Problem::new(
            &key,
            format!("`{key}`: {problem}"),
            world_fix(&key),
        ));
    }
    for (key, problem) in r.pretrain.problems() {
        let key = format!("pretrain.{key}");
        out.push(Problem::new(
            &key,
            format!("`{key}`: {problem}"),
            format!("correct `{key}` in the recipe or drop it to use the preset's default"),
        ));
    }
    out
}

fn world_fix(key: &str) -> String {
    format!("correct `{key}` under [world], or drop it to use the default")
}

fn names(map_keys: impl Iterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = map_keys.map(|k| format!("`{}`", k.as_ref())).collect();
    if v.is_empty() {
        "none defined".to_string()
    } else {
        v.join(", ")
    }
}

/// A problem for a reference `name` (at `key`) to one of `valid` that does not exist.
fn unknown_ref(key: &str, what: &str, name: &str, valid: &[&str], table: &str) -> Problem {
    let listed = names(valid.iter());
    let fix = match suggest(name, valid.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? (defined {what}s: {listed})"),
        None => format!("define `[{table}.{name}]` or use one of: {listed}"),
    };
    Problem::new(key, format!("`{key}` names unknown {what} `{name}`"), fix)
}

/// A judge tuning's `responder` must name a world-preset model of the recipe.
fn check_responder(resolved: &Resolved, key: &str, responder: &str, out: &mut Vec<Problem>) {
    let at = format!("{key}.judging.tuning.responder");
    let models = &resolved.recipe.models;
    let world: Vec<&str> = models
        .iter()
        .filter(|(_, m)| {
            m.preset
                .as_deref()
                .is_some_and(crate::model::llama::is_world_preset)
        })
        .map(|(n, _)| n.as_str())
        .collect();
    match models.get(responder) {
        None => out.push(unknown_ref(&at, "model", responder, &world, "models")),
        Some(_) if !world.contains(&responder) => out.push(Problem::new(
            &at,
            format!("`{at}` names model `{responder}`, which is not a world preset; the responses are sampled from a model pretrained on the world"),
            format!("name one of: {}", names(world.iter())),
        )),
        Some(_) => {}
    }
}

fn check_models(resolved: &Resolved, out: &mut Vec<Problem>) {
    for (name, m) in &resolved.recipe.models {
        let key = format!("models.{name}");
        let set: Vec<&str> = [
            m.preset.as_ref().map(|_| "preset"),
            m.gguf.as_ref().map(|_| "gguf"),
            m.hf.as_ref().map(|_| "hf"),
            m.asset.as_ref().map(|_| "asset"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if set.len() != 1 {
            let found = if set.is_empty() {
                "none of them".to_string()
            } else {
                set.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            };
            out.push(Problem::new(
                &key,
                format!("model `{key}` must set exactly one of `preset`, `gguf`, `hf`, `asset`; found {found}"),
                format!(
                    "keep one, e.g. `preset = \"world-s\"`, `gguf = \"assets/models/x.gguf\"`, `hf = \"models/my-llama\"` or `asset = \"smollm2-135m\"` under [{key}]"
                ),
            ));
        }
        if let Some(p) = &m.preset
            && !PRESETS.contains(&p.as_str())
        {
            let fix = match suggest(p, PRESETS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? (presets: {})", names(PRESETS.iter())),
                None => format!("use one of: {}", names(PRESETS.iter())),
            };
            out.push(Problem::new(
                format!("{key}.preset"),
                format!("unknown preset `{p}` in `{key}.preset`"),
                fix,
            ));
        }
        let assets: Vec<&str> = crate::assets::models()
            .iter()
            .filter(|a| matches!(a.kind, crate::assets::AssetKind::Gguf))
            .map(|a| a.name)
            .collect();
        if let Some(a) = &m.asset
            && !assets.contains(&a.as_str())
        {
            let fix = match suggest(a, assets.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? (assets: {})", names(assets.iter())),
                None => format!("use one of: {}", names(assets.iter())),
            };
            out.push(Problem::new(
                format!("{key}.asset"),
                format!("unknown asset `{a}` in `{key}.asset`"),
                fix,
            ));
        }
        if let Some(g) = &m.gguf {
            let path = resolved.resolve_path(g);
            if !path.is_file() {
                out.push(Problem::new(
                    format!("{key}.gguf"),
                    format!("GGUF file {} of `{key}.gguf` does not exist", path.display()),
                    "run `rlcd assets fetch` to download the models, or correct the path (relative to the project root)",
                ));
            }
        }
        if let Some(h) = &m.hf {
            let path = resolved.resolve_path(h);
            if !crate::model::hf::is_checkpoint_dir(&path) {
                out.push(Problem::new(
                    format!("{key}.hf"),
                    format!(
                        "`{key}.hf` = {} is not a Hugging Face checkpoint directory (no {})",
                        path.display(),
                        path.join(crate::model::hf::CONFIG_FILE).display()
                    ),
                    "point it at the directory `save_pretrained` wrote (config.json, *.safetensors, tokenizer.json), relative to the project root",
                ));
            }
            if m.sha256.is_some() {
                out.push(Problem::new(
                    format!("{key}.sha256"),
                    format!("`{key}.sha256` applies to one model file, not to the checkpoint directory `{key}.hf`"),
                    "remove the key; a checkpoint directory is identified by the blake3 of its files",
                ));
            }
        }
        if m.weights == WeightFormat::Q8_0 && resolved.recipe.backend == BackendKind::Cuda {
            out.push(Problem::new(
                format!("{key}.weights"),
                format!("`{key}.weights = \"q8_0\"` runs on the CPU backend, and `backend` is \"cuda\""),
                format!("drop `{key}.weights` on the GPU (its f32 matmuls are the fast path there), or set `backend = \"cpu\"`"),
            ));
        }
        if m.chat && m.preset.is_some() {
            out.push(Problem::new(
                format!("{key}.chat"),
                format!("`{key}.chat` puts prompts in a model's chat template, and preset models have none (they read the world's dialogue text)"),
                format!("remove `{key}.chat`, or set it on a GGUF, Hugging Face or asset model"),
            ));
        }
        if let Some(judging) = &m.judging {
            if !m
                .preset
                .as_deref()
                .is_some_and(crate::model::llama::is_world_preset)
            {
                out.push(Problem::new(
                    format!("{key}.judging"),
                    format!("`{key}.judging` applies to a world preset (`world-xs`, `world-s`, `world-m`, `world-l`), which is pretrained on the world's corpus"),
                    format!("remove `[{key}.judging]`, or give the model `preset = \"world-s\"`"),
                ));
            }
            for (field, problem) in judging.problems() {
                let at = format!("{key}.judging.{field}");
                let (table, name) = match field.rsplit_once('.') {
                    Some((sub, name)) => (format!("{key}.judging.{sub}"), name.to_string()),
                    None => (format!("{key}.judging"), field.clone()),
                };
                out.push(Problem::new(
                    &at,
                    format!("`{at}`: {problem}"),
                    format!("correct `{name}` under [{table}], or drop it to use the default"),
                ));
            }
            if let Some(responder) = judging.tuning.as_ref().and_then(|t| t.responder.as_ref()) {
                check_responder(resolved, &key, responder, out);
            }
        }
        if let Some(h) = &m.sha256
            && (h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
        {
            out.push(Problem::new(
                format!("{key}.sha256"),
                format!("`{key}.sha256` is not 64 hex digits"),
                "write the file's SHA-256 as printed by `sha256sum`, or remove the key",
            ));
        }
    }
}

/// Turns a displayed error (first line summary, a `fix:` line) into a problem at `key`.
fn problem_from(key: &str, err: &dyn std::fmt::Display) -> Problem {
    let text = err.to_string();
    let mut lines = text.lines();
    let message = lines.next().unwrap_or_default().to_string();
    let fix = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("fix: ").map(str::to_string));
    Problem {
        key: key.to_string(),
        message,
        fix,
    }
}

fn check_tasks(resolved: &Resolved, out: &mut Vec<Problem>) {
    let r = &resolved.recipe;
    let dir = resolved.resolve_path(&r.templates_dir);
    let templates = if r.tasks.is_empty() {
        None
    } else {
        match Templates::open(&dir) {
            Ok(t) => Some(t),
            Err(e) => {
                out.push(problem_from("templates_dir", &e));
                None
            }
        }
    };
    let scoring = r.methods.values().any(|m| m.kind.uses_scoring_prompt());
    let mut checked: BTreeSet<String> = BTreeSet::new();
    for (name, task) in &r.tasks {
        let key = format!("tasks.{name}");
        if task.n_prompts == Some(0) {
            out.push(Problem::new(
                format!("{key}.n_prompts"),
                format!("`{key}.n_prompts` is 0"),
                "use at least 1, or remove the key to use every prompt",
            ));
        }
        let mut seen = BTreeSet::new();
        for axis in &task.axes {
            if !AXES.contains(&axis.as_str()) {
                out.push(Problem::new(
                    format!("{key}.axes"),
                    format!("unknown axis `{axis}` in `{key}.axes`"),
                    match suggest(axis, AXES.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`? (axes: {})", names(AXES.iter())),
                        None => format!("use axes from: {}", names(AXES.iter())),
                    },
                ));
            } else if !seen.insert(axis.as_str()) {
                out.push(Problem::new(
                    format!("{key}.axes"),
                    format!("axis `{axis}` is listed twice in `{key}.axes`"),
                    "list each axis once",
                ));
            }
        }
        check_prompts(resolved, &key, task, out);
        let Some(templates) = &templates else {
            continue;
        };
        let tkey = format!("{key}.templates");
        let family = templates.dir().join(&task.templates);
        if task.templates.trim().is_empty() || !family.is_dir() {
            out.push(Problem::new(
                &tkey,
                format!(
                    "template directory {} of `{tkey}` does not exist",
                    family.display()
                ),
                format!(
                    "create it with {} or name an existing family under {}",
                    TASK_TEMPLATES.join(", "),
                    templates.dir().display()
                ),
            ));
            continue;
        }
        let mut family_ok = true;
        for t in TASK_TEMPLATES {
            let name = format!("{}/{t}", task.templates);
            if let Err(e) = templates.dry_run(&name) {
                family_ok = false;
                out.push(problem_from(&tkey, &e));
            }
        }
        let affixes = match templates.affixes(&task.templates) {
            Ok(a) => Some(a),
            Err(e) => {
                family_ok = false;
                out.push(problem_from(&tkey, &e));
                None
            }
        };
        if scoring && family_ok {
            match templates.principles(&task.templates) {
                Ok(p) => {
                    if let Some(a) = &affixes
                        && p.len() != a.len()
                    {
                        out.push(Problem::new(
                            &tkey,
                            format!(
                                "{} has {} principles for `{}` but affixes/{}.toml has {} pairs",
                                crate::templates::PRINCIPLES_FILE,
                                p.len(),
                                task.templates,
                                task.templates,
                                a.len()
                            ),
                            "give one principle per affix pair, in the same order (RLCD-Rescore uses principle i for pair i)",
                        ));
                    }
                }
                Err(e) => out.push(problem_from(&tkey, &e)),
            }
            if checked.insert(SCORE_TEMPLATE.to_string())
                && let Err(e) = templates.dry_run(SCORE_TEMPLATE)
            {
                out.push(problem_from("methods", &e));
            }
        }
        for axis in &task.axes {
            if let Some(judge) = judge_template(&task.axes, axis)
                && checked.insert(judge.to_string())
                && let Err(e) = templates.dry_run(judge)
            {
                out.push(problem_from(&format!("{key}.axes"), &e));
            }
        }
    }
}

fn check_prompts(resolved: &Resolved, key: &str, task: &TaskSpec, out: &mut Vec<Problem>) {
    let spec = task.prompts.as_str();
    let pkey = format!("{key}.prompts");
    if let Some(family) = spec.strip_prefix("world:") {
        if !WORLD_PROMPT_SETS.contains(&family) {
            let valid: Vec<String> = WORLD_PROMPT_SETS
                .iter()
                .map(|s| format!("`world:{s}`"))
                .collect();
            out.push(Problem::new(
                &pkey,
                format!("unknown world prompt set `{spec}` in `{pkey}`"),
                format!("use one of: {}", valid.join(", ")),
            ));
        }
        return;
    }
    let r = &resolved.recipe;
    if let Err(e) = load_prompt_set(
        spec,
        &resolved.root,
        &r.world,
        r.seed,
        task.malformed_prompts,
    ) {
        out.push(problem_from(&pkey, &e));
    }
}

fn positive(out: &mut Vec<Problem>, key: &str, v: usize) {
    if v == 0 {
        out.push(Problem::new(
            key,
            format!("`{key}` is 0"),
            format!("set `{key}` to at least 1"),
        ));
    }
}

fn range(out: &mut Vec<Problem>, key: &str, v: f64, ok: bool, want: &str) {
    if !ok || !v.is_finite() {
        out.push(Problem::new(
            key,
            format!("`{key}` = {v} is outside its range {want}"),
            format!("set `{key}` to a value in {want}"),
        ));
    }
}

fn check_settings(r: &Recipe, out: &mut Vec<Problem>) {
    let s = &r.simulate;
    range(
        out,
        "simulate.temperature",
        s.temperature,
        s.temperature >= 0.0,
        "[0, ∞)",
    );
    range(
        out,
        "simulate.top_p",
        s.top_p,
        s.top_p > 0.0 && s.top_p <= 1.0,
        "(0, 1]",
    );
    positive(out, "simulate.max_new_tokens", s.max_new_tokens);
    positive(out, "simulate.batch_size", s.batch_size);
    if s.n_prompts == Some(0) {
        positive(out, "simulate.n_prompts", 0);
    }

    let w = &r.reward;
    positive(out, "reward.epochs", w.epochs);
    range(out, "reward.lr", w.lr, w.lr > 0.0, "(0, ∞)");
    range(
        out,
        "reward.warmup_frac",
        w.warmup_frac,
        (0.0..1.0).contains(&w.warmup_frac),
        "[0, 1)",
    );
    positive(out, "reward.batch_size", w.batch_size);
    positive(out, "reward.max_len", w.max_len);
    range(
        out,
        "reward.holdout_frac",
        w.holdout_frac,
        (0.0..1.0).contains(&w.holdout_frac),
        "[0, 1)",
    );

    let p = &r.ppo;
    range(out, "ppo.kl_coef", p.kl_coef, p.kl_coef >= 0.0, "[0, ∞)");
    positive(out, "ppo.steps", p.steps);
    positive(out, "ppo.rollouts", p.rollouts);
    positive(out, "ppo.step_batch", p.step_batch);
    if p.step_batch > p.rollouts {
        out.push(Problem::new(
            "ppo.step_batch",
            format!(
                "`ppo.step_batch` ({}) exceeds `ppo.rollouts` ({})",
                p.step_batch, p.rollouts
            ),
            "make `ppo.step_batch` at most `ppo.rollouts`",
        ));
    }
    positive(out, "ppo.epochs", p.epochs);
    range(out, "ppo.lr", p.lr, p.lr > 0.0, "(0, ∞)");
    range(out, "ppo.clip", p.clip, p.clip > 0.0, "(0, ∞)");
    range(
        out,
        "ppo.value_clip",
        p.value_clip,
        p.value_clip > 0.0,
        "(0, ∞)",
    );
    range(out, "ppo.vf_coef", p.vf_coef, p.vf_coef >= 0.0, "[0, ∞)");
    if let Some(b) = p.max_kl {
        range(out, "ppo.max_kl", b, b > 0.0, "(0, ∞)");
    }
    if let Some(a) = &p.adaptive_kl {
        range(
            out,
            "ppo.adaptive_kl.target",
            a.target,
            a.target > 0.0,
            "(0, ∞)",
        );
        range(
            out,
            "ppo.adaptive_kl.horizon",
            a.horizon,
            a.horizon > 0.0,
            "(0, ∞)",
        );
    }
    range(
        out,
        "ppo.gamma",
        p.gamma,
        (0.0..=1.0).contains(&p.gamma),
        "[0, 1]",
    );
    range(
        out,
        "ppo.lambda",
        p.lambda,
        (0.0..=1.0).contains(&p.lambda),
        "[0, 1]",
    );
    range(
        out,
        "ppo.temperature",
        p.temperature,
        p.temperature >= 0.0,
        "[0, ∞)",
    );
    positive(out, "ppo.max_query_tokens", p.max_query_tokens);
    positive(out, "ppo.max_response_tokens", p.max_response_tokens);

    let d = &r.distill;
    positive(out, "distill.epochs", d.epochs);
    range(out, "distill.lr", d.lr, d.lr > 0.0, "(0, ∞)");
    positive(out, "distill.batch_size", d.batch_size);

    let o = &r.dpo;
    range(out, "dpo.beta", o.beta, o.beta > 0.0, "(0, ∞)");
    positive(out, "dpo.epochs", o.epochs);
    range(out, "dpo.lr", o.lr, o.lr > 0.0, "(0, ∞)");
    positive(out, "dpo.batch_size", o.batch_size);

    for (section, lora) in [
        ("reward", &r.reward.lora),
        ("ppo", &r.ppo.lora),
        ("distill", &r.distill.lora),
        ("dpo", &r.dpo.lora),
    ] {
        for (key, message, fix) in lora.iter().flat_map(LoraConfig::problems) {
            let key = format!("{section}.{key}");
            out.push(Problem::new(
                &key,
                format!("`{key}` {message}"),
                format!("{fix} in `[{section}.lora]`"),
            ));
        }
    }
}

/// Methods' `pairs` files: kinds that can train on them, no simulator beside them, and rows
/// that read.
fn check_pair_files(resolved: &Resolved, out: &mut Vec<Problem>) {
    for (name, m) in &resolved.recipe.methods {
        let Some(file) = &m.pairs else { continue };
        let key = format!("methods.{name}.pairs");
        if matches!(m.kind, MethodKind::Base | MethodKind::RlcdRescore) {
            out.push(Problem::new(
                &key,
                format!(
                    "method `{name}` ({}) cannot train on a pair file",
                    m.kind.as_str()
                ),
                "use it with kind rlcd, rlaif or context-distillation, or remove the key",
            ));
            continue;
        }
        if m.simulator.is_some() {
            out.push(Problem::new(
                format!("methods.{name}.simulator"),
                format!("method `{name}` trains on `{key}`, so nothing is simulated for it"),
                format!("remove `simulator` from [methods.{name}]"),
            ));
        }
        let path = resolved.resolve_path(std::path::Path::new(file));
        if !path.is_file() {
            out.push(Problem::new(
                &key,
                format!("pair file {} of `{key}` does not exist", path.display()),
                "write it with `rlcd export pairs`, or correct the path (relative to the project root)",
            ));
        } else if let Err(e) = crate::trl::read_rows(&path) {
            out.push(problem_from(&key, &e));
        }
    }
}

fn check_methods(r: &Recipe, out: &mut Vec<Problem>) {
    let models: Vec<&str> = r.models.keys().map(String::as_str).collect();
    for (name, m) in &r.methods {
        let key = format!("methods.{name}");
        match &m.simulator {
            Some(sim) if !r.models.contains_key(sim) => {
                out.push(unknown_ref(
                    &format!("{key}.simulator"),
                    "model",
                    sim,
                    &models,
                    "models",
                ));
            }
            None if m.kind.needs_simulator() && m.pairs.is_none() => out.push(Problem::new(
                format!("{key}.simulator"),
                format!("method `{name}` ({}) has no `simulator`", m.kind.as_str()),
                format!(
                    "add `simulator = \"<model>\"` under [{key}] (defined models: {})",
                    names(models.iter())
                ),
            )),
            _ => {}
        }
        if m.simulator.is_some() && !m.kind.needs_simulator() {
            out.push(Problem::new(
                format!("{key}.simulator"),
                format!(
                    "method `{name}` ({}) takes no `simulator`: it aligns nothing, so nothing \
                     is simulated for it",
                    m.kind.as_str()
                ),
                format!("remove `simulator` from [{key}]"),
            ));
        }
        if m.trainer.is_some() && !m.kind.uses_pairs() {
            out.push(Problem::new(
                format!("{key}.trainer"),
                format!(
                    "method `{name}` ({}) takes no `trainer`: only rlcd, rlaif and rlcd-rescore \
                     train on preference pairs",
                    m.kind.as_str()
                ),
                format!("remove `trainer` from [{key}]"),
            ));
        }
        if !r.models.contains_key(&m.policy) {
            out.push(unknown_ref(
                &format!("{key}.policy"),
                "model",
                &m.policy,
                &models,
                "models",
            ));
        }
    }
}

fn check_eval(r: &Recipe, out: &mut Vec<Problem>) {
    let e = &r.eval;
    if e.n_prompts == Some(0) {
        positive(out, "eval.n_prompts", 0);
    }
    range(
        out,
        "eval.temperature",
        e.temperature,
        e.temperature >= 0.0,
        "[0, ∞)",
    );
    positive(out, "eval.max_new_tokens", e.max_new_tokens);
    let models: Vec<&str> = r.models.keys().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    for judge in &e.judges {
        if !seen.insert(judge.as_str()) {
            out.push(Problem::new(
                "eval.judges",
                format!("judge `{judge}` is listed twice in `eval.judges`"),
                "list each judge once",
            ));
            continue;
        }
        if judge == "oracle" {
            let has_policies = !r.comparisons().is_empty();
            for (name, t) in &r.tasks {
                if has_policies && !t.prompts.starts_with("world:") {
                    out.push(Problem::new(
                        "eval.judges",
                        format!(
                            "the `oracle` judge scores only built-in world prompts, but task \
                             `{name}` uses `{}`",
                            t.prompts
                        ),
                        "judge it with `lm:<model>` or `rm:<method>`, or use `world:<task>` prompts",
                    ));
                }
            }
            continue;
        }
        if let Some(method) = judge.strip_prefix("rm:") {
            let pm_methods: Vec<&str> = r
                .methods
                .iter()
                .filter(|(_, m)| m.kind.uses_pairs() && m.trainer != Some(Trainer::Dpo))
                .map(|(n, _)| n.as_str())
                .collect();
            if !pm_methods.contains(&method) {
                out.push(unknown_ref(
                    "eval.judges",
                    "method with a preference model",
                    method,
                    &pm_methods,
                    "methods",
                ));
            }
            continue;
        }
        match judge.strip_prefix("lm:") {
            Some(model) if r.models.contains_key(model) => {}
            Some(model) => out.push(unknown_ref(
                "eval.judges",
                "model",
                model,
                &models,
                "models",
            )),
            None => out.push(Problem::new(
                "eval.judges",
                format!("unknown judge `{judge}` in `eval.judges`"),
                match suggest(judge, ["oracle"]) {
                    Some(_) => {
                        "did you mean `oracle`? (judges are `oracle`, `lm:<model>` or `rm:<method>`)"
                            .to_string()
                    }
                    None => format!(
                        "write `oracle`, `lm:<model>` with a model from [models] (e.g. `lm:{}`) \
                         or `rm:<method>`",
                        models.first().copied().unwrap_or("judge")
                    ),
                },
            )),
        }
    }
    if let Some(judge) = &e.label_judge {
        match judge.strip_prefix("lm:") {
            Some(model) if r.models.contains_key(model) => {}
            Some(model) => out.push(unknown_ref(
                "eval.label_judge",
                "model",
                model,
                &models,
                "models",
            )),
            None => out.push(Problem::new(
                "eval.label_judge",
                format!("`eval.label_judge` is `{judge}`, but only a language model labels pairs"),
                format!(
                    "write `lm:<model>` with a model from [models] (e.g. `lm:{}`)",
                    models.first().copied().unwrap_or("judge")
                ),
            )),
        }
        positive(out, "eval.label_pairs", e.label_pairs);
    }
    let methods: Vec<&str> = r.methods.keys().map(String::as_str).collect();
    let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
    for [a, b] in e.comparisons.iter().flatten() {
        let mut known = true;
        for m in [a, b] {
            if !r.methods.contains_key(m) {
                known = false;
                out.push(unknown_ref(
                    "eval.comparisons",
                    "method",
                    m,
                    &methods,
                    "methods",
                ));
            }
        }
        if a == b {
            out.push(Problem::new(
                "eval.comparisons",
                format!("comparison [\"{a}\", \"{b}\"] compares a method with itself"),
                "compare two different methods",
            ));
        } else if known {
            let key = if a < b {
                (a.clone(), b.clone())
            } else {
                (b.clone(), a.clone())
            };
            if !pairs.insert(key) {
                out.push(Problem::new(
                    "eval.comparisons",
                    format!("comparison [\"{a}\", \"{b}\"] appears twice in `eval.comparisons`"),
                    "list each pair of methods once (order does not matter)",
                ));
            }
        }
    }
}
