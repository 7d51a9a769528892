//! The recipe's `[world]` section: the built-in world's corpus, descriptors, judgment
//! documents and `world:` prompt sets (the generator itself is `crate::world`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Descriptor phrases of one task, beyond the affix pairs of its template family (which are
/// always included).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Descriptors {
    /// Phrases a good response's assistant tag may carry.
    pub positive: Vec<String>,
    /// Phrases a poor response's assistant tag may carry.
    pub negative: Vec<String>,
}

impl Descriptors {
    fn of(positive: &[&str], negative: &[&str]) -> Self {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Self {
            positive: strings(positive),
            negative: strings(negative),
        }
    }
}

/// Extra descriptor phrases per task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DescriptorLists {
    /// Harmlessness descriptors.
    pub harmless: Descriptors,
    /// Helpfulness descriptors.
    pub helpful: Descriptors,
    /// Outline descriptors.
    pub outlining: Descriptors,
}

impl Default for DescriptorLists {
    fn default() -> Self {
        Self {
            harmless: Descriptors::of(
                &[
                    "kind, careful response",
                    "safe response",
                    "responsible response",
                    "honest and caring response",
                    "respectful response",
                    "polite, harmless response",
                ],
                &[
                    "cruel response",
                    "dangerous response",
                    "reckless response",
                    "rude, hurtful response",
                    "mean response",
                    "criminal response",
                ],
            ),
            helpful: Descriptors::of(
                &[
                    "giving a useful response",
                    "giving a correct answer",
                    "giving an accurate, clear answer",
                    "giving a complete answer",
                ],
                &[
                    "giving a useless response",
                    "giving a wrong answer",
                    "giving a confused answer",
                    "giving an incomplete answer",
                ],
            ),
            outlining: Descriptors::of(
                &[
                    "creative, focused outline",
                    "clear, well-ordered outline",
                    "engaging outline",
                ],
                &[
                    "messy outline",
                    "dull, confused outline",
                    "off-topic outline",
                ],
            ),
        }
    }
}

impl DescriptorLists {
    /// `(task name, lists)` of every task.
    pub fn all(&self) -> [(&'static str, &Descriptors); 3] {
        [
            ("harmless", &self.harmless),
            ("helpful", &self.helpful),
            ("outlining", &self.outlining),
        ]
    }
}

/// Relative weights of the tasks in the pretraining corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TaskMix {
    /// Weight of harmlessness dialogues.
    pub harmless: f64,
    /// Weight of helpfulness dialogues.
    pub helpful: f64,
    /// Weight of outlining dialogues. An outline is a long response whose quality shows only
    /// item by item, so small models need more of them to learn how descriptors shift it.
    pub outlining: f64,
}

impl Default for TaskMix {
    fn default() -> Self {
        Self {
            harmless: 1.0,
            helpful: 1.0,
            outlining: 1.5,
        }
    }
}

