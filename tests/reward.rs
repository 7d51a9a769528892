//! The preference model: the Bradley–Terry loss on hard and soft labels, a PM on a briefly
//! pretrained world-xs trunk learning oracle preferences (and not learning from random
//! labels), and save → load.

mod common;

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand::Rng;
use rlcd::model::pm::{Pm, PmFormat, load_pm, save_pm, score_texts};
use rlcd::model::{Cpu, Lm};
use rlcd::prompts::{Dialogue, Split};
use rlcd::recipe::RewardConfig;
use rlcd::recipe::WorldConfig;
use rlcd::stages::reward::{
    PmTraining, RewardError, agreement, bt_loss, bt_loss_value, train_reward,
};
use rlcd::stages::simulate::Pair;
use rlcd::world::{Task, World};

type Train = Autodiff<Cpu>;

const TASK: Task = Task::Harmless;

struct Fixture {
    lm: Lm<Train>,
    train: Vec<Pair>,
    test: Vec<Pair>,
    /// Oracle verdict per pair: whether B is better.
    truth: std::collections::HashMap<(String, String, String), bool>,
}

fn key(p: &Pair) -> (String, String, String) {
    (p.prompt_id.clone(), p.output_a.clone(), p.output_b.clone())
}

fn fixture() -> &'static Fixture {
    static CELL: OnceLock<Fixture> = OnceLock::new();
    CELL.get_or_init(|| {
        let config = WorldConfig {
            documents: 600,
            prompts_train: 300,
            prompts_test: 150,
            ..WorldConfig::default()
        };
        let world = World::new(&config, 23).expect("world");
        let templates = common::templates();
        let lm = common::world_xs::<Train>(&world, &templates, 4);
        let set = world.prompt_set(TASK).expect("prompts");
        let (train_d, test_d): (Vec<Dialogue>, Vec<Dialogue>) =
            set.into_iter().partition(|d| d.split == Split::Train);
        let train = common::oracle_pairs(&world, &templates, TASK, &train_d, 2, 1);
        let test = common::oracle_pairs(&world, &templates, TASK, &test_d, 1, 2);
        let truth = train
            .iter()
            .chain(&test)
            .map(|(p, b)| (key(p), *b))
            .collect();
        Fixture {
            lm,
            train: train.into_iter().map(|(p, _)| p).collect(),
            test: test.into_iter().map(|(p, _)| p).collect(),
            truth,
        }
    })
}

fn reward_cfg() -> RewardConfig {
    RewardConfig {
        epochs: 2,
        lr: 2e-3,
        warmup_frac: 0.05,
        batch_size: 16,
        max_len: 192,
        holdout_frac: 0.15,
        ..RewardConfig::default()
    }
}

/// The backend's random generator is one per process and the test harness runs tests on
/// parallel threads, so a test that seeds it (and trains from what it draws) holds this lock
/// for its whole body; otherwise another test's draws interleave with its own.
fn backend_rng() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn new_pm(f: &Fixture, init_seed: u64) -> Pm<Train> {
    <Train as Backend>::seed(&Default::default(), init_seed);
    Pm::from_lm(f.lm.clone(), PmFormat::world(192)).expect("pm")
}

#[test]
fn soft_label_loss_is_the_hard_loss_at_0_and_1_and_its_gradient_is_sigma_minus_target() {
    let device = Default::default();
    let ra = [0.3f32, -1.2, 2.0, 0.0, 5.0];
    let rb = [1.1f32, -0.7, -1.5, 0.0, -30.0];
    let hard = [1.0f32, 0.0, 1.0, 0.0, 1.0];
    let t = |v: &[f32]| Tensor::<Train, 1>::from_floats(v, &device);
    let value = |x: Tensor<Train, 1>| f64::from(x.into_data().to_vec::<f32>().expect("f32")[0]);
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    // Hard labels: −ln σ(r_preferred − r_other), averaged.
    let want: f64 = (0..5)
        .map(|i| {
            let m = f64::from(rb[i] - ra[i]) * if hard[i] == 1.0 { 1.0 } else { -1.0 };
            (1.0 + (-m).exp()).ln()
        })
        .sum::<f64>()
        / 5.0;
    let got = value(bt_loss(t(&ra), t(&rb), t(&hard)));
    // The −30 margin: −ln σ(−35) ≈ 35, finite and exact enough in f32.
    assert!((got - want).abs() < 1e-4 * want.max(1.0), "{got} vs {want}");
    let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    assert!((bt_loss_value(&f64s(&ra), &f64s(&rb), &f64s(&hard)) - want).abs() < 1e-9);

    // Soft labels of 0.5 give a different loss from either hard labelling.
    let half = [0.5f32; 5];
    let soft = value(bt_loss(t(&ra), t(&rb), t(&half)));
    let flipped: Vec<f32> = hard.iter().map(|h| 1.0 - h).collect();
    let other = value(bt_loss(t(&ra), t(&rb), t(&flipped)));
    assert!((soft - got).abs() > 0.1 && (soft - other).abs() > 0.1);
    assert!(
        (soft - (got + other) / 2.0).abs() < 1e-4,
        "linear in the target"
    );

    // d loss / d r_b = (σ(r_b − r_a) − target) / n.
    let rb_t = t(&rb).require_grad();
    let loss = bt_loss(t(&ra), rb_t.clone(), t(&half));
    let grads = loss.backward();
    let g = rb_t
        .grad(&grads)
        .expect("gradient")
        .into_data()
        .to_vec::<f32>()
        .expect("f32");
    for i in 0..5 {
        let want = (sig(f64::from(rb[i] - ra[i])) - 0.5) / 5.0;
        assert!(
            (f64::from(g[i]) - want).abs() < 1e-6,
            "{i}: {} vs {want}",
            g[i]
        );
    }
}

