//! A language model with its tokenizer: text in, scores and generations out.
//!
//! [`Lm`] is what stages use for the simulator (paper §3: sampling o+ from p+ and o− from p−),
//! the policy's rollouts and LM judges; [`Lm::score`] also backs the reference checks against
//! llama.cpp numbers.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::gguf::GgufFile;
use super::llama::Llama;
use super::load::load_llama;
use super::sampling::{GenerateOptions, Generation, GenerationRequest, generate_ids, pad_batch};
use super::tokenizer::Tokenizer;
use super::truncate::{self, Truncate};
use super::{ModelError, log_softmax};

/// Per-token scores of one text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// Token ids of the text (no BOS added).
    pub ids: Vec<u32>,
    /// Negative log-likelihood of each token given the ones before it (`None` for the first).
    pub token_nll: Vec<Option<f64>>,
    /// Mean of the defined `token_nll` (nats per token; 0 for a one-token text).
    pub mean_nll: f64,
    /// The first five logits at position 0.
    pub logits_first5_pos0: Vec<f32>,
    /// The most likely token after the whole text.
    pub greedy_next: u32,
}

/// A decoder and its tokenizer.
#[derive(Debug, Clone)]
pub struct Lm<B: Backend> {
    /// The decoder.
    pub model: Llama<B>,
    /// The tokenizer matching the decoder's vocabulary.
    pub tokenizer: Tokenizer,
}

impl<B: Backend> Lm<B> {
    /// Pairs a model with its tokenizer (the tokenizer may not have more ids than the model).
    pub fn new(model: Llama<B>, tokenizer: Tokenizer) -> Result<Self, ModelError> {
        let (tv, mv) = (tokenizer.vocab_size(), model.config().vocab_size);
        if tv > mv {
            return Err(ModelError::VocabMismatch {
                tokenizer: tv,
                model: mv,
            });
        }
        Ok(Self { model, tokenizer })
    }

    /// Loads weights and tokenizer from one GGUF file.
    pub fn from_gguf_path(path: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let g = GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let model = load_llama(&g, device)?;
        Self::new(model, tokenizer)
    }

    /// Loads weights and tokenizer from a Hugging Face checkpoint directory (`config.json`,
    /// safetensors, `tokenizer.json` and, when present, `tokenizer_config.json`).
    pub fn from_hf_dir(dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let model = super::hf::load_hf(dir, device)?;
        let tokenizer = Tokenizer::from_file(&dir.join(super::hf::TOKENIZER_FILE))?;
        Self::new(model, tokenizer)
    }

    /// Loads a model from a GGUF file or a Hugging Face checkpoint directory.
    pub fn from_path(path: &Path, device: &B::Device) -> Result<Self, ModelError> {
        if path.is_dir() {
            Self::from_hf_dir(path, device)
        } else {
            Self::from_gguf_path(path, device)
        }
    }

    /// Token ids of `text` (special-token strings map to their ids; no BOS/EOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.tokenizer.encode(text, false).map_err(ModelError::from)
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer.decode(ids, true).map_err(ModelError::from)
    }

    /// Scores `text` token by token.
    pub fn score(&self, text: &str) -> Result<ScoreReport, ModelError> {
        let ids = self.encode(text)?;
        if ids.is_empty() {
            return Err(ModelError::Request("cannot score an empty text".into()));
        }
        let n = ids.len();
        if n > self.model.config().max_seq_len {
            return Err(ModelError::TooLong {
                len: n,
                max: self.model.config().max_seq_len,
            });
        }
        let vocab = self.model.config().vocab_size;
        let device = self.model.device();
        let (tokens, mask) = pad_batch::<B>(std::slice::from_ref(&ids), n, true, 0, &device);
        let logits = self.model.forward(tokens, mask).reshape([n, vocab]);
        let host = |t: Tensor<B, 2>| {
            t.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| ModelError::Data(format!("{e:?}")))
        };
        // Only what the report holds leaves the device: each next token's log-probability, the
        // last position's logits and the first five of position 0 (not two n × vocab arrays).
        let next_logp = if n > 1 {
            let next: Vec<i64> = ids[1..].iter().map(|&t| t as i64).collect();
            let next = Tensor::<B, 1, Int>::from_data(TensorData::new(next, [n - 1]), &device)
                .reshape([n - 1, 1]);
            host(log_softmax(logits.clone().narrow(0, 0, n - 1)).gather(1, next))?
        } else {
            Vec::new()
        };
        let first5 = host(logits.clone().narrow(0, 0, 1).narrow(1, 0, vocab.min(5)))?;
        let last = host(logits.narrow(0, n - 1, 1))?;
        let mut token_nll = vec![None];
        token_nll.extend(next_logp.iter().map(|&lp| Some(-(lp as f64))));
        let defined: Vec<f64> = token_nll.iter().flatten().copied().collect();
        let mean_nll = if defined.is_empty() {
            0.0
        } else {
            defined.iter().sum::<f64>() / defined.len() as f64
        };
        let greedy_next = last
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 { (i, x) } else { best }
            })
            .0 as u32;
        Ok(ScoreReport {
            ids,
            token_nll,
            mean_nll,
            logits_first5_pos0: first5,
            greedy_next,
        })
    }

    /// Token ids of the prompt `text` fitted into `room` tokens as `mode` says (see
    /// [`truncate::fit`]; the tokenizer's BOS is kept when the text starts with it).
    pub fn encode_prompt(
        &self,
        text: &str,
        room: usize,
        mode: Truncate,
    ) -> Result<Vec<u32>, ModelError> {
        truncate::fit(self.encode(text)?, room, self.tokenizer.bos_id(), mode)
    }

    /// Generates a continuation for every request. The tokenizer's EOS is added to
    /// `opts.eos_ids` and its pad id (or EOS) used as `pad_id` when the options leave them empty
    /// / at 0. A prompt leaving fewer than `opts.max_new_tokens` of the context free is
    /// handled as `opts.truncate` says.
    pub fn generate(
        &self,
        requests: &[GenerationRequest],
        opts: &GenerateOptions,
    ) -> Result<Vec<Generation>, ModelError> {
        let room = self
            .model
            .config()
            .max_seq_len
            .saturating_sub(opts.max_new_tokens);
        // Under `Error` (or with no room at all) an over-long prompt reaches `generate_ids`,
        // whose error counts the prompt and the new tokens against the whole context.
        let prompts = requests
            .iter()
            .map(|r| match opts.truncate {
                Truncate::Left if room > 0 => self.encode_prompt(&r.prompt, room, Truncate::Left),
                _ => self.encode(&r.prompt),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
        let mut opts = opts.clone();
        if let Some(eos) = self.tokenizer.eos_id()
            && !opts.eos_ids.contains(&eos)
        {
            opts.eos_ids.push(eos);
        }
        if opts.pad_id == 0
            && let Some(pad) = self.tokenizer.pad_id().or(self.tokenizer.eos_id())
        {
            opts.pad_id = pad;
        }
        let decode = |ids: &[u32]| self.tokenizer.decode(ids, true).unwrap_or_default();
        generate_ids(&self.model, &prompts, &seeds, &opts, &decode)
    }
}
