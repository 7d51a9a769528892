//! Sampling one output per prompt from a model, as evaluations do (paper §4.2:
//! temperature 1, cut at the next speaker tag): the world report's descriptor effect and the
//! held-out pairs preference models are measured on.

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::model::{
    FinishReason, GenerateOptions, GenerationRequest, Lm, ModelError, PolicyFormat, Truncate,
};
use crate::seed;

/// How outputs are sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Softmax temperature (0 = greedy).
    pub temperature: f64,
    /// Nucleus-sampling mass (1 = off).
    pub top_p: f64,
    /// Most new tokens per output.
    pub max_new_tokens: usize,
    /// Sequences generated together.
    pub batch_size: usize,
}

impl Sampling {
    /// Temperature 1, no top-p (the paper's sampling), with these limits.
    pub fn paper(max_new_tokens: usize, batch_size: usize) -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens,
            batch_size,
        }
    }
}

/// One output per prompt (written for the model as `format` says, cut at its stop strings)
/// and whether it ended its turn; prompt `i` is sampled with seed
/// `seed::derive_index(seed, "sample", i)`.
pub fn sample<B: Backend>(
    lm: &Lm<B>,
    format: &PolicyFormat,
    prompts: &[String],
    settings: &Sampling,
    seed: u64,
) -> Result<Vec<(String, bool)>, ModelError> {
    let opts = GenerateOptions {
        max_new_tokens: settings.max_new_tokens,
        temperature: settings.temperature,
        top_p: settings.top_p,
        // Held-out and world prompts are sampled whole: one that does not fit is a fault to
        // report, never a prompt to cut.
        truncate: Truncate::Error,
        ..format.generate_options()
    };
    let size = settings.batch_size.max(1);
    let mut out = Vec::with_capacity(prompts.len());
    for (c, chunk) in prompts.chunks(size).enumerate() {
        let requests: Vec<GenerationRequest> = chunk
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(GenerationRequest {
                    prompt: format.query(&lm.tokenizer, p)?,
                    seed: seed::derive_index(seed, "sample", (c * size + i) as u64),
                })
            })
            .collect::<Result<_, ModelError>>()?;
        for g in lm.generate(&requests, &opts)? {
            let finished = !matches!(g.finish_reason, FinishReason::Length);
            out.push((g.text, finished));
        }
    }
    Ok(out)
}
