//! The `judge_tuning` stage: a pretrained world model fine-tuned as the evaluation's LM judge
//! (the "GPT-4" of paper §4.3) on freshly drawn judge questions. Pretraining shows each judge
//! label once among many text tokens; here every question is asked in both orders and only the
//! answer letter is trained: the cross-entropy of the softmax over "A" and "B" against the
//! oracle's probability that the response shown first is better, sigmoid(sharpness · score
//! gap). The tuned judge is measured on held-out questions before and after, by the same code
//! that judges policies ([`LmJudge`], both orders, probabilities averaged). With a responder,
//! further questions show two outputs sampled from a pretrained world model (the kind of text
//! the evaluation judges), scored by the oracle, and the judge is also measured on such pairs
//! over held-out prompts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::model::optim::AdamWConfig;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::record::Recorder;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::inputs::WorldModel;
use super::planning::{PlanError, Planned, Planner};
use super::pretrain::artifact::files;
use super::pretrain::engine::clip_global_norm;
use super::pretrain::{JUDGE_TEMPLATES, PretrainError, load_world_lm, weights_blake3};
use super::stage::{Ctx, Stage, StageError, StageKind, with_backend};
use crate::eval::judge::{JudgeItem, LmJudge, Verdict, letter_id, prob_a};
use crate::eval::sampling::{Sampling, sample};
use crate::model::pm::host;
use crate::model::sampling::next_token_logits;
use crate::model::train::Schedule;
use crate::model::{Lm, ModelError, PolicyFormat, Truncate};
use crate::prompts::{ContrastPrompt, contrast_prompts};
use crate::recipe::eval::JudgeOrder;
use crate::recipe::{BackendKind, Degraded, JudgeTuning as Tuning};
use crate::seed;
use crate::stages::reward::train::bt_loss;
use crate::templates::{TemplateError, TemplateSet, Templates, judge_template};
use crate::world::corpus::{JudgePair, judge_pair};
use crate::world::format::BOS;
use crate::world::oracle::OracleError;
use crate::world::{PROMPT_SET_VERSION, Split, Task, World, WorldError, WorldSpec};

/// File of the tuning record ([`TuningRecord`]).
pub const RECORD: &str = "judge_tuning.json";

/// Steps between checkpoints of a running tuning (a killed run resumes from the last one).
const CHECKPOINT_EVERY: usize = 100;

/// Questions scored together when measuring.
const MEASURE_BATCH: usize = 32;

/// Responses sampled together.
const SAMPLE_BATCH: usize = 32;

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
    /// The training settings (the responder named by the stage in `responses`).
    pub tuning: Tuning,
    /// Where sampled questions' responses come from, when `tuning.sampled_pairs` > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses: Option<Responses>,
    /// The compute backend.
    pub backend: BackendKind,
    /// Seed of the questions and the batch order.
    pub seed: u64,
}

/// The model that samples the responses of sampled judge questions, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responses {
    /// The responder's pretraining stage.
    pub pretrain: String,
    /// The world task families' contrast templates that render the prompts it answers.
    pub templates: TemplateSet,
    /// The world prompt sets' version (training prompts train, test prompts measure).
    pub prompt_set_version: u32,
    /// Most new tokens per response (the evaluation's limit).
    pub max_new_tokens: usize,
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
    let mut tuning = tuning.clone();
    // The responder is keyed by what it is (its pretraining), not by its recipe name.
    let responses = match tuning.responder.take() {
        Some(name) if tuning.sampled_pairs > 0 => Some(responses(p, &name)?),
        _ => None,
    };
    let config = Config {
        pretrain: super::pretrain::id(&model.label),
        world,
        templates: p.template_files("world", JUDGE_TEMPLATES.iter().copied())?,
        tuning,
        responses,
        backend: p.backend(),
        seed: p.world_seed(&["judge_tuning", &model.label]),
    };
    Planned::new::<JudgeTuningStage>(id(&model.label), &config).map(Some)
}

