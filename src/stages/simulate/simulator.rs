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
//! output cut at the next speaker tag; an output that never ends its turn, or ends it without a
//! word (empty once cut), is re-sampled with a fresh derived seed up to `retries` times, after
//! which its prompt is dropped and counted; with `keep_unfinished` an output cut at the token
//! limit is kept (and counted) instead.
//! Every seed derives from the stage seed and the prompt id, so pairs do not depend on batch
//! size or order. Pairs are stored by [`super::pairs`].

use std::cell::RefCell;
use std::collections::VecDeque;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::pairs::{Method, Pair, Slot};
use crate::model::sampling::next_token_logits;
use crate::model::{
    FinishReason, GenerateOptions, GenerationRequest, Lm, ModelError, PolicyFormat, Truncate,
};
use crate::prompts::{ContrastPrompt, Dialogue, Split, contrast_prompts};
use crate::recipe::SimulateConfig;
use crate::seed;
use crate::templates::{SCORE_TEMPLATE, TemplateError, Templates};

/// The result of simulating one prompt set.
#[derive(Clone, Debug, PartialEq)]
pub struct Simulation {
    /// The pairs, in the order of the prompts.
    pub pairs: Vec<Pair>,
    /// Prompts dropped because an output never ended its turn, or was empty, within `retries`
    /// re-samples.
    pub dropped: usize,
    /// Ids of the dropped prompts, in prompt order.
    pub dropped_ids: Vec<String>,
    /// Prompts simulated (pairs + dropped).
    pub attempted: usize,
    /// Outputs kept although they reached the token limit (`simulate.keep_unfinished`).
    pub unfinished: usize,
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

/// Generation options for `cfg`, ending replies where `format` ends them.
pub fn generate_options(cfg: &SimulateConfig, format: &PolicyFormat) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: cfg.max_new_tokens,
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        ..format.generate_options()
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

/// An unlabelled pair (soft label 0.5, no affix, slot or principle) of the draws `a` and
/// `b` for dialogue `d`, whose plain prompt is in `c`.
fn unlabelled_pair(
    method: Method,
    d: &Dialogue,
    c: &ContrastPrompt,
    a: Sampled,
    b: Sampled,
) -> Pair {
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

/// A simulator LM with the conventions of its family ([`PolicyFormat`]): how a prompt is
/// written for it (the BOS text before it for built-in world models, nothing for GGUF models,
/// or the model's chat template) and the stop strings that end a turn.
pub struct Simulator<'a, B: Backend> {
    lm: &'a Lm<B>,
    format: PolicyFormat,
    truncate: Truncate,
    progress: RefCell<Option<Progress<'a>>>,
}

impl<'a, B: Backend> Simulator<'a, B> {
    /// A simulator writing prompts as `format` says and cutting outputs at its stop strings.
    pub fn new(lm: &'a Lm<B>, format: PolicyFormat) -> Self {
        Self {
            lm,
            format,
            truncate: Truncate::default(),
            progress: RefCell::new(None),
        }
    }

    /// A built-in world simulator: prefix [`BOS`], stop at the next speaker tag ([`crate::world::format::STOP`]).
    pub fn world(lm: &'a Lm<B>) -> Self {
        Self::new(lm, PolicyFormat::world())
    }

    /// A simulator for a pretrained (GGUF) model: no prefix, stop at the next speaker tag.
    pub fn pretrained(lm: &'a Lm<B>) -> Self {
        Self::new(lm, PolicyFormat::pretrained())
    }

    /// Calls `f(prompts_settled, prompts_total)` whenever a batch of prompts is settled
    /// (sampled or dropped; for labelling, scored).
    pub fn with_progress(self, f: impl FnMut(usize, usize) + 'a) -> Self {
        *self.progress.borrow_mut() = Some(Box::new(f));
        self
    }

    /// Handles prompts longer than the simulator's context leaves them as `mode` says
    /// (default [`Truncate::Left`]).
    pub fn with_truncate(mut self, mode: Truncate) -> Self {
        self.truncate = mode;
        self
    }

    /// The model.
    pub fn lm(&self) -> &'a Lm<B> {
        self.lm
    }

    /// How the model reads prompts and ends its replies.
    pub fn format(&self) -> &PolicyFormat {
        &self.format
    }

    fn report(&self, done: usize, total: usize) {
        if let Some(f) = self.progress.borrow_mut().as_mut() {
            f(done, total);
        }
    }

    /// Samples both outputs of every prompt (`prompts[i][side]`, seeds labelled by
    /// `sides[side]`), in batches of `cfg.batch_size` that mix first draws and re-samples; an
    /// output that hits the token limit or is empty is queued again with the next draw's seed until it has
    /// been drawn `1 + retries` times. Returns, per prompt, both outputs or `None` when one of
    /// them never ended its turn (or stayed empty), and the number of sequences generated.
    fn draw(
        &self,
        ids: &[&str],
        prompts: &[[&str; 2]],
        sides: [&str; 2],
        cfg: &SimulateConfig,
        seed: u64,
    ) -> Result<(Vec<Option<Drawn>>, usize, usize), SimulateError> {
        check_config(cfg)?;
        let opts = GenerateOptions {
            truncate: self.truncate,
            ..generate_options(cfg, &self.format)
        };
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
        let (mut settled, mut sequences, mut unfinished) = (0usize, 0usize, 0usize);
        while !queue.is_empty() {
            let take = cfg.batch_size.min(queue.len());
            let batch: Vec<Job> = queue.drain(..take).collect();
            let requests: Vec<GenerationRequest> = batch
                .iter()
                .map(|j| {
                    Ok(GenerationRequest {
                        prompt: self
                            .format
                            .query(&self.lm.tokenizer, prompts[j.prompt][j.side])
                            .map_err(ModelError::from)?,
                        seed: sample_seed(seed, ids[j.prompt], sides[j.side], j.attempt),
                    })
                })
                .collect::<Result<_, SimulateError>>()?;
            let gens = self.lm.generate(&requests, &opts)?;
            sequences += gens.len();
            for ((job, req), g) in batch.iter().zip(&requests).zip(gens) {
                let cut = g.finish_reason == FinishReason::Length;
                if (cut && !cfg.keep_unfinished) || g.text.trim().is_empty() {
                    if job.attempt < cfg.retries {
                        queue.push_back(Job {
                            attempt: job.attempt + 1,
                            ..*job
                        });
                        continue;
                    }
                    exhausted[job.prompt] = true;
                } else {
                    unfinished += usize::from(cut);
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
        Ok((drawn, sequences, unfinished))
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
                    let prompt = self
                        .format
                        .question(&self.lm.tokenizer, &text)
                        .map_err(ModelError::from)?;
                    let room = self.lm.model.config().max_seq_len;
                    Ok(self.lm.encode_prompt(&prompt, room, self.truncate)?)
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
        let (drawn, sequences, unfinished) = self.draw(&ids, &prompts, sides, cfg, seed)?;
        let sim = Simulation {
            pairs: Vec::new(),
            dropped: 0,
            dropped_ids: Vec::new(),
            attempted: owned.len(),
            sequences,
            unfinished,
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
                ..unlabelled_pair(Method::Rlcd, d, c, a, b)
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
                ..unlabelled_pair(Method::Rlaif, d, c, a, b)
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