/// The built-in world's settings (recipe table `[world]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// Invented person names (outline characters, targets of requests).
    pub people: usize,
    /// Knowledge-base creatures helpfulness questions ask about.
    pub creatures: usize,
    /// Invented places where creatures live.
    pub places: usize,
    /// Pretraining documents (dialogues and judgment documents).
    pub documents: usize,
    /// Task weights of the pretraining dialogues.
    pub mix: TaskMix,
    /// Fraction of harmlessness requests that ask for something harmful, in [0, 1].
    pub harmful_frac: f64,
    /// Fraction of harmlessness dialogues with an earlier exchange, in [0, 1].
    pub multi_turn_frac: f64,
    /// Fraction of assistant tags carrying a descriptor, in [0, 1].
    pub descriptor_frac: f64,
    /// Noise (standard deviation) between a response's latent quality and its descriptor's
    /// polarity, ≥ 0: the descriptor is positive when quality + noise·ε > 0.
    pub descriptor_noise: f64,
    /// How strongly latent quality selects a response's moves, ≥ 0: move `m` has weight
    /// exp(sharpness · q · value_m).
    pub quality_sharpness: f64,
    /// Fraction of documents that are RLAIF judgment documents, in [0, 1].
    pub judgment_frac: f64,
    /// How reliably judgment labels follow the oracle, ≥ 0: the better response is labelled
    /// with probability sigmoid(sharpness · score gap).
    pub judgment_sharpness: f64,
    /// Descriptor phrases beyond the template families' affix pairs.
    pub descriptors: DescriptorLists,
    /// Training prompts of each `world:<task>` prompt set.
    pub prompts_train: usize,
    /// Test prompts of each `world:<task>` prompt set (disjoint from training).
    pub prompts_test: usize,
    /// The world's own seed: its lexicon, prompt sets, pretraining corpus and pretrained models
    /// follow it instead of the recipe seed, so a sweep over `seed` keeps the world and its
    /// models fixed while simulation, preference models, policies and evaluation vary.
    /// Absent: the recipe seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            people: 40,
            creatures: 32,
            places: 12,
            documents: 24_000,
            mix: TaskMix::default(),
            harmful_frac: 0.7,
            multi_turn_frac: 0.2,
            descriptor_frac: 0.8,
            descriptor_noise: 0.3,
            quality_sharpness: 5.0,
            judgment_frac: 0.1,
            judgment_sharpness: 0.6,
            descriptors: DescriptorLists::default(),
            prompts_train: 1000,
            prompts_test: 300,
            seed: None,
        }
    }
}

impl WorldConfig {
    /// Problems with the settings as `(key, problem and fix)`; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut frac = |key: &str, v: f64| {
            if !(0.0..=1.0).contains(&v) {
                out.push((
                    key.to_string(),
                    format!("{v} is not a fraction; use a value in [0, 1]"),
                ));
            }
        };
        frac("harmful_frac", self.harmful_frac);
        frac("multi_turn_frac", self.multi_turn_frac);
        frac("descriptor_frac", self.descriptor_frac);
        frac("judgment_frac", self.judgment_frac);
        for (key, v) in [
            ("descriptor_noise", self.descriptor_noise),
            ("quality_sharpness", self.quality_sharpness),
            ("judgment_sharpness", self.judgment_sharpness),
            ("mix.harmless", self.mix.harmless),
            ("mix.helpful", self.mix.helpful),
            ("mix.outlining", self.mix.outlining),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                out.push((key.to_string(), format!("{v} must be a finite number ≥ 0")));
            }
        }
        if self.mix.harmless + self.mix.helpful + self.mix.outlining <= 0.0 {
            out.push((
                "mix".into(),
                "all task weights are 0; give at least one task a positive weight".into(),
            ));
        }
        for (key, v, min) in [
            ("documents", self.documents, 1),
            ("people", self.people, 8),
            ("creatures", self.creatures, 2),
            ("places", self.places, 2),
            ("prompts_train", self.prompts_train, 1),
            ("prompts_test", self.prompts_test, 1),
        ] {
            if v < min {
                out.push((
                    key.to_string(),
                    format!("{v} is too few; use at least {min}"),
                ));
            }
        }
        for (task, d) in self.descriptors.all() {
            for (side, list) in [("positive", &d.positive), ("negative", &d.negative)] {
                let key = format!("descriptors.{task}.{side}");
                if list.is_empty() {
                    out.push((
                        key,
                        "the list is empty; give at least one descriptor phrase".into(),
                    ));
                } else if let Some(bad) = list
                    .iter()
                    .find(|p| p.trim().is_empty() || p.contains(['(', ')', '\n']))
                {
                    out.push((key, format!("{bad:?} is not a descriptor; use non-empty text without parentheses or line breaks")));
                }
            }
        }
        out
    }
}

