//! The built-in world (ARCHITECTURE.md, "The built-in world"): a generated dialogue world for the
//! paper's three tasks (§4.1: harmlessness, helpfulness, story outlining) with exact oracles,
//! playing the role AlpacaFarm's simulator plays for RLHF research.
//!
//! - [`lexicon`]: invented names, a knowledge base and phrase tables, from the world seed;
//! - [`grammar`]: the sentence patterns every response is written with and parsed back by;
//! - [`harmless`], [`helpful`], [`outlining`]: requests and responses built from moves;
//! - [`corpus`]: pretraining documents: dialogues whose assistant tag sometimes carries a
//!   descriptor correlated with the response's latent quality, and RLAIF judgment documents;
//! - [`oracle`]: scores any (prompt, response) text on the harm, help and outline axes;
//! - [`format`]: the dialogue text format and the world models' special tokens.
//!
//! Its settings are the recipe's `[world]` section ([`WorldConfig`]).

pub mod corpus;
pub mod format;
pub mod grammar;
pub mod harmless;
pub mod helpful;
pub mod lexicon;
pub mod oracle;
pub mod outlining;

use std::collections::BTreeSet;

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::recipe::world::Descriptors;
pub use crate::recipe::world::WorldConfig;
use crate::seed;
pub use format::{Dialogue, Split};
use grammar::{Binding, Pattern, Renamed, join};
use lexicon::Lexicon;

/// Version of the world's generator and oracle; part of every cache key that reads the world.
pub const WORLD_VERSION: u32 = 7;

/// Version of the world's prompt sets ([`World::prompt_set`]); part of every cache key that
/// reads them (pretraining does not).
pub const PROMPT_SET_VERSION: u32 = 2;

/// One distinct world prompt in this many goes to the test split ([`World::prompt_set`]).
pub const TEST_SPLIT_ODDS: u64 = 4;

/// The world seed of a recipe seed.
pub fn world_seed(recipe_seed: u64) -> u64 {
    seed::derive(recipe_seed, &["world"])
}

/// Everything a world is built from, as stage configurations carry it: the settings, the world
/// seed and the generator's version (with the prompt sets' version for stages that read them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// The recipe's `[world]` settings.
    pub config: WorldConfig,
    /// The world seed ([`world_seed`] of the recipe seed).
    pub seed: u64,
    /// [`WORLD_VERSION`] when planned.
    pub version: u32,
}

impl WorldSpec {
    /// The spec of the world of `config` under recipe seed `recipe_seed` (or under
    /// `config.seed` when the world has its own).
    pub fn new(config: &WorldConfig, recipe_seed: u64) -> Self {
        Self {
            // The seed is resolved into `seed`: a world seed equal to the recipe seed is the
            // same world, with the same key.
            config: WorldConfig {
                seed: None,
                ..config.clone()
            },
            seed: world_seed(config.seed.unwrap_or(recipe_seed)),
            version: WORLD_VERSION,
        }
    }

    /// Builds the world.
    pub fn build(&self) -> Result<World, WorldError> {
        World::new(&self.config, self.seed)
    }
}

/// What a sentence (or outline item) that does not parse costs on the help and outline axes;
/// on the harm axis it costs half as much (garbled text is unhelpful more than harmful).
pub const UNPARSED_PENALTY: f64 = 0.5;

/// The score of text that does not parse at all (empty, or no sentence of the world).
pub const INCOHERENT: f64 = -5.0;

/// The world's tasks (paper §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Harmful and benign requests; judged on harm and help.
    Harmless,
    /// Knowledge-base, sum and how-to questions; judged on help.
    Helpful,
    /// Story premises → outlines; judged on outline quality.
    Outlining,
}

impl Task {
    /// All tasks, in a fixed order.
    pub const ALL: [Task; 3] = [Task::Harmless, Task::Helpful, Task::Outlining];

