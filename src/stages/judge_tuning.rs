//! The `judge_tuning` stage: a pretrained world model fine-tuned as the evaluation's LM judge
//! (the "GPT-4" of paper §4.3) on freshly drawn judge questions. Pretraining shows each judge
//! label once among many text tokens; here every question is asked in both orders and only the
//! answer letter is trained: the cross-entropy of the softmax over "A" and "B" against the
//! oracle's probability that the response shown first is better, sigmoid(sharpness · score
//! gap). The tuned judge is measured on held-out questions before and after, by the same code
//! that judges policies ([`LmJudge`], both orders, probabilities averaged).

use std::collections::BTreeMap;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::inputs::WorldModel;
use super::planning::{PlanError, Planned, Planner};
use super::pretrain::artifact::files;
use super::pretrain::engine::clip_global_norm;
use super::pretrain::{JUDGE_TEMPLATES, PretrainError, load_world_lm, weights_blake3};
use super::stage::{Ctx, Stage, StageError, StageKind, with_backend};
use crate::eval::judge::{JudgeItem, LmJudge, Verdict, letter_id, prob_a};
use crate::model::pm::host;
use crate::model::sampling::next_token_logits;
use crate::model::train::Schedule;
use crate::model::{Lm, ModelError, Truncate};
use crate::recipe::eval::JudgeOrder;
use crate::recipe::{BackendKind, JudgeTuning as Tuning};
use crate::seed;
use crate::stages::reward::train::bt_loss;
use crate::templates::{TemplateError, TemplateSet, Templates};
use crate::world::corpus::{JudgePair, judge_pair};
use crate::world::format::BOS;
use crate::world::{Task, World, WorldSpec};

/// File of the tuning record ([`TuningRecord`]).
pub const RECORD: &str = "judge_tuning.json";

/// Questions scored together when measuring.
const MEASURE_BATCH: usize = 32;

/// The stage type.
pub struct JudgeTuningStage;

/// Everything a judge's fine-tuning reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The pretraining stage of the model tuned.
    pub pretrain: String,
    /// The world that draws the questions and whose oracle answers them (with the model's
    /// judging settings: its sharpness sets the targets).
    pub world: WorldSpec,
    /// The judge questions' template files.
    pub templates: TemplateSet,
    /// The training settings.
    pub tuning: Tuning,
    /// The compute backend.
    pub backend: BackendKind,
    /// Seed of the questions and the batch order.
    pub seed: u64,
}

/// Id of the judge tuning of the world model labelled `label`.
pub fn id(label: &str) -> String {
    format!("judge_tuning/{label}")
}

/// The judge tuning of a world model whose `judging` table has a `tuning` table, else `None`.
pub fn plan(p: &Planner<'_>, model: &WorldModel) -> Result<Option<Planned>, PlanError> {
    let Some(judging) = &model.judging else {
        return Ok(None);
    };
    let Some(tuning) = &judging.tuning else {
        return Ok(None);
    };
    let mut world = p.world();
    world.config = judging.apply(&world.config);
    let config = Config {
        pretrain: super::pretrain::id(&model.label),
        world,
        templates: p.template_files("world", JUDGE_TEMPLATES.iter().copied())?,
        tuning: tuning.clone(),
        backend: p.backend(),
        seed: p.world_seed(&["judge_tuning", &model.label]),
    };
    Planned::new::<JudgeTuningStage>(id(&model.label), &config).map(Some)
}

/// Why a judge could not be tuned.
#[derive(Debug, thiserror::Error)]
pub enum TuningError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A judge question failed to render.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Measuring with the judge failed.
    #[error(transparent)]
    Judge(#[from] crate::eval::judge::JudgeError),
    /// The loss is not finite.
    #[error(
        "judge tuning diverged: the loss is {loss} at step {step}\n  fix: lower [models.<name>.judging.tuning] lr (now {lr})"
    )]
    Diverged {
        /// The loss.
        loss: f64,
        /// The 0-based step.
        step: usize,
        /// The peak learning rate.
        lr: f64,
    },
}

impl From<TuningError> for StageError {
    fn from(e: TuningError) -> Self {
        StageError::failed(e)
    }
}

