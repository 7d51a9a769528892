//! Aligning a policy on a briefly pretrained world-xs: PPO raises the preference model's and
//! the oracle's scores on held-out prompts while staying close to the initial policy; a PPO
//! run interrupted and resumed from its checkpoint equals an uninterrupted one; DPO lowers its
//! loss and widens the chosen-vs-rejected margin; context distillation lowers the NLL of o+;
//! the LM judge's order swap is balanced and seeded, and an unreadable verdict counts ½.

mod common;

use std::sync::OnceLock;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use rlcd::eval::judge::{self, JudgeItem, Verdict};
use rlcd::eval::pm_agreement::sample_heldout_pairs;
use rlcd::eval::sampling::Sampling;
use rlcd::eval::winrate::WinCounts;
use rlcd::model::pm::{Pm, PmFormat, score_outputs};
use rlcd::model::{Cpu, Lm, Truncate};
use rlcd::prompts::{Dialogue, Split, contrast_prompts};
use rlcd::recipe::WorldConfig;
use rlcd::recipe::{DistillConfig, DpoConfig, JudgeOrder, PpoConfig, RewardConfig};
use rlcd::stages::generate::{SampleSettings, generate_samples};
use rlcd::stages::policy::dpo::{DpoPair, train_dpo};
use rlcd::stages::policy::ppo::{PpoCheckpoints, PpoLog, PpoModels, train_ppo};
use rlcd::stages::policy::sft::{encode_examples, train_sft};
use rlcd::stages::policy::{PolicyFormat, load_policy, save_policy};
use rlcd::stages::reward::{PmTraining, train_reward};
use rlcd::stages::simulate::{Pair, Slot};
use rlcd::world::{Task, World};

type Train = Autodiff<Cpu>;

const TASK: Task = Task::Harmless;

struct Fixture {
    world: World,
    lm: Lm<Train>,
    /// The PM trained on oracle-labelled pairs (scalar head on the same trunk).
    pm: Pm<Train>,
    pairs: Vec<Pair>,
    train_prompts: Vec<String>,
    test: Vec<Dialogue>,
    test_prompts: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static CELL: OnceLock<Fixture> = OnceLock::new();
    CELL.get_or_init(|| {
        let config = WorldConfig {
            documents: 600,
            prompts_train: 300,
            prompts_test: 100,
            ..WorldConfig::default()
        };
        let world = World::new(&config, 23).expect("world");
        let templates = common::templates();
        let lm = common::world_xs_steps::<Train>(&world, &templates, 4, 240);
        let set = world.prompt_set(TASK).expect("prompts");
        let (train, test): (Vec<Dialogue>, Vec<Dialogue>) =
            set.into_iter().partition(|d| d.split == Split::Train);
        let plain = |d: &[Dialogue]| -> Vec<String> {
            contrast_prompts(&templates, TASK.name(), d, 0)
                .expect("prompts")
                .into_iter()
                .map(|c| c.plain)
                .collect()
        };
        let pairs: Vec<Pair> = common::oracle_pairs(&world, &templates, TASK, &train, 2, 1)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        // The PM learns the oracle's preferences between pairs of the policy's own samples
        // (two per training prompt, oracle ties dropped), as a PM trained on human labels of
        // policy outputs would.
        let sampler = Lm::new(lm.model.valid(), lm.tokenizer.clone()).expect("lm");
        let report = Sampling::paper(48, 50);
        let on_policy: Vec<Pair> = sample_heldout_pairs(
            &sampler,
            &world,
            &templates,
            TASK,
            TASK.name(),
            &train,
            train.len(),
            &report,
            9,
        )
        .expect("pairs")
        .into_iter()
        .map(|h| {
            let mut p = pairs[0].clone();
            p.soft_label = if h.a_better() { 0.0 } else { 1.0 };
            p.positive_slot = Some(if h.a_better() { Slot::A } else { Slot::B });
            p.prompt_id = h.prompt_id;
            p.turns = h.turns;
            p.prompt = h.prompt;
            p.output_a = h.output_a;
            p.output_b = h.output_b;
            p
        })
        .collect();
        eprintln!("{} on-policy oracle pairs", on_policy.len());
        <Train as Backend>::seed(&Default::default(), 1);
        let pm = Pm::from_lm(lm.clone(), PmFormat::world(192)).expect("pm");
        let cfg = RewardConfig {
            epochs: 2,
            lr: 2e-3,
            warmup_frac: 0.05,
            batch_size: 16,
            max_len: 192,
            holdout_frac: 0.0,
            ..RewardConfig::default()
        };
        let (pm, _) =
            train_reward(pm, &on_policy, &PmTraining::from(&cfg), 7, &mut |_, _| {}).expect("PM");
        Fixture {
            train_prompts: plain(&train),
            test_prompts: plain(&test),
            world,
            lm,
            pm,
            pairs,
            test,
        }
    })
}

