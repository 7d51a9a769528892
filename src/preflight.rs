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

use crate::model::LlamaConfig;
use crate::model::gguf::GgufFile;
use crate::model::tokenizer::Tokenizer;
use crate::prompts::contrast_prompts;
use crate::recipe::{BackendKind, ModelSpec, Problem, RecipeError, Resolved};
use crate::templates::Templates;
use crate::world::format::{BOS, Dialogue, EOS, PAD, Split};

/// File under the results root remembering model-file SHA-256s by size and modification time.
pub const CHECKSUMS: &str = "checksums.json";

/// Checks `resolved` and everything it names; the error lists every problem found, each
/// located where its key was set.
pub fn check(resolved: &Resolved) -> Result<(), RecipeError> {
    crate::recipe::validate(resolved)?;
    crate::recipe::located(resolved, problems(resolved))
}

/// The problems of a recipe that passes [`crate::recipe::validate`], found by reading the files
/// and models it names.
pub fn problems(resolved: &Resolved) -> Vec<Problem> {
    let r = &resolved.recipe;
    let mut out = Vec::new();
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
            Ok(facts) => {
                models.insert(name, facts);
            }
            Err(problem) => out.push(problem),
        }
    }
    checksums.save();
    // Each task's prompt set is read once (one that does not load is the recipe check's
    // problem, reported already).
    let tasks: BTreeMap<&str, Vec<Dialogue>> = r
        .tasks
        .iter()
        .filter_map(|(name, t)| {
            crate::prompts::load_prompt_set(&t.prompts, &resolved.root, &r.world, r.seed)
                .ok()
                .map(|d| (name.as_str(), d))
        })
        .collect();
    check_splits(resolved, &tasks, &mut out);
    if out.is_empty() {
        check_lengths(resolved, &tasks, &models, &mut out);
    }
    // Methods sharing a model find its problems once each.
    let mut seen = BTreeSet::new();
    out.retain(|p| seen.insert((p.key.clone(), p.message.clone())));
    out
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
}

impl ModelFacts {
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
                tokenizer,
            });
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
        let gguf = GgufFile::open(&path).map_err(|e| {
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
            tokenizer,
        })
    }

    /// Tokens of `text` as the model reads it.
    fn count(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text, true)
            .map_or(usize::MAX, |ids| ids.len())
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

/// Every model's context holds what it reads plus what it writes.
fn check_lengths(
    resolved: &Resolved,
    tasks: &BTreeMap<&str, Vec<Dialogue>>,
    models: &BTreeMap<&str, ModelFacts>,
    out: &mut Vec<Problem>,
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
    let simulators: BTreeSet<&str> = r
        .methods
        .values()
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
        // Each split is rendered once and each model counts it once, however many methods
        // share the model.
        if let Ok(prompts) = contrast_prompts(&templates, &spec.templates, &train, r.seed) {
            for sim in simulators.iter().filter_map(|s| models.get(s)) {
                let longest = prompts
                    .iter()
                    .flat_map(|p| {
                        [&p.positive, &p.negative, &p.plain].map(|text| (sim.count(text), &p.id))
                    })
                    .max();
                too_long(
                    out,
                    &key,
                    sim,
                    longest,
                    r.simulate.max_new_tokens,
                    "simulate.max_new_tokens",
                );
            }
        }
        if let Ok(prompts) = contrast_prompts(&templates, &spec.templates, &test, r.seed) {
            for policy in policies.iter().filter_map(|s| models.get(s)) {
                let longest = prompts
                    .iter()
                    .map(|p| (policy.count(&p.plain), &p.id))
                    .max();
                too_long(
                    out,
                    &key,
                    policy,
                    longest,
                    r.eval.max_new_tokens,
                    "eval.max_new_tokens",
                );
            }
        }
        if !r.comparisons().is_empty() {
            for judge in r.eval.judges.iter().filter_map(|j| j.strip_prefix("lm:")) {
                if let Some(facts) = models.get(judge) {
                    judge_lengths(out, resolved, &templates, spec, &test, judge, facts);
                }
            }
        }
    }
}

/// A problem when a judge prompt of `lm:<judge>` on the longest test dialogue, with two
/// outputs of `eval.max_new_tokens` tokens each, could overflow the judge's context.
fn judge_lengths(
    out: &mut Vec<Problem>,
    resolved: &Resolved,
    templates: &Templates,
    spec: &crate::recipe::TaskSpec,
    test: &[Dialogue],
    judge: &str,
    facts: &ModelFacts,
) {
    let outputs = 2 * resolved.recipe.eval.max_new_tokens;
    for axis in &spec.axes {
        let Some(template) = crate::templates::judge_template(&spec.axes, axis) else {
            continue;
        };
        let longest = test
            .iter()
            .filter_map(|d| {
                let ctx = minijinja::context! { turns => d.turns, output_a => "", output_b => "" };
                let text = templates.render(template, ctx).ok()?;
                Some((
                    facts.count(&format!("{text}{}", crate::eval::judge::ANSWER_LEAD)),
                    &d.id,
                ))
            })
            .max();
        if let Some((tokens, id)) = longest
            && tokens + outputs > facts.context
        {
            out.push(Problem::new(
                "eval.max_new_tokens",
                format!(
                    "the `{template}` prompt of judge `lm:{judge}` on prompt `{id}` takes {tokens} tokens before the two outputs; with two outputs of `eval.max_new_tokens` = {} it can reach {} tokens, past the {} of `{}`'s context",
                    resolved.recipe.eval.max_new_tokens,
                    tokens + outputs,
                    facts.context,
                    facts.key
                ),
                format!(
                    "lower `eval.max_new_tokens` to at most {}, or judge with a model of a longer context",
                    facts.context.saturating_sub(tokens) / 2
                ),
            ));
        }
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

/// A problem when the longest prompt (`tokens`, `id`) and `new_tokens` more overflow `model`.
fn too_long(
    out: &mut Vec<Problem>,
    key: &str,
    model: &ModelFacts,
    longest: Option<(usize, &String)>,
    new_tokens: usize,
    new_key: &str,
) {
    let Some((tokens, id)) = longest else {
        return;
    };
    if tokens + new_tokens > model.context {
        out.push(Problem::new(
            key,
            format!(
                "prompt `{id}` of `{key}` takes {tokens} tokens; with `{new_key}` = {new_tokens} it overflows the {} tokens of `{}`'s context",
                model.context, model.key
            ),
            format!(
                "shorten or drop prompt `{id}`, lower `{new_key}`, or use a model with a longer context"
            ),
        ));
    }
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