/// A judge's answers on held-out questions of one axis (or all), both orders asked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JudgeCounts {
    /// Questions.
    pub n: usize,
    /// Of those, questions where the two orders' averaged probability decides.
    pub n_decided: usize,
    /// Questions where both the judge and the oracle decide.
    pub n_both_decided: usize,
    /// Of those, questions where they agree.
    pub n_agree: usize,
    /// Questions whose two single-order answers name the same response.
    pub n_consistent: usize,
    /// Single-order answers that are "A" (of `2 · n`).
    pub n_letter_a: usize,
}

impl JudgeCounts {
    fn add(&mut self, verdict: Verdict, orders: [Verdict; 2], oracle: Verdict) {
        self.n += 1;
        let decided = verdict != Verdict::Tie;
        self.n_decided += usize::from(decided);
        if decided && oracle != Verdict::Tie {
            self.n_both_decided += 1;
            self.n_agree += usize::from(verdict == oracle);
        }
        self.n_consistent += usize::from(orders[0] == orders[1] && orders[0] != Verdict::Tie);
        // The answers as shown: the first order's as given, the second's swapped back.
        self.n_letter_a += usize::from(orders[0] == Verdict::A);
        self.n_letter_a += usize::from(orders[1] == Verdict::B);
    }

    /// Share of the judge's decided verdicts that agree with the oracle's decided ones.
    pub fn agreement(&self) -> f64 {
        self.n_agree as f64 / self.n_both_decided.max(1) as f64
    }

    /// Share of the questions the judge decides.
    pub fn decided(&self) -> f64 {
        self.n_decided as f64 / self.n.max(1) as f64
    }
}

/// The held-out measurement: over all questions and per axis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Every held-out question.
    pub all: JudgeCounts,
    /// Per axis (`harm`, `help`, `outline`; helpfulness on harmless prompts is `harm_help`).
    pub axes: BTreeMap<String, JudgeCounts>,
}

/// What the tuning did (`judge_tuning.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuningRecord {
    /// Questions trained on (each in both orders).
    pub pairs: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Questions cut at the model's context (oldest tokens dropped).
    pub truncated: usize,
    /// Loss of every step.
    pub losses: Vec<f64>,
    /// Mean loss over the last tenth of the steps.
    pub final_loss: f64,
    /// The pretrained model on the held-out questions.
    pub before: Measured,
    /// The tuned model on them.
    pub after: Measured,
    /// blake3 of the tuned weights.
    pub weights_blake3: String,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
}

/// The judge-question label of axis `axis` as the record names it.
fn axis_label(pair: &JudgePair) -> String {
    match pair.template {
        "judge/harm_help.j2" => "harm_help".into(),
        _ => pair.axis.clone(),
    }
}

/// `n` judge questions drawn from `seed`, question `i` over task `i mod 3` from its own child
/// seed (so the draw is the same however it is computed).
pub fn draw_pairs(world: &World, rho: f64, n: usize, seed: u64) -> Vec<JudgePair> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = seed::rng(seed::derive_index(seed, "question", i as u64));
            judge_pair(world, Task::ALL[i % Task::ALL.len()], rho, &mut rng)
        })
        .collect()
}

/// P(the response shown first is better) by the oracle: sigmoid(sharpness · gap).
pub fn target_first(world: &World, gap: f64) -> f64 {
    prob_a(world.config.judgment_sharpness * gap)
}

/// A question's token rows, shown in order and swapped.
type OrderedRows = [Vec<u32>; 2];

/// Each question's two rows, shown in order then swapped, as the judge reads them (the world's
/// BOS, the question, the answer lead), and how many were cut to the model's context.
fn encode_rows<B: Backend>(
    lm: &Lm<B>,
    templates: &Templates,
    pairs: &[JudgePair],
) -> Result<(Vec<OrderedRows>, usize), TuningError> {
    let room = lm.model.config().max_seq_len;
    let mut truncated = 0;
    let mut rows = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let mut two = [Vec::new(), Vec::new()];
        for (slot, swapped) in two.iter_mut().zip([false, true]) {
            let text = format!("{BOS}{}", pair.question(templates, swapped)?);
            let full = lm.encode(&text)?.len();
            *slot = lm.encode_prompt(&text, room, Truncate::Left)?;
            truncated += usize::from(slot.len() < full);
        }
        rows.push(two);
    }
    Ok((rows, truncated))
}