fn ppo_cfg(steps: usize, rollouts: usize) -> PpoConfig {
    PpoConfig {
        steps,
        rollouts,
        step_batch: rollouts / 2,
        epochs: 2,
        lr: 3e-4,
        kl_coef: 0.05,
        max_response_tokens: 48,
        checkpoint_every: 0,
        ..PpoConfig::default()
    }
}

/// PPO from the fixture's initial policy and PM.
fn run_ppo(f: &Fixture, cfg: &PpoConfig, seed: u64, ckpt: &PpoCheckpoints) -> (Lm<Train>, PpoLog) {
    let reference = f.lm.model.valid();
    let pm = f.pm.valid();
    let models = PpoModels {
        policy: f.lm.clone(),
        value: f.pm.model.clone(),
        reference: &reference,
        pm: &pm,
    };
    let (policy, _, log) = train_ppo(
        models,
        &PolicyFormat::world(),
        &f.train_prompts,
        cfg,
        seed,
        ckpt,
        &mut |_| {},
    )
    .expect("ppo");
    (policy, log)
}

/// Mean PM score and mean oracle score of one sample per held-out prompt.
fn evaluate(f: &Fixture, lm: &Lm<Cpu>) -> (f64, f64, f64) {
    let settings = SampleSettings {
        temperature: 1.0,
        max_new_tokens: 48,
        batch_size: 50,
    };
    let samples = generate_samples(
        lm,
        &PolicyFormat::world(),
        &f.test,
        &f.test_prompts,
        &settings,
        Truncate::Error,
        11,
        &mut |_| {},
    )
    .expect("samples");
    let items: Vec<(&str, &str)> = samples
        .iter()
        .map(|s| (s.prompt.as_str(), s.output.as_str()))
        .collect();
    let pm = f.pm.valid();
    let scores = score_outputs(&pm, &items, 50).expect("scores");
    let n = samples.len() as f64;
    let oracle: f64 = samples
        .iter()
        .map(|s| f.world.main_axis_score(TASK, &s.turns, &s.output))
        .sum::<f64>()
        / n;
    let len = samples.iter().map(|s| s.len as f64).sum::<f64>() / n;
    (scores.iter().sum::<f64>() / n, oracle, len)
}

#[test]
fn ppo_raises_pm_and_oracle_scores_on_held_out_prompts_within_a_kl_bound() {
    let f = fixture();
    let reference = f.lm.model.valid();
    let before = evaluate(
        f,
        &Lm::new(reference.clone(), f.lm.tokenizer.clone()).unwrap(),
    );
    let cfg = ppo_cfg(12, 32);
    let (policy, log) = run_ppo(f, &cfg, 3, &PpoCheckpoints::default());
    let trained = Lm::new(policy.model.valid(), policy.tokenizer.clone()).unwrap();
    let after = evaluate(f, &trained);
    for s in &log.steps {
        eprintln!(
            "step {:2}: score {:+.3} kl {:.3} entropy {:.3} len {:.1} clip {:.3} vf {:.4} unfinished {}",
            s.step,
            s.score,
            s.kl,
            s.entropy,
            s.response_len,
            s.clip_frac,
            s.value_loss,
            s.unfinished
        );
    }
    eprintln!(
        "held-out: PM score {:.3} → {:.3}, oracle {:.3} → {:.3}, length {:.1} → {:.1}",
        before.0, after.0, before.1, after.1, before.2, after.2
    );
    assert_eq!(log.steps.len(), cfg.steps);
    assert!(after.0 > before.0 + 0.2, "PM score {before:?} → {after:?}");
    assert!(after.1 > before.1, "oracle score {before:?} → {after:?}");
    let last = log.steps.last().expect("steps");
    assert!(last.kl < 15.0, "KL to the initial policy {}", last.kl);
    assert!(
        log.steps
            .iter()
            .all(|s| s.clip_frac <= 1.0 && s.value_loss.is_finite())
    );

    // The saved policy loads back and samples exactly as before.
    let dir = tempfile::tempdir().expect("tempdir");
    save_policy(&trained, &PolicyFormat::world(), dir.path()).expect("save");
    let (loaded, format) = load_policy::<Cpu>(dir.path(), &Default::default()).expect("load");
    assert_eq!(format, PolicyFormat::world());
    assert_eq!(evaluate(f, &loaded), after);
}

