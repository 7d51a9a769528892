//! LoRA on the decoder: adapters whose `B` starts at zero leave the logits unchanged; only the
//! adapters (and a preference model's scalar head) receive gradients, so the frozen weights get
//! no optimiser state; merging the trained adapters into the weights computes what the adapted
//! model computed and changes only the targeted projections; an adapted model saved mid-run
//! loads back into its template (the PPO resume path).

mod common;

use std::collections::BTreeSet;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rlcd::model::load::{load_checkpoint_into, save_checkpoint};
use rlcd::model::{Cpu, Llama, LlamaConfig, LoraConfig, LoraTarget, ScalarHead};

use common::max_diff;

type Train = Autodiff<Cpu>;

fn tiny<B: Backend>(seed: u64) -> Llama<B> {
    let device = Default::default();
    rlcd::model::seeded_init::<B, _>(&device, seed, || {
        LlamaConfig::tiny().init::<B>(&device).expect("tiny")
    })
}

fn batch<B: Backend>() -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let device = Default::default();
    let ids: Vec<i64> = (0..2 * 12).map(|i| (i * 7 + 3) % 96).collect();
    let tokens = Tensor::from_data(TensorData::new(ids, [2, 12]), &device);
    let mut mask = vec![true; 24];
    mask[12..15].fill(false); // left padding in the second row
    let mask = Tensor::from_data(TensorData::new(mask, [2, 12]), &device);
    (tokens, mask)
}

fn logits<B: Backend>(model: &Llama<B>) -> Vec<f32> {
    let (tokens, mask) = batch::<B>();
    model
        .forward(tokens, mask)
        .into_data()
        .to_vec::<f32>()
        .expect("f32")
}

fn all_targets() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: LoraTarget::ALL.to_vec(),
    }
}

/// The ids of every float parameter of a module.
struct Ids(BTreeSet<ParamId>);

impl<B: Backend> ModuleVisitor<B> for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.insert(param.id);
    }
}

fn ids<B: Backend, M: Module<B>>(m: &M) -> BTreeSet<ParamId> {
    let mut v = Ids(BTreeSet::new());
    m.visit(&mut v);
    v.0
}

/// The ids of the adapters' `A` and `B` of a model.
fn adapter_ids<B: Backend>(m: &Llama<B>) -> BTreeSet<ParamId> {
    let mut out = BTreeSet::new();
    for l in &m.layers {
        if let Some(a) = &l.attn.lora {
            out.extend(ids(a));
        }
        if let Some(a) = &l.mlp.lora {
            out.extend(ids(a));
        }
    }
    out
}

fn nll(model: &Llama<Train>) -> Tensor<Train, 1> {
    let (tokens, mask) = batch::<Train>();
    let logp = burn::tensor::activation::log_softmax(model.forward(tokens.clone(), mask), 2);
    let target = tokens.unsqueeze_dim::<3>(2);
    -logp.gather(2, target).mean()
}