/// The responses of recipe model `name` (validated as a world preset).
fn responses(p: &Planner<'_>, name: &str) -> Result<Responses, PlanError> {
    p.read("eval.max_new_tokens");
    let recipe = p.recipe();
    let world = recipe
        .models
        .get(name)
        .and_then(|spec| WorldModel::of(name, spec))
        .ok_or_else(|| PlanError::UnknownUpstream {
            stage: "judge_tuning".into(),
            upstream: format!("pretrain of model `{name}`"),
            suggestion: None,
        })?;
    let mut templates = TemplateSet::default();
    for task in Task::ALL {
        templates.extend(p.family_files("judge_tuning", task.name())?);
    }
    Ok(Responses {
        pretrain: super::pretrain::id(&world.label),
        templates,
        prompt_set_version: PROMPT_SET_VERSION,
        max_new_tokens: recipe.eval.max_new_tokens,
    })
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
    /// The world's prompt sets failed.
    #[error(transparent)]
    World(#[from] WorldError),
    /// The oracle could not score a sampled response.
    #[error(transparent)]
    Oracle(#[from] OracleError),
    /// A world task has no prompts of the split the responses answer.
    #[error(
        "judge tuning samples responses to `{task}` {split:?} prompts, and the world has none\n  fix: raise [world] prompts_train and prompts_test above 0"
    )]
    NoPrompts {
        /// The task.
        task: &'static str,
        /// The split.
        split: Split,
    },
    /// A checkpoint in the stage's work directory could not be written or read.
    #[error(
        "judge tuning checkpoint {path}: {message}\n  fix: delete the directory and run again; the tuning starts over"
    )]
    Checkpoint {
        /// The checkpoint's file or directory.
        path: String,
        /// What failed.
        message: String,
    },
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
    /// Training questions over sampled responses (among `pairs`).
    #[serde(default)]
    pub sampled_pairs: usize,
    /// The pretrained model on `heldout_pairs` questions over responses sampled for held-out
    /// prompts, when it has a responder.
    #[serde(default)]
    pub before_sampled: Option<Measured>,
    /// The tuned model on them.
    #[serde(default)]
    pub after_sampled: Option<Measured>,
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

/// What a sampled judge-tuning response answers, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Response {
    /// The question's own prompt, at temperature 1.
    OnTopic,
    /// Prompt `j` of the task's set, not the question's own.
    OffTopic(usize),
    /// The question's own prompt, at the hot temperature.
    Hot,
}

impl Response {
    /// One response's kind under `degraded` for a question over prompt `own` of a set of
    /// `prompts`: off-topic with probability `off_topic_frac` (on topic instead when the set has
    /// one prompt), else hot with probability `hot_frac`.
    fn draw(degraded: Option<&Degraded>, prompts: usize, own: usize, rng: &mut impl Rng) -> Self {
        let Some(d) = degraded else {
            return Self::OnTopic;
        };
        let u: f64 = rng.random();
        if u < d.off_topic_frac {
            if prompts < 2 {
                return Self::OnTopic;
            }
            let j = rng.random_range(0..prompts - 1);
            Self::OffTopic(if j >= own { j + 1 } else { j })
        } else if u < d.off_topic_frac + d.hot_frac {
            Self::Hot
        } else {
            Self::OnTopic
        }
    }
}

