//! Preference-pair simulation on a briefly pretrained world-xs simulator: RLCD slot balance and
//! provenance, determinism, dropping of outputs that never end, RLAIF soft labels against an
//! independent recomputation, RLCD-Rescore principles, and the Parquet round trip.

mod common;

use std::sync::OnceLock;
use std::time::Instant;

use burn::tensor::activation::softmax;
use rlcd::model::sampling::pad_batch;
use rlcd::model::tokenizer::Tokenizer;
use rlcd::model::{Cpu, GenerationRequest, Lm};
use rlcd::prompts::{Dialogue, Split, contrast_prompts};
use rlcd::recipe::SimulateConfig;
use rlcd::recipe::WorldConfig;
use rlcd::stages::simulate::{
    Method, SimulateError, Simulator, Slot, generate_options, pairs_from_frame, pairs_to_frame,
    principle_for, sample_seed,
};
use rlcd::tables::{read_parquet, render_parquet};
use rlcd::templates::{SCORE_TEMPLATE, Templates};
use rlcd::world::format::BOS;
use rlcd::world::{Task, World};

struct Fixture {
    lm: Lm<Cpu>,
    world: World,
    templates: Templates,
}

fn templates() -> Templates {
    common::templates()
}
fn world_config() -> WorldConfig {
    WorldConfig {
        documents: 600,
        prompts_train: 240,
        prompts_test: 10,
        ..WorldConfig::default()
    }
}

/// A world-xs model pretrained for a few seconds, shared by every test of this file.
fn fixture() -> &'static Fixture {
    static CELL: OnceLock<Fixture> = OnceLock::new();
    CELL.get_or_init(|| {
        let world = World::new(&world_config(), 11).expect("world");
        let templates = templates();
        let lm = common::world_xs::<Cpu>(&world, &templates, 5);
        Fixture {
            lm,
            world,
            templates,
        }
    })
}

fn prompts(f: &Fixture, task: Task) -> Vec<Dialogue> {
    f.world.prompt_set(task).expect("prompts")
}

fn cfg(n: usize, max_new_tokens: usize) -> SimulateConfig {
    SimulateConfig {
        max_new_tokens,
        n_prompts: Some(n),
        retries: 2,
        batch_size: 32,
        ..SimulateConfig::default()
    }
}

#[test]
fn rlcd_slots_are_balanced_and_positive_outputs_come_from_p_plus() {
    let f = fixture();
    let dialogues = prompts(f, Task::Harmless);
    let sim = Simulator::world(&f.lm);
    let c = cfg(220, 48);
    let t = Instant::now();
    let out = sim
        .simulate_rlcd(&f.templates, "harmless", &dialogues, &c, 17)
        .expect("simulate");
    let secs = t.elapsed().as_secs_f64();
    let n = out.pairs.len();
    eprintln!(
        "simulate_rlcd world-xs, max_new_tokens 48: {n} pairs ({} dropped, {} sequences) in {secs:.2}s = {:.1} pairs/s, {:.1} sequences/s",
        out.dropped,
        out.sequences,
        n as f64 / secs,
        out.sequences as f64 / secs
    );
    assert_eq!(out.attempted, 220);
    assert_eq!(n + out.dropped, out.attempted);
    assert_eq!(out.dropped_ids.len(), out.dropped);
    assert!(n >= 200, "only {n} of 220 prompts gave a pair");
    // Only training prompts are used, in order.
    let train: Vec<&Dialogue> = dialogues
        .iter()
        .filter(|d| d.split == Split::Train)
        .take(220)
        .collect();
    let ids: Vec<&str> = out.pairs.iter().map(|p| p.prompt_id.as_str()).collect();
    let kept: Vec<&str> = train
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| !out.dropped_ids.iter().any(|x| x == id))
        .collect();
    assert_eq!(ids, kept);

    // The slot coin: o+ in B about half the time (4.5 binomial standard deviations).
    let in_b = out
        .pairs
        .iter()
        .filter(|p| p.positive_slot == Some(Slot::B))
        .count();
    let sd = (n as f64 * 0.25).sqrt();
    assert!(
        (in_b as f64 - n as f64 / 2.0).abs() <= 4.5 * sd,
        "o+ in B {in_b} of {n}"
    );
    for p in &out.pairs {
        assert_eq!(p.method, Method::Rlcd);
        let want = if p.positive_slot == Some(Slot::B) {
            1.0
        } else {
            0.0
        };
        assert_eq!(p.soft_label, want, "hard label on o+");
        assert!(p.principle_index.is_none());
        assert!((1..=3).contains(&p.tries_a) && (1..=3).contains(&p.tries_b));
        assert!(!p.output_a.contains("\n\nHuman") && !p.output_b.contains("\n\nHuman"));
    }

    // Provenance: the affix index is the one contrast_prompts draws, and o+ is regenerated
    // exactly from p+ with its stored seed; p− with the same seeds gives other outputs.
    let owned: Vec<Dialogue> = train.iter().map(|d| (*d).clone()).collect();
    let contrast = contrast_prompts(&f.templates, "harmless", &owned, 17).expect("contrast");
    let opts = generate_options(&c, sim.format());
    let mut from_pos = Vec::new();
    let mut from_neg = Vec::new();
    let mut stored = Vec::new();
    for p in &out.pairs[..8] {
        let cp = contrast
            .iter()
            .find(|c| c.id == p.prompt_id)
            .expect("contrast prompt");
        assert_eq!(p.affix_index, Some(cp.affix_index));
        assert_eq!(p.prompt, cp.plain);
        let slot = p.positive_slot.expect("slot");
        let (seed, tries) = match slot {
            Slot::A => (p.seed_a, p.tries_a),
            Slot::B => (p.seed_b, p.tries_b),
        };
        assert_eq!(seed, sample_seed(17, &p.prompt_id, "positive", tries - 1));
        assert_eq!(
            p.len(slot),
            f.lm.encode(p.output(slot)).expect("encode").len(),
            "lengths are simulator tokens"
        );
        from_pos.push(GenerationRequest {
            prompt: format!("{BOS}{}", cp.positive),
            seed,
        });
        from_neg.push(GenerationRequest {
            prompt: format!("{BOS}{}", cp.negative),
            seed,
        });
        stored.push(p.output(slot).to_string());
    }
    let texts = |reqs: &[GenerationRequest]| -> Vec<String> {
        f.lm.generate(reqs, &opts)
            .expect("regenerate")
            .into_iter()
            .map(|g| g.text)
            .collect()
    };
    assert_eq!(texts(&from_pos), stored);
    assert_ne!(texts(&from_neg), stored);
}