/// A few AdamW steps on the adapted model's next-token NLL of the fixed batch.
fn train(mut model: Llama<Train>, steps: usize) -> Llama<Train> {
    let mut optim = AdamWConfig::new().init::<Train, Llama<Train>>();
    for _ in 0..steps {
        let grads = GradientsParams::from_grads(nll(&model).backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    model
}

#[test]
fn zero_initialised_adapters_leave_the_logits_unchanged() {
    let base = tiny::<Cpu>(3);
    let adapted = base.clone().with_lora(&all_targets(), 11);
    assert!(adapted.has_lora() && !base.has_lora());
    assert_eq!(adapter_ids(&adapted).len(), 2 * 7 * 2);
    assert_eq!(max_diff(&logits(&base), &logits(&adapted)), 0.0);
    // `A` is drawn from the seed: equal seeds, equal adapters; another seed, others.
    let a = |m: &Llama<Cpu>| {
        let l = m.layers[1].attn.lora.as_ref().expect("adapters");
        l.wq.as_ref()
            .expect("q")
            .a
            .val()
            .into_data()
            .to_vec::<f32>()
            .expect("f32")
    };
    assert_eq!(a(&adapted), a(&base.clone().with_lora(&all_targets(), 11)));
    assert_ne!(a(&adapted), a(&base.with_lora(&all_targets(), 12)));
}

#[test]
fn only_the_adapters_receive_gradients() {
    let config = LoraConfig::default(); // q_proj and v_proj
    let model = tiny::<Train>(3).with_lora(&config, 5);
    let adapters = adapter_ids(&model);
    assert_eq!(
        adapters.len(),
        2 * 2 * 2,
        "A and B on two projections of two blocks"
    );
    let grads = GradientsParams::from_grads(nll(&model).backward(), &model);
    let with_grad: BTreeSet<ParamId> = ids(&model)
        .into_iter()
        .filter(|id| grads.get::<Cpu, 2>(*id).is_some() || grads.get::<Cpu, 1>(*id).is_some())
        .collect();
    assert_eq!(with_grad, adapters);

    // A preference model's scalar head trains beside the trunk's adapters.
    let pm = ScalarHead::new(tiny::<Train>(4)).with_lora(&config, 5);
    let (tokens, mask) = batch::<Train>();
    let loss = pm.forward(tokens, mask).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &pm);
    let mut expected = adapter_ids(&pm.trunk);
    expected.extend(ids(&pm.score));
    let with_grad: BTreeSet<ParamId> = ids(&pm)
        .into_iter()
        .filter(|id| grads.get::<Cpu, 2>(*id).is_some() || grads.get::<Cpu, 1>(*id).is_some())
        .collect();
    assert_eq!(with_grad, expected);
}

#[test]
fn merged_weights_compute_what_the_adapters_computed() {
    let base = tiny::<Train>(3);
    let config = LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: vec![LoraTarget::Q, LoraTarget::O, LoraTarget::Up],
    };
    let trained = train(base.clone().with_lora(&config, 7), 5);
    let before = logits(&base.valid());
    let adapted = logits(&trained.valid());
    assert!(
        max_diff(&before, &adapted) > 1e-3,
        "training moved the adapters"
    );
    let merged = trained.merge_lora();
    assert!(!merged.has_lora());
    let after = logits(&merged.valid());
    assert!(
        max_diff(&adapted, &after) < 1e-4,
        "{}",
        max_diff(&adapted, &after)
    );

    // Only the targeted projections changed; every other weight is the base's.
    let w = |m: &Llama<Train>, f: fn(&rlcd::model::llama::Block<Train>) -> Tensor<Train, 2>| {
        m.layers
            .iter()
            .flat_map(|l| f(l).into_data().to_vec::<f32>().expect("f32"))
            .collect::<Vec<f32>>()
    };
    let changed = |f: fn(&rlcd::model::llama::Block<Train>) -> Tensor<Train, 2>| {
        max_diff(&w(&base, f), &w(&merged, f)) > 0.0
    };
    assert!(changed(|l| l.attn.wq.weight.val()));
    assert!(changed(|l| l.attn.wo.weight.val()));
    assert!(changed(|l| l.mlp.up.weight.val()));
    assert!(!changed(|l| l.attn.wk.weight.val()));
    assert!(!changed(|l| l.attn.wv.weight.val()));
    assert!(!changed(|l| l.mlp.gate.weight.val()));
    assert!(!changed(|l| l.mlp.down.weight.val()));
    let embed = |m: &Llama<Train>| {
        m.embed
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .expect("f32")
    };
    assert_eq!(embed(&base), embed(&merged));

    // The merged model is a plain decoder again: every weight trains.
    let grads = GradientsParams::from_grads(nll(&merged).backward(), &merged);
    assert!(grads.get::<Cpu, 2>(merged.embed.weight.id).is_some());
    assert!(
        grads
            .get::<Cpu, 2>(merged.layers[0].attn.wk.weight.id)
            .is_some()
    );
}

