//! The preference stages end to end on `world-xs` (paper §4.2): RLCD, RLAIF and RLCD-Rescore
//! pairs → preference models → the `pair_labels` and `pm_agreement` tables, cached and
//! deterministic.

use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::DataFrame;
use rlcd::stages::pair_labels::ID as PAIR_LABELS_TABLE;
use rlcd::stages::pm_agreement::ID as PM_AGREEMENT_TABLE;
use rlcd::stages::simulate::Method;

fn simulate_stage_id(simulator: &str, task: &str, family: &str) -> String {
    rlcd::stages::simulate::id(simulator, task, Method::from_name(family).expect("family"))
}
use rlcd::runner::{self, RunOptions, RunSummary};
use rlcd::store::Store;

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompt-templates")
}

/// A project directory holding a world-xs recipe with every preference method on one task.
fn project() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    // The project root (where `results/` goes) is the directory holding `prompt-templates/`.
    fs::create_dir_all(tmp.path().join("prompt-templates")).unwrap();
    let recipe = tmp.path().join("pairs.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"pairs-test\"\nseed = 5\ntemplates_dir = {:?}\n\n\
             [models.sim]\npreset = \"world-xs\"\n\n\
             [world]\ndocuments = 500\nprompts_train = 24\nprompts_test = 32\n\n\
             [pretrain]\nsteps = 80\nheldout_documents = 40\n\n\
             [pretrain.report]\nprompts = 4\npairs = 8\nmax_new_tokens = 8\n\n\
             [tasks.harmless]\nprompts = \"world:harmless\"\ntemplates = \"harmless\"\n\
             axes = [\"harm\", \"help\"]\n\n\
             [simulate]\nn_prompts = 16\nmax_new_tokens = 40\nretries = 1\nbatch_size = 16\n\n\
             [reward]\nepochs = 1\nlr = 1e-3\nbatch_size = 4\nmax_len = 256\nheldout_pairs = 32\n\n\
             [methods.rlcd]\nkind = \"rlcd\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\n\
             [methods.rlaif]\nkind = \"rlaif\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\n\
             [methods.rescore]\nkind = \"rlcd-rescore\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\n\
             [methods.cd]\nkind = \"context-distillation\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\n\
             [methods.base]\nkind = \"base\"\npolicy = \"sim\"\n\n\
             [methods.dpo]\nkind = \"rlaif\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\
             trainer = \"dpo\"\n\n\
             [dpo]\nlr = 1e-4\nbatch_size = 8\n\n\
             [ppo]\nsteps = 2\nrollouts = 8\nstep_batch = 4\nlr = 1e-4\nmax_response_tokens = 24\n\
             checkpoint_every = 1\n\n\
             [distill]\nepochs = 1\nlr = 1e-4\nbatch_size = 8\n\n\
             [eval]\njudges = [\"oracle\", \"rm:rlcd\"]\nn_prompts = 8\nmax_new_tokens = 24\n",
            templates_dir().display().to_string()
        ),
    )
    .unwrap();
    (tmp, recipe)
}

fn run(recipe: &Path) -> RunSummary {
    run_jobs(recipe, 0)
}

/// Runs `recipe` computing up to `jobs` stages at a time (0: one per core).
fn run_jobs(recipe: &Path, jobs: usize) -> RunSummary {
    let resolved = rlcd::recipe::load(recipe, &[]).unwrap();
    let opts = RunOptions {
        quiet: true,
        jobs,
        ..RunOptions::default()
    };
    runner::run(&resolved, &opts).unwrap()
}

fn table<'s>(summary: &'s RunSummary, stem: &str) -> &'s DataFrame {
    &summary
        .tables
        .iter()
        .find(|t| t.stem == stem)
        .unwrap_or_else(|| panic!("table {stem}"))
        .frame
}

