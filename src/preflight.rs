//! Preflight: every problem a run would meet that needs no forward pass, found before any
//! stage runs. `rlcd validate` reports it, `rlcd run` calls it first and `rlcd sweep` checks
//! every cell with it before running any.
//!
//! Beyond the recipe's own checks ([`crate::recipe::validate`]) it reads what the recipe
//! names: the compiled-in backends, each model file's GGUF header, size and SHA-256 (hashes
//! are remembered by file size and modification time under the results root), each model's
//! context against the prompts it reads (as its tokenizer encodes them) plus the tokens it
//! generates, and the train and test splits every task needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::model::gguf::GgufFile;
use crate::model::tokenizer::Tokenizer;
use crate::model::{LlamaConfig, PolicyFormat, Truncate};
use crate::prompts::contrast_prompts;
use crate::recipe::{BackendKind, ModelSpec, Problem, RecipeError, Resolved, WeightFormat};
use crate::templates::Templates;
use crate::world::format::{BOS, Dialogue, EOS, PAD, Split};

/// File under the results root remembering model-file SHA-256s by size and modification time.
pub const CHECKSUMS: &str = "checksums.json";

/// What preflight found.
#[derive(Debug, Default)]
pub struct Findings {
    /// What stops the recipe from running.
    pub problems: Vec<Problem>,
    /// What a run will do that the user may not expect (prompts cut by `truncate = "left"`),
    /// one line each.
    pub notes: Vec<String>,
}

/// Checks `resolved` and everything it names; the error lists every problem found, each
/// located where its key was set. Returns the notes.
pub fn check(resolved: &Resolved) -> Result<Vec<String>, RecipeError> {
    crate::recipe::validate(resolved)?;
    let found = findings(resolved);
    crate::recipe::located(resolved, found.problems)?;
    Ok(found.notes)
}

