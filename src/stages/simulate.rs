//! Preference-pair simulation (paper §3 and §4.2): RLCD, RLAIF and RLCD-Rescore pairs from one
//! simulator LM.
//!
//! - RLCD: per training prompt one affix pair is drawn; o+ is sampled from p+ and o− from p−,
//!   o+ is put in slot A or B by a seeded coin and labelled preferred (a hard 0/1 label).
//! - RLAIF: two samples from the unmodified prompt p, labelled by the same LM zero-shot with the
//!   scoring prompt `rlaif/score.j2`: the soft label is P(B) = softmax(logit "A", logit "B")[B]
//!   at the position after "The answer is: (", under one principle per prompt.
//! - RLCD-Rescore: RLCD pairs relabelled the RLAIF way with the principle of the same index as
//!   the pair's affix.
//!
//! Sampling follows the paper: temperature / top-p / token limit from [`SimulateConfig`], every
//! output cut at the next speaker tag; an output that never ends its turn is re-sampled with a
//! fresh derived seed up to `retries` times, after which its prompt is dropped and counted.
//! Every seed derives from the stage seed and the prompt id, so pairs do not depend on batch
//! size or order. Pairs round-trip through a polars frame ([`pairs_to_frame`],
//! [`pairs_from_frame`]) for Parquet storage.

use std::cell::RefCell;
use std::collections::VecDeque;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::eval::winrate::Rate;
use crate::model::sampling::next_token_logits;
use crate::model::{FinishReason, GenerateOptions, GenerationRequest, Lm, ModelError};
use crate::recipe::SimulateConfig;
use crate::seed;
use crate::stages::prompts::{ContrastPrompt, Dialogue, Split, contrast_prompts};
use crate::stages::world_report::{BOS, STOP};
use crate::templates::{SCORE_TEMPLATE, TemplateError, Templates};

/// Version of the pair format and of the simulation procedure; part of the stage's cache key.
pub const SIMULATE_VERSION: u32 = 1;

/// How a set of pairs was simulated and labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Contrast prompts p+ / p−, hard label on o+ (paper §3).
    Rlcd,
    /// Two samples of p, soft label from the simulator's A/B logits (paper §4.2).
    Rlaif,
    /// RLCD outputs with RLAIF soft labels (paper §4.2).
    RlcdRescore,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 3] = [Method::Rlcd, Method::Rlaif, Method::RlcdRescore];

    /// The method's name in recipes and tables (`rlcd`, `rlaif`, `rlcd-rescore`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Rlcd => "rlcd",
            Method::Rlaif => "rlaif",
            Method::RlcdRescore => "rlcd-rescore",
        }
    }

    /// Looks a method up by its name.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A slot of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// The first output, `output_a`.
    A,
    /// The second output, `output_b`.
    B,
}

impl Slot {
    /// `"A"` or `"B"`.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// Parses `"A"` or `"B"`.
    pub fn from_name(name: &str) -> Option<Slot> {
        match name {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }
}

/// One simulated preference pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// How it was simulated and labelled.
    pub method: Method,
    /// Id of the dialogue it continues.
    pub prompt_id: String,
    /// The dialogue turns (human, assistant, …, human).
    pub turns: Vec<String>,
    /// The unmodified prompt p (the plain template rendered; no model prefix).
    pub prompt: String,
    /// Output in slot A.
    pub output_a: String,
    /// Output in slot B.
    pub output_b: String,
    /// Probability that B is preferred, in [0, 1] (exactly 0 or 1 for RLCD's hard labels).
    pub soft_label: f64,
    /// Affix pair drawn for this prompt (RLCD and RLCD-Rescore).
    pub affix_index: Option<usize>,
    /// Slot holding o+, the output sampled from p+ (RLCD and RLCD-Rescore).
    pub positive_slot: Option<Slot>,
    /// Principle of the scoring prompt (RLAIF and RLCD-Rescore).
    pub principle_index: Option<usize>,
    /// Length of `output_a` in simulator tokens (the text re-encoded).
    pub len_a: usize,
    /// Length of `output_b` in simulator tokens.
    pub len_b: usize,
    /// Sampling seed of the draw that produced `output_a`.
    pub seed_a: u64,
    /// Sampling seed of the draw that produced `output_b`.
    pub seed_b: u64,
    /// Draws `output_a` took (1 + re-samples).
    pub tries_a: u32,
    /// Draws `output_b` took.
    pub tries_b: u32,
}

