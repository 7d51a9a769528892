//! The world stages end to end on `world-xs`: corpus → tokenizer → pretraining → world report,
//! cached and deterministic; bad `[world]` / `[pretrain]` settings are reported by key.

use std::fs;
use std::path::{Path, PathBuf};

use rlcd::runner::{self, RunOptions};
use rlcd::stages::judge_tuning::{self, TuningRecord};
use rlcd::stages::pretrain::id as pretrain_stage_id;
use rlcd::stages::pretrain::{PretrainRecord, read_record};
use rlcd::stages::world_report::ID as WORLD_REPORT_TABLE;
use rlcd::store::Store;

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompt-templates")
}

/// A project directory holding a world-xs recipe with small settings.
fn project(seed: u64, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("prompt-templates")).unwrap();
    let recipe = tmp.path().join("world.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"world-test\"\nseed = {seed}\ntemplates_dir = {:?}\n\n\
             [models.sim]\npreset = \"world-xs\"\n\n\
             [world]\ndocuments = 500\nprompts_train = 40\nprompts_test = 12\n\n\
             [pretrain]\nsteps = 40\nheldout_documents = 40\n\n\
             [pretrain.report]\nprompts = 6\npairs = 16\nmax_new_tokens = 16\n{extra}",
            templates_dir().display().to_string()
        ),
    )
    .unwrap();
    (tmp, recipe)
}

fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        ..RunOptions::default()
    }
}

fn artifact(root: &Path, stage: &str, key: &str) -> PathBuf {
    Store::open(&root.join("results"))
        .unwrap()
        .lookup(stage, key)
        .expect("artifact")
        .dir
}

fn run(recipe: &Path) -> (runner::RunSummary, PathBuf, PretrainRecord) {
    let resolved = rlcd::recipe::load(recipe, &[]).unwrap();
    let summary = runner::run(&resolved, &quiet()).unwrap();
    let id = pretrain_stage_id("world-xs");
    let key = summary.plan.stage(&id).unwrap().key.clone();
    let dir = artifact(recipe.parent().unwrap(), &id, &key);
    let record = read_record(&dir).unwrap();
    (summary, dir, record)
}

#[test]
fn world_xs_pretrains_reports_caches_and_repeats_exactly() {
    let (_a, recipe_a) = project(3, "");
    let (first, dir_a, rec_a) = run(&recipe_a);
    let ids: Vec<&str> = first.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "pretrain/world-xs",
            "world_eval/world-xs",
            WORLD_REPORT_TABLE
        ]
    );
    assert!(first.stages.iter().all(|s| !s.cached));

    // The record describes a real run: the loss fell and perplexity is far below uniform.
    assert_eq!(rec_a.preset, "world-xs");
    assert_eq!(rec_a.documents, 500);
    assert_eq!(rec_a.heldout_documents, 40);
    assert_eq!(rec_a.log.steps, 40);
    assert!(
        rec_a.log.losses[39] < rec_a.log.losses[0] - 1.0,
        "{:?}",
        rec_a.log.losses
    );
    assert!(
        rec_a.perplexity.is_finite() && rec_a.perplexity < rec_a.vocab as f64 / 4.0,
        "{}",
        rec_a.perplexity
    );
    for f in [
        "config.json",
        "model.mpk",
        "tokenizer.json",
        "pretrain.json",
    ] {
        assert!(dir_a.join(f).is_file(), "{f}");
    }

    // The report table: one row per task with counts that add up.
    let table = first
        .tables
        .iter()
        .find(|t| t.stem == "world_report")
        .expect("world report");
    assert_eq!(table.frame.height(), 3);
    let n = table.frame.column("n_prompts").unwrap().u64().unwrap();
    let w = table.frame.column("pos_wins").unwrap().u64().unwrap();
    let l = table.frame.column("pos_losses").unwrap().u64().unwrap();
    let t = table.frame.column("pos_ties").unwrap().u64().unwrap();
    for i in 0..3 {
        assert_eq!(n.get(i), Some(6));
        assert_eq!(w.get(i).unwrap() + l.get(i).unwrap() + t.get(i).unwrap(), 6);
    }
    assert!(table.markdown.contains("rlaif_accuracy_pct"));
    // Labels averaged over both output orders: a rate over the same pairs that recomputes from
    // its counts, in percent like the share of "A" labels.
    let col = |name: &str| table.frame.column(name).unwrap().clone();
    let (rn, both) = (col("rlaif_n"), col("rlaif2_agree"));
    let (acc, share) = (col("rlaif2_accuracy_pct"), col("rlaif_share_a_pct"));
    for i in 0..3 {
        let n = rn.u64().unwrap().get(i).unwrap();
        let k = both.u64().unwrap().get(i).unwrap();
        assert!(n > 0 && k <= n, "{k}/{n}");
        let rate = acc.f64().unwrap().get(i).unwrap();
        assert!(
            (rate - 100.0 * k as f64 / n as f64).abs() < 1e-9,
            "{rate} vs {k}/{n}"
        );
        let a = share.f64().unwrap().get(i).unwrap();
        assert!((0.0..=100.0).contains(&a), "{a}");
    }

    // A second run computes nothing.
    let (second, _, _) = run(&recipe_a);
    assert!(
        second.stages.iter().all(|s| s.cached),
        "{:?}",
        second.stages
    );

    // The same recipe elsewhere gives the same corpus and the same weights, bit for bit.
    let (_b, recipe_b) = project(3, "");
    let (_, dir_b, rec_b) = run(&recipe_b);
    assert_eq!(rec_a.corpus_blake3, rec_b.corpus_blake3);
    assert_eq!(rec_a.log.losses, rec_b.log.losses);
    assert_eq!(rec_a.weights_blake3, rec_b.weights_blake3);
    let (ma, mb) = (
        rlcd::stages::pretrain::load_world_lm::<rlcd::model::Cpu>(&dir_a, &Default::default())
            .unwrap(),
        rlcd::stages::pretrain::load_world_lm::<rlcd::model::Cpu>(&dir_b, &Default::default())
            .unwrap(),
    );
    let (ha, hb) = (
        rlcd::stages::pretrain::weights_blake3(&ma.model),
        rlcd::stages::pretrain::weights_blake3(&mb.model),
    );
    assert_eq!(
        ha, rec_a.weights_blake3,
        "the saved checkpoint holds the recorded weights"
    );
    assert_eq!(ha, hb);

    // Another seed is another world.
    let (_c, recipe_c) = project(4, "");
    let (_, _, rec_c) = run(&recipe_c);
    assert_ne!(rec_a.corpus_blake3, rec_c.corpus_blake3);
    assert_ne!(rec_a.weights_blake3, rec_c.weights_blake3);
}

