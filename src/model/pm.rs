//! The preference model (PM) of paper Appendix B: a scalar head on a trunk initialised from
//! the policy-size model, read at the last token of `prefix + prompt + " " + output +
//! end_of_turn` ([`PmFormat`]) and encoded with the PM's own tokenizer (pairs hold text, so
//! simulator and PM may tokenize differently). An input longer than `max_len` tokens is
//! left-truncated after its prefix, so the output and the end-of-turn marker, where the score
//! is read, always survive. Training is the `reward` stage; scoring serves PPO and the `rm:`
//! judge.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use super::llama::round_up;
use super::load::{load_scalar_checkpoint, save_scalar_checkpoint};
use super::sampling::pad_batch;
use super::tokenizer::{Tokenizer, TokenizerError};
use super::{Llama, Lm, ModelError, PolicyFormat, ScalarHead};
use crate::error::IoError;
use crate::world::format::{BOS, EOS};

/// Batches are padded to a multiple of this many columns, so only a few shapes occur.
const WIDTH_BUCKET: usize = 16;

/// Files of a saved PM.
pub mod files {
    /// The PM's tokenizer.
    pub const TOKENIZER: &str = "tokenizer.json";
    /// The PM's [`super::PmFormat`] as JSON.
    pub const FORMAT: &str = "pm.json";
}

/// How a PM reads a prompt and an output as one text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PmFormat {
    /// Text before the prompt: the BOS text for built-in world models, `""` for GGUF models.
    pub prefix: String,
    /// End-of-turn marker after the output: the EOS text for world models.
    pub end_of_turn: String,
    /// Most tokens of one input; longer inputs keep the prefix tokens and the last tokens.
    pub max_len: usize,
    /// Whether the prompt goes through the trunk's chat template (and `end_of_turn` is the
    /// template's end of turn).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chat: bool,
}

impl PmFormat {
    /// The format of built-in world models ([`BOS`] prefix, [`EOS`] end of turn).
    pub fn world(max_len: usize) -> Self {
        Self {
            prefix: BOS.to_string(),
            end_of_turn: EOS.to_string(),
            max_len,
            chat: false,
        }
    }

    /// The format of a pretrained model reading `policy`'s prompts: raw dialogue text, or the
    /// chat template with its end of turn.
    pub fn pretrained(policy: &PolicyFormat, max_len: usize) -> Self {
        Self {
            prefix: String::new(),
            end_of_turn: if policy.chat {
                policy.end_of_turn.clone()
            } else {
                String::new()
            },
            max_len,
            chat: policy.chat,
        }
    }

    /// The input text of `output` answering `prompt`: prefix + prompt + " " + output + end of
    /// turn; with `chat`, the prompt in `tokenizer`'s chat template, then the output and the
    /// end of turn.
    pub fn text(
        &self,
        tokenizer: &Tokenizer,
        prompt: &str,
        output: &str,
    ) -> Result<String, TokenizerError> {
        if !self.chat {
            return Ok(format!(
                "{}{prompt} {output}{}",
                self.prefix, self.end_of_turn
            ));
        }
        let query = tokenizer.chat_prompt(prompt)?;
        let gap = if query.ends_with(char::is_whitespace) {
            ""
        } else {
            " "
        };
        Ok(format!(
            "{query}{gap}{}{}",
            output.trim_start(),
            self.end_of_turn
        ))
    }
}