/// The problems and notes of a recipe that passes [`crate::recipe::validate`], found by
/// reading the files and models it names.
pub fn findings(resolved: &Resolved) -> Findings {
    let r = &resolved.recipe;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    if r.backend == BackendKind::Cuda && !cfg!(feature = "cuda") {
        out.push(Problem::new(
            "backend",
            "`backend` is \"cuda\" but this binary was built without CUDA",
            "rebuild with `cargo build --release --features cuda`, or set `backend = \"cpu\"`",
        ));
    }
    let mut checksums = Checksums::open(&resolved.resolve_path(&r.results));
    let mut models: BTreeMap<&str, ModelFacts> = BTreeMap::new();
    for name in used_models(resolved) {
        let Some(spec) = r.models.get(name) else {
            continue;
        };
        match ModelFacts::read(resolved, name, spec, &mut checksums) {
            Ok(mut facts) => {
                if spec.chat {
                    match PolicyFormat::chat(&facts.tokenizer) {
                        Ok(format) => facts.format = format,
                        Err(e) => out.push(Problem::new(
                            format!("models.{name}.chat"),
                            format!("`models.{name}` cannot read prompts through its chat template: {}", first_line(&e)),
                            format!("set `models.{name}.chat = false`, or use a model whose tokenizer has an EOS token"),
                        )),
                    }
                }
                if spec.weights == WeightFormat::Q8_0
                    && let Some((what, width)) = facts.q8_unfit
                {
                    out.push(Problem::new(
                        format!("models.{name}.weights"),
                        format!("`models.{name}.weights = \"q8_0\"` needs matrix input widths that are multiples of 32, and the model's {what} is {width}"),
                        format!("set `models.{name}.weights = \"f32\"` (or drop the key)"),
                    ));
                }
                models.insert(name, facts);
            }
            Err(problem) => out.push(problem),
        }
    }
    checksums.save();
    // Each task's prompt set is read once (one that does not load is the recipe check's
    // problem, reported already).
    let mut tasks: BTreeMap<&str, Vec<Dialogue>> = BTreeMap::new();
    for (name, t) in &r.tasks {
        let loaded = crate::prompts::PromptSource::resolve(
            &t.prompts,
            &resolved.root,
            &r.world,
            r.seed,
            t.malformed_prompts,
        )
        .and_then(|source| source.load_reporting(&resolved.root));
        if let Ok((dialogues, skipped)) = loaded {
            for s in skipped {
                notes.push(format!(
                    "tasks.{name}.prompts: {}:{}: skipped ({}) as `malformed_prompts = \"skip\"` says",
                    s.path.display(),
                    s.line,
                    s.message
                ));
            }
            tasks.insert(name.as_str(), dialogues);
        }
    }
    if let Some(model) = r
        .eval
        .label_judge
        .as_deref()
        .and_then(|j| j.strip_prefix("lm:"))
    {
        let own: Vec<&str> = r
            .methods
            .iter()
            .filter(|(_, m)| m.simulator.as_deref() == Some(model))
            .map(|(name, _)| name.as_str())
            .collect();
        if !own.is_empty() {
            notes.push(format!(
                "eval.label_judge: `lm:{model}` also simulates {}: its agreement with those \
                 labels is not an independent check (the paper's Table 36 uses a model that \
                 simulated none of the pairs)",
                own.iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    check_splits(resolved, &tasks, &mut out);
    if out.is_empty() {
        check_lengths(resolved, &tasks, &models, &mut out, &mut notes);
    }
    // Methods sharing a model find its problems once each.
    let mut seen = BTreeSet::new();
    out.retain(|p| seen.insert((p.key.clone(), p.message.clone())));
    Findings {
        problems: out,
        notes,
    }
}

/// Names of the models some method or judge uses, in name order.
fn used_models(resolved: &Resolved) -> Vec<&str> {
    let r = &resolved.recipe;
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for m in r.methods.values() {
        names.insert(m.policy.as_str());
        if let Some(s) = &m.simulator {
            names.insert(s.as_str());
        }
    }
    for judge in &r.eval.judges {
        if let Some(model) = judge.strip_prefix("lm:") {
            names.insert(model);
        }
    }
    names.into_iter().collect()
}

/// What preflight knows of one model: its context and how it counts tokens.
struct ModelFacts {
    /// The recipe key the model is defined under (`models.<name>`).
    key: String,
    /// Its context length in tokens.
    context: usize,
    /// Its tokenizer.
    tokenizer: Tokenizer,
    /// How it reads prompts: raw text, or its chat template (`models.<name>.chat`).
    format: PolicyFormat,
    /// A matrix input width Q8_0 blocks cannot tile, if any (`models.<name>.weights`).
    q8_unfit: Option<(&'static str, usize)>,
}

impl ModelFacts {
    /// A Hugging Face checkpoint: its config, the shapes of its tensors and its tokenizer.
    fn read_hf(key: String, dir: &Path) -> Result<Self, Problem> {
        let hf_key = format!("{key}.hf");
        let (hf, _) = crate::model::hf::inspect(dir).map_err(|e| {
            Problem::new(
                &hf_key,
                format!("checkpoint {} cannot be loaded: {}", dir.display(), first_line(&e)),
                "point the key at a complete LlamaForCausalLM or Qwen2ForCausalLM checkpoint directory (what `save_pretrained` writes)",
            )
        })?;
        let path = dir.join(crate::model::hf::TOKENIZER_FILE);
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| {
            Problem::new(
                &hf_key,
                format!(
                    "the tokenizer of checkpoint {} cannot be read: {}",
                    dir.display(),
                    first_line(&e)
                ),
                "save the tokenizer beside the weights (`tokenizer.save_pretrained(dir)`)",
            )
        })?;
        if tokenizer.vocab_size() > hf.config.vocab_size {
            return Err(Problem::new(
                &hf_key,
                format!(
                    "the tokenizer of checkpoint {} has {} ids but config.json's vocab_size is {}",
                    dir.display(),
                    tokenizer.vocab_size(),
                    hf.config.vocab_size
                ),
                "use the tokenizer the model was trained with",
            ));
        }
        Ok(Self {
            key,
            context: hf.config.max_seq_len,
            q8_unfit: hf.config.q8_unfit_width(),
            tokenizer,
            format: PolicyFormat::pretrained(),
        })
    }

    fn read(
        resolved: &Resolved,
        name: &str,
        spec: &ModelSpec,
        checksums: &mut Checksums,
    ) -> Result<Self, Problem> {
        let key = format!("models.{name}");
        if let Some(preset) = &spec.preset {
            let config = LlamaConfig::preset_with_vocab(preset, 0).ok_or_else(|| {
                Problem::bare(
                    format!("{key}.preset"),
                    format!("unknown preset `{preset}`"),
                )
            })?;
            // A world vocabulary exists only after pretraining, but a word-level tokenizer
            // counts the same tokens whatever its words are (unknown words are one `<unk>`).
            let tokenizer = Tokenizer::word_level(&[], &[BOS, EOS, PAD])
                .map_err(|e| Problem::bare(&key, format!("cannot build a world tokenizer: {e}")))?;
            return Ok(Self {
                key,
                context: config.max_seq_len,
                q8_unfit: config.q8_unfit_width(),
                tokenizer,
                format: PolicyFormat::pretrained(),
            });
        }
        if let Some(h) = &spec.hf {
            return Self::read_hf(key, &resolved.resolve_path(h));
        }
        let (file_key, path, expected) = if let Some(g) = &spec.gguf {
            (
                format!("{key}.gguf"),
                resolved.resolve_path(g),
                spec.sha256.clone(),
            )
        } else if let Some(a) = &spec.asset {
            let asset = crate::assets::find_model(a).ok_or_else(|| {
                Problem::bare(format!("{key}.asset"), format!("unknown asset `{a}`"))
            })?;
            let path = asset.path(&resolved.root);
            if !path.is_file() {
                return Err(Problem::new(
                    format!("{key}.asset"),
                    format!(
                        "asset `{a}` of `{key}.asset` is not fetched ({} is missing)",
                        path.display()
                    ),
                    format!("run `cargo run --release -- assets fetch {a}`"),
                ));
            }
            (
                format!("{key}.asset"),
                path,
                Some(
                    spec.sha256
                        .clone()
                        .unwrap_or_else(|| asset.sha256.to_string()),
                ),
            )
        } else {
            return Err(Problem::bare(key, "the model has no source"));
        };
        if let Some(expected) = expected {
            let sha_key = if spec.sha256.is_some() {
                format!("{key}.sha256")
            } else {
                file_key.clone()
            };
            let actual = checksums.sha256(&path).map_err(|e| {
                Problem::new(
                    &file_key,
                    format!("cannot read model file {}: {e}", path.display()),
                    "check the path and its permissions",
                )
            })?;
            if !actual.eq_ignore_ascii_case(expected.trim()) {
                return Err(Problem::new(
                    sha_key,
                    format!(
                        "model file {} has SHA-256 {actual}, but {expected} is expected",
                        path.display()
                    ),
                    if spec.sha256.is_some() {
                        format!(
                            "correct `{key}.sha256` (`sha256sum {}` prints the file's), or fetch the file again",
                            path.display()
                        )
                    } else {
                        "the file is damaged or incomplete: delete it and run `rlcd assets fetch` again"
                            .to_string()
                    },
                ));
            }
        }
        let gguf = GgufFile::open_header(&path).map_err(|e| {
            Problem::new(
                &file_key,
                format!("model file {} is not a usable GGUF file: {}", path.display(), first_line(&e)),
                "point the key at a complete GGUF file (a truncated download fails this way too: fetch it again)",
            )
        })?;
        let config = LlamaConfig::from_gguf(&gguf).map_err(|e| {
            Problem::new(
                &file_key,
                format!(
                    "model file {} is not a supported decoder: {}",
                    path.display(),
                    first_line(&e)
                ),
                "use a llama or qwen2 GGUF model",
            )
        })?;
        let tokenizer = Tokenizer::from_gguf(&gguf).map_err(|e| {
            Problem::new(
                &file_key,
                format!(
                    "the tokenizer of model file {} cannot be read: {}",
                    path.display(),
                    first_line(&e)
                ),
                "use a GGUF file with an embedded tokenizer (`tokenizer.ggml.*` metadata)",
            )
        })?;
        Ok(Self {
            key,
            context: config.max_seq_len,
            q8_unfit: config.q8_unfit_width(),
            tokenizer,
            format: PolicyFormat::pretrained(),
        })
    }

    /// Tokens of `text` as the model reads it.
    fn count(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text, true)
            .map_or(usize::MAX, |ids| ids.len())
    }

    /// Tokens of dialogue prompt `prompt` as the model samples from it (in its chat template
    /// when it has `chat`; one that cannot be put there counts as too long, and
    /// [`Self::chat_problem`] says why).
    fn count_prompt(&self, prompt: &str) -> usize {
        self.format
            .query(&self.tokenizer, prompt)
            .map_or(usize::MAX, |text| self.count(&text))
    }

    /// Tokens of question `text` as the model reads it (its answer opening after the chat
    /// template's user message when it has `chat`).
    fn count_question(&self, text: &str) -> usize {
        self.format
            .question(&self.tokenizer, text)
            .map_or(usize::MAX, |q| self.count(&q))
    }

    /// Why `prompt` cannot be put in the model's chat template, if it has `chat`.
    fn chat_problem(&self, prompt: &str, what: &str) -> Option<Problem> {
        let e = self.format.query(&self.tokenizer, prompt).err()?;
        Some(Problem::new(
            format!("{}.chat", self.key),
            format!(
                "{what} cannot be put in `{}`'s chat template: {}",
                self.key,
                first_line(&e)
            ),
            format!(
                "render dialogue prompts with the `dialogue` macro of prompt-templates/common/dialogue.j2, or set `{}.chat = false`",
                self.key
            ),
        ))
    }
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Every task has the splits its stages read: train prompts where a method simulates pairs,
/// test prompts where a policy is evaluated or a preference model measured.
fn check_splits(
    resolved: &Resolved,
    tasks: &BTreeMap<&str, Vec<Dialogue>>,
    out: &mut Vec<Problem>,
) {
    let r = &resolved.recipe;
    let simulates = r.methods.values().any(|m| m.kind.needs_simulator());
    let evaluates = !r.comparisons().is_empty();
    for (name, task) in &r.tasks {
        let key = format!("tasks.{name}.prompts");
        let Some(dialogues) = tasks.get(name.as_str()) else {
            continue;
        };
        let count = |split| dialogues.iter().filter(|d| d.split == split).count();
        let (train, test) = (count(Split::Train), count(Split::Test));
        let mut need = |split: &str, n: usize, why: &str| {
            if n == 0 {
                out.push(Problem::new(
                    &key,
                    format!(
                        "prompt set `{}` of `{key}` has no {split}-split prompts ({train} train, {test} test), but {why}",
                        task.prompts
                    ),
                    if task.prompts.ends_with(".txt") {
                        "add prompts (a `.txt` set goes 80/20 to train and test by a seeded hash of \
                         each line), or write a `.jsonl` set whose records name their `split`"
                            .to_string()
                    } else {
                        format!(
                            "mark some records `\"split\": \"{split}\"`, or drop the `split` fields to divide the set 80/20"
                        )
                    },
                ));
            }
        };
        if simulates {
            need(
                "train",
                train,
                "its methods simulate preference pairs from train prompts",
            );
        }
        if evaluates {
            need("test", test, "`eval` compares policies on test prompts");
        }
    }
}

/// Prompts that overflow a model's context: problems under `truncate = "error"`, notes under
/// `"left"` (which drops their oldest tokens at run time).
struct Overflow<'o> {
    mode: Truncate,
    out: &'o mut Vec<Problem>,
    notes: &'o mut Vec<String>,
}

impl Overflow<'_> {
    /// `counts` (tokens, prompt id) of the `what` that `model` reads, each followed by `extra`
    /// tokens: `problem(tokens, id)` for the longest one that overflows under `"error"`, one
    /// note counting them under `"left"`.
    fn check(
        &mut self,
        model: &ModelFacts,
        what: &str,
        counts: &[(usize, &String)],
        extra: usize,
        problem: impl FnOnce(usize, &str) -> Problem,
    ) {
        let over: Vec<&(usize, &String)> = counts
            .iter()
            .filter(|(tokens, _)| tokens + extra > model.context)
            .collect();
        let Some(&&(tokens, id)) = over.iter().max() else {
            return;
        };
        match self.mode {
            Truncate::Error => self.out.push(problem(tokens, id)),
            Truncate::Left => self.notes.push(format!(
                "{} of {} {what} can overflow the {} tokens of `{}`'s context (longest: `{id}`, {tokens} tokens + {extra}); `truncate = \"left\"` drops their oldest tokens",
                over.len(),
                counts.len(),
                model.context,
                model.key
            )),
        }
    }
}

/// The fix of an over-long prompt under `truncate = "error"`.
fn or_truncate(fix: String) -> String {
    format!("{fix}, or set `truncate = \"left\"` to drop the oldest tokens")
}

/// Every model's context holds what it reads plus what it writes.
fn check_lengths(
    resolved: &Resolved,
    tasks: &BTreeMap<&str, Vec<Dialogue>>,
    models: &BTreeMap<&str, ModelFacts>,
    out: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) {
    let r = &resolved.recipe;
    let mut generation = |model: &str, key: &str, tokens: usize, what: &str| {
        if let Some(facts) = models.get(model)
            && tokens >= facts.context
        {
            out.push(Problem::new(
                key,
                format!(
                    "`{key}` = {tokens} leaves no room for a prompt in the {} tokens of `{}`'s context ({what})",
                    facts.context, facts.key
                ),
                format!("set `{key}` below {}", facts.context),
            ));
        }
    };
    for m in r.methods.values() {
        if let Some(sim) = &m.simulator {
            generation(
                sim,
                "simulate.max_new_tokens",
                r.simulate.max_new_tokens,
                "simulated outputs",
            );
        }
        generation(
            &m.policy,
            "eval.max_new_tokens",
            r.eval.max_new_tokens,
            "evaluation samples",
        );
        if m.kind.uses_pairs() {
            generation(
                &m.policy,
                "ppo.max_response_tokens",
                r.ppo.max_query_tokens + r.ppo.max_response_tokens,
                "`ppo.max_query_tokens` + `ppo.max_response_tokens`",
            );
        }
    }
    if !out.is_empty() {
        return;
    }
    let Ok(templates) = Templates::open(&resolved.resolve_path(&r.templates_dir)) else {
        return;
    };
    let mut overflow = Overflow {
        mode: r.truncate,
        out,
        notes,
    };
    let simulators: BTreeSet<&str> = r
        .methods
        .values()
        .filter_map(|m| m.simulator.as_deref())
        .collect();
    let labellers: BTreeSet<&str> = r
        .methods
        .values()
        .filter(|m| m.kind.uses_scoring_prompt())
        .filter_map(|m| m.simulator.as_deref())
        .collect();
    let policies: BTreeSet<&str> = r.methods.values().map(|m| m.policy.as_str()).collect();
    for (task, spec) in &r.tasks {
        let Some(dialogues) = tasks.get(task.as_str()) else {
            continue;
        };
        let train = select(
            dialogues,
            Split::Train,
            spec.n_prompts.or(r.simulate.n_prompts),
        );
        let test = select(dialogues, Split::Test, spec.n_prompts.or(r.eval.n_prompts));
        let key = format!("tasks.{task}.prompts");
        let prompt_problem = |model: &ModelFacts, new: usize, new_key: &'static str| {
            let key = key.clone();
            let model_key = model.key.clone();
            let context = model.context;
            move |tokens: usize, id: &str| {
                Problem::new(
                    &key,
                    format!(
                        "prompt `{id}` of `{key}` takes {tokens} tokens; with `{new_key}` = {new} it overflows the {context} tokens of `{model_key}`'s context"
                    ),
                    or_truncate(format!(
                        "shorten or drop prompt `{id}`, lower `{new_key}`, use a model with a longer context"
                    )),
                )
            }
        };
        // Each split is rendered once and each model counts it once, however many methods
        // share the model.
        if let Ok(prompts) = contrast_prompts(&templates, &spec.templates, &train, r.seed) {
            let readers = simulators.iter().chain(&policies);
            for model in readers.filter_map(|m| models.get(m)) {
                let first = prompts.first().and_then(|p| {
                    [("p+", &p.positive), ("p−", &p.negative), ("p", &p.plain)]
                        .into_iter()
                        .find_map(|(side, text)| {
                            let what = format!("{side} of prompt `{}` of `{key}`", p.id);
                            model.chat_problem(text, &what)
                        })
                });
                if let Some(problem) = first
                    && !overflow.out.iter().any(|o| o.key == problem.key)
                {
                    overflow.out.push(problem);
                }
            }
            for sim in simulators.iter().filter_map(|s| models.get(s)) {
                let counts: Vec<(usize, &String)> = prompts
                    .iter()
                    .map(|p| {
                        [&p.positive, &p.negative, &p.plain]
                            .map(|text| sim.count_prompt(text))
                            .into_iter()
                            .max()
                            .map_or((0, &p.id), |t| (t, &p.id))
                    })
                    .collect();
                overflow.check(
                    sim,
                    &format!("train prompts of `{key}` (p+, p− or p)"),
                    &counts,
                    r.simulate.max_new_tokens,
                    prompt_problem(sim, r.simulate.max_new_tokens, "simulate.max_new_tokens"),
                );
            }
        }
        if let Ok(prompts) = contrast_prompts(&templates, &spec.templates, &test, r.seed) {
            for policy in policies.iter().filter_map(|s| models.get(s)) {
                let counts: Vec<(usize, &String)> = prompts
                    .iter()
                    .map(|p| (policy.count_prompt(&p.plain), &p.id))
                    .collect();
                overflow.check(
                    policy,
                    &format!("test prompts of `{key}`"),
                    &counts,
                    r.eval.max_new_tokens,
                    prompt_problem(policy, r.eval.max_new_tokens, "eval.max_new_tokens"),
                );
            }
        }
        for labeller in labellers.iter().filter_map(|s| models.get(s)) {
            scoring_lengths(&mut overflow, resolved, &templates, spec, &train, labeller);
        }
        if !r.comparisons().is_empty() {
            for judge in r.eval.judges.iter().filter_map(|j| j.strip_prefix("lm:")) {
                if let Some(facts) = models.get(judge) {
                    judge_lengths(
                        &mut overflow,
                        resolved,
                        &templates,
                        spec,
                        &test,
                        judge,
                        facts,
                    );
                }
            }
        }
    }
}

/// The longest rendering of `template` over `dialogues` with empty outputs and `principle`,
/// plus `lead`, as `model` counts it: (tokens, dialogue id) per dialogue.
fn question_counts<'d>(
    templates: &Templates,
    template: &str,
    dialogues: &'d [Dialogue],
    principle: &str,
    lead: &str,
    model: &ModelFacts,
) -> Vec<(usize, &'d String)> {
    dialogues
        .iter()
        .filter_map(|d| {
            let ctx = minijinja::context! {
                turns => d.turns, principle => principle, output_a => "", output_b => ""
            };
            let text = templates.render(template, ctx).ok()?;
            Some((model.count_question(&format!("{text}{lead}")), &d.id))
        })
        .collect()
}

