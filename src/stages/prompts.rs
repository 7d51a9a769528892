//! Prompt sets and contrast prompts (paper §3, RLCD): dialogues are read from JSONL / TXT files
//! and rendered into the plain prompt p and the contrast pair p+ / p−, with one affix pair drawn
//! per prompt from the recipe seed.
//!
//! JSONL records are `{"id", "split": "train"|"test", "source", "licence", "turns": [human,
//! assistant, …, human]}` or just `{"prompt": "…"}` (id = file stem + blake3 of the text; split
//! 80/20 train/test by a seeded hash). A `.txt` file holds one single-turn prompt per non-empty
//! line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::recipe::Resolved;
use crate::templates::{TemplateError, Templates};

/// Which part of a prompt set a dialogue belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to simulate preference data and to train.
    Train,
    /// Held out for evaluation.
    Test,
}

/// One prompt: a dialogue ending with a human turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialogue {
    /// Stable identifier (seeds derive from it).
    pub id: String,
    /// Train or test.
    pub split: Split,
    /// Turns, alternating human, assistant, …, human (odd count).
    pub turns: Vec<String>,
}

/// A prompt rendered three ways for one drawn affix pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContrastPrompt {
    /// The dialogue's id.
    pub id: String,
    /// Index of the affix pair drawn for this prompt.
    pub affix_index: usize,
    /// The unmodified prompt p.
    pub plain: String,
    /// p+: positive affix in the final assistant tag.
    pub positive: String,
    /// p−: negative affix in the final assistant tag.
    pub negative: String,
}

/// Why a prompt set cannot be read; the first line names the file (or spec).
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A `world:…` prompt set the built-in world cannot provide.
    #[error("{spec}: {message}\n  fix: {fix}")]
    World {
        /// The spec as written.
        spec: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// The prompt file does not exist.
    #[error("{}: prompt file not found (from `{spec}`)\n  fix: {fix}", path.display())]
    Missing {
        /// The resolved path.
        path: PathBuf,
        /// The spec as written.
        spec: String,
        /// How to provide it.
        fix: String,
    },
    /// The prompt file cannot be read.
    #[error("{}: cannot read prompt file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The prompt file holds no prompts.
    #[error("{}: prompt file is empty\n  fix: add prompts (one JSON object per line for .jsonl, one prompt per line for .txt)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The extension is neither `.jsonl` nor `.txt`.
    #[error("{}: unsupported prompt file type\n  fix: use a .jsonl file (one JSON record per line) or a .txt file (one prompt per line)", path.display())]
    Extension {
        /// The file.
        path: PathBuf,
    },
    /// A record is malformed.
    #[error("{}:{line}: {message}\n  fix: {fix}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    id: Option<String>,
    split: Option<Split>,
    #[allow(dead_code)]
    source: Option<String>,
    #[allow(dead_code)]
    licence: Option<String>,
    turns: Option<Vec<String>>,
    prompt: Option<String>,
}

/// Where a prompt spec's file lives, or `None` for `world:` specs.
pub fn prompt_path(resolved: &Resolved, spec: &str) -> Option<PathBuf> {
    if spec.starts_with("world:") {
        None
    } else if let Some(name) = spec.strip_prefix("assets:") {
        Some(
            resolved
                .root
                .join("assets")
                .join("prompts")
                .join(format!("{name}.jsonl")),
        )
    } else {
        Some(resolved.resolve_path(Path::new(spec)))
    }
}

fn missing(path: PathBuf, spec: &str) -> PromptError {
    let fix = if spec.starts_with("assets:") {
        "run `rlcd assets fetch` to download the prompt sets".to_string()
    } else {
        "correct the path (relative to the project root) or create the file".to_string()
    };
    PromptError::Missing {
        path,
        spec: spec.to_string(),
        fix,
    }
}