/// Why a PM cannot be built, scored, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PmError {
    /// The model engine failed.
    #[error("preference model: {0}")]
    Model(#[from] ModelError),
    /// A setting is unusable.
    #[error("[reward] {key}: {message}\n  fix: {fix}")]
    Config {
        /// The key under `[reward]`.
        key: &'static str,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// An input encodes to nothing.
    #[error("{what}\n  fix: {fix}")]
    Empty {
        /// What is empty.
        what: String,
        /// How to fix it.
        fix: String,
    },
    /// A saved PM's file cannot be written.
    #[error("cannot write the preference model: {0}")]
    Write(#[source] IoError),
    /// A saved PM's file cannot be read or is invalid.
    #[error("{}: {message}\n  fix: point at a directory written by the reward stage, or rebuild it", path.display())]
    Files {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A preference model: the scalar-head network, its tokenizer and its input format.
#[derive(Clone, Debug)]
pub struct Pm<B: Backend> {
    /// Trunk + `Linear(d, 1)`.
    pub model: ScalarHead<B>,
    /// The tokenizer of the trunk.
    pub tokenizer: Tokenizer,
    /// How inputs are written.
    pub format: PmFormat,
}

impl<B: Backend> Pm<B> {
    /// A PM on `trunk` with a fresh scalar head (weights normal(0, 0.02) from the backend's
    /// seed, bias 0). `format.max_len` must fit the trunk's context.
    pub fn new(trunk: Llama<B>, tokenizer: Tokenizer, format: PmFormat) -> Result<Self, PmError> {
        let (tv, mv) = (tokenizer.vocab_size(), trunk.config().vocab_size);
        if tv > mv {
            return Err(ModelError::VocabMismatch {
                tokenizer: tv,
                model: mv,
            }
            .into());
        }
        let model = ScalarHead::new(trunk);
        let pm = Self {
            model,
            tokenizer,
            format,
        };
        pm.check_max_len()?;
        Ok(pm)
    }

    /// A PM on the decoder of `lm` (the policy-size model) with its tokenizer.
    pub fn from_lm(lm: Lm<B>, format: PmFormat) -> Result<Self, PmError> {
        Self::new(lm.model, lm.tokenizer, format)
    }

    fn prefix_len(&self) -> Result<usize, PmError> {
        Ok(self.encode_raw(&self.format.prefix)?.len())
    }

    /// Checks that `format.max_len` fits between the prefix and the trunk's context.
    pub fn check_max_len(&self) -> Result<(), PmError> {
        let ctx = self.model.trunk.config().max_seq_len;
        let prefix = self.prefix_len()?;
        let max_len = self.format.max_len;
        if max_len > ctx || max_len <= prefix + 1 {
            return Err(PmError::Config {
                key: "max_len",
                message: format!(
                    "{max_len} tokens does not fit between the prefix ({prefix} tokens) and the PM's context ({ctx} tokens)"
                ),
                fix: format!("set max_len between {} and {ctx}", prefix + 2),
            });
        }
        Ok(())
    }

    fn encode_raw(&self, text: &str) -> Result<Vec<u32>, PmError> {
        self.tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e).into())
    }

    /// Token ids of a full input text (see [`PmFormat::text`]) and whether it was truncated:
    /// beyond `max_len` the prefix tokens and the last tokens are kept.
    pub fn encode_text(&self, text: &str) -> Result<(Vec<u32>, bool), PmError> {
        let ids = self.encode_raw(text)?;
        let max = self.format.max_len;
        if ids.len() <= max {
            return Ok((ids, false));
        }
        let keep_head = self.prefix_len()?.min(max);
        let mut out = ids[..keep_head].to_vec();
        out.extend_from_slice(&ids[ids.len() - (max - keep_head)..]);
        Ok((out, true))
    }

    /// Token ids of `output` answering `prompt`, and whether the input was truncated.
    pub fn encode(&self, prompt: &str, output: &str) -> Result<(Vec<u32>, bool), PmError> {
        let text = self
            .format
            .text(&self.tokenizer, prompt, output)
            .map_err(ModelError::from)?;
        self.encode_text(&text)
    }

    fn pad_id(&self) -> u32 {
        self.tokenizer
            .pad_id()
            .or(self.tokenizer.eos_id())
            .unwrap_or(0)
    }

    /// Scores of token rows `[b]` (right-padded to a bucketed width).
    pub fn forward_rows(&self, rows: &[Vec<u32>]) -> Tensor<B, 1> {
        let longest = rows.iter().map(Vec::len).max().unwrap_or(1);
        let width = round_up(longest, WIDTH_BUCKET).min(self.format.max_len.max(longest));
        let (tokens, mask) = pad_batch::<B>(
            rows,
            width,
            false,
            self.pad_id(),
            &self.model.trunk.device(),
        );
        self.model.forward(tokens, mask)
    }

    /// Scores of encoded inputs, in batches of `batch_size` rows grouped by length.
    pub fn score_ids(&self, rows: &[Vec<u32>], batch_size: usize) -> Result<Vec<f64>, PmError> {
        if batch_size == 0 {
            return Err(batch_error());
        }
        if let Some(i) = rows.iter().position(Vec::is_empty) {
            return Err(PmError::Empty {
                what: format!("input {i} encodes to no tokens"),
                fix: "give the PM a non-empty prompt or output".into(),
            });
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut out = vec![0.0; rows.len()];
        for chunk in order.chunks(batch_size) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| rows[i].clone()).collect();
            let scores = host(self.forward_rows(&batch))?;
            for (&i, s) in chunk.iter().zip(scores) {
                out[i] = s;
            }
        }
        Ok(out)
    }
}

impl<B: AutodiffBackend> Pm<B> {
    /// The PM without autodiff tracking, for scoring.
    pub fn valid(&self) -> Pm<B::InnerBackend> {
        Pm {
            model: self.model.valid(),
            tokenizer: self.tokenizer.clone(),
            format: self.format.clone(),
        }
    }
}

fn batch_error() -> PmError {
    PmError::Config {
        key: "batch_size",
        message: "is 0".into(),
        fix: "set batch_size to at least 1".into(),
    }
}

/// Host values of a one-dimensional tensor.
pub fn host<B: Backend>(t: Tensor<B, 1>) -> Result<Vec<f64>, ModelError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map(|v| v.into_iter().map(f64::from).collect())
        .map_err(|e| ModelError::Data(format!("{e:?}")))
}