/// The RLAIF scoring prompt (`score.j2`, with the family's longest principle) on the train
/// dialogues, with two outputs of `simulate.max_new_tokens` tokens each, against the
/// labelling simulator's context.
fn scoring_lengths(
    overflow: &mut Overflow<'_>,
    resolved: &Resolved,
    templates: &Templates,
    spec: &crate::recipe::TaskSpec,
    train: &[Dialogue],
    model: &ModelFacts,
) {
    let Ok(principles) = templates.principles(&spec.templates) else {
        return;
    };
    let principle = principles
        .iter()
        .max_by_key(|p| model.count(p))
        .cloned()
        .unwrap_or_default();
    let new = resolved.recipe.simulate.max_new_tokens;
    let counts = question_counts(
        templates,
        crate::templates::SCORE_TEMPLATE,
        train,
        &principle,
        "",
        model,
    );
    overflow.check(
        model,
        &format!("`{}` scoring prompts", crate::templates::SCORE_TEMPLATE),
        &counts,
        2 * new,
        |tokens, id| {
            Problem::new(
                "simulate.max_new_tokens",
                format!(
                    "the `{}` scoring prompt of `{}` on train prompt `{id}` takes {tokens} tokens before the two outputs; with two outputs of `simulate.max_new_tokens` = {new} it can reach {} tokens, past the {} of `{}`'s context",
                    crate::templates::SCORE_TEMPLATE,
                    model.key,
                    tokens + 2 * new,
                    model.context,
                    model.key
                ),
                or_truncate(format!(
                    "lower `simulate.max_new_tokens` to at most {}, label with a model of a longer context",
                    model.context.saturating_sub(tokens) / 2
                )),
            )
        },
    );
}