#[test]
fn an_adapted_checkpoint_loads_into_its_template() {
    let config = all_targets();
    let trained = train(tiny::<Train>(3).with_lora(&config, 7), 3);
    let dir = tempfile::tempdir().expect("tempdir");
    save_checkpoint(&trained.valid(), dir.path()).expect("save");
    let template = tiny::<Train>(9).with_lora(&config, 1);
    let device = Default::default();
    let loaded =
        load_checkpoint_into(template, &LlamaConfig::tiny(), dir.path(), &device).expect("load");
    assert_eq!(logits(&trained.valid()), logits(&loaded.valid()));
    assert_eq!(adapter_ids(&loaded), adapter_ids(&trained));
    // The frozen weights stay frozen after loading.
    let grads = GradientsParams::from_grads(nll(&loaded).backward(), &loaded);
    assert!(grads.get::<Cpu, 2>(loaded.embed.weight.id).is_none());
    assert!(
        grads
            .get::<Cpu, 2>(
                loaded.layers[0]
                    .attn
                    .lora
                    .as_ref()
                    .and_then(|l| l.wq.as_ref())
                    .expect("q")
                    .b
                    .id
            )
            .is_some()
    );
    // A checkpoint of another configuration is refused, naming the file.
    let other = LlamaConfig {
        d_ff: 32,
        ..LlamaConfig::tiny()
    };
    let err = load_checkpoint_into(
        other.init::<Train>(&device).expect("init"),
        &other,
        dir.path(),
        &device,
    )
    .expect_err("mismatch");
    assert!(err.to_string().contains("config.json"), "{err}");
}

mod trainers {
    //! Every trainer with `lora` set trains the targeted projections only (and a preference
    //! or value model's scalar head), returns a merged plain decoder, and a LoRA PPO run
    //! resumed from its checkpoint equals an uninterrupted one; a full PPO step, for contrast,
    //! moves every weight.

    use burn::module::AutodiffModule;
    use burn::tensor::Tensor;
    use rlcd::model::pm::{Pm, PmFormat};
    use rlcd::model::{Cpu, Llama, Lm, LoraConfig, LoraTarget};
    use rlcd::prompts::{Dialogue, Split, contrast_prompts};
    use rlcd::recipe::{DistillConfig, DpoConfig, PpoConfig, RewardConfig, WorldConfig};
    use rlcd::stages::policy::PolicyFormat;
    use rlcd::stages::policy::dpo::{DpoPair, train_dpo};
    use rlcd::stages::policy::ppo::{PpoCheckpoints, PpoLog, PpoModels, train_ppo};
    use rlcd::stages::policy::sft::{encode_examples, train_sft};
    use rlcd::stages::reward::{PmTraining, train_reward};
    use rlcd::stages::simulate::Pair;
    use rlcd::world::{Task, World};

    use super::{Train, common, max_diff};

    struct Small {
        lm: Lm<Train>,
        /// A preference model on the same trunk, its scalar head drawn from a fixed seed.
        pm: Pm<Train>,
        pairs: Vec<Pair>,
        prompts: Vec<String>,
    }