    /// The task's name (also its prompt-set name `world:<name>` and its template family).
    pub fn name(self) -> &'static str {
        match self {
            Task::Harmless => "harmless",
            Task::Helpful => "helpful",
            Task::Outlining => "outlining",
        }
    }

    /// Looks a task up by name.
    pub fn from_name(name: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The axes the task is judged on (paper §4.3).
    pub fn axes(self) -> &'static [&'static str] {
        match self {
            Task::Harmless => &["harm", "help"],
            Task::Helpful => &["help"],
            Task::Outlining => &["outline"],
        }
    }

    /// The axis the task's RLAIF principles and descriptors are about.
    pub fn main_axis(self) -> &'static str {
        self.axes()[0]
    }
}

/// Bad world settings.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// A setting is out of range.
    #[error("[world] {key}: {problem}")]
    Setting {
        /// The key under `[world]`.
        key: String,
        /// What is wrong and the fix.
        problem: String,
    },
    /// Too few distinct prompts exist for the requested prompt set.
    #[error(
        "[world] prompts_train + prompts_test: only {found} distinct `{task}` prompts found, {wanted} wanted; lower prompts_train/prompts_test or raise people/creatures"
    )]
    TooFewPrompts {
        /// The task.
        task: &'static str,
        /// Distinct prompts found.
        found: usize,
        /// Prompts wanted.
        wanted: usize,
    },
}

/// A request of any task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A harmlessness request.
    Harmless(harmless::Request),
    /// A helpfulness question.
    Helpful(helpful::Question),
    /// An outline premise.
    Outlining(outlining::Premise),
}

/// A world: its settings, seed and lexicon.
#[derive(Clone, Debug)]
pub struct World {
    /// The settings.
    pub config: WorldConfig,
    /// The world seed (derived from the recipe seed).
    pub seed: u64,
    /// Names, knowledge base and phrase tables.
    pub lexicon: Lexicon,
}

impl World {
    /// Builds the world for `config` from `seed`, checking the settings first.
    pub fn new(config: &WorldConfig, seed: u64) -> Result<World, WorldError> {
        if let Some((key, problem)) = config.problems().into_iter().next() {
            return Err(WorldError::Setting { key, problem });
        }
        Ok(World {
            config: config.clone(),
            seed,
            lexicon: Lexicon::new(seed, config.people, config.creatures, config.places),
        })
    }

    /// The extra descriptor phrases of `task`.
    pub fn descriptors(&self, task: Task) -> &Descriptors {
        let d = &self.config.descriptors;
        match task {
            Task::Harmless => &d.harmless,
            Task::Helpful => &d.helpful,
            Task::Outlining => &d.outlining,
        }
    }

    /// Draws a request of `task` and writes its human turn.
    pub fn request(&self, task: Task, rng: &mut StdRng) -> (Request, Vec<String>) {
        let lex = &self.lexicon;
        match task {
            Task::Harmless => {
                let (r, w) = harmless::request(lex, rng, self.config.harmful_frac);
                (Request::Harmless(r), w)
            }
            Task::Helpful => {
                let (r, w) = helpful::request(lex, rng);
                (Request::Helpful(r), w)
            }
            Task::Outlining => {
                let (r, w) = outlining::request(lex, rng);
                (Request::Outlining(r), w)
            }
        }
    }

    /// Writes a response of latent quality `q` to `req`: the move name and the words.
    pub fn respond(&self, req: &Request, q: f64, rng: &mut StdRng) -> (&'static str, Vec<String>) {
        let (lex, k) = (&self.lexicon, self.config.quality_sharpness);
        match req {
            Request::Harmless(r) => harmless::respond(lex, r, q, k, rng),
            Request::Helpful(r) => helpful::respond(lex, r, q, k, rng),
            Request::Outlining(r) => outlining::respond(lex, r, q, k, rng),
        }
    }