/// A judge prompt of `lm:<judge>` on each test dialogue, with two outputs of
/// `eval.max_new_tokens` tokens each, against the judge's context.
fn judge_lengths(
    overflow: &mut Overflow<'_>,
    resolved: &Resolved,
    templates: &Templates,
    spec: &crate::recipe::TaskSpec,
    test: &[Dialogue],
    judge: &str,
    facts: &ModelFacts,
) {
    let new = resolved.recipe.eval.max_new_tokens;
    for axis in &spec.axes {
        let Some(template) = crate::templates::judge_template(&spec.axes, axis) else {
            continue;
        };
        let counts = question_counts(
            templates,
            template,
            test,
            "",
            crate::eval::judge::ANSWER_LEAD,
            facts,
        );
        overflow.check(
            facts,
            &format!("`{template}` questions of judge `lm:{judge}`"),
            &counts,
            2 * new,
            |tokens, id| {
                Problem::new(
                    "eval.max_new_tokens",
                    format!(
                        "the `{template}` prompt of judge `lm:{judge}` on prompt `{id}` takes {tokens} tokens before the two outputs; with two outputs of `eval.max_new_tokens` = {new} it can reach {} tokens, past the {} of `{}`'s context",
                        tokens + 2 * new,
                        facts.context,
                        facts.key
                    ),
                    or_truncate(format!(
                        "lower `eval.max_new_tokens` to at most {}, judge with a model of a longer context",
                        facts.context.saturating_sub(tokens) / 2
                    )),
                )
            },
        );
    }
}

