//! The `pretrain` stage: a built-in world preset (`world-xs`, `world-s`, `world-m` — the
//! paper's simulator sizes, §4 — or the larger judge `world-l`) pretrained from scratch on the world's corpus — dialogues whose
//! assistant tags carry noisy descriptors, and RLAIF judgment documents.
//!
//! - [`engine`]: packing, the training loop, held-out NLL;
//! - [`artifact`]: the checkpoint, tokenizer and record, and loading them.

pub mod artifact;
pub mod engine;

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

pub use artifact::{
    PretrainError, PretrainRecord, files, load_world_lm, read_record, weights_blake3,
};
pub use engine::{
    PretrainLog, heldout_nll, heldout_nll_documents, pack_documents, pretrain, pretrain_documents,
};

use super::inputs::WorldModel;
use super::planning::{PlanError, Planned, Planner};
use super::stage::{Ctx, Stage, StageError, StageKind, with_backend};
use crate::model::tokenizer::Tokenizer;
use crate::model::{LlamaConfig, ModelError};
use crate::recipe::{BackendKind, PretrainConfig};
use crate::seed;
use crate::templates::{SCORE_TEMPLATE, TemplateError, TemplateSet, Templates, affix_file};
use crate::world::corpus::JudgeQuestions;
use crate::world::format::{BOS, EOS, PAD};
use crate::world::{Task, World, WorldSpec};

/// Everything a world preset's pretraining depends on.
pub struct WorldPretrain<'a> {
    /// The world.
    pub world: &'a World,
    /// The templates the corpus renders (affixes, principles and the scoring prompt).
    pub templates: &'a Templates,
    /// Words the vocabulary holds beyond the corpus's (see [`vocabulary_words`]).
    pub vocabulary_words: &'a [String],
    /// The preset (`world-xs`, `world-s`, `world-m`, `world-l`).
    pub preset: &'a str,
    /// The preset's architecture; its vocabulary size is set from the corpus.
    pub architecture: LlamaConfig,
    /// Training configuration.
    pub config: PretrainConfig,
    /// Held-out documents.
    pub heldout_documents: usize,
    /// The corpus's judge-question documents (`[models.<name>.judging]`).
    pub judge_questions: JudgeQuestions,
    /// Seed of the corpus, the initial weights and the row order.
    pub seed: u64,
}

/// The judge questions (paper §4.3), one per task axis.
pub const JUDGE_TEMPLATES: &[&str] = &[
    "judge/harm.j2",
    "judge/harm_help.j2",
    "judge/help.j2",
    "judge/outline.j2",
];

/// Template files whose literal words enter every world vocabulary (judge and scoring prompts).
pub const VOCABULARY_TEMPLATES: &[&str] = &[
    "rlaif/score.j2",
    JUDGE_TEMPLATES[0],
    JUDGE_TEMPLATES[1],
    JUDGE_TEMPLATES[2],
    JUDGE_TEMPLATES[3],
];