impl Pair {
    /// An unlabelled pair (soft label 0.5, no affix, slot or principle) of the draws `a` and
    /// `b` for dialogue `d`, whose plain prompt is in `c`.
    fn drawn(method: Method, d: &Dialogue, c: &ContrastPrompt, a: Sampled, b: Sampled) -> Pair {
        Pair {
            method,
            prompt_id: d.id.clone(),
            turns: d.turns.clone(),
            prompt: c.plain.clone(),
            output_a: a.text,
            output_b: b.text,
            soft_label: 0.5,
            affix_index: None,
            positive_slot: None,
            principle_index: None,
            len_a: a.len,
            len_b: b.len,
            seed_a: a.seed,
            seed_b: b.seed,
            tries_a: a.tries,
            tries_b: b.tries,
        }
    }

    /// The slot the label prefers (`soft_label > 0.5` → B, `< 0.5` → A), `None` at exactly 0.5.
    pub fn preferred(&self) -> Option<Slot> {
        if self.soft_label > 0.5 {
            Some(Slot::B)
        } else if self.soft_label < 0.5 {
            Some(Slot::A)
        } else {
            None
        }
    }

    /// The output in `slot`.
    pub fn output(&self, slot: Slot) -> &str {
        match slot {
            Slot::A => &self.output_a,
            Slot::B => &self.output_b,
        }
    }

    /// The token length of the output in `slot`.
    pub fn len(&self, slot: Slot) -> usize {
        match slot {
            Slot::A => self.len_a,
            Slot::B => self.len_b,
        }
    }
}

/// The result of simulating one prompt set.
#[derive(Clone, Debug, PartialEq)]
pub struct Simulation {
    /// The pairs, in the order of the prompts.
    pub pairs: Vec<Pair>,
    /// Prompts dropped because an output never ended its turn within `retries` re-samples.
    pub dropped: usize,
    /// Ids of the dropped prompts, in prompt order.
    pub dropped_ids: Vec<String>,
    /// Prompts simulated (pairs + dropped).
    pub attempted: usize,
    /// Sequences generated in total, re-samples included.
    pub sequences: usize,
}

impl Simulation {
    /// Counts prompt `id` as dropped.
    fn drop_prompt(&mut self, id: &str) {
        self.dropped += 1;
        self.dropped_ids.push(id.to_string());
    }
}

/// Why pairs cannot be simulated, labelled or read back.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The simulator model failed (prompt too long for its context, bad sampling settings, …).
    #[error(
        "simulator: {0}\n  fix: check [simulate] (max_new_tokens, temperature, top_p) against the simulator model"
    )]
    Model(#[from] ModelError),
    /// A template failed to render.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A setting is unusable.
    #[error("[simulate] {key}: {message}\n  fix: {fix}")]
    Config {
        /// The key under `[simulate]`.
        key: &'static str,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// Nothing to simulate from.
    #[error("{what}: nothing to simulate from\n  fix: {fix}")]
    Empty {
        /// What is empty.
        what: String,
        /// How to fix it.
        fix: String,
    },
    /// The simulator's tokenizer has no single token for a label letter.
    #[error(
        "the simulator's tokenizer has no single token for the label {label:?}, so it cannot label pairs zero-shot\n  fix: use a simulator whose vocabulary holds \"A\" and \"B\" as tokens"
    )]
    LabelToken {
        /// The label letter.
        label: &'static str,
    },
    /// A pairs table does not hold what [`pairs_to_frame`] writes.
    #[error(
        "pairs table, column `{column}`: {message}\n  fix: rebuild the pairs with the simulate stage (the file is damaged or from another version)"
    )]
    Frame {
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A pair cannot be used.
    #[error("pair of prompt `{prompt_id}`: {message}\n  fix: {fix}")]
    BadPair {
        /// The pair's prompt id.
        prompt_id: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
}

/// Generation options for `cfg`, cutting at `stop`.
pub fn generate_options(cfg: &SimulateConfig, stop: &[String]) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: cfg.max_new_tokens,
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        stop: stop.to_vec(),
        ..GenerateOptions::default()
    }
}

/// The training dialogues of `dialogues`, at most `cfg.n_prompts` of them, in order.
pub fn training_dialogues<'d>(
    dialogues: &'d [Dialogue],
    cfg: &SimulateConfig,
) -> Vec<&'d Dialogue> {
    dialogues
        .iter()
        .filter(|d| d.split == Split::Train)
        .take(cfg.n_prompts.unwrap_or(usize::MAX))
        .collect()
}

/// The seed of draw `attempt` (0 = first) of output `side` of prompt `id`.
pub fn sample_seed(seed: u64, id: &str, side: &str, attempt: u32) -> u64 {
    seed::derive(seed, &["sample", id, side, &attempt.to_string()])
}