/// The dialogues of `split`, at most `n`.
fn select(dialogues: &[Dialogue], split: Split, n: Option<usize>) -> Vec<Dialogue> {
    dialogues
        .iter()
        .filter(|d| d.split == split)
        .take(n.unwrap_or(usize::MAX))
        .cloned()
        .collect()
}

/// Model-file SHA-256s remembered by path, size and modification time.
struct Checksums {
    path: Option<PathBuf>,
    entries: BTreeMap<String, ChecksumEntry>,
    changed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ChecksumEntry {
    size: u64,
    modified_ns: u128,
    sha256: String,
}

impl Checksums {
    /// The remembered checksums under results root `results` (none when it does not exist).
    fn open(results: &Path) -> Self {
        let path = results.is_dir().then(|| results.join(CHECKSUMS));
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self {
            path,
            entries,
            changed: false,
        }
    }

    /// The SHA-256 of `file`, hashed again only when its size or modification time changed.
    fn sha256(&mut self, file: &Path) -> Result<String, std::io::Error> {
        let meta = std::fs::metadata(file)?;
        let modified_ns = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = std::fs::canonicalize(file)?.display().to_string();
        if let Some(e) = self.entries.get(&name)
            && e.size == meta.len()
            && e.modified_ns == modified_ns
        {
            return Ok(e.sha256.clone());
        }
        let sha256 = crate::assets::sha256_file(file).map_err(std::io::Error::other)?;
        self.entries.insert(
            name,
            ChecksumEntry {
                size: meta.len(),
                modified_ns,
                sha256: sha256.clone(),
            },
        );
        self.changed = true;
        Ok(sha256)
    }

    /// Writes the checksums back (best effort: a read-only results root only costs hashing
    /// again next time).
    fn save(&self) {
        if let (true, Some(path)) = (self.changed, &self.path)
            && let Ok(json) = serde_json::to_vec_pretty(&self.entries)
        {
            let _ = crate::error::write(path, json);
        }
    }
}