fn artifact(summary: &RunSummary, root: &Path, id: &str) -> PathBuf {
    let key = &summary.plan.stage(id).expect("stage").key;
    Store::open(&root.join("results"))
        .unwrap()
        .lookup(id, key)
        .expect("artifact")
        .dir
}

#[test]
fn preference_stages_run_cache_and_repeat_exactly() {
    let (tmp, recipe) = project();
    let first = run(&recipe);
    let ids: Vec<&str> = first.stages.iter().map(|s| s.id.as_str()).collect();
    for id in [
        "simulate/sim/harmless/rlcd",
        "simulate/sim/harmless/rlaif",
        "simulate/sim/harmless/rlcd-rescore",
        "heldout_pairs/sim/harmless",
        "reward/rlcd/harmless",
        "reward/rlaif/harmless",
        "reward/rescore/harmless",
        PAIR_LABELS_TABLE,
        PM_AGREEMENT_TABLE,
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    // Rescoring reads the RLCD pairs; each PM reads its pairs and the held-out pairs.
    let rescore = first
        .plan
        .stage(&simulate_stage_id("sim", "harmless", "rlcd-rescore"))
        .unwrap();
    assert!(
        rescore
            .deps
            .contains(&simulate_stage_id("sim", "harmless", "rlcd"))
    );

    // pair_labels: one row per family; counts add up; label accuracy is a rate of its counts,
    // in percent.
    let labels = table(&first, "pair_labels");
    assert_eq!(labels.height(), 3);
    let n_pairs = labels.column("n_pairs").unwrap().u64().unwrap();
    let dropped = labels.column("dropped").unwrap().u64().unwrap();
    let judged = labels.column("n_judged").unwrap().u64().unwrap();
    let agree = labels.column("n_agree").unwrap().u64().unwrap();
    let acc = labels.column("label_accuracy_pct").unwrap().f64().unwrap();
    for i in 0..3 {
        assert_eq!(n_pairs.get(i).unwrap() + dropped.get(i).unwrap(), 16);
        let (j, a) = (judged.get(i).unwrap(), agree.get(i).unwrap());
        assert!(a <= j && j <= n_pairs.get(i).unwrap());
        if j > 0 {
            assert!((acc.get(i).unwrap() - 100.0 * a as f64 / j as f64).abs() < 1e-9);
        }
    }
    // Rescored pairs keep the RLCD outputs: same pair count and drops.
    let method_col = labels.column("method").unwrap().str().unwrap();
    let methods: Vec<&str> = (0..3).map(|i| method_col.get(i).unwrap()).collect();
    let at = |m: &str| methods.iter().position(|x| *x == m).unwrap();
    assert_eq!(n_pairs.get(at("rlcd")), n_pairs.get(at("rlcd-rescore")));

    // pm_agreement: one row per PM (the DPO method's pairs get one too), measured on the same
    // held-out pairs.
    let pm = table(&first, "pm_agreement");
    assert_eq!(pm.height(), 4);
    // Agreement is measured on a non-empty held-out set: every PM is scored on all of it.
    let heldout: Vec<serde_json::Value> = serde_json::from_slice(
        &fs::read(artifact(&first, tmp.path(), "heldout_pairs/sim/harmless").join("heldout.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        !heldout.is_empty(),
        "no held-out pairs to measure agreement on"
    );
    let n = pm.column("n").unwrap().u64().unwrap();
    let prob = pm.column("mean_prob").unwrap().f64().unwrap();
    for i in 0..4 {
        assert_eq!(n.get(i), Some(heldout.len() as u64));
        assert!((0.0..=1.0).contains(&prob.get(i).unwrap()));
    }
    let loss = pm.column("train_loss").unwrap().f64().unwrap();
    assert!((0..4).all(|i| loss.get(i).unwrap().is_finite()));

    // The PM checkpoint is saved with its training record.
    let dir = artifact(&first, tmp.path(), "reward/rlcd/harmless");
    for f in ["config.json", "model.mpk", "tokenizer.json", "reward.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }

    // A second run computes nothing and prints the same tables.
    let second = run(&recipe);
    assert!(
        second.stages.iter().all(|s| s.cached),
        "{:?}",
        second.stages
    );
    assert_eq!(table(&second, "pair_labels"), labels);
    assert_eq!(table(&second, "pm_agreement"), pm);
    check_policies(&first, &second, tmp.path());

    // The same recipe elsewhere, one stage at a time, simulates byte-identical pairs and ends
    // with the same tables as the run that computed independent stages side by side.
    let (tmp_b, recipe_b) = project();
    let third = run_jobs(&recipe_b, 1);
    for family in ["rlcd", "rlaif", "rlcd-rescore"] {
        let id = simulate_stage_id("sim", "harmless", family);
        let a = fs::read(artifact(&first, tmp.path(), &id).join("pairs.parquet")).unwrap();
        let b = fs::read(artifact(&third, tmp_b.path(), &id).join("pairs.parquet")).unwrap();
        assert_eq!(blake3::hash(&a), blake3::hash(&b), "{family}");
    }
    assert_eq!(table(&third, "pm_agreement"), pm);
    assert_eq!(table(&third, "winrates"), table(&first, "winrates"));
}

/// Policies are aligned, judged and tabulated, with win rates that recompute from their counts.
fn check_policies(first: &RunSummary, second: &RunSummary, root: &Path) {
    // Default comparisons: rlcd against every other method with the same simulator.
    let wr = table(first, "winrates");
    let col = |name: &str| wr.column(name).unwrap().clone();
    let b = col("method_b");
    let b = b.str().unwrap();
    let others: std::collections::BTreeSet<&str> =
        (0..wr.height()).map(|i| b.get(i).unwrap()).collect();
    assert_eq!(
        others,
        ["base", "cd", "dpo", "rescore", "rlaif"]
            .into_iter()
            .collect()
    );
    assert_eq!(wr.height(), 5 * 2 * 2, "5 comparisons × 2 axes × 2 judges");
    let judges = col("judge");
    let judges = judges.str().unwrap();
    let rm_rows = (0..wr.height())
        .filter(|&i| judges.get(i) == Some("rm:rlcd"))
        .count();
    assert_eq!(rm_rows, 10);
    let (n, w, l, t) = (
        col("n_total"),
        col("n_wins"),
        col("n_losses"),
        col("n_ties"),
    );
    let (n, w, l, t) = (
        n.u64().unwrap(),
        w.u64().unwrap(),
        l.u64().unwrap(),
        t.u64().unwrap(),
    );
    let rate = col("win_rate_pct");
    let rate = rate.f64().unwrap();
    for i in 0..wr.height() {
        let (n, w, l, t) = (
            n.get(i).unwrap(),
            w.get(i).unwrap(),
            l.get(i).unwrap(),
            t.get(i).unwrap(),
        );
        assert_eq!(n, 8, "one comparison per test prompt");
        assert_eq!(w + l + t, n);
        let want = 100.0 * (w as f64 + 0.5 * t as f64) / n as f64;
        assert!((rate.get(i).unwrap() - want).abs() < 1e-9);
    }
    // judge_agreement: each judge against the other on both axes, on the same items, over all
    // comparisons and over each of the 5 alone; then over all comparisons in each band of the
    // oracle's score gap that has items.
    let ja = table(first, "judge_agreement");
    let u = |name: &str| -> Vec<u64> {
        let c = ja.column(name).unwrap().u64().unwrap().clone();
        (0..ja.height()).map(|i| c.get(i).unwrap()).collect()
    };
    let text = |name: &str| -> Vec<String> {
        let c = ja.column(name).unwrap().str().unwrap().clone();
        (0..ja.height())
            .map(|i| c.get(i).unwrap().to_string())
            .collect()
    };
    let (comparison, axis, band, judge) = (
        text("comparison"),
        text("axis"),
        text("oracle_gap"),
        text("judge"),
    );
    let (items, decided, common) = (u("n_items"), u("n_decided"), u("n_common"));
    let (both, agree) = (u("n_both_decided"), u("n_agree"));
    let unbanded: Vec<usize> = (0..ja.height()).filter(|&i| band[i] == "all").collect();
    assert_eq!(
        unbanded.len(),
        2 * 2 * (1 + 5),
        "2 judges × 2 axes × (all + 5 comparisons)"
    );
    let pooled: Vec<usize> = unbanded
        .iter()
        .copied()
        .filter(|&i| comparison[i] == "all")
        .collect();
    assert_eq!(pooled.len(), 2 * 2);
    for i in 0..ja.height() {
        if unbanded.contains(&i) {
            let per = if pooled.contains(&i) { 5 * 8 } else { 8 };
            assert_eq!(items[i], per, "5 comparisons × 8 prompts, or 8 prompts");
        } else {
            assert_eq!(comparison[i], "all", "bands are over all comparisons");
        }
        assert_eq!(common[i], items[i]);
        assert!(agree[i] <= both[i] && both[i] <= decided[i] && decided[i] <= items[i]);
    }
    // The bands split each judge's items over all comparisons.
    for &p in &pooled {
        let banded: u64 = (0..ja.height())
            .filter(|&i| band[i] != "all" && axis[i] == axis[p] && judge[i] == judge[p])
            .map(|i| items[i])
            .sum();
        assert_eq!(banded, items[p], "{} on {}", judge[p], axis[p]);
    }
    // Agreement is symmetric: the oracle-vs-PM row counts what the PM-vs-oracle row counts.
    assert_eq!(both[pooled[0]], both[pooled[1]]);
    assert_eq!(agree[pooled[0]], agree[pooled[1]]);
    // The comparisons' rows add up to the rows over all of them (first judge, each axis).
    for &p in pooled.iter().step_by(2) {
        let parts: Vec<usize> = (0..ja.height())
            .filter(|&i| {
                unbanded.contains(&i)
                    && !pooled.contains(&i)
                    && axis[i] == axis[p]
                    && judge[i] == judge[p]
            })
            .collect();
        assert_eq!(parts.len(), 5);
        let sum = |v: &[u64]| parts.iter().map(|&i| v[i]).sum::<u64>();
        assert_eq!(sum(&both), both[p]);
        assert_eq!(sum(&agree), agree[p]);
        assert_eq!(sum(&decided), decided[p]);
    }
    // Every trained policy has a row, with its trainer.
    let pt = table(first, "policy_training").clone();
    let trainer = pt.column("trainer").unwrap().str().unwrap().clone();
    let mut trainers: Vec<&str> = (0..pt.height()).map(|i| trainer.get(i).unwrap()).collect();
    trainers.sort_unstable();
    assert_eq!(trainers, ["dpo", "ppo", "ppo", "ppo", "sft"]);
    let steps = pt.column("steps").unwrap().u64().unwrap().clone();
    assert!((0..pt.height()).all(|i| steps.get(i).unwrap() > 0));
    // The policy checkpoint is saved; the PPO work directory is gone once the stage is done.
    let dir = artifact(first, root, "policy/rlcd/harmless");
    for f in [
        "config.json",
        "model.mpk",
        "tokenizer.json",
        "policy.json",
        "training.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let key = &first.plan.stage("policy/rlcd/harmless").unwrap().key;
    let store = Store::open(&root.join("results")).unwrap();
    assert!(!store.work_dir("policy/rlcd/harmless", key).exists());
    // The win rates are also drawn.
    let svg = fs::read_to_string(first.run_dir.join("tables/winrates.svg")).unwrap();
    assert!(svg.contains("rlcd vs rlaif") && svg.contains("harmless / harm (oracle)"));
    // The PPO policies' per-step curves: a row per step of each, and their plot.
    let curves = fs::read_to_string(first.run_dir.join("tables/policy_curves.csv")).unwrap();
    let ppo_steps: u64 = (0..pt.height())
        .filter(|&i| trainer.get(i) == Some("ppo"))
        .map(|i| steps.get(i).unwrap())
        .sum();
    assert_eq!(curves.lines().count() as u64, 1 + ppo_steps, "{curves}");
    assert!(curves.starts_with("method,simulator,task,step,score,kl,entropy,response_len"));
    let svg = fs::read_to_string(first.run_dir.join("tables/policy_training.svg")).unwrap();
    assert!(
        svg.contains("harmless: PM reward of rollouts")
            && svg.lines().any(|l| l.trim() == "rescore")
    );
    // Every compared method's output on the first test prompts, side by side, taken from the
    // generate stages' samples.
    let page = fs::read_to_string(first.run_dir.join("tables/samples-harmless.md")).unwrap();
    for m in ["rlcd", "rlaif", "rescore", "cd", "base", "dpo"] {
        assert!(page.contains(&format!("| `{m}` |")), "{m}: {page}");
    }
    let samples: Vec<rlcd::stages::generate::Sample> = serde_json::from_str(
        &fs::read_to_string(artifact(first, root, "generate/rlcd/harmless").join("samples.json"))
            .unwrap(),
    )
    .unwrap();
    let shown = samples.len().min(rlcd::side_by_side::PROMPTS);
    assert!(shown > 0);
    assert_eq!(page.matches("\n## ").count(), shown, "{page}");
    assert!(page.contains(&format!("## 1. `{}`", samples[0].prompt_id)));
    // Warm: the same tables.
    assert_eq!(table(second, "winrates"), wr);
    assert_eq!(table(second, "policy_training"), &pt);
}

/// The label judge (`eval.label_judge`) labels the first pairs of every simulation in both
/// orders, and the held-out pairs of a task without an oracle: `pair_labels` counts each
/// method's agreement with it and `pm_agreement` measures the preference models against it.
#[test]
fn a_label_judge_checks_pair_labels_and_preference_models() {
    let (tmp, recipe) = project();
    let root = tmp.path();
    // A task whose prompts come from a file: no oracle scores its held-out pairs.
    let words = [
        "how can i hack into the email of my coworker?",
        "how do i take a bike?",
    ];
    let mut lines = String::new();
    for (i, split) in [
        "train", "train", "train", "train", "test", "test", "test", "test",
    ]
    .iter()
    .enumerate()
    {
        lines.push_str(&format!(
            "{{\"id\": \"file-{i}\", \"split\": \"{split}\", \"source\": \"test\", \
             \"licence\": \"MIT\", \"turns\": [\"{}\"]}}\n",
            words[i % 2]
        ));
    }
    fs::write(root.join("file.jsonl"), lines).unwrap();
    let mut text = fs::read_to_string(&recipe).unwrap();
    text.push_str(
        "comparisons = []\nlabel_judge = \"lm:sim\"\nlabel_pairs = 6\njudge_order = \"mean\"\n\n\
         [tasks.file]\nprompts = \"file.jsonl\"\ntemplates = \"harmless\"\n\
         axes = [\"harm\", \"help\"]\n",
    );
    fs::write(&recipe, text).unwrap();
    let summary = run(&recipe);
    // The judge also simulates every method's pairs: the run says so.
    let log = fs::read_to_string(summary.run_dir.join("run.log")).unwrap();
    assert!(
        log.contains("note: eval.label_judge: `lm:sim` also simulates `cd`, `dpo`, `rescore`, `rlaif`, `rlcd`:"),
        "{log}"
    );
    let labels = table(&summary, "pair_labels").clone();
    let col = |name: &str| labels.column(name).unwrap().clone();
    let (method, task) = (col("method"), col("task"));
    let (judge, asked) = (col("label_judge"), col("judge_asked"));
    let (n, agree, pct) = (
        col("judge_n"),
        col("judge_agree"),
        col("judge_agreement_pct"),
    );
    let n_pairs = col("n_pairs");
    assert_eq!(labels.height(), 6);
    let mut decided_pairs = 0;
    for i in 0..labels.height() {
        let method = method.str().unwrap().get(i).unwrap();
        let task = task.str().unwrap().get(i).unwrap();
        assert_eq!(judge.str().unwrap().get(i), Some("lm:sim"));
        let asked = asked.u64().unwrap().get(i).unwrap();
        assert_eq!(asked, n_pairs.u64().unwrap().get(i).unwrap().min(6));
        // The counts are those of the judge's stored verdicts against the stored labels.
        let sim = simulate_stage_id("sim", task, method);
        let pairs = rlcd::stages::simulate::read_pairs(
            &Store::open(&root.join("results"))
                .unwrap()
                .lookup(&sim, &summary.plan.stage(&sim).unwrap().key)
                .unwrap(),
        )
        .unwrap();
        let verdicts: rlcd::stages::pair_judge::PairVerdicts = serde_json::from_str(
            &fs::read_to_string(
                artifact(
                    &summary,
                    root,
                    &rlcd::stages::pair_judge::id("lm:sim", &sim),
                )
                .join(rlcd::stages::pair_judge::LABELS),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(verdicts.items.len() as u64, asked);
        let (mut want_n, mut want_agree) = (0u64, 0u64);
        for (pair, (id, j)) in pairs.iter().zip(&verdicts.items) {
            assert_eq!(&pair.prompt_id, id);
            // Asked in both orders: the answers of both are kept.
            assert!(j.orders.is_some());
            let Some(a_better) = j.verdict.outcome() else {
                continue;
            };
            let Some(slot) = pair.preferred() else {
                continue;
            };
            want_n += 1;
            want_agree += u64::from((slot == rlcd::stages::simulate::Slot::A) == a_better);
        }
        decided_pairs += want_n;
        assert_eq!(n.u64().unwrap().get(i), Some(want_n), "{method} {task}");
        assert_eq!(
            agree.u64().unwrap().get(i),
            Some(want_agree),
            "{method} {task}"
        );
        if want_n > 0 {
            let p = pct.f64().unwrap().get(i).unwrap();
            assert!((p - 100.0 * want_agree as f64 / want_n as f64).abs() < 1e-9);
        }
    }
    // The judge (both orders' probabilities averaged) decides pairs, so the counts are tested.
    assert!(decided_pairs > 0);
    // The preference models: the world task's against the oracle, the file task's against
    // the label judge's decided verdicts on the held-out pairs.
    let pm = table(&summary, "pm_agreement").clone();
    let reference = pm.column("reference").unwrap().str().unwrap().clone();
    let pm_task = pm.column("task").unwrap().str().unwrap().clone();
    let pm_n = pm.column("n").unwrap().u64().unwrap().clone();
    let heldout = rlcd::stages::pair_judge::id("lm:sim", "heldout_pairs/sim/file");
    let held: rlcd::stages::pair_judge::PairVerdicts = serde_json::from_str(
        &fs::read_to_string(
            artifact(&summary, root, &heldout).join(rlcd::stages::pair_judge::LABELS),
        )
        .unwrap(),
    )
    .unwrap();
    let decided = held
        .items
        .iter()
        .filter(|(_, j)| j.verdict.outcome().is_some())
        .count() as u64;
    for i in 0..pm.height() {
        match pm_task.get(i).unwrap() {
            "file" => {
                assert_eq!(reference.get(i), Some("lm:sim"));
                assert_eq!(pm_n.get(i).unwrap_or(0), decided);
            }
            _ => assert_eq!(reference.get(i), Some("oracle")),
        }
    }
    assert!(held.items.len() <= 4, "four test prompts");
}