#[test]
fn bad_world_settings_are_named_with_their_fix() {
    for (extra, key) in [
        ("world.descriptor_frac = 1.5", "world.descriptor_frac"),
        ("world.judgment_frac = -0.1", "world.judgment_frac"),
        ("world.documents = 0", "world.documents"),
        (
            "world.descriptors.helpful = { positive = [], negative = [\"bad\"] }",
            "world.descriptors.helpful.positive",
        ),
        ("pretrain.lr = 0.0", "pretrain.lr"),
    ] {
        let (_tmp, recipe) = project(0, "");
        let err = rlcd::recipe::load(&recipe, &[extra.to_string()])
            .and_then(|r| rlcd::recipe::validate(&r).map(|_| r))
            .expect_err(extra);
        let text = err.to_string();
        assert!(text.contains(key), "{extra}: {text}");
        assert!(
            text.contains("fix") || text.contains("use"),
            "{extra}: {text}"
        );
    }
    let (_tmp, recipe) = project(0, "");
    let err = rlcd::recipe::load(&recipe, &["world.descriptor_fraction=0.3".to_string()])
        .expect_err("unknown key");
    assert!(err.to_string().contains("descriptor_frac"), "{err}");
}

/// Runs `recipe` and reads the tuning stage of its world-xs judge and the stage's record.
fn run_tuned_judge(recipe: &Path) -> (runner::RunSummary, rlcd::plan::Stage, TuningRecord) {
    let resolved = rlcd::recipe::load(recipe, &[]).unwrap();
    let summary = runner::run(&resolved, &quiet()).unwrap();
    let id = judge_tuning::id("world-xs-judge");
    let stage = summary
        .plan
        .stage(&id)
        .expect("a judge tuning stage")
        .clone();
    let dir = artifact(recipe.parent().unwrap(), &id, &stage.key);
    let record =
        serde_json::from_slice(&fs::read(dir.join(judge_tuning::RECORD)).unwrap()).unwrap();
    (summary, stage, record)
}

#[test]
fn a_tuned_judge_learns_its_training_questions_and_is_the_model_judges_load() {
    // A world-xs judge pretrained with judge questions, then fine-tuned on 16 questions (both
    // orders) for 8 passes: enough for a small model to fit them.
    let (_tmp, recipe) = project(
        5,
        "\n[models.judge]\npreset = \"world-xs\"\n\n\
         [models.judge.judging]\nquestions_frac = 0.3\n\n\
         [models.judge.judging.tuning]\npairs = 16\nepochs = 40\nbatch_size = 8\nlr = 2e-3\n\
         heldout_pairs = 24\n",
    );
    let (summary, stage, record) = run_tuned_judge(&recipe);
    assert_eq!(stage.deps, ["pretrain/world-xs-judge"]);
    let root = recipe.parent().unwrap();
    assert_eq!((record.pairs, record.steps), (16, 80));
    assert!(record.losses.iter().all(|l| l.is_finite()));
    let first = record.losses[..2].iter().sum::<f64>() / 2.0;
    assert!(
        record.final_loss < 0.8 * first,
        "the letter loss fell from {first} to {}",
        record.final_loss
    );
    // Both measurements count every held-out question once per order.
    for m in [&record.before, &record.after] {
        assert_eq!(m.all.n, 24);
        assert_eq!(m.axes.values().map(|j| j.n).sum::<usize>(), 24);
        assert!(m.all.n_letter_a <= 48 && m.all.n_agree <= m.all.n_both_decided);
    }
    // The tuned weights are new.
    let pretrain_key = &summary.plan.stage("pretrain/world-xs-judge").unwrap().key;
    let pretrained = read_record(&artifact(root, "pretrain/world-xs-judge", pretrain_key)).unwrap();
    assert_ne!(record.weights_blake3, pretrained.weights_blake3);
}