#[test]
fn a_kl_budget_stops_ppo_before_training_on_rollouts_beyond_it() {
    let f = fixture();
    let run = |cfg: &PpoConfig| run_ppo(f, cfg, 9, &PpoCheckpoints::default());
    let free = ppo_cfg(6, 8);
    let (_, free_log) = run(&free);
    assert!(free_log.kl_stop.is_none());
    // A budget between the KL of the second step's rollouts and the largest one reached.
    let kls: Vec<f64> = free_log.steps.iter().map(|s| s.kl).collect();
    let top = kls.iter().copied().fold(0.0, f64::max);
    assert!(top > kls[1], "KL grows during the run: {kls:?}");
    let budget = (kls[1] + top) / 2.0;
    let stop = kls
        .iter()
        .position(|&k| k > budget)
        .expect("a step over the budget");
    let (capped, capped_log) = run(&PpoConfig {
        max_kl: Some(budget),
        ..free.clone()
    });
    let ks = capped_log.kl_stop.expect("the budget stops the run");
    assert_eq!(ks.step, stop);
    assert!((ks.kl - kls[stop]).abs() < 1e-9 && ks.kl > budget);
    assert_eq!(
        capped_log.steps.len(),
        stop,
        "steps before the stop are trained"
    );
    assert!(capped_log.steps.iter().all(|s| s.kl <= budget));
    // The kept policy is the one that sampled the stopping step: a plain run of that many steps.
    let (short, _) = run(&ppo_cfg(stop, 8));
    let w = |lm: &Lm<Train>| rlcd::stages::pretrain::weights_blake3(&lm.model.valid());
    assert_eq!(w(&capped), w(&short));
}

