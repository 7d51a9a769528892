//! Checks the generated prompt sets under `assets/prompts/` (written by `rlcd assets fetch
//! prompts`): every record parses, ids are unique and well formed, train and test are disjoint
//! and about 80/20, and the held-out stress set shares no prompt with `harmless`. A set that
//! has not been fetched fails the test with the command that fetches it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rlcd::assets::{self, PromptRecord};

fn prompts_root() -> PathBuf {
    assets::prompts_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}

fn load(task: &str) -> Vec<PromptRecord> {
    let path = prompts_root().join(format!("{task}.jsonl"));
    assert!(
        path.is_file(),
        "{} is absent: fetch the prompt sets with `cargo run --release -- assets fetch prompts`",
        path.display()
    );
    assets::load_prompts(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn prompt_sets_are_well_formed() {
    for task in assets::PROMPT_TASKS {
        let records = load(task);
        assert!(!records.is_empty(), "{task}: empty");
        let mut ids = HashSet::new();
        let mut texts = HashSet::new();
        for r in &records {
            assert!(ids.insert(r.id.clone()), "{task}: duplicate id {}", r.id);
            let hex =
                r.id.strip_prefix(&format!("{task}-"))
                    .unwrap_or_else(|| panic!("{task}: id {} lacks the task prefix", r.id));
            assert_eq!(hex.len(), 12, "{}", r.id);
            assert_eq!(
                r.id,
                assets::prompt_id(task, &r.turns[0]),
                "id not blake3 of text"
            );
            assert_eq!(r.turns.len(), 1, "{task}: sources are single-turn");
            assert!(!r.turns[0].trim().is_empty());
            assert!(
                texts.insert(assets::normalise_for_dedup(&r.turns[0])),
                "{task}: duplicate text {:?}",
                r.turns[0]
            );
            assert!(
                r.source.contains("==") && r.source.contains(':'),
                "{}",
                r.source
            );
            assert!(!r.licence.is_empty());
        }
        let train: HashSet<&str> = records
            .iter()
            .filter(|r| r.split == "train")
            .map(|r| r.id.as_str())
            .collect();
        let test: HashSet<&str> = records
            .iter()
            .filter(|r| r.split == "test")
            .map(|r| r.id.as_str())
            .collect();
        assert!(train.is_disjoint(&test));
        assert_eq!(train.len() + test.len(), records.len());
        if assets::HELD_OUT_TASKS.contains(&task) {
            assert!(train.is_empty(), "{task} is held out: all test");
        } else {
            let frac = test.len() as f64 / records.len() as f64;
            assert!(
                (frac - assets::TEST_FRACTION).abs() < 0.01,
                "{task}: test fraction {frac}"
            );
        }
    }
}

#[test]
fn stress_set_is_disjoint_from_harmless() {
    let (harmless, stress) = (load("harmless"), load("harmless-stress"));
    let seen: HashSet<String> = harmless
        .iter()
        .map(|r| assets::normalise_for_dedup(&r.turns[0]))
        .collect();
    assert!(
        stress
            .iter()
            .all(|r| !seen.contains(&assets::normalise_for_dedup(&r.turns[0])))
    );
}