/// The slot of o+ for prompt `id`: B when `derive(seed, ["slot", id])` is odd.
pub fn positive_slot(seed: u64, id: &str) -> Slot {
    if seed::derive(seed, &["slot", id]) % 2 == 1 {
        Slot::B
    } else {
        Slot::A
    }
}

/// The principle drawn for an RLAIF prompt `id` among `n` principles.
pub fn principle_for(seed: u64, id: &str, n: usize) -> usize {
    (seed::derive(seed, &["principle", id]) % n.max(1) as u64) as usize
}

/// One sampled output that ended its turn.
#[derive(Clone, Debug, PartialEq)]
struct Sampled {
    text: String,
    len: usize,
    seed: u64,
    tries: u32,
}

/// A queued draw: prompt `prompt`, side `side`, draw number `attempt`.
#[derive(Clone, Copy, Debug)]
struct Job {
    prompt: usize,
    side: usize,
    attempt: u32,
}

/// A pair whose two outputs are sampled, before labelling.
struct Drawn {
    outputs: [Sampled; 2],
}

/// A pair to label zero-shot with the scoring prompt.
pub struct LabelItem<'p> {
    /// The dialogue turns.
    pub turns: &'p [String],
    /// The principle text.
    pub principle: &'p str,
    /// Output in slot A.
    pub output_a: &'p str,
    /// Output in slot B.
    pub output_b: &'p str,
}

type Progress<'a> = Box<dyn FnMut(usize, usize) + 'a>;

/// A simulator LM with the conventions of its family: the text put before every prompt (the
/// BOS text for built-in world models, `""` for GGUF models, whose tokenizer conventions add
/// nothing here) and the stop strings that end a turn.
pub struct Simulator<'a, B: Backend> {
    lm: &'a Lm<B>,
    prefix: String,
    stop: Vec<String>,
    progress: RefCell<Option<Progress<'a>>>,
}

impl<'a, B: Backend> Simulator<'a, B> {
    /// A simulator putting `prefix` before every prompt and cutting outputs at `stop`.
    pub fn new(lm: &'a Lm<B>, prefix: impl Into<String>, stop: Vec<String>) -> Self {
        Self {
            lm,
            prefix: prefix.into(),
            stop,
            progress: RefCell::new(None),
        }
    }

    /// A built-in world simulator: prefix [`BOS`], stop at the next speaker tag ([`STOP`]).
    pub fn world(lm: &'a Lm<B>) -> Self {
        Self::new(lm, BOS, STOP.iter().map(|s| s.to_string()).collect())
    }

    /// A simulator for a pretrained (GGUF) model: no prefix, stop at the next speaker tag.
    pub fn pretrained(lm: &'a Lm<B>) -> Self {
        Self::new(lm, "", STOP.iter().map(|s| s.to_string()).collect())
    }

    /// Calls `f(prompts_settled, prompts_total)` whenever a batch of prompts is settled
    /// (sampled or dropped; for labelling, scored).
    pub fn with_progress(self, f: impl FnMut(usize, usize) + 'a) -> Self {
        *self.progress.borrow_mut() = Some(Box::new(f));
        self
    }

