//! What a world preset learned, measured with the oracle (ARCHITECTURE.md, "The built-in
//! world"):
//! - the descriptor effect RLCD rests on (paper §3): outputs sampled from p+ against outputs
//!   from p− on held-out prompts, win rate under the oracle on the task's main axis, and the
//!   mean oracle score of p+, p and p− outputs;
//! - RLAIF ability (paper §4.2): how often the model's zero-shot A/B label on the scoring prompt
//!   agrees with the oracle on held-out pairs of responses of independent quality (ties left out).

use burn::tensor::backend::Backend;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::eval::sampling::{Sampling, sample};
use crate::eval::winrate::{Rate, WinCounts};
use crate::model::{Lm, ModelError, PolicyFormat};
use crate::prompts::{ContrastPrompt, Dialogue, Split, contrast_prompts};
use crate::recipe::ReportConfig;
use crate::seed;
use crate::stages::pretrain::PretrainRecord;
use crate::stages::simulate::simulator::{LabelItem, SimulateError, Simulator};
use crate::templates::{TemplateError, Templates};
use crate::world::{Task, World};

use crate::stages::world_report::WorldReportRow;

/// Errors measuring a preset.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A template failed to render.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The world's own prompts failed (a world setting).
    #[error(transparent)]
    World(#[from] crate::world::WorldError),
    /// Zero-shot labelling failed.
    #[error(transparent)]
    Label(#[from] SimulateError),
    /// No pairs with distinct oracle scores to measure labelling on.
    #[error("no {task} pairs with distinct oracle scores; raise [pretrain.report] pairs")]
    NoPairs {
        /// The task.
        task: &'static str,
    },
    /// A statistic is undefined.
    #[error(transparent)]
    Stats(#[from] crate::eval::winrate::StatsError),
}

/// The descriptor effect of one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DescriptorEffect {
    /// p+ output beats p− output under the oracle (ties ½).
    pub counts: WinCounts,
    /// Mean oracle score of p+ outputs.
    pub mean_positive: f64,
    /// Mean oracle score of p outputs.
    pub mean_plain: f64,
    /// Mean oracle score of p− outputs.
    pub mean_negative: f64,
    /// Share of sampled outputs that did not end their turn within the token limit.
    pub unfinished: f64,
}

/// Zero-shot RLAIF labelling against the oracle for one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Pairs judged and pairs whose A/B label named the oracle's better response.
    pub rate: Rate,
    /// Mean probability the model gave the oracle's better response (A/B softmax).
    pub mean_prob: f64,
    /// Share of pairs labelled "A" (position bias).
    pub share_a: f64,
    /// The same pairs labelled in both orders, P(A better) averaged over the two (position
    /// bias cancelled): pairs judged and pairs whose averaged label names the oracle's choice.
    pub debiased: Rate,
}

/// The held-out (test) prompts of `task`.
pub fn test_prompts(world: &World, task: Task) -> Result<Vec<Dialogue>, ReportError> {
    let mut set = world.prompt_set(task)?;
    set.retain(|d| d.split == Split::Test);
    Ok(set)
}