#[test]
fn simulation_is_deterministic_batch_independent_and_round_trips() {
    let f = fixture();
    let dialogues = prompts(f, Task::Helpful);
    let sim = Simulator::world(&f.lm);
    let c = cfg(12, 32);
    let run = |seed: u64, batch: usize| {
        let c = SimulateConfig {
            batch_size: batch,
            ..c.clone()
        };
        sim.simulate_rlcd(&f.templates, "helpful", &dialogues, &c, seed)
            .expect("simulate")
    };
    let first = run(3, 32);
    assert!(!first.pairs.is_empty());
    let bytes = render_parquet(&pairs_to_frame(&first.pairs).expect("frame")).expect("parquet");
    let second = run(3, 5);
    let bytes2 = render_parquet(&pairs_to_frame(&second.pairs).expect("frame")).expect("parquet");
    assert!(bytes == bytes2, "same seed, other batch size: same bytes");
    let other = run(4, 32);
    let bytes3 = render_parquet(&pairs_to_frame(&other.pairs).expect("frame")).expect("parquet");
    assert!(bytes != bytes3, "another seed gives other pairs");

    // Parquet round trip, with RLAIF pairs (soft labels, principles, no slots) too.
    let rlaif = sim
        .simulate_rlaif(&f.templates, "helpful", &dialogues, &cfg(6, 32), 3)
        .expect("rlaif");
    let mut all = first.pairs.clone();
    all.extend(rlaif.pairs);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pairs.parquet");
    std::fs::write(
        &path,
        render_parquet(&pairs_to_frame(&all).expect("frame")).expect("parquet"),
    )
    .expect("write");
    let back = pairs_from_frame(&read_parquet(&path).expect("read")).expect("pairs");
    assert_eq!(back, all);
    assert_eq!(
        pairs_from_frame(&pairs_to_frame(&[]).expect("empty frame")).expect("empty"),
        vec![]
    );
}