fn read(resolved: &Resolved, spec: &str) -> Result<(PathBuf, Vec<u8>), PromptError> {
    let Some(path) = prompt_path(resolved, spec) else {
        return Err(PromptError::World {
            spec: spec.to_string(),
            message: "world prompt sets are generated, not read from a file".to_string(),
            fix: "load it with `load_prompt_set`".to_string(),
        });
    };
    match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing(path, spec)),
        Err(source) => Err(PromptError::Read { path, source }),
    }
}

/// Loads the dialogues of prompt set `spec` (`assets:<name>`, a `.jsonl` / `.txt` path, or
/// `world:<task>`), in file order.
pub fn load_prompt_set(resolved: &Resolved, spec: &str) -> Result<Vec<Dialogue>, PromptError> {
    if let Some(name) = spec.strip_prefix("world:") {
        return world_prompt_set(resolved, spec, name);
    }
    let (path, bytes) = read(resolved, spec)?;
    let text = String::from_utf8(bytes).map_err(|_| PromptError::Record {
        path: path.clone(),
        line: 1,
        message: "not UTF-8 text".to_string(),
        fix: "save the prompt file as UTF-8".to_string(),
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "prompt".to_string());
    let seed = resolved.recipe.seed;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let dialogues = match ext {
        "jsonl" => parse_jsonl(&path, &text, &stem, seed)?,
        "txt" => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| hashed_dialogue(&stem, l, seed))
            .collect(),
        _ => return Err(PromptError::Extension { path }),
    };
    if dialogues.is_empty() {
        return Err(PromptError::Empty { path });
    }
    let mut seen = BTreeSet::new();
    for (i, d) in dialogues.iter().enumerate() {
        if !seen.insert(d.id.as_str()) {
            return Err(PromptError::Record {
                path,
                line: i + 1,
                message: format!("duplicate prompt id `{}`", d.id),
                fix: "give every record a unique `id` (or remove the duplicate prompt)".to_string(),
            });
        }
    }
    Ok(dialogues)
}

/// The built-in world's prompt set `world:<task>` under the recipe's `[world]` settings.
fn world_prompt_set(
    resolved: &Resolved,
    spec: &str,
    name: &str,
) -> Result<Vec<Dialogue>, PromptError> {
    let Some(task) = crate::world::Task::from_name(name) else {
        let names: Vec<String> = crate::world::Task::ALL
            .iter()
            .map(|t| format!("world:{}", t.name()))
            .collect();
        return Err(PromptError::World {
            spec: spec.to_string(),
            message: format!("the built-in world has no task `{name}`"),
            fix: format!("use one of {}", names.join(", ")),
        });
    };
    let recipe = &resolved.recipe;
    let world = crate::world::World::new(&recipe.world, crate::world::world_seed(recipe.seed))
        .map_err(|e| PromptError::World {
            spec: spec.to_string(),
            message: e.to_string(),
            fix: "correct the [world] settings".to_string(),
        })?;
    world.prompt_set(task).map_err(|e| PromptError::World {
        spec: spec.to_string(),
        message: e.to_string(),
        fix: "lower [world] prompts_train / prompts_test".to_string(),
    })
}