/// Measures the descriptor effect of `task` on the first `cfg.prompts` of the held-out prompts
/// `held_out`.
pub fn descriptor_effect<B: Backend>(
    lm: &Lm<B>,
    world: &World,
    templates: &Templates,
    task: Task,
    held_out: &[Dialogue],
    cfg: &ReportConfig,
    seed: u64,
) -> Result<DescriptorEffect, ReportError> {
    let dialogues = &held_out[..cfg.prompts.min(held_out.len())];
    let contrast = contrast_prompts(
        templates,
        task.name(),
        dialogues,
        seed::derive(seed, &["affix"]),
    )?;
    let mut scores: Vec<Vec<f64>> = Vec::new();
    let mut unfinished = 0usize;
    for (k, pick) in [
        |c: &ContrastPrompt| c.positive.clone(),
        |c: &ContrastPrompt| c.plain.clone(),
        |c: &ContrastPrompt| c.negative.clone(),
    ]
    .iter()
    .enumerate()
    {
        let prompts: Vec<String> = contrast.iter().map(pick).collect();
        let outs = sample(
            lm,
            &PolicyFormat::world(),
            &prompts,
            &Sampling::paper(cfg.max_new_tokens, cfg.batch_size),
            seed::derive_index(seed, "condition", k as u64),
        )?;
        let mut s = Vec::with_capacity(outs.len());
        for (d, (text, finished)) in dialogues.iter().zip(&outs) {
            unfinished += usize::from(!finished);
            s.push(world.main_axis_score(task, &d.turns, text));
        }
        scores.push(s);
    }
    let mut counts = WinCounts::default();
    for (p, n) in scores[0].iter().zip(&scores[2]) {
        counts.record(if p > n {
            Some(true)
        } else if p < n {
            Some(false)
        } else {
            None
        });
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(DescriptorEffect {
        counts,
        mean_positive: mean(&scores[0]),
        mean_plain: mean(&scores[1]),
        mean_negative: mean(&scores[2]),
        unfinished: unfinished as f64 / (3 * dialogues.len()).max(1) as f64,
    })
}

/// Measures zero-shot RLAIF labelling of `task` against the oracle on held-out pairs: two
/// responses of independent latent quality per held-out prompt, a principle drawn per pair, and
/// the label read from the next-token logits of "A" and "B" after "The answer is: (" (the
/// paper's single-order label). Each pair is also labelled with its outputs swapped, and the
/// two orders' P(A better) averaged, which cancels a model's preference for a letter.
pub fn rlaif_agreement<B: Backend>(
    lm: &Lm<B>,
    world: &World,
    templates: &Templates,
    task: Task,
    held_out: &[Dialogue],
    cfg: &ReportConfig,
    seed: u64,
) -> Result<Agreement, ReportError> {
    let dialogues: Vec<(&Dialogue, crate::world::Request)> = held_out
        .iter()
        .filter_map(|d| {
            let last = d.turns.last().map(String::as_str).unwrap_or("");
            world.parse_request(task, last).map(|r| (d, r))
        })
        .collect();
    let principles = templates.principles(task.name())?;
    let axis = task.main_axis();
    // Per pair: the turns, the principle, both outputs and whether the first is better.
    let mut pairs: Vec<(&[String], &str, [String; 2], bool)> = Vec::new();
    let mut rng = seed::rng(seed::derive(seed, &["pairs"]));
    let mut tries = 0;
    while pairs.len() < cfg.pairs && tries < cfg.pairs * 20 && !dialogues.is_empty() {
        tries += 1;
        let (d, req) = &dialogues[rng.random_range(0..dialogues.len())];
        let mut outs = Vec::new();
        let mut s = Vec::new();
        for _ in 0..2 {
            let q: f64 = rng.sample(rand_distr::StandardNormal);
            let text = world.output_text(req, &world.respond(req, q, &mut rng).1);
            s.push(world.score_request(req, &text).axis(axis).unwrap_or(0.0));
            outs.push(text);
        }
        if (s[0] - s[1]).abs() < 1e-9 {
            continue;
        }
        let principle = &principles[rng.random_range(0..principles.len())];
        let [first, second]: [String; 2] = outs.try_into().expect("two outputs");
        pairs.push((&d.turns, principle, [first, second], s[0] > s[1]));
    }
    if pairs.is_empty() {
        return Err(ReportError::NoPairs { task: task.name() });
    }
    let items = |order: [usize; 2]| -> Vec<LabelItem<'_>> {
        pairs
            .iter()
            .map(|(turns, principle, outs, _)| LabelItem {
                turns,
                principle,
                output_a: &outs[order[0]],
                output_b: &outs[order[1]],
            })
            .collect()
    };
    let simulator = Simulator::world(lm);
    // P(B) of the pair as drawn is 1 − P(first better); with the outputs swapped, the first
    // output sits in slot B, so P(B) is P(first better).
    let p_first: Vec<f64> = simulator
        .label(templates, &items([0, 1]), cfg.batch_size)?
        .into_iter()
        .map(|p_b| 1.0 - p_b)
        .collect();
    let p_second = simulator.label(templates, &items([1, 0]), cfg.batch_size)?;
    let truth: Vec<bool> = pairs.iter().map(|p| p.3).collect();
    let (mut agree, mut agree_both, mut says_a, mut prob_sum) = (0u64, 0u64, 0u64, 0.0);
    for ((&a_better, &p_a), &p_swapped) in truth.iter().zip(&p_first).zip(&p_second) {
        if (p_a > 0.5) == a_better {
            agree += 1;
        }
        let both = (p_a + p_swapped) / 2.0;
        if (both > 0.5) == a_better {
            agree_both += 1;
        }
        says_a += u64::from(p_a > 0.5);
        prob_sum += if a_better { p_a } else { 1.0 - p_a };
    }
    let n = pairs.len() as u64;
    let rate = |k| Rate::new(n, k);
    Ok(Agreement {
        rate: rate(agree)?,
        mean_prob: prob_sum / n as f64,
        share_a: says_a as f64 / n as f64,
        debiased: rate(agree_both)?,
    })
}

/// Measures one pretrained world model, labelled `label` in the rows, on every task: the rows
/// of the world report.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_preset<B: Backend>(
    label: &str,
    lm: &Lm<B>,
    world: &World,
    templates: &Templates,
    record: &PretrainRecord,
    cfg: &ReportConfig,
    seed: u64,
    on_task: &mut dyn FnMut(Task),
) -> Result<Vec<WorldReportRow>, ReportError> {
    let mut rows = Vec::new();
    for task in Task::ALL {
        let task_seed = seed::derive(seed, &[task.name()]);
        let held_out = test_prompts(world, task)?;
        let effect = descriptor_effect(
            lm,
            world,
            templates,
            task,
            &held_out,
            cfg,
            seed::derive(task_seed, &["descriptor"]),
        )?;
        let agreement = rlaif_agreement(
            lm,
            world,
            templates,
            task,
            &held_out,
            cfg,
            seed::derive(task_seed, &["rlaif"]),
        )?;
        rows.push(WorldReportRow {
            preset: label.to_string(),
            task: task.name().to_string(),
            params: record.params as u64,
            perplexity: record.perplexity,
            descriptor: effect.counts,
            score_positive: effect.mean_positive,
            score_plain: effect.mean_plain,
            score_negative: effect.mean_negative,
            rlaif: agreement.rate,
            rlaif_mean_prob: agreement.mean_prob,
            rlaif_share_a: agreement.share_a,
            rlaif_both_orders: agreement.debiased,
            train_tokens_per_s: record.log.tokens_per_s,
            train_seconds: record.log.seconds,
        });
        on_task(task);
    }
    Ok(rows)
}