/// Measures `lm` on `pairs` as the evaluation asks it: both orders, probabilities averaged.
pub fn measure<B: Backend>(
    lm: &Lm<B>,
    templates: &Templates,
    pairs: &[JudgePair],
) -> Result<Measured, TuningError> {
    let ids: Vec<String> = (0..pairs.len()).map(|i| i.to_string()).collect();
    let mut out = Measured::default();
    let mut groups: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    for (i, pair) in pairs.iter().enumerate() {
        groups.entry(pair.template).or_default().push(i);
    }
    for (template, members) in groups {
        let items: Vec<JudgeItem<'_>> = members
            .iter()
            .map(|&i| JudgeItem {
                prompt_id: &ids[i],
                turns: &pairs[i].turns,
                prompt: "",
                output_a: &pairs[i].outputs[0],
                output_b: &pairs[i].outputs[1],
            })
            .collect();
        let judge = LmJudge {
            lm,
            prefix: BOS,
            templates,
            order: JudgeOrder::Mean,
            seed: 0,
            batch_size: MEASURE_BATCH,
            truncate: Truncate::Left,
        };
        for (&i, judged) in members.iter().zip(judge.judged(template, &items)?) {
            let orders = judged.orders.unwrap_or([judged.verdict; 2]);
            let oracle = Verdict::from_scores(pairs[i].gap, 0.0);
            out.all.add(judged.verdict, orders, oracle);
            out.axes
                .entry(axis_label(&pairs[i]))
                .or_default()
                .add(judged.verdict, orders, oracle);
        }
    }
    Ok(out)
}

/// Fine-tunes `lm` on `pairs`: `tuning.epochs` passes, each in its own seeded order,
/// `tuning.batch_size` questions (both orders of each) per AdamW step (β 0.9/0.999, no weight
/// decay, global gradient norm clipped at 1), warm-up then cosine decay to 0. `on_step(step,
/// loss)` after every step. Returns the tuned model, the losses and the truncated count.
pub fn tune<B: AutodiffBackend>(
    lm: Lm<B>,
    world: &World,
    templates: &Templates,
    pairs: &[JudgePair],
    tuning: &Tuning,
    seed: u64,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<(Lm<B>, Vec<f64>, usize), TuningError> {
    let (rows, truncated) = encode_rows(&lm, templates, pairs)?;
    let letters = [letter_id(&lm, "A")?, letter_id(&lm, "B")?];
    let device = lm.model.device();
    let pick = Tensor::<B, 1, Int>::from_data(
        TensorData::new(vec![i64::from(letters[0]), i64::from(letters[1])], [2]),
        &device,
    );
    let targets: Vec<f32> = pairs
        .iter()
        .map(|p| target_first(world, p.gap) as f32)
        .collect();
    let batch = tuning.batch_size.max(1);
    let steps = Schedule::fine_tune_steps(pairs.len(), tuning.epochs, batch);
    let schedule = Schedule::warmup_cosine(steps, tuning.lr, tuning.warmup_frac);
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init::<B, crate::model::Llama<B>>();
    let Lm {
        mut model,
        tokenizer,
    } = lm;
    let mut losses = Vec::with_capacity(steps);
    let mut step = 0;
    for epoch in 0..tuning.epochs {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.shuffle(&mut seed::rng(seed::derive_index(
            seed,
            "epoch",
            epoch as u64,
        )));
        for chunk in order.chunks(batch) {
            let k = chunk.len();
            let batch_rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| rows[i][0].clone())
                .chain(chunk.iter().map(|&i| rows[i][1].clone()))
                .collect();
            // Row i shows the pair in order (target P(first better)); row k + i swapped.
            let t: Vec<f32> = chunk
                .iter()
                .map(|&i| targets[i])
                .chain(chunk.iter().map(|&i| 1.0 - targets[i]))
                .collect();
            let logits = next_token_logits(&model, &batch_rows)?.select(1, pick.clone());
            let logit_a = logits.clone().narrow(1, 0, 1).reshape([2 * k]);
            let logit_b = logits.narrow(1, 1, 1).reshape([2 * k]);
            let target = Tensor::<B, 1>::from_data(TensorData::new(t, [2 * k]), &device);
            // BCE(logit_A − logit_B, P(first better)).
            let loss = bt_loss(logit_b, logit_a, target);
            let value = host(loss.clone())?.first().copied().unwrap_or(f64::NAN);
            if !value.is_finite() {
                return Err(TuningError::Diverged {
                    loss: value,
                    step,
                    lr: tuning.lr,
                });
            }
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, 1.0);
            model = optim.step(schedule.lr_at(step), model, grads);
            losses.push(value);
            on_step(step, value);
            step += 1;
        }
    }
    Ok((Lm::new(model, tokenizer)?, losses, truncated))
}