/// blake3 (hex) of the prompt file's bytes, for cache keys; for `world:` specs, of the spec,
/// the `[world]` settings, the recipe seed and the world's version (its prompts are a function
/// of those).
pub fn input_hash(resolved: &Resolved, spec: &str) -> Result<String, PromptError> {
    if prompt_path(resolved, spec).is_none() {
        let world = serde_json::to_value(&resolved.recipe.world).unwrap_or_default();
        let text = format!(
            "{spec}\0{}\0{}\0{}\0{}",
            crate::plan::canonical_json(&world),
            resolved.recipe.seed,
            crate::world::WORLD_VERSION,
            crate::world::PROMPT_SET_VERSION
        );
        return Ok(blake3::hash(text.as_bytes()).to_hex().to_string());
    }
    let (_, bytes) = read(resolved, spec)?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// A single-turn dialogue whose id and split come from a hash of its text.
fn hashed_dialogue(stem: &str, text: &str, seed: u64) -> Dialogue {
    let hash = blake3::hash(text.as_bytes()).to_hex();
    let id = format!("{stem}-{}", &hash[..16]);
    let split = if crate::seed::derive(seed, &["split", &id]).is_multiple_of(5) {
        Split::Test
    } else {
        Split::Train
    };
    Dialogue {
        id,
        split,
        turns: vec![text.to_string()],
    }
}

fn parse_jsonl(
    path: &Path,
    text: &str,
    stem: &str,
    seed: u64,
) -> Result<Vec<Dialogue>, PromptError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String, fix: &str| PromptError::Record {
            path: path.to_path_buf(),
            line: line_no,
            message,
            fix: fix.to_string(),
        };
        let record: Record = serde_json::from_str(line).map_err(|e| {
            bad(
                format!("malformed record: {e}"),
                "write one JSON object per line: {\"id\": \"…\", \"split\": \"train\", \"turns\": [\"…\"]} or {\"prompt\": \"…\"}",
            )
        })?;
        let dialogue = match (record.turns, record.prompt) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "record has both `turns` and `prompt`".to_string(),
                    "keep one of them",
                ));
            }
            (None, None) => {
                return Err(bad(
                    "record has neither `turns` nor `prompt`".to_string(),
                    "add `turns` (human, assistant, …, human) or `prompt`",
                ));
            }
            (None, Some(prompt)) => {
                if prompt.trim().is_empty() {
                    return Err(bad("empty `prompt`".to_string(), "write the prompt text"));
                }
                let mut d = hashed_dialogue(stem, &prompt, seed);
                if let Some(id) = record.id {
                    d.id = id;
                }
                if let Some(split) = record.split {
                    d.split = split;
                }
                d
            }
            (Some(turns), None) => {
                if turns.len().is_multiple_of(2) {
                    return Err(bad(
                        format!(
                            "`turns` has {} entries; a prompt alternates human, assistant, …, human (odd count)",
                            turns.len()
                        ),
                        "end the dialogue with a human turn",
                    ));
                }
                if let Some(j) = turns.iter().position(|t| t.trim().is_empty()) {
                    return Err(bad(format!("turn {j} is empty"), "write every turn's text"));
                }
                let Some(id) = record.id else {
                    return Err(bad(
                        "record with `turns` has no `id`".to_string(),
                        "add a unique `id`",
                    ));
                };
                let split = match record.split {
                    Some(s) => s,
                    None => hashed_dialogue(stem, &turns.join("\n"), seed).split,
                };
                Dialogue { id, split, turns }
            }
        };
        out.push(dialogue);
    }
    Ok(out)
}

