//! The world's pretraining corpus (ARCHITECTURE.md, "The built-in world"). Two kinds of documents:
//! - dialogues in the Anthropic HH format the paper prompts with (§3): each response has a
//!   latent quality q ~ N(0, 1) that selects its moves, and its assistant tag carries, for a
//!   configurable fraction, a descriptor whose polarity is sign(q + noise·ε) — drawn from the
//!   template family's affix pairs (the paper's phrasings) and further phrases — so contrast
//!   prompts shift what a model trained here writes, noisily, as descriptors do for real LMs;
//! - RLAIF judgment documents (§4.2's scoring prompt, rendered with `rlaif/score.j2`) whose
//!   label names the better response with probability sigmoid(sharpness · score gap), so a
//!   model learns to label pairs imperfectly;
//! - for a model with a judging corpus of its own (`[models.<name>.judging]`), judge-question
//!   documents: §4.3's judge questions answered by the oracle, as sharply as its labels, over
//!   two responses whose latent qualities may be correlated, so that the answer depends on
//!   comparing them rather than on how good either one is alone.

use rand::Rng;
use rand::rngs::StdRng;
use rayon::prelude::*;

use super::format::ANSWER_LEAD;
use super::grammar::join;
use super::{Request, Task, World};
use crate::seed;
use crate::templates::{AffixPair, TemplateError, Templates, judge_template};

/// The descriptor and principle texts the corpus draws from, per task.
#[derive(Clone, Debug, PartialEq)]
pub struct CorpusTexts {
    /// Positive descriptors per task (affix pairs first, then the world's extra phrases).
    pub positive: [Vec<String>; 3],
    /// Negative descriptors per task.
    pub negative: [Vec<String>; 3],
    /// RLAIF principles per task.
    pub principles: [Vec<String>; 3],
}

fn index(task: Task) -> usize {
    Task::ALL.iter().position(|t| *t == task).unwrap_or(0)
}

impl CorpusTexts {
    /// Collects the texts: affix pairs and principles of the template families named like the
    /// tasks, plus the world's extra descriptors.
    pub fn new(world: &World, templates: &Templates) -> Result<CorpusTexts, TemplateError> {
        let mut texts = CorpusTexts {
            positive: Default::default(),
            negative: Default::default(),
            principles: Default::default(),
        };
        for task in Task::ALL {
            let i = index(task);
            let pairs: Vec<AffixPair> = templates.affixes(task.name())?;
            let extra = world.descriptors(task);
            texts.positive[i] = pairs
                .iter()
                .map(|p| p.positive.clone())
                .chain(extra.positive.iter().cloned())
                .collect();
            texts.negative[i] = pairs
                .iter()
                .map(|p| p.negative.clone())
                .chain(extra.negative.iter().cloned())
                .collect();
            texts.principles[i] = templates.principles(task.name())?;
        }
        Ok(texts)
    }
}

/// The assistant tag, with a descriptor for a `descriptor_frac` share of responses.
fn tag(world: &World, texts: &CorpusTexts, task: Task, q: f64, rng: &mut StdRng) -> String {
    let c = &world.config;
    if !rng.random_bool(c.descriptor_frac) {
        return "Assistant".into();
    }
    let eps: f64 = rng.sample(rand_distr::StandardNormal);
    let list = if q + c.descriptor_noise * eps > 0.0 {
        &texts.positive[index(task)]
    } else {
        &texts.negative[index(task)]
    };
    format!("Assistant ({})", list[rng.random_range(0..list.len())])
}

fn draw_task(world: &World, rng: &mut StdRng) -> Task {
    let m = &world.config.mix;
    let w = [m.harmless, m.helpful, m.outlining];
    let mut u = rng.random::<f64>() * w.iter().sum::<f64>();
    for (t, wi) in Task::ALL.iter().zip(w) {
        if u < wi {
            return *t;
        }
        u -= wi;
    }
    Task::Outlining
}