/// Scores of full input texts (written with [`PmFormat::text`]), in batches of `batch_size`.
pub fn score_texts<B: Backend>(
    pm: &Pm<B>,
    texts: &[String],
    batch_size: usize,
) -> Result<Vec<f64>, PmError> {
    let rows = texts
        .iter()
        .map(|t| pm.encode_text(t).map(|(ids, _)| ids))
        .collect::<Result<Vec<_>, _>>()?;
    pm.score_ids(&rows, batch_size)
}

/// Scores of `(prompt, output)` pairs, in batches of `batch_size`.
pub fn score_outputs<B: Backend>(
    pm: &Pm<B>,
    items: &[(&str, &str)],
    batch_size: usize,
) -> Result<Vec<f64>, PmError> {
    let texts: Vec<String> = items
        .iter()
        .map(|(p, o)| pm.format.text(&pm.tokenizer, p, o))
        .collect::<Result<_, _>>()
        .map_err(ModelError::from)?;
    score_texts(pm, &texts, batch_size)
}

/// Saves a PM into `dir`: the scalar-head checkpoint (`config.json`, `model.mpk`),
/// `tokenizer.json` and `pm.json` (its [`PmFormat`]).
pub fn save_pm<B: Backend>(pm: &Pm<B>, dir: &Path) -> Result<(), PmError> {
    save_scalar_checkpoint(&pm.model, dir)?;
    let tok = dir.join(files::TOKENIZER);
    pm.tokenizer.save(&tok).map_err(|e| PmError::Files {
        path: tok.clone(),
        message: format!("cannot write: {e}"),
    })?;
    let fmt = dir.join(files::FORMAT);
    let json = serde_json::to_vec_pretty(&pm.format).map_err(|e| PmError::Files {
        path: fmt.clone(),
        message: format!("cannot serialise: {e}"),
    })?;
    crate::error::write(&fmt, json).map_err(PmError::Write)
}

/// Loads a PM saved by [`save_pm`].
pub fn load_pm<B: Backend>(dir: &Path, device: &B::Device) -> Result<Pm<B>, PmError> {
    let model = load_scalar_checkpoint::<B>(dir, device)?;
    let tok = dir.join(files::TOKENIZER);
    let tokenizer = Tokenizer::from_file(&tok).map_err(|e| PmError::Files {
        path: tok.clone(),
        message: e.to_string(),
    })?;
    let fmt = dir.join(files::FORMAT);
    let bytes = std::fs::read(&fmt).map_err(|e| PmError::Files {
        path: fmt.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let format: PmFormat = serde_json::from_slice(&bytes).map_err(|e| PmError::Files {
        path: fmt.clone(),
        message: format!("invalid PM format: {e}"),
    })?;
    let pm = Pm {
        model,
        tokenizer,
        format,
    };
    pm.check_max_len()?;
    Ok(pm)
}