    /// The model.
    pub fn lm(&self) -> &'a Lm<B> {
        self.lm
    }

    /// The text put before every prompt.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stop strings.
    pub fn stop(&self) -> &[String] {
        &self.stop
    }

    fn report(&self, done: usize, total: usize) {
        if let Some(f) = self.progress.borrow_mut().as_mut() {
            f(done, total);
        }
    }

    /// Samples both outputs of every prompt (`prompts[i][side]`, seeds labelled by
    /// `sides[side]`), in batches of `cfg.batch_size` that mix first draws and re-samples; an
    /// output that hits the token limit is queued again with the next draw's seed until it has
    /// been drawn `1 + retries` times. Returns, per prompt, both outputs or `None` when one of
    /// them never ended its turn, and the number of sequences generated.
    fn draw(
        &self,
        ids: &[&str],
        prompts: &[[&str; 2]],
        sides: [&str; 2],
        cfg: &SimulateConfig,
        seed: u64,
    ) -> Result<(Vec<Option<Drawn>>, usize), SimulateError> {
        check_config(cfg)?;
        let opts = generate_options(cfg, &self.stop);
        let n = prompts.len();
        let mut queue: VecDeque<Job> = (0..n)
            .flat_map(|prompt| {
                (0..2).map(move |side| Job {
                    prompt,
                    side,
                    attempt: 0,
                })
            })
            .collect();
        let mut got: Vec<[Option<Sampled>; 2]> = (0..n).map(|_| [None, None]).collect();
        let mut exhausted = vec![false; n];
        let mut open = vec![2u8; n];
        let (mut settled, mut sequences) = (0usize, 0usize);
        while !queue.is_empty() {
            let take = cfg.batch_size.min(queue.len());
            let batch: Vec<Job> = queue.drain(..take).collect();
            let requests: Vec<GenerationRequest> = batch
                .iter()
                .map(|j| GenerationRequest {
                    prompt: format!("{}{}", self.prefix, prompts[j.prompt][j.side]),
                    seed: sample_seed(seed, ids[j.prompt], sides[j.side], j.attempt),
                })
                .collect();
            let gens = self.lm.generate(&requests, &opts)?;
            sequences += gens.len();
            for ((job, req), g) in batch.iter().zip(&requests).zip(gens) {
                if g.finish_reason == FinishReason::Length {
                    if job.attempt < cfg.retries {
                        queue.push_back(Job {
                            attempt: job.attempt + 1,
                            ..*job
                        });
                        continue;
                    }
                    exhausted[job.prompt] = true;
                } else {
                    let len = self.lm.encode(&g.text)?.len();
                    got[job.prompt][job.side] = Some(Sampled {
                        text: g.text,
                        len,
                        seed: req.seed,
                        tries: job.attempt + 1,
                    });
                }
                open[job.prompt] -= 1;
                if open[job.prompt] == 0 {
                    settled += 1;
                }
            }
            self.report(settled, n);
        }
        let drawn = got
            .into_iter()
            .zip(exhausted)
            .map(|([a, b], failed)| match (a, b, failed) {
                (Some(a), Some(b), false) => Some(Drawn { outputs: [a, b] }),
                _ => None,
            })
            .collect();
        Ok((drawn, sequences))
    }

    /// Token ids of the label letters `"A"` and `"B"`.
    fn label_ids(&self) -> Result<[u32; 2], SimulateError> {
        let one = |label: &'static str| -> Result<u32, SimulateError> {
            if let Some(id) = self.lm.tokenizer.token_to_id(label) {
                return Ok(id);
            }
            match self.lm.encode(label)?.as_slice() {
                [id] => Ok(*id),
                _ => Err(SimulateError::LabelToken { label }),
            }
        };
        Ok([one("A")?, one("B")?])
    }

    /// The zero-shot soft label P(B) of every item: the scoring prompt `rlaif/score.j2`
    /// rendered with the item (after the simulator's prefix), and the softmax of the next-token
    /// logits of "A" and "B" after its final "(", in batches of `batch_size`.
    pub fn label(
        &self,
        templates: &Templates,
        items: &[LabelItem<'_>],
        batch_size: usize,
    ) -> Result<Vec<f64>, SimulateError> {
        if batch_size == 0 {
            return Err(batch_size_error());
        }
        let [a_id, b_id] = self.label_ids()?;
        let device = self.lm.model.device();
        let pick = Tensor::<B, 1, Int>::from_data(
            TensorData::new(vec![a_id as i64, b_id as i64], [2]),
            &device,
        );
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(batch_size) {
            let prompts = chunk
                .iter()
                .map(|it| {
                    let text = templates.render(
                        SCORE_TEMPLATE,
                        minijinja::context! {
                            turns => it.turns,
                            principle => it.principle,
                            output_a => it.output_a,
                            output_b => it.output_b,
                        },
                    )?;
                    Ok(self.lm.encode(&format!("{}{text}", self.prefix))?)
                })
                .collect::<Result<Vec<_>, SimulateError>>()?;
            let logits = next_token_logits(&self.lm.model, &prompts)?.select(1, pick.clone());
            let host = logits
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| ModelError::Data(format!("{e:?}")))?;
            for ab in host.chunks(2) {
                out.push(prob_b(f64::from(ab[0]), f64::from(ab[1])));
            }
            self.report(out.len(), items.len());
        }
        Ok(out)
    }

    /// The training dialogues (at most `cfg.n_prompts`), their contrast prompts, two draws per
    /// prompt from the prompts `pick` chooses (named `sides` in the seeds), and an empty
    /// [`Simulation`] counting them.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn sample_both(
        &self,
        templates: &Templates,
        task_templates: &str,
        dialogues: &[Dialogue],
        cfg: &SimulateConfig,
        seed: u64,
        pick: impl Fn(&ContrastPrompt) -> [&str; 2],
        sides: [&str; 2],
    ) -> Result<
        (
            Vec<Dialogue>,
            Vec<ContrastPrompt>,
            Vec<Option<Drawn>>,
            Simulation,
        ),
        SimulateError,
    > {
        let chosen = nonempty(training_dialogues(dialogues, cfg), dialogues.len())?;
        let owned: Vec<Dialogue> = chosen.iter().map(|d| (*d).clone()).collect();
        let contrast = contrast_prompts(templates, task_templates, &owned, seed)?;
        let ids: Vec<&str> = owned.iter().map(|d| d.id.as_str()).collect();
        let prompts: Vec<[&str; 2]> = contrast.iter().map(&pick).collect();
        let (drawn, sequences) = self.draw(&ids, &prompts, sides, cfg, seed)?;
        let sim = Simulation {
            pairs: Vec::new(),
            dropped: 0,
            dropped_ids: Vec::new(),
            attempted: owned.len(),
            sequences,
        };
        Ok((owned, contrast, drawn, sim))
    }

    /// RLCD pairs for the training dialogues of `dialogues` (at most `cfg.n_prompts`): per
    /// prompt the affix pair of [`contrast_prompts`] (drawn from `seed`), o+ sampled from p+
    /// and o− from p−, o+ put in [`positive_slot`] and labelled preferred.
    pub fn simulate_rlcd(
        &self,
        templates: &Templates,
        task_templates: &str,
        dialogues: &[Dialogue],
        cfg: &SimulateConfig,
        seed: u64,
    ) -> Result<Simulation, SimulateError> {
        let (owned, contrast, drawn, mut sim) = self.sample_both(
            templates,
            task_templates,
            dialogues,
            cfg,
            seed,
            |c| [c.positive.as_str(), c.negative.as_str()],
            ["positive", "negative"],
        )?;
        for ((d, c), drawn) in owned.iter().zip(&contrast).zip(drawn) {
            let Some(Drawn {
                outputs: [pos, neg],
            }) = drawn
            else {
                sim.drop_prompt(&d.id);
                continue;
            };
            let slot = positive_slot(seed, &d.id);
            let (a, b) = match slot {
                Slot::A => (pos, neg),
                Slot::B => (neg, pos),
            };
            sim.pairs.push(Pair {
                soft_label: if slot == Slot::B { 1.0 } else { 0.0 },
                affix_index: Some(c.affix_index),
                positive_slot: Some(slot),
                ..Pair::drawn(Method::Rlcd, d, c, a, b)
            });
        }
        Ok(sim)
    }

    /// RLAIF pairs for the training dialogues of `dialogues` (at most `cfg.n_prompts`): two
    /// samples of the plain prompt, labelled zero-shot ([`Simulator::label`]) under principle
    /// [`principle_for`] of the task family's principles.
    pub fn simulate_rlaif(
        &self,
        templates: &Templates,
        task_templates: &str,
        dialogues: &[Dialogue],
        cfg: &SimulateConfig,
        seed: u64,
    ) -> Result<Simulation, SimulateError> {
        let principles = templates.principles(task_templates)?;
        let (owned, contrast, drawn, mut sim) = self.sample_both(
            templates,
            task_templates,
            dialogues,
            cfg,
            seed,
            |c| [c.plain.as_str(), c.plain.as_str()],
            ["a", "b"],
        )?;
        for ((d, c), drawn) in owned.iter().zip(&contrast).zip(drawn) {
            let Some(Drawn { outputs: [a, b] }) = drawn else {
                sim.drop_prompt(&d.id);
                continue;
            };
            sim.pairs.push(Pair {
                principle_index: Some(principle_for(seed, &d.id, principles.len())),
                ..Pair::drawn(Method::Rlaif, d, c, a, b)
            });
        }
        self.relabel(templates, &principles, &mut sim.pairs, cfg.batch_size)?;
        Ok(sim)
    }

    /// RLCD-Rescore: the RLCD `pairs` relabelled zero-shot like RLAIF, each under the principle
    /// whose index is its affix index (modulo the number of principles). Outputs, slots and
    /// seeds are kept; `method` becomes [`Method::RlcdRescore`].
    pub fn rescore(
        &self,
        templates: &Templates,
        task_templates: &str,
        pairs: &[Pair],
        batch_size: usize,
    ) -> Result<Vec<Pair>, SimulateError> {
        let principles = templates.principles(task_templates)?;
        let mut out = Vec::with_capacity(pairs.len());
        for p in pairs {
            let Some(affix) = p.affix_index else {
                return Err(SimulateError::BadPair {
                    prompt_id: p.prompt_id.clone(),
                    message: format!("a {} pair has no affix index", p.method.name()),
                    fix: "rescore RLCD pairs (method `rlcd`), which record their affix pair".into(),
                });
            };
            let mut q = p.clone();
            q.method = Method::RlcdRescore;
            q.principle_index = Some(affix % principles.len());
            out.push(q);
        }
        self.relabel(templates, &principles, &mut out, batch_size)?;
        Ok(out)
    }

    /// Sets every pair's soft label from the zero-shot scoring prompt under its principle.
    fn relabel(
        &self,
        templates: &Templates,
        principles: &[String],
        pairs: &mut [Pair],
        batch_size: usize,
    ) -> Result<(), SimulateError> {
        let items = pairs
            .iter()
            .map(|p| {
                let i = p.principle_index.unwrap_or(0);
                let principle = principles.get(i).ok_or_else(|| SimulateError::BadPair {
                    prompt_id: p.prompt_id.clone(),
                    message: format!(
                        "principle index {i} is out of range ({} principles)",
                        principles.len()
                    ),
                    fix: "label with the task family the pairs were simulated for".into(),
                })?;
                Ok(LabelItem {
                    turns: &p.turns,
                    principle,
                    output_a: &p.output_a,
                    output_b: &p.output_b,
                })
            })
            .collect::<Result<Vec<_>, SimulateError>>()?;
        let labels = self.label(templates, &items, batch_size)?;
        for (p, l) in pairs.iter_mut().zip(labels) {
            p.soft_label = l;
        }
        Ok(())
    }
}