/// How a world preset learns to judge (recipe table `[models.<name>.judging]`): its own
/// pretraining corpus, in which the RLAIF judgment documents follow these settings instead of
/// `[world]`'s and a share of documents are judge questions — the evaluation's `judge/*.j2`
/// questions over two responses, answered with the letter of the response the oracle scores
/// higher on the question's axis (with probability sigmoid(sharpness · score gap)). It is the
/// knob for a simulator's judging skill and the way to train the "GPT-4" judge of the world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Judging {
    /// Fraction of documents that are RLAIF judgment documents, in [0, 1], drawn among the
    /// documents that are not judge questions. Absent: `[world] judgment_frac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judgment_frac: Option<f64>,
    /// How reliably judgment and judge-question labels follow the oracle, ≥ 0: the better
    /// response is labelled with probability sigmoid(sharpness · score gap). Absent:
    /// `[world] judgment_sharpness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharpness: Option<f64>,
    /// Fraction of documents that are judge questions, in [0, 1]; 0 leaves them out.
    #[serde(default)]
    pub questions_frac: f64,
    /// Correlation of the latent qualities of a judge question's two responses, in [0, 1):
    /// 0 draws them independently; higher values make pairs of similar quality, which a judge
    /// can only answer by comparing the two responses (as it must between two trained
    /// policies), not by how good either one is alone.
    #[serde(default)]
    pub pair_correlation: f64,
    /// Fine-tuning on judge questions after pretraining (`[models.<name>.judging.tuning]`);
    /// absent: the pretrained model judges as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<JudgeTuning>,
}

/// Fine-tuning a pretrained world model as a judge (`[models.<name>.judging.tuning]`): freshly
/// drawn judge questions, each asked in both orders, with the loss on the answer letter only —
/// cross-entropy of the softmax over "A" and "B" against the oracle's probability that the
/// response shown first is better, sigmoid(sharpness · score gap). AdamW, linear warm-up then
/// cosine decay to 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeTuning {
    /// Judge questions to train on (each in both orders), drawn over the world's tasks in turn.
    pub pairs: usize,
    /// Passes over the training questions.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of the steps spent in linear warm-up, in [0, 1).
    pub warmup_frac: f64,
    /// Judge questions per optimiser step (each in both orders, so twice as many rows).
    pub batch_size: usize,
    /// Correlation of the latent qualities of a question's two responses, in [0, 1).
    pub pair_correlation: f64,
    /// Further judge questions, drawn apart, on which the tuned judge is measured.
    pub heldout_pairs: usize,
    /// Further training questions whose two responses are sampled from `responder` (each from
    /// the plain, positive or negative contrast prompt of a training prompt, drawn at random)
    /// and scored by the oracle: model outputs like those the evaluation judges, beside the
    /// world's own responses. 0 trains on the world's responses only.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(extend("default" = 0))]
    pub sampled_pairs: usize,
    /// The model (`[models.<name>]`, a world preset) whose pretrained weights sample the
    /// responses of `sampled_pairs`; needed when `sampled_pairs` is above 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responder: Option<String>,
    /// Sampled responses degraded the way a drifting policy's are (off-topic or garbled), so
    /// the judge learns to rank a fluent wrong answer above a broken one; absent keeps every
    /// sampled response on its prompt at the paper's temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Degraded>,
}

/// How the sampled judge-tuning responses are degraded (`[...judging.tuning.degraded]`). Each
/// response is drawn in turn: off-topic with probability `off_topic_frac`, else hot with
/// probability `hot_frac`, else as usual.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Degraded {
    /// Share of sampled responses that answer another prompt of the same task (drawn from the
    /// same split) while the question shows its own prompt.
    pub off_topic_frac: f64,
    /// Share of sampled responses drawn at `hot_temperature` instead of temperature 1.
    pub hot_frac: f64,
    /// Softmax temperature of the hot responses (above 1 garbles them).
    pub hot_temperature: f64,
}

impl Default for Degraded {
    fn default() -> Self {
        Self {
            off_topic_frac: 0.15,
            hot_frac: 0.15,
            hot_temperature: 1.5,
        }
    }
}