/// One dialogue document: "\n\nHuman: …\n\nAssistant (descriptor): …" (earlier exchanges,
/// when drawn, carry their own descriptors).
pub fn dialogue(world: &World, texts: &CorpusTexts, task: Task, rng: &mut StdRng) -> String {
    let mut out = String::new();
    let exchanges = if task == Task::Harmless && rng.random_bool(world.config.multi_turn_frac) {
        2
    } else {
        1
    };
    for _ in 0..exchanges {
        let (req, human) = world.request(task, rng);
        let q: f64 = rng.sample(rand_distr::StandardNormal);
        let (_, response) = world.respond(&req, q, rng);
        let tag = tag(world, texts, task, q, rng);
        out.push_str(&format!(
            "\n\nHuman: {}\n\n{tag}: {}",
            join(&human),
            join(&response)
        ));
    }
    out
}

/// How the judge-question documents of a model's own judging corpus are drawn
/// (`[models.<name>.judging]`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JudgeQuestions {
    /// Share of the corpus's documents that are judge questions, in [0, 1] (0: none).
    pub frac: f64,
    /// Correlation of the two responses' latent qualities, in [0, 1) (0: independent).
    pub pair_correlation: f64,
}

/// Two responses to `req` whose latent qualities are standard normal with correlation `rho`
/// (independent at 0), and the oracle's score of the first minus the second's on `axis`.
fn two_responses(
    world: &World,
    req: &Request,
    axis: &str,
    rho: f64,
    rng: &mut StdRng,
) -> ([String; 2], f64) {
    let mut one = |shared: f64| {
        let z: f64 = rng.sample(rand_distr::StandardNormal);
        let q = rho * shared + (1.0 - rho * rho).sqrt() * z;
        let text = world.output_text(req, &world.respond(req, q, rng).1);
        let score = world.score_request(req, &text).axis(axis).unwrap_or(0.0);
        (text, score, q)
    };
    let (a, score_a, q_a) = one(0.0);
    let (b, score_b, _) = one(q_a);
    ([a, b], score_a - score_b)
}

/// The letter of the better response by the oracle's score gap (first minus second), drawn
/// with probability sigmoid(sharpness · gap) for "A".
fn oracle_label(world: &World, gap: f64, rng: &mut StdRng) -> &'static str {
    let p_a = 1.0 / (1.0 + (-world.config.judgment_sharpness * gap).exp());
    if rng.random_bool(p_a.clamp(0.0, 1.0)) {
        "A"
    } else {
        "B"
    }
}

/// One judgment document: the RLAIF scoring prompt over two responses of independent quality,
/// then the label and ")".
pub fn judgment(
    world: &World,
    texts: &CorpusTexts,
    templates: &Templates,
    task: Task,
    rng: &mut StdRng,
) -> Result<String, TemplateError> {
    let (turns, req) = world.prompt_turns(task, rng);
    let (outputs, gap) = two_responses(world, &req, task.main_axis(), 0.0, rng);
    let principles = &texts.principles[index(task)];
    let principle = &principles[rng.random_range(0..principles.len())];
    let label = oracle_label(world, gap, rng);
    let prompt = templates.render(
        "rlaif/score.j2",
        minijinja::context! {
            turns => turns,
            principle => principle,
            output_a => outputs[0],
            output_b => outputs[1],
        },
    )?;
    Ok(format!("{prompt}{label})"))
}

/// The comparison of one judge question: a dialogue of `task`, an axis of it drawn uniformly
/// with its judge question (`judge/*.j2`, paper §4.3), two responses and the oracle's score
/// gap between them on that axis.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgePair {
    /// The dialogue turns.
    pub turns: Vec<String>,
    /// The axis asked about.
    pub axis: String,
    /// The judge question's template file.
    pub template: &'static str,
    /// The two responses, in the order the question shows them.
    pub outputs: [String; 2],
    /// The oracle's score of the first response minus the second's on `axis`.
    pub gap: f64,
}