/// P(B) = softmax(logit A, logit B)[B].
pub fn prob_b(logit_a: f64, logit_b: f64) -> f64 {
    1.0 / (1.0 + (logit_a - logit_b).exp())
}

fn batch_size_error() -> SimulateError {
    SimulateError::Config {
        key: "batch_size",
        message: "is 0".into(),
        fix: "set batch_size to at least 1".into(),
    }
}

fn check_config(cfg: &SimulateConfig) -> Result<(), SimulateError> {
    if cfg.batch_size == 0 {
        return Err(batch_size_error());
    }
    if cfg.max_new_tokens == 0 {
        return Err(SimulateError::Config {
            key: "max_new_tokens",
            message: "is 0, so no output can end its turn".into(),
            fix: "set max_new_tokens to at least 1 (the paper used 300)".into(),
        });
    }
    Ok(())
}

fn nonempty(chosen: Vec<&Dialogue>, given: usize) -> Result<Vec<&Dialogue>, SimulateError> {
    if chosen.is_empty() {
        return Err(SimulateError::Empty {
            what: format!("prompt set ({given} dialogues, none in the train split)"),
            fix: "give training prompts (split \"train\") and an n_prompts of at least 1".into(),
        });
    }
    Ok(chosen)
}

/// Share of `pairs` whose label agrees with `truth`, as counts with a Wilson interval.
///
/// `truth(pair)` says whether B is truly better (`Some(true)`), A is (`Some(false)`), or
/// neither (`None`: a tie or no verdict). Pairs with no verdict and pairs whose label is
/// exactly 0.5 are left out of `n`.
pub fn label_accuracy(pairs: &[Pair], truth: impl Fn(&Pair) -> Option<bool>) -> Rate {
    let (mut n, mut agree) = (0u64, 0u64);
    for p in pairs {
        let (Some(b_better), Some(label)) = (truth(p), p.preferred()) else {
            continue;
        };
        n += 1;
        agree += u64::from((label == Slot::B) == b_better);
    }
    Rate {
        n,
        successes: agree,
    }
}