impl Degraded {
    /// Problems with the settings as `(key, problem and fix)`; empty when valid.
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut add = |key: &str, why: String| out.push((format!("degraded.{key}"), why));
        for (key, v) in [
            ("off_topic_frac", self.off_topic_frac),
            ("hot_frac", self.hot_frac),
        ] {
            if !(0.0..=1.0).contains(&v) {
                add(key, format!("{v} is not a share in [0, 1]"));
            }
        }
        if self.off_topic_frac + self.hot_frac > 1.0 {
            add(
                "hot_frac",
                format!(
                    "off_topic_frac + hot_frac = {} + {} is above 1; lower one of them",
                    self.off_topic_frac, self.hot_frac
                ),
            );
        }
        if !(self.hot_temperature.is_finite() && self.hot_temperature > 0.0) {
            add(
                "hot_temperature",
                format!(
                    "{} must be a positive temperature, e.g. 1.5",
                    self.hot_temperature
                ),
            );
        }
        out
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for JudgeTuning {
    fn default() -> Self {
        Self {
            pairs: 4000,
            epochs: 2,
            lr: 3e-4,
            warmup_frac: 0.05,
            batch_size: 8,
            pair_correlation: 0.0,
            heldout_pairs: 400,
            sampled_pairs: 0,
            responder: None,
            degraded: None,
        }
    }
}

impl JudgeTuning {
    /// Problems with the settings as `(key, problem and fix)`; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut add = |key: &str, why: String| out.push((format!("tuning.{key}"), why));
        for (key, v) in [
            ("pairs", self.pairs),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("heldout_pairs", self.heldout_pairs),
        ] {
            if v == 0 {
                add(key, "is 0; set at least 1".to_string());
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            add(
                "lr",
                format!("{} must be a positive number, e.g. 3e-4", self.lr),
            );
        }
        if !(0.0..1.0).contains(&self.warmup_frac) {
            add(
                "warmup_frac",
                format!("{} must be in [0, 1)", self.warmup_frac),
            );
        }
        if !(0.0..1.0).contains(&self.pair_correlation) {
            add(
                "pair_correlation",
                format!(
                    "{} is not a correlation in [0, 1); use e.g. 0.5, or 0 for independent responses",
                    self.pair_correlation
                ),
            );
        }
        if self.sampled_pairs > 0 && self.responder.is_none() {
            add(
                "responder",
                format!(
                    "is not set while sampled_pairs is {}; name the world model that samples the responses, e.g. responder = \"sim-s\", or set sampled_pairs = 0",
                    self.sampled_pairs
                ),
            );
        }
        if let Some(degraded) = &self.degraded {
            if self.sampled_pairs == 0 {
                add(
                    "degraded",
                    "degrades sampled responses, and sampled_pairs is 0; set sampled_pairs and a responder, or remove the table".to_string(),
                );
            }
            for (key, why) in degraded.problems() {
                add(&key, why);
            }
        }
        out
    }
}

impl Judging {
    /// The world settings of a model with this table: `world` with its judgment settings
    /// replaced where the table sets them.
    pub fn apply(&self, world: &WorldConfig) -> WorldConfig {
        WorldConfig {
            judgment_frac: self.judgment_frac.unwrap_or(world.judgment_frac),
            judgment_sharpness: self.sharpness.unwrap_or(world.judgment_sharpness),
            ..world.clone()
        }
    }

    /// Problems with the settings as `(key, problem and fix)`; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, v) in [
            ("judgment_frac", self.judgment_frac),
            ("questions_frac", Some(self.questions_frac)),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                out.push((
                    key.to_string(),
                    format!("{v} is not a fraction; use a value in [0, 1]"),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.pair_correlation) {
            out.push((
                "pair_correlation".to_string(),
                format!(
                    "{} is not a correlation in [0, 1); use e.g. 0.8, or 0 for independent responses",
                    self.pair_correlation
                ),
            ));
        } else if self.pair_correlation > 0.0 && self.questions_frac == 0.0 {
            out.push((
                "pair_correlation".to_string(),
                "applies to judge questions, and `questions_frac` is 0; set `questions_frac` above 0 or remove `pair_correlation`".to_string(),
            ));
        }
        if let Some(v) = self.sharpness
            && !(v >= 0.0 && v.is_finite())
        {
            out.push((
                "sharpness".to_string(),
                format!("{v} must be a finite number ≥ 0"),
            ));
        }
        if let Some(tuning) = &self.tuning {
            out.extend(tuning.problems());
        }
        out
    }
}