/// Draws a [`JudgePair`] of `task` whose two responses' latent qualities have correlation
/// `pair_correlation`.
pub fn judge_pair(world: &World, task: Task, pair_correlation: f64, rng: &mut StdRng) -> JudgePair {
    let (turns, req) = world.prompt_turns(task, rng);
    let axes: Vec<String> = task.axes().iter().map(|a| a.to_string()).collect();
    let axis = axes[rng.random_range(0..axes.len())].clone();
    let template =
        judge_template(&axes, &axis).expect("every axis of a world task has a judge question");
    let (outputs, gap) = two_responses(world, &req, &axis, pair_correlation, rng);
    JudgePair {
        turns,
        axis,
        template,
        outputs,
        gap,
    }
}

impl JudgePair {
    /// The judge question over the two responses, first shown first unless `swapped`, ending
    /// with [`ANSWER_LEAD`].
    pub fn question(&self, templates: &Templates, swapped: bool) -> Result<String, TemplateError> {
        let (first, second) = if swapped {
            (&self.outputs[1], &self.outputs[0])
        } else {
            (&self.outputs[0], &self.outputs[1])
        };
        let question = templates.render(
            self.template,
            minijinja::context! {
                turns => self.turns,
                output_a => first,
                output_b => second,
            },
        )?;
        Ok(format!("{question}{ANSWER_LEAD}"))
    }
}

/// One judge-question document: a [`judge_pair`]'s question, then the letter of the response
/// the oracle scores higher on its axis (with probability sigmoid(sharpness · score gap)) and
/// ")" — what an LM judge is asked, answered.
pub fn judge_question(
    world: &World,
    templates: &Templates,
    task: Task,
    pair_correlation: f64,
    rng: &mut StdRng,
) -> Result<String, TemplateError> {
    let pair = judge_pair(world, task, pair_correlation, rng);
    let label = oracle_label(world, pair.gap, rng);
    Ok(format!("{}{label})", pair.question(templates, false)?))
}

/// The corpus: `world.config.documents` documents from `seed`, document `i` drawn from its own
/// child seed (so the corpus is the same however it is computed). A `questions.frac` share of
/// them are [`judge_question`]s (none when 0, leaving the corpus as the world's own), a
/// `judgment_frac` share of the rest RLAIF [`judgment`]s, the others [`dialogue`]s.
pub fn documents(
    world: &World,
    templates: &Templates,
    questions: JudgeQuestions,
    seed: u64,
) -> Result<Vec<String>, TemplateError> {
    let texts = CorpusTexts::new(world, templates)?;
    (0..world.config.documents)
        .into_par_iter()
        .map(|i| {
            let mut rng = seed::rng(seed::derive_index(seed, "document", i as u64));
            let task = draw_task(world, &mut rng);
            if questions.frac > 0.0 && rng.random_bool(questions.frac.min(1.0)) {
                judge_question(world, templates, task, questions.pair_correlation, &mut rng)
            } else if rng.random_bool(world.config.judgment_frac) {
                judgment(world, &texts, templates, task, &mut rng)
            } else {
                Ok(dialogue(world, &texts, task, &mut rng))
            }
        })
        .collect()
}

/// The literal text of a Jinja template: comments, statements and expressions removed.
pub fn template_literal_text(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    loop {
        let next = ["{#", "{%", "{{"]
            .iter()
            .filter_map(|open| rest.find(open).map(|i| (i, *open)))
            .min();
        let Some((i, open)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..i]);
        out.push(' ');
        let close = match open {
            "{#" => "#}",
            "{%" => "%}",
            _ => "}}",
        };
        rest = match rest[i + 2..].find(close) {
            Some(j) => &rest[i + 2 + j + 2..],
            None => "",
        };
    }
    out
}

/// The world vocabulary, sorted: every word the world's patterns and tables write, every word
/// of `documents`, and `extra_words` (the literal words of the judge and scoring prompts, so
/// that they encode without unknown words).
pub fn vocabulary(world: &World, documents: &[String], extra_words: &[String]) -> Vec<String> {
    let mut set = world.words();
    for d in documents {
        set.extend(super::grammar::words(d));
    }
    set.extend(extra_words.iter().cloned());
    set.into_iter().collect()
}