    /// The text a model continues a prompt with, for response words from [`World::respond`]:
    /// the whole response, except that an outline starts after the "Here is a possible
    /// outline:\n1." the outlining prompts already end with (paper §4.1), as sampled outputs
    /// do.
    pub fn output_text(&self, req: &Request, response: &[String]) -> String {
        if let Request::Outlining(_) = req {
            let mut opening = grammar::words(outlining::OUTLINE_START);
            opening.extend(["\n", "1", "."].map(String::from));
            if let Some(rest) = response.strip_prefix(opening.as_slice()) {
                return join(rest);
            }
        }
        join(response)
    }

    /// Draws the turns of a prompt of `task` (human, assistant, …, human) as text, and the
    /// final request. Earlier assistant turns have a latent quality drawn from N(0, 1).
    pub fn prompt_turns(&self, task: Task, rng: &mut StdRng) -> (Vec<String>, Request) {
        let mut turns = Vec::new();
        if task == Task::Harmless && rng.random_bool(self.config.multi_turn_frac) {
            let (req, words) = self.request(task, rng);
            let q: f64 = rng.sample(rand_distr::StandardNormal);
            turns.push(join(&words));
            turns.push(join(&self.respond(&req, q, rng).1));
        }
        let (req, words) = self.request(task, rng);
        turns.push(join(&words));
        (turns, req)
    }

    /// The prompt set `world:<task>`: `prompts_test` test dialogues, then `prompts_train`
    /// training dialogues, with no final request shared between the two splits. Dialogues are
    /// drawn from one seeded stream; each distinct final request goes to the test split with
    /// probability 1/[`TEST_SPLIT_ODDS`] by a coin seeded with its text, and each split keeps its
    /// first dialogues. So both splits follow the same distribution (requests with few distinct
    /// phrasings, such as the benign ones, are shared out rather than used up by one split),
    /// and the test split does not depend on `prompts_train`.
    pub fn prompt_set(&self, task: Task) -> Result<Vec<Dialogue>, WorldError> {
        let (n_test, n_train) = (self.config.prompts_test, self.config.prompts_train);
        let wanted = n_test + n_train;
        let mut rng = seed::rng(seed::derive(self.seed, &["prompts", task.name()]));
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut test = Vec::with_capacity(n_test);
        let mut train = Vec::with_capacity(n_train);
        let mut tries = 0;
        while (test.len() < n_test || train.len() < n_train) && tries < wanted * 50 {
            tries += 1;
            let (turns, _) = self.prompt_turns(task, &mut rng);
            let key = turns.last().cloned().unwrap_or_default();
            let coin = seed::derive(self.seed, &["prompt-split", task.name(), &key]);
            if !seen.insert(key) {
                continue;
            }
            let (split, tag, list, cap) = if coin.is_multiple_of(TEST_SPLIT_ODDS) {
                (Split::Test, "test", &mut test, n_test)
            } else {
                (Split::Train, "train", &mut train, n_train)
            };
            if list.len() < cap {
                list.push(Dialogue {
                    id: format!("world-{}-{tag}-{:05}", task.name(), list.len()),
                    split,
                    turns,
                });
            }
        }
        if test.len() < n_test || train.len() < n_train {
            return Err(WorldError::TooFewPrompts {
                task: task.name(),
                found: test.len() + train.len(),
                wanted,
            });
        }
        test.extend(train);
        Ok(test)
    }

    /// Every word the world's patterns and phrase tables can write.
    pub fn words(&self) -> BTreeSet<String> {
        let mut out = self.lexicon.words();
        for p in harmless::all_patterns()
            .into_iter()
            .chain(helpful::all_patterns())
            .chain(outlining::all_patterns())
        {
            out.extend(p.literal_words());
        }
        out.extend(["\n".to_string()]);
        out
    }
}

/// Sentence patterns labelled with their move, and the table a pattern's `<step>` slot reads.
pub(crate) type Labelled = Vec<(&'static str, Pattern, &'static str)>;

/// Compiles groups of `(move label, patterns, step table)` into labelled patterns.
pub(crate) fn labelled(groups: &[(&'static str, &[&str], &'static str)]) -> Labelled {
    groups
        .iter()
        .flat_map(|(label, list, slot)| patterns(list).into_iter().map(move |p| (*label, p, *slot)))
        .collect()
}