#[test]
fn outputs_that_never_end_are_resampled_then_their_prompts_dropped() {
    let f = fixture();
    let dialogues = prompts(f, Task::Outlining);
    // The same model with a tokenizer that names no EOS token: with one new token and no
    // stop string that fits in one token, no output can end its turn.
    let tok = &f.lm.tokenizer;
    let words: Vec<String> = (3..tok.vocab_size() as u32)
        .map(|i| tok.id_to_token(i).expect("word"))
        .collect();
    let no_eos = Tokenizer::word_level(&words, &[BOS, "<|fin|>", "<|pad|>"]).expect("tokenizer");
    assert_eq!(no_eos.eos_id(), None);
    assert_eq!(
        no_eos.encode("Human :", false).ok(),
        tok.encode("Human :", false).ok()
    );
    let endless = Lm::new(f.lm.model.clone(), no_eos).expect("lm");
    for retries in [0u32, 2] {
        let mut settled = Vec::new();
        let c = SimulateConfig {
            retries,
            batch_size: 7,
            ..cfg(10, 1)
        };
        let out = {
            let sim =
                Simulator::world(&endless).with_progress(|done, total| settled.push((done, total)));
            sim.simulate_rlcd(&f.templates, "outlining", &dialogues, &c, 9)
                .expect("simulate")
        };
        assert!(out.pairs.is_empty(), "{:?}", out.pairs);
        assert_eq!(out.attempted, 10);
        assert_eq!(out.dropped, 10);
        assert_eq!(out.dropped_ids.len(), 10);
        // Every output was drawn 1 + retries times.
        assert_eq!(out.sequences, 10 * 2 * (1 + retries as usize));
        assert_eq!(settled.last(), Some(&(10, 10)));
    }
    // Kept unfinished, an output cut at the limit is kept and counted; only an empty one (a
    // lone whitespace token) is re-sampled, so nearly every prompt keeps its pair.
    let c = SimulateConfig {
        retries: 2,
        keep_unfinished: true,
        ..cfg(10, 1)
    };
    let kept = Simulator::world(&endless)
        .simulate_rlcd(&f.templates, "outlining", &dialogues, &c, 9)
        .expect("simulate");
    eprintln!(
        "kept unfinished: {} pairs, {} dropped, {} unfinished, {} sequences",
        kept.pairs.len(),
        kept.dropped,
        kept.unfinished,
        kept.sequences
    );
    assert_eq!(kept.pairs.len() + kept.dropped, 10);
    assert!(kept.pairs.len() >= 5, "{} pairs", kept.pairs.len());
    assert!(kept.unfinished >= 2 * kept.pairs.len());
    assert!(
        kept.sequences < 10 * 2 * 3,
        "cut outputs are not re-sampled"
    );
    for p in &kept.pairs {
        assert!(!p.output_a.trim().is_empty() && !p.output_b.trim().is_empty());
    }
    let sim = Simulator::world(&f.lm);
    // With room to finish, re-samples rescue some outputs: every pair's tries are within the
    // limit and the seeds follow the draw that succeeded.
    let c = SimulateConfig {
        retries: 3,
        ..cfg(40, 12)
    };
    let out = sim
        .simulate_rlcd(&f.templates, "harmless", &prompts(f, Task::Harmless), &c, 2)
        .expect("simulate");
    eprintln!(
        "max_new_tokens 12: {} pairs, {} dropped, {} sequences",
        out.pairs.len(),
        out.dropped,
        out.sequences
    );
    assert!(out.sequences > 2 * 40, "some outputs were re-sampled");
    for p in &out.pairs {
        assert!(p.tries_a <= 4 && p.tries_b <= 4);
        let (pos, neg) = match p.positive_slot {
            Some(Slot::A) => ((p.seed_a, p.tries_a), (p.seed_b, p.tries_b)),
            _ => ((p.seed_b, p.tries_b), (p.seed_a, p.tries_a)),
        };
        assert_eq!(pos.0, sample_seed(2, &p.prompt_id, "positive", pos.1 - 1));
        assert_eq!(neg.0, sample_seed(2, &p.prompt_id, "negative", neg.1 - 1));
    }
}

#[test]
fn rlaif_soft_labels_are_the_softmax_of_the_a_b_logits() {
    let f = fixture();
    let dialogues = prompts(f, Task::Harmless);
    let sim = Simulator::world(&f.lm);
    let out = sim
        .simulate_rlaif(&f.templates, "harmless", &dialogues, &cfg(10, 32), 21)
        .expect("rlaif");
    assert!(out.pairs.len() >= 5, "{} pairs", out.pairs.len());
    let principles = f.templates.principles("harmless").expect("principles");
    for p in &out.pairs {
        assert_eq!(p.method, Method::Rlaif);
        assert!((0.0..=1.0).contains(&p.soft_label), "{}", p.soft_label);
        assert_eq!(p.affix_index, None);
        assert_eq!(p.positive_slot, None);
        assert_eq!(
            p.principle_index,
            Some(principle_for(21, &p.prompt_id, principles.len()))
        );
    }
    let distinct: std::collections::BTreeSet<u64> =
        out.pairs.iter().map(|p| p.soft_label.to_bits()).collect();
    assert!(distinct.len() > 1, "labels depend on the pair");

    // Recompute one label by hand: the scoring prompt, one forward pass, softmax over A and B.
    let p = &out.pairs[1];
    let text = f
        .templates
        .render(
            SCORE_TEMPLATE,
            minijinja::context! {
                turns => p.turns,
                principle => principles[p.principle_index.expect("principle")],
                output_a => p.output_a,
                output_b => p.output_b,
            },
        )
        .expect("render");
    assert!(text.ends_with("The answer is: ("));
    let ids = f.lm.encode(&format!("{BOS}{text}")).expect("encode");
    let n = ids.len();
    let (tokens, mask) = pad_batch::<Cpu>(&[ids], n, true, 0, &Default::default());
    let logits = f.lm.model.forward(tokens, mask);
    let vocab = logits.dims()[2];
    let last = logits.narrow(1, n - 1, 1).reshape([1, vocab]);
    let a = f.lm.tokenizer.token_to_id("A").expect("A") as usize;
    let b = f.lm.tokenizer.token_to_id("B").expect("B") as usize;
    let row = last.into_data().to_vec::<f32>().expect("logits");
    let pair = burn::tensor::Tensor::<Cpu, 1>::from_floats([row[a], row[b]], &Default::default());
    let probs = softmax(pair, 0).into_data().to_vec::<f32>().expect("probs");
    assert!(
        (f64::from(probs[1]) - p.soft_label).abs() < 1e-4,
        "{} vs {}",
        probs[1],
        p.soft_label
    );
}