/// The model without its autodiff wrapper.
fn inner<B: AutodiffBackend>(lm: &Lm<B>) -> Result<Lm<B::InnerBackend>, ModelError> {
    Lm::new(lm.model.valid(), lm.tokenizer.clone())
}

fn run_tuning<B: AutodiffBackend>(
    ctx: &Ctx<'_>,
    config: &Config,
    device: &B::Device,
) -> Result<TuningRecord, StageError> {
    let base = ctx.input(&config.pretrain)?;
    let world = config.world.build()?;
    let templates = config.templates.templates();
    let tuning = &config.tuning;
    let rho = tuning.pair_correlation;
    let train = draw_pairs(
        &world,
        rho,
        tuning.pairs,
        seed::derive(config.seed, &["train"]),
    );
    let heldout = draw_pairs(
        &world,
        rho,
        tuning.heldout_pairs,
        seed::derive(config.seed, &["heldout"]),
    );
    let lm = load_world_lm::<B>(&base.dir, device)?;
    let before = measure(&inner(&lm)?, &templates, &heldout)?;
    let steps = Schedule::fine_tune_steps(train.len(), tuning.epochs, tuning.batch_size);
    let pb = ctx.progress(steps as u64);
    let mut on_step = |_: usize, loss: f64| {
        pb.inc(1);
        pb.set_message(format!("loss {loss:.3}"));
    };
    let t0 = Instant::now();
    let (lm, losses, truncated) = tune(
        lm,
        &world,
        &templates,
        &train,
        tuning,
        seed::derive(config.seed, &["order"]),
        &mut on_step,
    )?;
    let train_seconds = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let lm = inner(&lm)?;
    let after = measure(&lm, &templates, &heldout)?;
    crate::model::load::save_checkpoint(&lm.model, ctx.dir).map_err(PretrainError::from)?;
    lm.tokenizer
        .save(&ctx.dir.join(files::TOKENIZER))
        .map_err(ModelError::from)?;
    let tail = (losses.len() / 10).clamp(1, losses.len().max(1));
    let final_loss = losses[losses.len().saturating_sub(tail)..]
        .iter()
        .sum::<f64>()
        / tail as f64;
    Ok(TuningRecord {
        pairs: train.len(),
        steps: losses.len(),
        truncated,
        final_loss,
        losses,
        before,
        after,
        weights_blake3: weights_blake3(&lm.model),
        train_seconds,
    })
}

impl Stage for JudgeTuningStage {
    const KIND: StageKind = StageKind::JudgeTuning;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        vec![config.pretrain.clone()]
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = Instant::now();
        let record = with_backend!(config.backend, B, device => {
            run_tuning::<burn::backend::Autodiff<B>>(ctx, config, &device)
        })?;
        ctx.write_json(RECORD, &record)?;
        let pct = |j: &JudgeCounts| (100.0 * j.agreement(), 100.0 * j.decided());
        let (agree_before, decided_before) = pct(&record.before.all);
        let (agree_after, decided_after) = pct(&record.after.all);
        Ok(serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "final_loss": record.final_loss,
            "heldout_agreement_pct_before": agree_before,
            "heldout_decided_pct_before": decided_before,
            "heldout_agreement_pct": agree_after,
            "heldout_decided_pct": decided_after,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_both_orders() {
        let mut j = JudgeCounts::default();
        // Decided for A in both orders (A shown first answered "A", B shown first answered
        // "B"), the oracle agrees.
        j.add(Verdict::A, [Verdict::A, Verdict::A], Verdict::A);
        // Always the letter "A": the orders disagree; the mean decides B, the oracle ties.
        j.add(Verdict::B, [Verdict::A, Verdict::B], Verdict::Tie);
        // Undecided.
        j.add(Verdict::Tie, [Verdict::Tie, Verdict::Tie], Verdict::B);
        assert_eq!(
            (
                j.n,
                j.n_decided,
                j.n_both_decided,
                j.n_agree,
                j.n_consistent
            ),
            (3, 2, 1, 1, 1)
        );
        assert_eq!(j.n_letter_a, 3);
        assert_eq!(j.agreement(), 1.0);
        assert!((j.decided() - 2.0 / 3.0).abs() < 1e-12);
    }
}