    /// Built by each test that needs it rather than shared through a lazily initialised
    /// static: two tests running in parallel then never wait on one another's set-up.
    fn small() -> Small {
        let config = WorldConfig {
            documents: 200,
            prompts_train: 48,
            prompts_test: 8,
            ..WorldConfig::default()
        };
        let world = World::new(&config, 5).expect("world");
        let templates = common::templates();
        let lm = common::world_xs_steps::<Train>(&world, &templates, 4, 20);
        let train: Vec<Dialogue> = world
            .prompt_set(Task::Harmless)
            .expect("prompts")
            .into_iter()
            .filter(|d| d.split == Split::Train)
            .collect();
        let pairs = common::oracle_pairs(&world, &templates, Task::Harmless, &train, 1, 1)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let prompts = contrast_prompts(&templates, Task::Harmless.name(), &train, 0)
            .expect("prompts")
            .into_iter()
            .map(|c| c.plain)
            .collect();
        let pm = rlcd::model::seeded_init::<Train, _>(&Default::default(), 1, || {
            Pm::from_lm(lm.clone(), PmFormat::world(128)).expect("pm")
        });
        Small {
            lm,
            pm,
            pairs,
            prompts,
        }
    }

    fn lora() -> LoraConfig {
        LoraConfig {
            rank: 2,
            alpha: 4.0,
            targets: vec![LoraTarget::Q, LoraTarget::Down],
        }
    }

    type Weight = fn(&Llama<Cpu>) -> Tensor<Cpu, 2>;

    const WEIGHTS: [(&str, Weight); 8] = [
        ("wq", |m| m.layers[1].attn.wq.weight.val()),
        ("wk", |m| m.layers[1].attn.wk.weight.val()),
        ("wv", |m| m.layers[1].attn.wv.weight.val()),
        ("wo", |m| m.layers[1].attn.wo.weight.val()),
        ("gate", |m| m.layers[1].mlp.gate.weight.val()),
        ("up", |m| m.layers[1].mlp.up.weight.val()),
        ("down", |m| m.layers[1].mlp.down.weight.val()),
        ("embed", |m| m.embed.weight.val()),
    ];