#[test]
fn rescore_labels_rlcd_pairs_under_the_principle_of_their_affix() {
    let f = fixture();
    let dialogues = prompts(f, Task::Harmless);
    let sim = Simulator::world(&f.lm);
    let rlcd = sim
        .simulate_rlcd(&f.templates, "harmless", &dialogues, &cfg(16, 32), 8)
        .expect("rlcd");
    let rescored = sim
        .rescore(&f.templates, "harmless", &rlcd.pairs, 4)
        .expect("rescore");
    assert_eq!(rescored.len(), rlcd.pairs.len());
    let affixes = f.templates.affixes("harmless").expect("affixes").len();
    let principles = f.templates.principles("harmless").expect("principles");
    assert_eq!(affixes, principles.len());
    let mut labels = Vec::new();
    for (r, p) in rescored.iter().zip(&rlcd.pairs) {
        assert_eq!(r.method, Method::RlcdRescore);
        assert_eq!(r.principle_index, p.affix_index);
        assert_eq!(
            (&r.output_a, &r.output_b, r.positive_slot, r.seed_a),
            (&p.output_a, &p.output_b, p.positive_slot, p.seed_a)
        );
        assert!((0.0..=1.0).contains(&r.soft_label));
        labels.push(r.soft_label);
    }
    // Same labels as labelling the items directly, whatever the batch size.
    let items: Vec<rlcd::stages::simulate::LabelItem<'_>> = rescored
        .iter()
        .map(|r| rlcd::stages::simulate::LabelItem {
            turns: &r.turns,
            principle: &principles[r.principle_index.expect("principle")],
            output_a: &r.output_a,
            output_b: &r.output_b,
        })
        .collect();
    let direct = sim.label(&f.templates, &items, 16).expect("label");
    for (x, y) in direct.iter().zip(&labels) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    // RLAIF pairs carry no affix and cannot be rescored.
    let rlaif = sim
        .simulate_rlaif(&f.templates, "harmless", &dialogues, &cfg(2, 32), 8)
        .expect("rlaif");
    let err = sim
        .rescore(&f.templates, "harmless", &rlaif.pairs, 4)
        .expect_err("no affix");
    assert!(matches!(err, SimulateError::BadPair { .. }), "{err}");
}

#[test]
fn unusable_inputs_are_explained() {
    let f = fixture();
    let sim = Simulator::world(&f.lm);
    let test_only: Vec<Dialogue> = prompts(f, Task::Helpful)
        .into_iter()
        .filter(|d| d.split == Split::Test)
        .collect();
    let err = sim
        .simulate_rlcd(&f.templates, "helpful", &test_only, &cfg(4, 8), 0)
        .expect_err("no training prompts");
    assert!(err.to_string().contains("none in the train split"), "{err}");
    let dialogues = prompts(f, Task::Helpful);
    let zero = SimulateConfig {
        batch_size: 0,
        ..cfg(4, 8)
    };
    let err = sim
        .simulate_rlaif(&f.templates, "helpful", &dialogues, &zero, 0)
        .expect_err("batch 0");
    assert!(
        err.to_string().starts_with("[simulate] batch_size"),
        "{err}"
    );
    let err = sim
        .simulate_rlcd(&f.templates, "no-such-family", &dialogues, &cfg(4, 8), 0)
        .expect_err("no templates");
    assert!(matches!(err, SimulateError::Template(_)), "{err}");
}