fn truth(f: &Fixture) -> impl Fn(&Pair) -> Option<bool> + '_ {
    |p| f.truth.get(&key(p)).copied()
}

#[test]
fn pm_learns_oracle_preferences_and_saves_and_loads_exactly() {
    let _rng = backend_rng();
    let f = fixture();
    eprintln!(
        "{} training pairs, {} test pairs",
        f.train.len(),
        f.test.len()
    );
    let cfg = reward_cfg();
    let before = agreement(&new_pm(f, 1).valid(), &f.test, truth(f), 32).expect("agreement");
    let t = Instant::now();
    let mut seen = 0;
    let (pm, log) = train_reward(
        new_pm(f, 1),
        &f.train,
        &PmTraining::from(&cfg),
        7,
        &mut |_, _| seen += 1,
    )
    .expect("training");
    let secs = t.elapsed().as_secs_f64();
    let pm = pm.valid();
    let after = agreement(&pm, &f.test, truth(f), 32).expect("agreement");
    let held = log.heldout.clone().expect("held-out pairs");
    eprintln!(
        "PM: {} steps in {secs:.1}s; loss {:.3} → {:.3}; held-out {}/{} margin {:.2}; test agreement {:.3} → {:.3} (mean prob {:.3})",
        log.steps,
        log.losses[0],
        log.final_loss,
        held.rate.successes,
        held.rate.n,
        held.mean_margin,
        before.rate.rate().unwrap_or(f64::NAN),
        after.rate.rate().unwrap_or(f64::NAN),
        after.mean_prob
    );
    assert_eq!(seen, log.steps);
    assert_eq!(log.train_pairs + log.heldout_pairs, f.train.len());
    assert_eq!(
        log.steps,
        2 * log.train_pairs.div_ceil(cfg.batch_size),
        "epochs × batches"
    );
    assert_eq!(log.truncated, 0);
    assert!(log.final_loss < 0.45, "loss {}", log.final_loss);
    let acc = |r: rlcd::eval::winrate::Rate| r.rate().expect("rate");
    assert!(acc(held.rate) >= 0.8, "held-out {:?}", held.rate);
    assert!(held.mean_margin > 0.5, "margin {}", held.mean_margin);
    assert!(acc(after.rate) >= 0.8, "test agreement {:?}", after.rate);
    assert!(after.mean_prob > 0.7, "mean prob {}", after.mean_prob);
    assert!(acc(before.rate) < 0.75, "untrained {:?}", before.rate);

    // Save → load: the same scores, bit for bit.
    let dir = tempfile::tempdir().expect("tempdir");
    save_pm(&pm, dir.path()).expect("save");
    let loaded = load_pm::<Cpu>(dir.path(), &Default::default()).expect("load");
    assert_eq!(loaded.format, pm.format);
    let texts: Vec<String> = f.test[..10]
        .iter()
        .flat_map(|p| {
            [
                pm.format
                    .text(&pm.tokenizer, &p.prompt, &p.output_a)
                    .expect("text"),
                pm.format
                    .text(&pm.tokenizer, &p.prompt, &p.output_b)
                    .expect("text"),
            ]
        })
        .collect();
    let a = score_texts(&pm, &texts, 8).expect("scores");
    let b = score_texts(&loaded, &texts, 8).expect("scores");
    assert_eq!(a, b);
    assert!(a.iter().any(|&x| x != a[0]), "scores depend on the text");
    // Batch composition does not change a score beyond float noise.
    let single = score_texts(&pm, &texts[..1], 1).expect("score");
    assert!((single[0] - a[0]).abs() < 1e-4);
    let err = load_pm::<Cpu>(&dir.path().join("missing"), &Default::default())
        .expect_err("no checkpoint");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn pm_trained_on_random_labels_stays_near_chance() {
    let _rng = backend_rng();
    let f = fixture();
    let mut rng = rlcd::seed::rng(99);
    let noisy: Vec<Pair> = f
        .train
        .iter()
        .map(|p| {
            let mut q = p.clone();
            q.soft_label = if rng.random_bool(0.5) { 1.0 } else { 0.0 };
            q
        })
        .collect();
    let (pm, log) = train_reward(
        new_pm(f, 1),
        &noisy,
        &PmTraining::from(&reward_cfg()),
        7,
        &mut |_, _| {},
    )
    .expect("training");
    let after = agreement(&pm.valid(), &f.test, truth(f), 32).expect("agreement");
    let acc = after.rate.rate().expect("rate");
    let held = log.heldout.expect("held-out pairs");
    let own = held.rate.rate().expect("rate");
    eprintln!(
        "random labels: final loss {:.3}, held-out accuracy on its own labels {own:.3} (n {}), test agreement with the oracle {acc:.3} (n {})",
        log.final_loss, held.rate.n, after.rate.n
    );
    // Random labels cannot be predicted on held-out pairs (4 binomial sd around 1/2)…
    let sd = (0.25 / held.rate.n as f64).sqrt();
    assert!((own - 0.5).abs() <= 4.0 * sd, "own-label accuracy {own}");
    // …nor fitted: the loss stays near ln 2, where the oracle-labelled PM of the test above
    // ends below 0.45. (Its oracle agreement is printed, not asserted: the trunk's features
    // separate good from bad outputs so strongly that any head drift, random or not, ranks
    // held-out pairs far from 1/2 one way or the other.)
    assert!(log.final_loss > 0.6, "loss {}", log.final_loss);
}

#[test]
fn training_is_deterministic_and_inputs_are_checked() {
    let _rng = backend_rng();
    let f = fixture();
    let cfg = RewardConfig {
        epochs: 1,
        batch_size: 8,
        holdout_frac: 0.25,
        ..reward_cfg()
    };
    let few = &f.train[..24];
    let run = || {
        train_reward(
            new_pm(f, 3),
            few,
            &PmTraining::from(&cfg),
            5,
            &mut |_, _| {},
        )
        .expect("training")
    };
    let (pm1, log1) = run();
    let (pm2, log2) = run();
    assert_eq!(log1.losses, log2.losses);
    assert_eq!(log1.heldout, log2.heldout);
    assert_eq!(log1.heldout_pairs, 6);
    let texts = vec![
        pm1.format
            .text(&pm1.tokenizer, &few[0].prompt, &few[0].output_a)
            .expect("text"),
    ];
    assert_eq!(
        score_texts(&pm1.valid(), &texts, 1).expect("score"),
        score_texts(&pm2.valid(), &texts, 1).expect("score")
    );

    // Long inputs are left-truncated after the prefix: the output and its end survive.
    let short = Pm::from_lm(f.lm.clone(), PmFormat::world(12)).expect("pm");
    let (ids, cut) = short
        .encode(&few[0].prompt, &few[0].output_a)
        .expect("encode");
    let (full, _) = new_pm(f, 3)
        .encode(&few[0].prompt, &few[0].output_a)
        .expect("encode");
    assert!(cut && ids.len() == 12);
    assert_eq!(ids[0], full[0], "prefix kept");
    assert_eq!(ids[1..], full[full.len() - 11..], "tail kept");

    let bad = RewardConfig {
        batch_size: 0,
        ..cfg.clone()
    };
    let err = train_reward(
        new_pm(f, 3),
        few,
        &PmTraining::from(&bad),
        5,
        &mut |_, _| {},
    )
    .expect_err("batch 0");
    assert!(err.to_string().starts_with("[reward] batch_size"), "{err}");
    let err = train_reward(
        new_pm(f, 3),
        &[],
        &PmTraining::from(&cfg),
        5,
        &mut |_, _| {},
    )
    .expect_err("no pairs");
    assert!(matches!(err, RewardError::Empty { .. }), "{err}");
    let err = Pm::from_lm(f.lm.clone(), PmFormat::world(100_000)).expect_err("too long");
    assert!(err.to_string().starts_with("[reward] max_len"), "{err}");
}