/// Compiles a list of patterns.
pub(crate) fn patterns(list: &[&str]) -> Vec<Pattern> {
    list.iter().map(|s| Pattern::new(s)).collect()
}

/// Draws a move: move `m` with weight `exp(sharpness · q · value_m)`.
pub(crate) fn choose_move(
    rng: &mut StdRng,
    q: f64,
    sharpness: f64,
    moves: &[(&'static str, f64)],
) -> &'static str {
    let w: Vec<f64> = moves
        .iter()
        .map(|(_, v)| (sharpness * q * v).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, wi) in w.iter().enumerate() {
        if u < *wi {
            return moves[i].0;
        }
        u -= wi;
    }
    moves[moves.len() - 1].0
}

/// A sentence of a response after parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The move the sentence belongs to (`None`: it does not parse).
    pub label: Option<&'static str>,
    /// Index of the sentence's step/alternative phrase, when it has one.
    pub index: Option<usize>,
    /// All slot bindings.
    pub bindings: Vec<Binding>,
    /// The sentence.
    pub words: Vec<String>,
}

/// Parses sentences with labelled patterns; `step` slots read the table the pattern names.
pub(crate) fn parse_sentences(
    sentences: &[Vec<String>],
    pats: &Labelled,
    lex: &Lexicon,
) -> Vec<Parsed> {
    sentences
        .iter()
        .map(|s| {
            for (label, p, step_slot) in pats {
                let src = Renamed {
                    inner: lex,
                    from: "step",
                    to: step_slot,
                };
                if let Some(b) = p.matches(s, &src) {
                    let index = b
                        .iter()
                        .find(|x| x.slot == "step" || x.slot == "alt")
                        .map(|x| x.index);
                    return Parsed {
                        label: Some(label),
                        index,
                        bindings: b,
                        words: s.clone(),
                    };
                }
            }
            Parsed {
                label: None,
                index: None,
                bindings: Vec::new(),
                words: s.clone(),
            }
        })
        .collect()
}

/// An oracle's verdict on one response.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    /// Harmlessness (harmless task), higher is better.
    pub harm: Option<f64>,
    /// Helpfulness (harmless and helpful tasks), higher is better.
    pub help: Option<f64>,
    /// Outline quality (outlining task), higher is better.
    pub outline: Option<f64>,
    /// Nothing in the response parses.
    pub incoherent: bool,
    /// Sentences (or outline items) that do not parse.
    pub unparsed: usize,
    /// Sentences (or items) repeating an earlier one word for word.
    pub repeats: usize,
    /// The moves recognised, in order.
    pub moves: Vec<&'static str>,
}

impl Score {
    /// The verdict on text that does not parse: [`INCOHERENT`] on every axis.
    pub fn incoherent() -> Score {
        Score {
            harm: Some(INCOHERENT),
            help: Some(INCOHERENT),
            outline: Some(INCOHERENT),
            incoherent: true,
            ..Score::default()
        }
    }

    /// The score on `axis` (`harm`, `help`, `outline`), when the task has it.
    pub fn axis(&self, axis: &str) -> Option<f64> {
        match axis {
            "harm" => self.harm,
            "help" => self.help,
            "outline" => self.outline,
            _ => None,
        }
    }

    /// Counts of parsed sentences: incoherent when none parses.
    pub(crate) fn for_sentences(parsed: &[Parsed]) -> Score {
        if parsed.iter().all(|p| p.label.is_none()) {
            return Score::incoherent();
        }
        let mut repeats = 0;
        for (i, p) in parsed.iter().enumerate() {
            if parsed[..i].iter().any(|q| q.words == p.words) {
                repeats += 1;
            }
        }
        Score {
            unparsed: parsed.iter().filter(|p| p.label.is_none()).count(),
            repeats,
            moves: parsed.iter().filter_map(|p| p.label).collect(),
            ..Score::default()
        }
    }
}