/// Column names of the pairs frame, in order.
pub const PAIR_COLUMNS: [&str; 17] = [
    "method",
    "prompt_id",
    "turns",
    "prompt",
    "output_a",
    "output_b",
    "soft_label",
    "affix_index",
    "positive_slot",
    "principle_index",
    "len_a",
    "len_b",
    "seed_a",
    "seed_b",
    "tries_a",
    "tries_b",
    "format_version",
];

fn frame_err(column: &str, message: impl std::fmt::Display) -> SimulateError {
    SimulateError::Frame {
        column: column.to_string(),
        message: message.to_string(),
    }
}

/// The pairs as a frame with [`PAIR_COLUMNS`]: `turns` is a JSON array of strings,
/// `positive_slot` is `"A"`/`"B"`, optional fields are null when absent, counts and seeds are
/// u64, and `format_version` is [`SIMULATE_VERSION`].
pub fn pairs_to_frame(pairs: &[Pair]) -> Result<DataFrame, SimulateError> {
    let strs = |f: &dyn Fn(&Pair) -> String| -> Vec<String> { pairs.iter().map(f).collect() };
    let u64s = |f: &dyn Fn(&Pair) -> u64| -> Vec<u64> { pairs.iter().map(f).collect() };
    let opt = |f: &dyn Fn(&Pair) -> Option<usize>| -> Vec<Option<u64>> {
        pairs.iter().map(|p| f(p).map(|x| x as u64)).collect()
    };
    let turns = pairs
        .iter()
        .map(|p| serde_json::to_string(&p.turns))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| frame_err("turns", e))?;
    let slots: Vec<Option<String>> = pairs
        .iter()
        .map(|p| p.positive_slot.map(|s| s.name().to_string()))
        .collect();
    let cols = vec![
        Column::new("method".into(), strs(&|p| p.method.name().to_string())),
        Column::new("prompt_id".into(), strs(&|p| p.prompt_id.clone())),
        Column::new("turns".into(), turns),
        Column::new("prompt".into(), strs(&|p| p.prompt.clone())),
        Column::new("output_a".into(), strs(&|p| p.output_a.clone())),
        Column::new("output_b".into(), strs(&|p| p.output_b.clone())),
        Column::new(
            "soft_label".into(),
            pairs.iter().map(|p| p.soft_label).collect::<Vec<f64>>(),
        ),
        Column::new("affix_index".into(), opt(&|p| p.affix_index)),
        Column::new("positive_slot".into(), slots),
        Column::new("principle_index".into(), opt(&|p| p.principle_index)),
        Column::new("len_a".into(), u64s(&|p| p.len_a as u64)),
        Column::new("len_b".into(), u64s(&|p| p.len_b as u64)),
        Column::new("seed_a".into(), u64s(&|p| p.seed_a)),
        Column::new("seed_b".into(), u64s(&|p| p.seed_b)),
        Column::new("tries_a".into(), u64s(&|p| u64::from(p.tries_a))),
        Column::new("tries_b".into(), u64s(&|p| u64::from(p.tries_b))),
        Column::new(
            "format_version".into(),
            vec![u64::from(SIMULATE_VERSION); pairs.len()],
        ),
    ];
    DataFrame::new(pairs.len(), cols).map_err(|e| frame_err("*", e))
}