/// Writes the corpus, builds the tokenizer, trains the preset from scratch and saves the model,
/// tokenizer and record into `dir`.
pub fn pretrain_world<B: AutodiffBackend>(
    job: &WorldPretrain<'_>,
    device: &B::Device,
    dir: &std::path::Path,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<PretrainRecord, PretrainError> {
    let t0 = Instant::now();
    let docs = crate::world::corpus::documents(
        job.world,
        job.templates,
        job.judge_questions,
        seed::derive(job.seed, &["corpus"]),
    )?;
    let vocab = crate::world::corpus::vocabulary(job.world, &docs, job.vocabulary_words);
    let corpus_seconds = t0.elapsed().as_secs_f64();
    let tokenizer = Tokenizer::word_level(&vocab, &[BOS, EOS, PAD]).map_err(ModelError::from)?;
    let mut hasher = blake3::Hasher::new();
    let mut ids = Vec::with_capacity(docs.len());
    for d in &docs {
        hasher.update(d.as_bytes());
        hasher.update(b"\0");
        ids.push(
            tokenizer
                .encode(&format!("{BOS}{d}{EOS}"), false)
                .map_err(ModelError::from)?,
        );
    }
    let corpus_tokens = ids.iter().map(Vec::len).sum();
    let held = job.heldout_documents.min(ids.len().saturating_sub(1));
    let (train, heldout) = ids.split_at(ids.len() - held);
    let rows = pack_documents(train, job.config.seq_len);
    let held_rows = pack_documents(heldout, job.config.seq_len);
    let model_config = LlamaConfig {
        vocab_size: tokenizer.vocab_size(),
        ..job.architecture.clone()
    };
    let model =
        crate::model::seeded_init::<B, _>(device, seed::derive(job.seed, &["init"]), || {
            model_config.init::<B>(device)
        })?;
    let pad = tokenizer.pad_id().unwrap_or(0);
    let bos = tokenizer.bos_id();
    let (model, log) = pretrain_documents(
        model,
        &rows,
        pad,
        bos,
        &job.config,
        seed::derive(job.seed, &["rows"]),
        on_step,
    )?;
    let model = AutodiffModule::valid(&model);
    let heldout_nll = if held_rows.is_empty() {
        f64::NAN
    } else {
        heldout_nll_documents(&model, &held_rows, pad, bos, 16)?
    };
    crate::model::load::save_checkpoint(&model, dir)?;
    tokenizer
        .save(&dir.join(files::TOKENIZER))
        .map_err(ModelError::from)?;
    let record = PretrainRecord {
        preset: job.preset.to_string(),
        params: model_config.num_params(),
        vocab: tokenizer.vocab_size(),
        documents: docs.len(),
        corpus_tokens,
        corpus_blake3: hasher.finalize().to_hex().to_string(),
        weights_blake3: weights_blake3(&model),
        heldout_documents: held,
        heldout_nll,
        perplexity: heldout_nll.exp(),
        config: job.config.clone(),
        log,
        corpus_seconds,
    };
    let path = dir.join(files::RECORD);
    let json = serde_json::to_vec_pretty(&record).map_err(|source| PretrainError::Record {
        path: path.clone(),
        source,
    })?;
    crate::error::write(&path, json)?;
    Ok(record)
}

/// The stage type.
pub struct Pretrain;

/// Everything a preset's pretraining reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The preset.
    pub preset: String,
    /// Its architecture (the vocabulary size is set from the corpus).
    pub architecture: LlamaConfig,
    /// The world whose corpus it learns (with the model's own judgment settings when it has
    /// a `judging` table).
    pub world: WorldSpec,
    /// Share of the corpus's documents that are judge questions (0: none, the world's own
    /// corpus).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_questions: f64,
    /// Correlation of the latent qualities of a judge question's two responses (0:
    /// independent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_pair_correlation: f64,
    /// Training hyper-parameters.
    pub train: PretrainConfig,
    /// Corpus documents held out to measure perplexity.
    pub heldout_documents: usize,
    /// The template files the corpus renders: the world families' affix pairs and
    /// principles and the scoring prompt (and the judge questions when it has them).
    pub templates: TemplateSet,
    /// The literal words of the judge and scoring prompts, which the vocabulary holds so that
    /// they encode without unknown words.
    pub vocabulary_words: Vec<String>,
    /// The compute backend.
    pub backend: BackendKind,
    /// Seed of the corpus, the initial weights and the row order.
    pub seed: u64,
}