#[test]
fn ppo_resumed_from_a_checkpoint_equals_an_uninterrupted_run() {
    let f = fixture();
    let cfg = PpoConfig {
        checkpoint_every: 1,
        ..ppo_cfg(4, 8)
    };
    let run = |ckpt: &PpoCheckpoints| run_ppo(f, &cfg, 5, ckpt);
    let (whole, whole_log) = run(&PpoCheckpoints::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let first = PpoCheckpoints {
        dir: Some(dir.path().to_path_buf()),
        every: 1,
        stop_after: Some(2),
    };
    let (_, half) = run(&first);
    assert_eq!(
        half.steps.len(),
        2,
        "the interrupted run stops after 2 steps"
    );
    // A fresh process: the initial models are passed again and replaced by the checkpoint.
    let rest = PpoCheckpoints {
        stop_after: None,
        ..first
    };
    let (resumed, resumed_log) = run(&rest);
    assert_eq!(resumed_log.steps.len(), 4);
    for (a, b) in whole_log.steps.iter().zip(&resumed_log.steps) {
        for (x, y) in [
            (a.loss, b.loss),
            (a.policy_loss, b.policy_loss),
            (a.value_loss, b.value_loss),
            (a.score, b.score),
            (a.kl, b.kl),
        ] {
            assert!((x - y).abs() <= 1e-5, "step {}: {x} vs {y}", a.step);
        }
    }
    let w = |lm: &Lm<Train>| rlcd::stages::pretrain::weights_blake3(&lm.model.valid());
    assert_eq!(w(&whole), w(&resumed), "final weights");
}

#[test]
fn dpo_lowers_its_loss_and_widens_the_margin_with_hard_and_soft_labels() {
    let f = fixture();
    let format = PolicyFormat::world();
    let reference = f.lm.model.valid();
    let mut pairs: Vec<DpoPair> = f.pairs[..160]
        .iter()
        .map(|p| {
            let (query, a) = format.encode(&f.lm, &p.prompt, &p.output_a).expect("a");
            let (_, b) = format.encode(&f.lm, &p.prompt, &p.output_b).expect("b");
            DpoPair {
                query,
                a,
                b,
                p_b: p.soft_label,
            }
        })
        .collect();
    // Soft labels: a quarter of the pairs say 0.8 / 0.2 instead of 1 / 0.
    for p in pairs.iter_mut().step_by(4) {
        p.p_b = if p.p_b > 0.5 { 0.8 } else { 0.2 };
    }
    let cfg = DpoConfig {
        beta: 0.1,
        epochs: 2,
        lr: 1e-3,
        batch_size: 16,
        lora: None,
    };
    let mut steps = 0;
    let (_, log) = train_dpo(f.lm.clone(), &reference, &pairs, &cfg, 2, &mut |_, _| {
        steps += 1
    })
    .expect("dpo");
    eprintln!("DPO: {:?} → {:?}", log.before, log.after);
    assert_eq!(steps, log.steps);
    assert!(
        (log.before.loss - std::f64::consts::LN_2).abs() < 1e-3,
        "{log:?}"
    );
    assert!(log.before.margin.abs() < 1e-3);
    assert!(log.after.loss < log.before.loss - 0.05, "{log:?}");
    assert!(log.after.margin > 0.5, "{log:?}");
    assert!(log.after.accuracy > 0.7, "{log:?}");
    let bad = DpoConfig {
        beta: 0.0,
        ..cfg.clone()
    };
    let err =
        train_dpo(f.lm.clone(), &reference, &pairs, &bad, 2, &mut |_, _| {}).expect_err("beta 0");
    assert!(err.to_string().contains("[dpo] beta"), "{err}");
}

#[test]
fn context_distillation_lowers_the_nll_of_the_preferred_outputs() {
    let f = fixture();
    let format = PolicyFormat::world();
    let examples: Vec<(String, String)> = f.pairs[..120]
        .iter()
        .map(|p| {
            let slot = p.preferred().expect("hard label");
            (p.prompt.clone(), p.output(slot).to_string())
        })
        .collect();
    let encoded = encode_examples(&f.lm, &format, &examples, 256).expect("encode");
    assert_eq!(encoded.len(), examples.len());
    let eos = f.lm.encode(&format.end_of_turn).expect("eos");
    assert!(
        encoded.iter().all(|(_, r)| r.ends_with(&eos)),
        "responses end their turn"
    );
    let cfg = DistillConfig {
        epochs: 2,
        lr: 1e-3,
        batch_size: 16,
        lora: None,
    };
    let (_, log) = train_sft(f.lm.clone(), &encoded, &cfg, 1, &mut |_, _| {}).expect("sft");
    eprintln!("SFT: NLL {:.4} → {:.4}", log.nll_before, log.nll_after);
    assert_eq!(log.steps, 2 * encoded.len().div_ceil(16));
    assert!(log.nll_after < log.nll_before - 0.05, "{log:?}");
}

#[test]
fn the_lm_judge_swaps_order_by_a_balanced_seeded_coin_and_unreadable_answers_count_half() {
    let ids: Vec<String> = (0..4000).map(|i| format!("test-{i}")).collect();
    let swapped = |seed| ids.iter().filter(|id| judge::swapped(seed, id)).count();
    let n = swapped(7);
    assert!((1850..=2150).contains(&n), "{n} of 4000 swapped");
    assert_eq!(n, swapped(7), "deterministic");
    let differ = ids
        .iter()
        .filter(|id| judge::swapped(7, id) != judge::swapped(8, id))
        .count();
    assert!(differ > 1500, "another seed, another coin ({differ})");
    // Unreadable answers (non-finite or equal logits) are ties: half a win each.
    assert_eq!(judge::verdict_from_logits(f64::NAN, 2.0), Verdict::Tie);
    assert_eq!(judge::verdict_from_logits(1.5, 1.5), Verdict::Tie);
    assert_eq!(judge::verdict_from_logits(2.0, 1.0), Verdict::A);
    let mut c = WinCounts::default();
    for v in [Verdict::A, Verdict::Tie, Verdict::B, Verdict::Tie] {
        c.record(v.outcome());
    }
    assert_eq!(c.win_rate().unwrap(), 50.0);
}

#[test]
fn the_lm_judge_reads_answers_in_the_unswapped_order() {
    let f = fixture();
    let lm = Lm::new(f.lm.model.valid(), f.lm.tokenizer.clone()).unwrap();
    let templates = common::templates();
    let d = &f.test[0];
    let p = &f.pairs[0];
    let items: Vec<JudgeItem<'_>> = (0..40)
        .map(|i| JudgeItem {
            prompt_id: Box::leak(format!("x{i}").into_boxed_str()),
            turns: &d.turns,
            prompt: &p.prompt,
            output_a: &p.output_a,
            output_b: &p.output_b,
        })
        .collect();
    let ask = |items: &[JudgeItem<'_>], order, batch_size| {
        judge::LmJudge {
            lm: &lm,
            format: &rlcd::model::PolicyFormat::world(),
            templates: &templates,
            order,
            seed: 3,
            batch_size,
            truncate: Truncate::Error,
        }
        .verdicts("judge/harm.j2", items)
        .expect("verdicts")
    };
    let v = ask(&items, JudgeOrder::Coin, 16);
    // Items whose coin falls the same way see the same prompt and get the same verdict.
    for (i, it) in items.iter().enumerate() {
        for (j, jt) in items.iter().enumerate() {
            if judge::swapped(3, it.prompt_id) == judge::swapped(3, jt.prompt_id) {
                assert_eq!(v[i], v[j]);
            }
        }
    }
    assert_eq!(
        v,
        ask(&items, JudgeOrder::Coin, 7),
        "batching does not change verdicts"
    );
    // Asked in both orders, a verdict stands only where both answers agree; so exchanging the
    // two outputs exchanges every verdict, whatever the judge's letter bias.
    let both = |items: &[JudgeItem<'_>]| ask(items, JudgeOrder::Both, 16);
    let exchanged: Vec<JudgeItem<'_>> = items
        .iter()
        .map(|it| JudgeItem {
            output_a: it.output_b,
            output_b: it.output_a,
            ..*it
        })
        .collect();
    let (v2, v3) = (both(&items), both(&exchanged));
    assert_eq!(v2.iter().map(|v| v.swapped()).collect::<Vec<_>>(), v3);
    // Each both-order verdict is the coin verdict of its order where the two orders agree.
    let coin_a = items
        .iter()
        .position(|it| !judge::swapped(3, it.prompt_id))
        .expect("unswapped");
    let coin_b = items
        .iter()
        .position(|it| judge::swapped(3, it.prompt_id))
        .expect("swapped");
    let want = Verdict::agreed(v[coin_a], v[coin_b]);
    assert!(v2.iter().all(|&x| x == want), "{v2:?} vs {want:?}");
}

#[test]
fn verdicts_in_both_orders_agree_or_tie() {
    assert_eq!(Verdict::agreed(Verdict::A, Verdict::A), Verdict::A);
    assert_eq!(Verdict::agreed(Verdict::B, Verdict::B), Verdict::B);
    assert_eq!(Verdict::agreed(Verdict::A, Verdict::B), Verdict::Tie);
    assert_eq!(Verdict::agreed(Verdict::Tie, Verdict::A), Verdict::Tie);
}

#[test]
fn held_out_pairs_follow_the_sampling_temperature() {
    let f = fixture();
    let templates = common::templates();
    let sampler = Lm::new(f.lm.model.valid(), f.lm.tokenizer.clone()).expect("lm");
    let pairs = |temperature: f64| {
        let sampling = Sampling {
            temperature,
            ..Sampling::paper(48, 50)
        };
        sample_heldout_pairs(
            &sampler,
            &f.world,
            &templates,
            TASK,
            TASK.name(),
            &f.test,
            f.test.len(),
            &sampling,
            11,
        )
        .expect("pairs")
    };
    // Greedy decoding gives both samples of a prompt the same text, so the oracle ties every
    // pair and none is kept; at temperature 1 the two samples differ.
    assert!(pairs(0.0).is_empty());
    assert!(!pairs(1.0).is_empty());
}