/// `n` judge questions over two responses `lm` samples, question `i` over task `i mod 3` and a
/// `split` prompt of the world drawn from its own child seed. Each response answers the
/// prompt's plain, positive or negative contrast prompt (drawn per response, so pairs range
/// from RLAIF-like to RLCD-like); the oracle's scores on the question's axis give the gap. With
/// `degraded`, a response may instead answer another prompt of the task or be sampled hot, each
/// drawn from a stream of its own (so without it the questions are the same).
#[allow(clippy::too_many_arguments)]
pub fn sampled_pairs<B: Backend>(
    lm: &Lm<B>,
    world: &World,
    templates: &Templates,
    split: Split,
    n: usize,
    max_new_tokens: usize,
    degraded: Option<&Degraded>,
    seed: u64,
) -> Result<Vec<JudgePair>, TuningError> {
    let mut sets = Vec::with_capacity(Task::ALL.len());
    for task in Task::ALL {
        let mut set = world.prompt_set(task)?;
        set.retain(|d| d.split == split);
        if set.is_empty() {
            return Err(TuningError::NoPrompts {
                task: task.name(),
                split,
            });
        }
        sets.push(set);
    }
    let render = |task: Task, dialogue, affix: u64| {
        contrast_prompts(
            templates,
            task.name(),
            std::slice::from_ref(dialogue),
            affix,
        )
        .map(|mut c| c.remove(0))
    };
    let pick = |contrast: &ContrastPrompt, kind: u32| match kind {
        0 => contrast.positive.clone(),
        1 => contrast.plain.clone(),
        _ => contrast.negative.clone(),
    };
    let mut frames = Vec::with_capacity(n);
    // Each response's prompt and whether it is sampled hot.
    let mut prompts: [Vec<String>; 2] = [Vec::with_capacity(2 * n), Vec::new()];
    let mut slots = Vec::with_capacity(2 * n);
    for i in 0..n {
        let mut rng = seed::rng(seed::derive_index(seed, "question", i as u64));
        let t = i % Task::ALL.len();
        let task = Task::ALL[t];
        let own = rng.random_range(0..sets[t].len());
        let dialogue = &sets[t][own];
        let axes: Vec<String> = task.axes().iter().map(|a| a.to_string()).collect();
        let axis = axes[rng.random_range(0..axes.len())].clone();
        let template =
            judge_template(&axes, &axis).expect("every axis of a world task has a judge question");
        let affix = seed::derive_index(seed, "affix", i as u64);
        let kinds = [rng.random_range(0..3), rng.random_range(0..3)];
        let contrast = render(task, dialogue, affix)?;
        let mut worse = seed::rng(seed::derive_index(seed, "degrade", i as u64));
        for kind in kinds {
            let (text, hot) = match Response::draw(degraded, sets[t].len(), own, &mut worse) {
                Response::OnTopic => (pick(&contrast, kind), false),
                Response::OffTopic(j) => (pick(&render(task, &sets[t][j], affix)?, kind), false),
                Response::Hot => (pick(&contrast, kind), true),
            };
            let list = usize::from(hot);
            slots.push((list, prompts[list].len()));
            prompts[list].push(text);
        }
        frames.push((task, dialogue.turns.clone(), axis, template));
    }
    let paper = Sampling::paper(max_new_tokens, SAMPLE_BATCH);
    let hot = Sampling {
        temperature: degraded.map_or(paper.temperature, |d| d.hot_temperature),
        ..paper.clone()
    };
    let outs = [(&paper, "responses"), (&hot, "hot responses")]
        .into_iter()
        .zip(&prompts)
        .map(|((settings, stream), list)| {
            sample(
                lm,
                &PolicyFormat::world(),
                list,
                settings,
                seed::derive(seed, &[stream]),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    frames
        .into_iter()
        .zip(slots.chunks(2))
        .map(|((task, turns, axis, template), two)| {
            let text = |(list, k): (usize, usize)| outs[list][k].0.clone();
            let outputs = [text(two[0]), text(two[1])];
            Ok(scored_pair(world, task, turns, axis, template, outputs)?)
        })
        .collect()
}

/// The judge question of `task` on `axis` over `outputs`, its gap the oracle's score of the
/// first on `axis` minus the second's.
pub fn scored_pair(
    world: &World,
    task: Task,
    turns: Vec<String>,
    axis: String,
    template: &'static str,
    outputs: [String; 2],
) -> Result<JudgePair, OracleError> {
    let score = |text: &str| -> Result<f64, OracleError> {
        Ok(world.score(task, &turns, text)?.axis(&axis).unwrap_or(0.0))
    };
    let gap = score(&outputs[0])? - score(&outputs[1])?;
    Ok(JudgePair {
        turns,
        axis,
        template,
        outputs,
        gap,
    })
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
            format: &PolicyFormat::world(),
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

/// The progress of a tuning run, saved with its model and optimiser state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TuneState {
    /// Steps finished.
    pub step: usize,
    /// The loss of every finished step.
    pub losses: Vec<f64>,
    /// Wall-clock seconds of the steps, over every process that ran some.
    pub seconds: f64,
}

type Optim<B> =
    burn::optim::adaptor::OptimizerAdaptor<crate::model::optim::AdamW, crate::model::Llama<B>, B>;

fn checkpoint_error(path: &Path, message: impl std::fmt::Display) -> TuningError {
    TuningError::Checkpoint {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn save_state<B: AutodiffBackend>(
    dir: &Path,
    model: &crate::model::Llama<B>,
    optim: &Optim<B>,
    state: &TuneState,
) -> Result<(), TuningError> {
    checkpoint::save(dir, state, checkpoint_error, |next| {
        crate::model::load::save_checkpoint(&model.valid(), next)?;
        checkpoint::OptimRecorder::new()
            .record(optim.to_record(), next.join("optim"))
            .map_err(|e| checkpoint_error(next, e))
    })
}

/// Fine-tunes `lm` on `pairs`: `tuning.epochs` passes, each in its own seeded order,
/// `tuning.batch_size` questions (both orders of each) per AdamW step (β 0.9/0.999, no weight
/// decay, global gradient norm clipped at 1), warm-up then cosine decay to 0. `on_step(step,
/// loss)` after every step. With a checkpoint directory it resumes from the checkpoint there
/// (the model passed in is then replaced), and a resumed run ends exactly as an uninterrupted
/// one. Returns the tuned model, the progress (every step's loss, resumed ones included) and
/// the truncated count.
#[allow(clippy::too_many_arguments)]
pub fn tune<B: AutodiffBackend>(
    lm: Lm<B>,
    world: &World,
    templates: &Templates,
    pairs: &[JudgePair],
    tuning: &Tuning,
    seed: u64,
    ckpt: &checkpoint::Checkpoints,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<(Lm<B>, TuneState, usize), TuningError> {
    let start = Instant::now();
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
    let mut optim: Optim<B> = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init::<B, crate::model::Llama<B>>();
    let Lm {
        mut model,
        tokenizer,
    } = lm;
    let mut state = TuneState {
        losses: Vec::with_capacity(steps),
        ..TuneState::default()
    };
    if let Some(from) = ckpt.dir.as_deref().and_then(checkpoint::latest) {
        state = checkpoint::read_state(&from).map_err(|e| checkpoint_error(&from, e))?;
        let config = model.config().clone();
        model = crate::model::load::load_checkpoint_into(model, &config, &from, &device)?;
        let record = checkpoint::OptimRecorder::new()
            .load(from.join("optim"), &device)
            .map_err(|e| checkpoint_error(&from, e))?;
        optim = optim.load_record(record);
    }
    let mut step = 0;
    'epochs: for epoch in 0..tuning.epochs {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.shuffle(&mut seed::rng(seed::derive_index(
            seed,
            "epoch",
            epoch as u64,
        )));
        for chunk in order.chunks(batch) {
            if step < state.step {
                step += 1;
                continue;
            }
            if ckpt.stops_at(step) {
                break 'epochs;
            }
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
            state.losses.push(value);
            on_step(step, value);
            step += 1;
            state.step = step;
            if let Some(dir) = ckpt.due(step, steps) {
                let mut saved = state.clone();
                saved.seconds += start.elapsed().as_secs_f64();
                save_state(dir, &model, &optim, &saved)?;
            }
        }
    }
    state.seconds += start.elapsed().as_secs_f64();
    Ok((Lm::new(model, tokenizer)?, state, truncated))
}

/// The model without its autodiff wrapper.
fn inner<B: AutodiffBackend>(lm: &Lm<B>) -> Result<Lm<B::InnerBackend>, ModelError> {
    Lm::new(lm.model.valid(), lm.tokenizer.clone())
}

fn run_tuning<B: AutodiffBackend>(
    ctx: &Ctx<'_>,
    config: &Config,
    device: &B::Device,
    resumed_from: Option<usize>,
) -> Result<TuningRecord, StageError> {
    let base = ctx.input(&config.pretrain)?;
    let world = config.world.build()?;
    let templates = config.templates.templates();
    let tuning = &config.tuning;
    let rho = tuning.pair_correlation;
    let mut train = draw_pairs(
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
    let (sampled, heldout_sampled) = match &config.responses {
        Some(r) => {
            let dir = ctx.input(&r.pretrain)?.dir;
            let responder = load_world_lm::<B::InnerBackend>(&dir, device)?;
            let family = r.templates.templates();
            let draw = |split: Split, n: usize, name: &str| {
                sampled_pairs(
                    &responder,
                    &world,
                    &family,
                    split,
                    n,
                    r.max_new_tokens,
                    tuning.degraded.as_ref(),
                    seed::derive(config.seed, &["sampled", name]),
                )
            };
            (
                draw(Split::Train, tuning.sampled_pairs, "train")?,
                Some(draw(Split::Test, tuning.heldout_pairs, "heldout")?),
            )
        }
        None => (Vec::new(), None),
    };
    let n_sampled = sampled.len();
    train.extend(sampled);
    let lm = load_world_lm::<B>(&base.dir, device)?;
    let pretrained = inner(&lm)?;
    let before = measure(&pretrained, &templates, &heldout)?;
    let before_sampled = match &heldout_sampled {
        Some(pairs) => Some(measure(&pretrained, &templates, pairs)?),
        None => None,
    };
    drop(pretrained);
    let steps = Schedule::fine_tune_steps(train.len(), tuning.epochs, tuning.batch_size);
    let pb = ctx.progress(steps as u64);
    let work = ctx.work_dir();
    crate::error::create_dir_all(&work)?;
    pb.set_position(resumed_from.unwrap_or(0) as u64);
    let mut on_step = |step: usize, loss: f64| {
        pb.set_position(step as u64 + 1);
        pb.set_message(format!("loss {loss:.3}"));
    };
    let ckpt = checkpoint::Checkpoints {
        dir: Some(work),
        every: CHECKPOINT_EVERY,
        stop_after: None,
    };
    let (lm, progress, truncated) = tune(
        lm,
        &world,
        &templates,
        &train,
        tuning,
        seed::derive(config.seed, &["order"]),
        &ckpt,
        &mut on_step,
    )?;
    let TuneState {
        losses,
        seconds: train_seconds,
        ..
    } = progress;
    pb.finish_and_clear();
    let lm = inner(&lm)?;
    let after = measure(&lm, &templates, &heldout)?;
    let after_sampled = match &heldout_sampled {
        Some(pairs) => Some(measure(&lm, &templates, pairs)?),
        None => None,
    };
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
        sampled_pairs: n_sampled,
        before_sampled,
        after_sampled,
        weights_blake3: weights_blake3(&lm.model),
        train_seconds,
    })
}

impl Stage for JudgeTuningStage {
    const KIND: StageKind = StageKind::JudgeTuning;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut inputs = vec![config.pretrain.clone()];
        inputs.extend(config.responses.as_ref().map(|r| r.pretrain.clone()));
        inputs
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = Instant::now();
        let resumed_from = checkpoint::step(&ctx.work_dir());
        let record = with_backend!(config.backend, B, device => {
            run_tuning::<burn::backend::Autodiff<B>>(ctx, config, &device, resumed_from)
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
            "heldout_sampled_agreement_pct_before": record.before_sampled.as_ref().map(|m| 100.0 * m.all.agreement()),
            "heldout_sampled_agreement_pct": record.after_sampled.as_ref().map(|m| 100.0 * m.all.agreement()),
            "resumed_from_step": resumed_from,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldConfig;

    #[test]
    fn a_scored_pair_gap_is_the_first_responses_score_minus_the_seconds() {
        let world = World::new(&WorldConfig::default(), 11).unwrap();
        let mut rng = seed::rng(5);
        for task in Task::ALL {
            let (turns, req) = world.prompt_turns(task, &mut rng);
            let axis = task.main_axis().to_string();
            let template = judge_template(std::slice::from_ref(&axis), &axis).unwrap();
            let good = world.output_text(&req, &world.respond(&req, 3.0, &mut rng).1);
            let poor = world.output_text(&req, &world.respond(&req, -3.0, &mut rng).1);
            let score = |t: &str| world.score(task, &turns, t).unwrap().axis(&axis).unwrap();
            let (s_good, s_poor) = (score(&good), score(&poor));
            assert!(s_good > s_poor, "{task:?}: {s_good} vs {s_poor}");
            let pair = scored_pair(
                &world,
                task,
                turns.clone(),
                axis.clone(),
                template,
                [good.clone(), poor.clone()],
            )
            .unwrap();
            assert_eq!(pair.gap, s_good - s_poor);
            assert_eq!(pair.outputs, [good, poor]);
            let swapped = scored_pair(
                &world,
                task,
                turns,
                axis,
                template,
                [pair.outputs[1].clone(), pair.outputs[0].clone()],
            )
            .unwrap();
            assert_eq!(swapped.gap, -pair.gap);
        }
    }

    #[test]
    fn degraded_responses_follow_their_shares_and_never_answer_their_own_prompt_off_topic() {
        let mut rng = seed::rng(9);
        let none: Vec<Response> = (0..100)
            .map(|_| Response::draw(None, 5, 2, &mut rng))
            .collect();
        assert!(none.iter().all(|r| *r == Response::OnTopic));
        let off = Degraded {
            off_topic_frac: 1.0,
            hot_frac: 0.0,
            hot_temperature: 1.5,
        };
        let mut seen = [0usize; 5];
        for _ in 0..1000 {
            match Response::draw(Some(&off), 5, 2, &mut rng) {
                Response::OffTopic(j) => seen[j] += 1,
                other => panic!("{other:?} with off_topic_frac 1"),
            }
        }
        assert_eq!(seen[2], 0, "never the question's own prompt");
        assert!(
            [0, 1, 3, 4].iter().all(|&j| seen[j] > 200),
            "the other prompts evenly: {seen:?}"
        );
        // A set of one prompt has no other prompt to answer.
        assert_eq!(
            Response::draw(Some(&off), 1, 0, &mut rng),
            Response::OnTopic
        );
        let mixed = Degraded {
            off_topic_frac: 0.2,
            hot_frac: 0.3,
            hot_temperature: 1.5,
        };
        let n = 20_000;
        let (mut n_off, mut n_hot) = (0, 0);
        for _ in 0..n {
            match Response::draw(Some(&mixed), 7, 0, &mut rng) {
                Response::OffTopic(_) => n_off += 1,
                Response::Hot => n_hot += 1,
                Response::OnTopic => {}
            }
        }
        // Four standard errors of a share of 20,000 draws is below 0.013.
        let share = |k: usize| k as f64 / n as f64;
        assert!((share(n_off) - 0.2).abs() < 0.013, "{}", share(n_off));
        assert!((share(n_hot) - 0.3).abs() < 0.013, "{}", share(n_hot));
    }

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
