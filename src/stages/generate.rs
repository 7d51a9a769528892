//! Evaluation samples (paper §3 step 4, §4.3): one output per test prompt per policy, sampled
//! at the evaluation temperature and cut at the next speaker tag. Prompt `i` of a task is
//! sampled with the same seed for every policy, so compared outputs share their random stream.

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::model::sampling::{FinishReason, GenerateOptions, GenerationRequest};
use crate::model::{Lm, ModelError};
use crate::seed;
use crate::stages::policy::PolicyFormat;
use crate::stages::prompts::Dialogue;

/// File name of a generate stage's samples.
pub const SAMPLES: &str = "samples.json";

/// Version of the samples format; part of the generate stage's key.
pub const GENERATE_VERSION: u32 = 1;

/// One policy output for one test prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The dialogue's id.
    pub prompt_id: String,
    /// The dialogue turns (human, assistant, …, human).
    pub turns: Vec<String>,
    /// The plain prompt p.
    pub prompt: String,
    /// The output, cut before the next speaker tag.
    pub output: String,
    /// Whether the output ended its turn within the token limit.
    pub finished: bool,
    /// Output length in the policy's tokens.
    pub len: usize,
    /// The sampling seed.
    pub seed: u64,
}

/// How to sample evaluation outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleSettings {
    /// Sampling temperature.
    pub temperature: f64,
    /// Most new tokens per output.
    pub max_new_tokens: usize,
    /// Sequences generated together.
    pub batch_size: usize,
}

/// One sample of `lm` per prompt: `prompts[i]` is the plain prompt of `dialogues[i]`, sampled
/// with seed `seed::derive_index(seed, "sample", i)`.
pub fn generate_samples<B: Backend>(
    lm: &Lm<B>,
    format: &PolicyFormat,
    dialogues: &[Dialogue],
    prompts: &[String],
    settings: &SampleSettings,
    seed: u64,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<Sample>, ModelError> {
    let opts = GenerateOptions {
        max_new_tokens: settings.max_new_tokens,
        temperature: settings.temperature,
        stop: format.stop.clone(),
        ..GenerateOptions::default()
    };
    let mut out = Vec::with_capacity(prompts.len());
    let items: Vec<(usize, (&Dialogue, &String))> =
        dialogues.iter().zip(prompts).enumerate().collect();
    for chunk in items.chunks(settings.batch_size.max(1)) {
        let requests: Vec<GenerationRequest> = chunk
            .iter()
            .map(|(i, (_, p))| GenerationRequest {
                prompt: format.query(p),
                seed: seed::derive_index(seed, "sample", *i as u64),
            })
            .collect();
        for ((_, (d, p)), (req, g)) in chunk
            .iter()
            .zip(requests.iter().zip(lm.generate(&requests, &opts)?))
        {
            out.push(Sample {
                prompt_id: d.id.clone(),
                turns: d.turns.clone(),
                prompt: (*p).clone(),
                len: lm.encode(&g.text)?.len(),
                finished: g.finish_reason != FinishReason::Length,
                output: g.text,
                seed: req.seed,
            });
        }
        on_batch(out.len());
    }
    Ok(out)
}