fn col<'f>(df: &'f DataFrame, name: &str) -> Result<&'f Column, SimulateError> {
    df.column(name)
        .map_err(|_| frame_err(name, "missing from the table"))
}

fn str_values(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, SimulateError> {
    let c = col(df, name)?
        .str()
        .map_err(|e| frame_err(name, format!("not a string column ({e})")))?;
    Ok((0..c.len()).map(|i| c.get(i).map(str::to_string)).collect())
}

fn u64_values(df: &DataFrame, name: &str) -> Result<Vec<Option<u64>>, SimulateError> {
    let c = col(df, name)?
        .u64()
        .map_err(|e| frame_err(name, format!("not a u64 column ({e})")))?;
    Ok((0..c.len()).map(|i| c.get(i)).collect())
}

fn required<T>(v: Option<T>, name: &str, row: usize) -> Result<T, SimulateError> {
    v.ok_or_else(|| frame_err(name, format!("null in row {row}")))
}

fn narrow<T: TryFrom<u64>>(v: u64, name: &str, row: usize) -> Result<T, SimulateError> {
    T::try_from(v).map_err(|_| frame_err(name, format!("value {v} in row {row} is out of range")))
}

/// Reads pairs back from a frame written by [`pairs_to_frame`] (e.g. after
/// `tables::read_parquet`).
pub fn pairs_from_frame(df: &DataFrame) -> Result<Vec<Pair>, SimulateError> {
    for v in u64_values(df, "format_version")?.into_iter().flatten() {
        if v != u64::from(SIMULATE_VERSION) {
            return Err(frame_err(
                "format_version",
                format!("version {v}, but this build reads version {SIMULATE_VERSION}"),
            ));
        }
    }
    let method = str_values(df, "method")?;
    let prompt_id = str_values(df, "prompt_id")?;
    let turns = str_values(df, "turns")?;
    let prompt = str_values(df, "prompt")?;
    let output_a = str_values(df, "output_a")?;
    let output_b = str_values(df, "output_b")?;
    let labels = col(df, "soft_label")?
        .f64()
        .map_err(|e| frame_err("soft_label", format!("not a f64 column ({e})")))?;
    let soft_label: Vec<Option<f64>> = (0..labels.len()).map(|i| labels.get(i)).collect();
    let affix = u64_values(df, "affix_index")?;
    let slot = str_values(df, "positive_slot")?;
    let principle = u64_values(df, "principle_index")?;
    let len_a = u64_values(df, "len_a")?;
    let len_b = u64_values(df, "len_b")?;
    let seed_a = u64_values(df, "seed_a")?;
    let seed_b = u64_values(df, "seed_b")?;
    let tries_a = u64_values(df, "tries_a")?;
    let tries_b = u64_values(df, "tries_b")?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let m = required(method[i].clone(), "method", i)?;
        let method = Method::from_name(&m)
            .ok_or_else(|| frame_err("method", format!("unknown method {m:?} in row {i}")))?;
        let t = required(turns[i].clone(), "turns", i)?;
        let turns: Vec<String> = serde_json::from_str(&t)
            .map_err(|e| frame_err("turns", format!("row {i} is not a JSON string array: {e}")))?;
        let soft_label = required(soft_label[i], "soft_label", i)?;
        if !(0.0..=1.0).contains(&soft_label) {
            return Err(frame_err(
                "soft_label",
                format!("{soft_label} in row {i} is not a probability"),
            ));
        }
        let positive_slot = match &slot[i] {
            None => None,
            Some(s) => Some(Slot::from_name(s).ok_or_else(|| {
                frame_err("positive_slot", format!("{s:?} in row {i} is not A or B"))
            })?),
        };
        let opt_usize = |v: Option<u64>, name: &str| -> Result<Option<usize>, SimulateError> {
            v.map(|x| narrow::<usize>(x, name, i)).transpose()
        };
        out.push(Pair {
            method,
            prompt_id: required(prompt_id[i].clone(), "prompt_id", i)?,
            turns,
            prompt: required(prompt[i].clone(), "prompt", i)?,
            output_a: required(output_a[i].clone(), "output_a", i)?,
            output_b: required(output_b[i].clone(), "output_b", i)?,
            soft_label,
            affix_index: opt_usize(affix[i], "affix_index")?,
            positive_slot,
            principle_index: opt_usize(principle[i], "principle_index")?,
            len_a: narrow(required(len_a[i], "len_a", i)?, "len_a", i)?,
            len_b: narrow(required(len_b[i], "len_b", i)?, "len_b", i)?,
            seed_a: required(seed_a[i], "seed_a", i)?,
            seed_b: required(seed_b[i], "seed_b", i)?,
            tries_a: narrow(required(tries_a[i], "tries_a", i)?, "tries_a", i)?,
            tries_b: narrow(required(tries_b[i], "tries_b", i)?, "tries_b", i)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(soft_label: f64) -> Pair {
        Pair {
            method: Method::Rlcd,
            prompt_id: "p".into(),
            turns: vec!["Hello".into()],
            prompt: "\n\nHuman: Hello\n\nAssistant:".into(),
            output_a: "a".into(),
            output_b: "b".into(),
            soft_label,
            affix_index: Some(3),
            positive_slot: Some(Slot::A),
            principle_index: None,
            len_a: 1,
            len_b: 1,
            seed_a: u64::MAX,
            seed_b: 7,
            tries_a: 1,
            tries_b: 2,
        }
    }

    #[test]
    fn labels_prefer_by_threshold_and_accuracy_skips_ties() {
        assert_eq!(pair(0.9).preferred(), Some(Slot::B));
        assert_eq!(pair(0.1).preferred(), Some(Slot::A));
        assert_eq!(pair(0.5).preferred(), None);
        let pairs = vec![pair(1.0), pair(0.0), pair(0.5), pair(0.7)];
        // Truth: B better for the first three, no verdict for the last.
        let rate = label_accuracy(&pairs, |p| (p.soft_label != 0.7).then_some(true));
        assert_eq!(rate, Rate { n: 2, successes: 1 });
    }

    #[test]
    fn methods_and_slots_round_trip_their_names() {
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        assert_eq!(Slot::from_name("B"), Some(Slot::B));
        assert_eq!(Slot::from_name("b"), None);
        assert!((prob_b(0.0, 0.0) - 0.5).abs() < 1e-15);
        assert!((prob_b(0.0, 2.0f64.ln()) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_damaged_frame_names_the_column() {
        let mut df = pairs_to_frame(&[pair(1.0)]).expect("frame");
        df.drop_in_place("seed_b").expect("column");
        let err = pairs_from_frame(&df).expect_err("missing column");
        assert!(err.to_string().contains("`seed_b`"), "{err}");
        let df = pairs_to_frame(&[pair(1.5)]).expect("frame");
        let err = pairs_from_frame(&df).expect_err("bad label");
        assert!(err.to_string().contains("not a probability"), "{err}");
    }
}