/// Id of the pretraining stage of the world model labelled `label`.
pub fn id(label: &str) -> String {
    super::inputs::pretrain_id(label)
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The template files a world preset's corpus renders: the world families' affix pairs and
/// principles, and the scoring prompt with what it includes.
pub fn corpus_templates(p: &Planner<'_>) -> Result<TemplateSet, PlanError> {
    let families = Task::ALL.map(Task::name);
    let mut set = p.template_files("world", families.map(affix_file).iter().map(String::as_str))?;
    set.extend(p.template_files("world", [SCORE_TEMPLATE])?);
    set.extend(p.principles("world", families)?);
    Ok(set)
}

/// The literal words (outside tags and comments) of the judge and scoring prompts
/// ([`VOCABULARY_TEMPLATES`]), sorted and deduplicated: what they add to a world vocabulary.
pub fn vocabulary_words(templates: &Templates) -> Result<Vec<String>, TemplateError> {
    let mut words = std::collections::BTreeSet::new();
    for name in VOCABULARY_TEMPLATES {
        let literal = crate::world::corpus::template_literal_text(&templates.source(name)?);
        words.extend(crate::world::grammar::words(&literal));
    }
    Ok(words.into_iter().collect())
}

/// The pretraining stage of a world model. Models with a `judging` table of their own share
/// the preset's seed, so their corpus differs from the world's only in its judging documents.
pub fn plan(p: &Planner<'_>, model: &WorldModel) -> Result<Planned, PlanError> {
    p.read("pretrain");
    let recipe = p.recipe();
    let preset = model.preset.as_str();
    let unknown = || PlanError::Unknown {
        key: "models".into(),
        what: "world preset",
        name: preset.into(),
    };
    let mut world = p.world();
    let mut templates = corpus_templates(p)?;
    let mut questions = JudgeQuestions::default();
    if let Some(judging) = &model.judging {
        world.config = judging.apply(&world.config);
        questions = JudgeQuestions {
            frac: judging.questions_frac,
            pair_correlation: judging.pair_correlation,
        };
        if questions.frac > 0.0 {
            templates.extend(p.template_files("world", JUDGE_TEMPLATES.iter().copied())?);
        }
    }
    let config = Config {
        preset: preset.to_string(),
        architecture: LlamaConfig::preset_with_vocab(preset, 0).ok_or_else(unknown)?,
        world,
        judge_questions: questions.frac,
        judge_pair_correlation: questions.pair_correlation,
        train: recipe.pretrain.config_for(preset).ok_or_else(unknown)?,
        heldout_documents: recipe.pretrain.heldout_documents,
        templates,
        vocabulary_words: vocabulary_words(p.templates()?)
            .map_err(PlanError::templates("world"))?,
        backend: p.backend(),
        seed: p.world_seed(&["pretrain", preset]),
    };
    Planned::new::<Pretrain>(id(&model.label), &config)
}

impl From<PretrainError> for StageError {
    fn from(e: PretrainError) -> Self {
        StageError::failed(e)
    }
}

impl Stage for Pretrain {
    const KIND: StageKind = StageKind::Pretrain;
    const VERSION: u32 = 3;
    type Config = Config;

    fn inputs(_: &Config) -> Vec<String> {
        Vec::new()
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = Instant::now();
        let world = config.world.build()?;
        let templates = config.templates.templates();
        let pb = ctx.progress(config.train.steps as u64);
        let job = WorldPretrain {
            world: &world,
            templates: &templates,
            vocabulary_words: &config.vocabulary_words,
            preset: &config.preset,
            architecture: config.architecture.clone(),
            config: config.train.clone(),
            heldout_documents: config.heldout_documents,
            judge_questions: JudgeQuestions {
                frac: config.judge_questions,
                pair_correlation: config.judge_pair_correlation,
            },
            seed: config.seed,
        };
        let mut on_step = |_: usize, loss: f64| {
            pb.inc(1);
            pb.set_message(format!("loss {loss:.3}"));
        };
        let record = with_backend!(config.backend, B, device => {
            pretrain_world::<burn::backend::Autodiff<B>>(&job, &device, ctx.dir, &mut on_step)
                .map_err(StageError::from)
        })?;
        pb.finish_and_clear();
        Ok(serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "params": record.params,
            "vocab": record.vocab,
            "corpus_tokens": record.corpus_tokens,
            "corpus_blake3": record.corpus_blake3,
            "perplexity": record.perplexity,
            "train_tokens_per_s": record.log.tokens_per_s,
        }))
    }
}