#[test]
fn a_judge_tuned_on_sampled_responses_reads_its_responder_and_the_oracle_scores_them() {
    // The judge's extra questions show two responses world-xs samples; the oracle's scores
    // of those texts on the question's axis are the gap the targets follow.
    let (_tmp, recipe) = project(
        6,
        "\n[models.judge]\npreset = \"world-xs\"\n\n\
         [models.judge.judging]\nquestions_frac = 0.3\n\n\
         [models.judge.judging.tuning]\npairs = 8\nsampled_pairs = 8\nresponder = \"sim\"\n\
         epochs = 1\nbatch_size = 8\nheldout_pairs = 6\n\n\
         [eval]\nmax_new_tokens = 24\n",
    );
    let (summary, stage, record) = run_tuned_judge(&recipe);
    let mut deps = stage.deps.clone();
    deps.sort();
    assert_eq!(deps, ["pretrain/world-xs", "pretrain/world-xs-judge"]);
    let root = recipe.parent().unwrap();
    assert_eq!(
        (record.pairs, record.sampled_pairs, record.steps),
        (16, 8, 2)
    );
    for m in [&record.before_sampled, &record.after_sampled] {
        let m = m.as_ref().expect("measured on sampled held-out pairs");
        assert_eq!(m.all.n, 6);
    }

    // The pairs themselves, from the responder's weights.
    let config: judge_tuning::Config = serde_json::from_value(stage.config.clone()).unwrap();
    let responses = config.responses.as_ref().expect("a responder");
    assert_eq!(responses.max_new_tokens, 24);
    let sim = summary.plan.stage("pretrain/world-xs").unwrap();
    let device = Default::default();
    let lm = rlcd::stages::pretrain::load_world_lm::<burn::backend::Flex>(
        &artifact(root, "pretrain/world-xs", &sim.key),
        &device,
    )
    .unwrap();
    let world = config.world.build().unwrap();
    let family = responses.templates.templates();
    let draw_degraded = |degraded: Option<&rlcd::recipe::Degraded>, seed| {
        judge_tuning::sampled_pairs(
            &lm,
            &world,
            &family,
            rlcd::world::Split::Train,
            12,
            24,
            degraded,
            seed,
        )
        .unwrap()
    };
    let draw = |seed| draw_degraded(None, seed);
    let pairs = draw(3);
    // Degrading draws from streams of its own: with no share degraded the pairs are the same,
    // and off-topic or hot responses change the outputs, never the questions.
    let degraded = |off_topic_frac, hot_frac| rlcd::recipe::Degraded {
        off_topic_frac,
        hot_frac,
        hot_temperature: 1.5,
    };
    assert_eq!(draw_degraded(Some(&degraded(0.0, 0.0)), 3), pairs);
    for d in [degraded(1.0, 0.0), degraded(0.0, 1.0)] {
        let other = draw_degraded(Some(&d), 3);
        for (a, b) in other.iter().zip(&pairs) {
            assert_eq!(
                (&a.turns, &a.axis, a.template),
                (&b.turns, &b.axis, b.template)
            );
        }
        let same = other
            .iter()
            .zip(&pairs)
            .flat_map(|(a, b)| a.outputs.iter().zip(&b.outputs))
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 12, "{d:?}: {same} of 24 responses unchanged");
    }
    assert_eq!(pairs.len(), 12);
    assert_eq!(pairs, draw(3), "the same seed draws the same pairs");
    assert_ne!(pairs, draw(4));
    let tasks = rlcd::world::Task::ALL;
    for (i, pair) in pairs.iter().enumerate() {
        let task = tasks[i % tasks.len()];
        assert!(task.axes().contains(&pair.axis.as_str()));
        let score = |text: &str| {
            world
                .score(task, &pair.turns, text)
                .unwrap()
                .axis(&pair.axis)
                .unwrap()
        };
        let gap = score(&pair.outputs[0]) - score(&pair.outputs[1]);
        assert!(
            (pair.gap - gap).abs() < 1e-12,
            "pair {i}: {} vs {gap}",
            pair.gap
        );
    }
    let distinct: std::collections::BTreeSet<&String> =
        pairs.iter().flat_map(|p| p.outputs.iter()).collect();
    assert!(
        distinct.len() > 12,
        "{} distinct responses of 24",
        distinct.len()
    );
}