    /// The names of the weights that differ between two decoders.
    fn changed(before: &Llama<Cpu>, after: &Llama<Cpu>) -> Vec<&'static str> {
        assert!(!after.has_lora(), "trainers return merged decoders");
        let v = |t: Tensor<Cpu, 2>| t.into_data().to_vec::<f32>().expect("f32");
        WEIGHTS
            .iter()
            .filter(|(_, w)| max_diff(&v(w(before)), &v(w(after))) > 0.0)
            .map(|(name, _)| *name)
            .collect()
    }

    fn ppo(
        s: &Small,
        lora: Option<LoraConfig>,
        steps: usize,
        ckpt: &PpoCheckpoints,
    ) -> (Lm<Train>, PpoLog) {
        let reference = s.lm.model.valid();
        let scorer = s.pm.valid();
        let cfg = PpoConfig {
            steps,
            rollouts: 8,
            step_batch: 4,
            epochs: 1,
            lr: 1e-2,
            max_response_tokens: 12,
            checkpoint_every: 1,
            lora,
            ..PpoConfig::default()
        };
        let models = PpoModels {
            policy: s.lm.clone(),
            value: s.pm.model.clone(),
            reference: &reference,
            pm: &scorer,
        };
        let (policy, _, log) = train_ppo(
            models,
            &PolicyFormat::world(),
            &s.prompts,
            &cfg,
            3,
            ckpt,
            &mut |_| {},
        )
        .expect("ppo");
        (policy, log)
    }

    #[test]
    fn every_trainer_with_lora_moves_only_the_targeted_projections() {
        let s = small();
        let base = s.lm.model.valid();
        let adapted = ["wq", "down"];

        let cfg = RewardConfig {
            epochs: 1,
            lr: 1e-2,
            batch_size: 8,
            max_len: 128,
            holdout_frac: 0.0,
            lora: Some(lora()),
            ..RewardConfig::default()
        };
        let pm = s.pm.clone();
        let head = pm.model.score.weight.val().into_data();
        let (pm, log) =
            train_reward(pm, &s.pairs, &PmTraining::from(&cfg), 7, &mut |_, _| {}).expect("PM");
        assert!(log.steps > 0);
        assert_eq!(changed(&base, &pm.model.trunk.valid()), adapted, "PM trunk");
        assert_ne!(
            pm.model.score.weight.val().into_data(),
            head,
            "PM head trains"
        );

        let format = PolicyFormat::world();
        let examples: Vec<(String, String)> = s
            .pairs
            .iter()
            .map(|p| (p.prompt.clone(), p.output_a.clone()))
            .collect();
        let encoded = encode_examples(&s.lm, &format, &examples, 256).expect("encode");
        let cfg = DistillConfig {
            epochs: 1,
            lr: 1e-2,
            batch_size: 8,
            lora: Some(lora()),
        };
        let (sft, _) = train_sft(s.lm.clone(), &encoded, &cfg, 1, &mut |_, _| {}).expect("sft");
        assert_eq!(changed(&base, &sft.model.valid()), adapted, "SFT");

        let pairs: Vec<DpoPair> = s
            .pairs
            .iter()
            .map(|p| {
                let (query, a) = format.encode(&s.lm, &p.prompt, &p.output_a).expect("a");
                let (_, b) = format.encode(&s.lm, &p.prompt, &p.output_b).expect("b");
                DpoPair {
                    query,
                    a,
                    b,
                    p_b: p.soft_label,
                }
            })
            .collect();
        let cfg = DpoConfig {
            epochs: 1,
            lr: 1e-2,
            batch_size: 8,
            lora: Some(lora()),
            ..DpoConfig::default()
        };
        let (dpo, _) =
            train_dpo(s.lm.clone(), &base, &pairs, &cfg, 2, &mut |_, _| {}).expect("dpo");
        assert_eq!(changed(&base, &dpo.model.valid()), adapted, "DPO");

        let (policy, log) = ppo(&s, Some(lora()), 1, &PpoCheckpoints::default());
        assert_eq!(log.steps.len(), 1);
        assert_eq!(changed(&base, &policy.model.valid()), adapted, "LoRA PPO");
        let (policy, log) = ppo(&s, None, 1, &PpoCheckpoints::default());
        assert_eq!(log.steps.len(), 1);
        assert_eq!(
            changed(&base, &policy.model.valid()),
            WEIGHTS.map(|w| w.0),
            "full PPO"
        );

        let bad = DistillConfig {
            lora: Some(LoraConfig { rank: 0, ..lora() }),
            ..cfg_distill()
        };
        let err = train_sft(s.lm.clone(), &encoded, &bad, 1, &mut |_, _| {}).expect_err("rank 0");
        assert!(err.to_string().contains("[distill] lora.rank"), "{err}");
    }

    fn cfg_distill() -> DistillConfig {
        DistillConfig {
            epochs: 1,
            lr: 1e-2,
            batch_size: 8,
            lora: None,
        }
    }

    #[test]
    fn a_lora_ppo_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one() {
        let s = small();
        let (whole, whole_log) = ppo(&s, Some(lora()), 3, &PpoCheckpoints::default());
        let dir = tempfile::tempdir().expect("tempdir");
        let first = PpoCheckpoints {
            dir: Some(dir.path().to_path_buf()),
            every: 1,
            stop_after: Some(2),
        };
        let (_, half) = ppo(&s, Some(lora()), 3, &first);
        assert_eq!(half.steps.len(), 2);
        let rest = PpoCheckpoints {
            stop_after: None,
            ..first
        };
        let (resumed, resumed_log) = ppo(&s, Some(lora()), 3, &rest);
        assert_eq!(resumed_log.steps.len(), 3);
        for (a, b) in whole_log.steps.iter().zip(&resumed_log.steps) {
            assert!((a.loss - b.loss).abs() <= 1e-5, "step {}", a.step);
            assert!((a.kl - b.kl).abs() <= 1e-5, "step {}", a.step);
        }
        let w = |lm: &Lm<Train>| rlcd::stages::pretrain::weights_blake3(&lm.model.valid());
        assert_eq!(w(&whole), w(&resumed), "final weights");
    }
}