/// Renders every dialogue as p, p+ and p− of task family `task_templates`, drawing affix pair
/// `rlcd::seed::derive(seed, ["affix", id]) mod n_pairs` per dialogue.
pub fn contrast_prompts(
    templates: &Templates,
    task_templates: &str,
    dialogues: &[Dialogue],
    seed: u64,
) -> Result<Vec<ContrastPrompt>, TemplateError> {
    let affixes = templates.affixes(task_templates)?;
    let n = affixes.len() as u64;
    let plain = format!("{task_templates}/plain.j2");
    let positive = format!("{task_templates}/positive.j2");
    let negative = format!("{task_templates}/negative.j2");
    dialogues
        .iter()
        .map(|d| {
            let affix_index = (crate::seed::derive(seed, &["affix", &d.id]) % n) as usize;
            let ctx = minijinja::context! {
                turns => d.turns,
                affix => affixes[affix_index],
            };
            Ok(ContrastPrompt {
                id: d.id.clone(),
                affix_index,
                plain: templates.render(&plain, ctx.clone())?,
                positive: templates.render(&positive, ctx.clone())?,
                negative: templates.render(&negative, ctx)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Resolved {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/examples/contrast.toml");
        crate::recipe::load_with_env(&file, &[], &[]).expect("example recipe loads")
    }

    #[test]
    fn jsonl_records_with_turns_or_prompt_load() {
        let r = example();
        let d = load_prompt_set(&r, "recipes/examples/prompts/helpful.jsonl").expect("loads");
        assert_eq!(d.len(), 4);
        assert_eq!(d[1].turns.len(), 3);
        assert_eq!(d[2].split, Split::Test);
        let bare = &d[3];
        let hash = blake3::hash(b"What is a good way to learn to touch type?").to_hex();
        assert_eq!(bare.id, format!("helpful-{}", &hash[..16]));
        assert_eq!(
            bare.turns,
            vec!["What is a good way to learn to touch type?".to_string()]
        );
    }

    #[test]
    fn txt_lines_are_single_turn_prompts_split_80_20() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("many.txt");
        let text: String = (0..2000)
            .map(|i| format!("Prompt number {i}\n\n"))
            .collect();
        std::fs::write(&path, text).expect("write");
        let r = example();
        let spec = path.display().to_string();
        let d = load_prompt_set(&r, &spec).expect("loads");
        assert_eq!(d.len(), 2000);
        assert!(
            d.iter()
                .all(|d| d.turns.len() == 1 && d.id.starts_with("many-"))
        );
        let test = d.iter().filter(|d| d.split == Split::Test).count() as f64 / 2000.0;
        assert!((0.17..=0.23).contains(&test), "test fraction {test}");
        assert_eq!(d, load_prompt_set(&r, &spec).expect("loads again"));
        let mut other = r.clone();
        other.recipe.seed = 1;
        let splits = |ds: &[Dialogue]| ds.iter().map(|d| d.split).collect::<Vec<_>>();
        assert_ne!(
            splits(&d),
            splits(&load_prompt_set(&other, &spec).expect("loads"))
        );
    }

    #[test]
    fn input_hash_follows_the_file_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.txt");
        let spec = path.display().to_string();
        let r = example();
        std::fs::write(&path, "one\n").expect("write");
        let a = input_hash(&r, &spec).expect("hash");
        assert_eq!(a, blake3::hash(b"one\n").to_hex().to_string());
        std::fs::write(&path, "two\n").expect("write");
        assert_ne!(a, input_hash(&r, &spec).expect("hash"));
        assert_eq!(
            input_hash(&r, "world:harmless").expect("hash"),
            input_hash(&r, "world:harmless").expect("hash")
        );
    }

    #[test]
    fn unusable_specs_are_explained() {
        let r = example();
        let world = load_prompt_set(&r, "world:harmles").expect_err("unknown world task");
        assert!(
            world
                .to_string()
                .starts_with("world:harmles: the built-in world has no task `harmles`"),
            "{world}"
        );
        assert!(world.to_string().contains("world:harmless"), "{world}");
        let mut small = r.clone();
        small.recipe.world.prompts_train = 40;
        small.recipe.world.prompts_test = 10;
        let set = load_prompt_set(&small, "world:helpful").expect("world prompts");
        assert_eq!(set.len(), 50);
        assert_eq!(set.iter().filter(|d| d.split == Split::Test).count(), 10);
        let before = input_hash(&small, "world:helpful").expect("hash");
        small.recipe.world.creatures += 1;
        assert_ne!(before, input_hash(&small, "world:helpful").expect("hash"));
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = dir.path().join("p.csv");
        std::fs::write(&csv, "a,b\n").expect("write");
        let err = load_prompt_set(&r, &csv.display().to_string()).expect_err("csv");
        assert!(matches!(err, PromptError::Extension { .. }), "{err}");
        let dup = dir.path().join("d.jsonl");
        std::fs::write(&dup, "{\"prompt\": \"x\"}\n{\"prompt\": \"x\"}\n").expect("write");
        let err = load_prompt_set(&r, &dup.display().to_string()).expect_err("duplicate");
        assert!(err.to_string().contains("duplicate prompt id"), "{err}");
    }
}
