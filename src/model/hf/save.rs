//! Writing a decoder (or a scalar-head model) as a Hugging Face checkpoint: f32 safetensors,
//! `config.json` and the tokenizer files.

use std::borrow::Cow;
use std::path::Path;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use safetensors::{Dtype, View};
use serde_json::Value;

use super::config::HfConfig;
use super::shards::{SINGLE_FILE, hf_name};
use super::{CONFIG_FILE, TOKENIZER_FILE};
use crate::model::ModelError;
use crate::model::llama::{Llama, RopeStyle, ScalarHead};
use crate::model::load::{Part, ckpt_err, tensor_values as values, transpose, unpermute_qk};
use crate::model::tokenizer::Tokenizer;

/// An f32 tensor ready for the safetensors writer.
struct F32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &F32Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Tensors by Hugging Face name.
#[derive(Default)]
struct Tensors(Vec<(String, F32Tensor)>);

impl Tensors {
    fn push(&mut self, name: String, values: &[f32], shape: Vec<usize>) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.0.push((name, F32Tensor { shape, bytes }));
    }

    fn vector<B: Backend>(
        &mut self,
        name: String,
        p: &Param<Tensor<B, 1>>,
    ) -> Result<(), ModelError> {
        let v = values(p.val())?;
        let n = v.len();
        self.push(name, &v, vec![n]);
        Ok(())
    }

    /// A burn `Linear` (`[in, out]`) as `[out, in]`, with Q/K rows of an adjacent-pair decoder
    /// moved to the half-split layout (`heads` = Some((n_heads, head_dim))).
    fn linear<B: Backend>(
        &mut self,
        (part, layer): (Part, usize),
        l: &Linear<B>,
        heads: Option<(usize, usize)>,
        names: fn(Part, usize, bool) -> String,
    ) -> Result<(), ModelError> {
        let [inp, out] = l.weight.dims();
        let mut w = transpose(&values(l.weight.val())?, inp, out);
        if let Some((h, hd)) = heads {
            w = unpermute_qk(&w, h, hd, inp);
        }
        self.push(names(part, layer, false), &w, vec![out, inp]);
        if let Some(b) = &l.bias {
            let mut b = values(b.val())?;
            if let Some((h, hd)) = heads {
                b = unpermute_qk(&b, h, hd, 1);
            }
            self.push(names(part, layer, true), &b, vec![out]);
        }
        Ok(())
    }

    /// Every tensor of `model`'s trunk, and its output head unless `head` is false or the head
    /// is tied.
    fn decoder<B: Backend>(&mut self, model: &Llama<B>, head: bool) -> Result<(), ModelError> {
        let c = model.config();
        let adjacent = c.rope_style == RopeStyle::Adjacent;
        let q = adjacent.then_some((c.n_heads, c.head_dim));
        let k = adjacent.then_some((c.n_kv_heads, c.head_dim));
        let n = hf_name;
        let e = values(model.embed.weight.val())?;
        self.push(n(Part::Embed, 0, false), &e, vec![c.vocab_size, c.d_model]);
        for (i, l) in model.layers.iter().enumerate() {
            self.vector(n(Part::AttnNorm, i, false), &l.attn_norm.gamma)?;
            self.linear((Part::Q, i), &l.attn.wq, q, n)?;
            self.linear((Part::K, i), &l.attn.wk, k, n)?;
            self.linear((Part::V, i), &l.attn.wv, None, n)?;
            self.linear((Part::O, i), &l.attn.wo, None, n)?;
            self.vector(n(Part::FfnNorm, i, false), &l.ffn_norm.gamma)?;
            self.linear((Part::Gate, i), &l.mlp.gate, None, n)?;
            self.linear((Part::Up, i), &l.mlp.up, None, n)?;
            self.linear((Part::Down, i), &l.mlp.down, None, n)?;
        }
        self.vector(n(Part::Norm, 0, false), &model.norm.gamma)?;
        if head && let Some(h) = &model.lm_head {
            self.linear((Part::Head, 0), h, None, n)?;
        }
        Ok(())
    }

    fn write(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(SINGLE_FILE);
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(
            self.0.iter().map(|(n, t)| (n.as_str(), t)),
            Some(meta),
            &path,
        )
        .map_err(ckpt_err(&path, "cannot write the weights"))
    }
}

fn write_json(path: &Path, v: &Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(v).map_err(ckpt_err(path, "cannot serialise"))?;
    crate::error::write(path, text + "\n").map_err(ckpt_err(path, "cannot write"))
}

/// Writes `tensors` as the weights of `dir`, with the tokenizer files and `config.json` of a
/// decoder `model` (as `…ForSequenceClassification` when `sequence_classification`).
fn write_checkpoint(
    dir: &Path,
    tensors: &Tensors,
    model: &Llama<impl Backend>,
    tokenizer: &Tokenizer,
    sequence_classification: bool,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(ckpt_err(dir, "cannot create the directory"))?;
    tensors.write(dir)?;
    let c = model.config();
    tokenizer.save(&dir.join(TOKENIZER_FILE))?;
    tokenizer.save_hf_config(dir, c.max_seq_len)?;
    let ids = [tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id()];
    write_json(
        &dir.join(CONFIG_FILE),
        &HfConfig::to_json(c, ids, sequence_classification),
    )
}

/// Writes `model` and its tokenizer to `dir` as a `LlamaForCausalLM` (or, with Q/K/V biases,
/// `Qwen2ForCausalLM`) checkpoint in f32 that `from_pretrained` loads.
pub fn save_hf<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(), ModelError> {
    let mut t = Tensors::default();
    t.decoder(model, true)?;
    write_checkpoint(dir, &t, model, tokenizer, false)
}

/// Writes a scalar-head model (a preference or value model) as a
/// `…ForSequenceClassification` checkpoint with one label: the trunk under `model.*` (no
/// output head) and the head as `score.weight` `[1, d_model]` plus `score.bias` `[1]`.
/// transformers' class has no bias and drops `score.bias` with a warning, which shifts every
/// score by the same constant and leaves preferences between responses unchanged.
pub fn save_hf_scalar<B: Backend>(
    model: &ScalarHead<B>,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(), ModelError> {
    let mut t = Tensors::default();
    t.decoder(&model.trunk, false)?;
    t.linear((Part::Head, 0), &model.score, None, |_, _, bias| {
        if bias { "score.bias" } else { "score.weight" }.to_string()
    })?;
    write_checkpoint(dir, &t, &model.trunk, tokenizer, true)
}

/// A `Linear` from `[out, in]` values (for tests and importers).
#[cfg(test)]
fn linear_from<B: Backend>(w: &[f32], out: usize, inp: usize, device: &B::Device) -> Linear<B> {
    let w = transpose(w, out, inp);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            burn::tensor::TensorData::new(w, [inp, out]),
            device,
        )),
        bias: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cpu;
    use crate::model::llama::LlamaConfig;

    #[test]
    fn linear_is_written_out_by_in() {
        let device = Default::default();
        let w: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let l = linear_from::<Cpu>(&w, 2, 3, &device);
        let mut t = Tensors::default();
        t.linear((Part::O, 0), &l, None, hf_name).unwrap();
        let (name, tensor) = &t.0[0];
        assert_eq!(name, "model.layers.0.self_attn.o_proj.weight");
        assert_eq!(tensor.shape, vec![2, 3]);
        let back: Vec<f32> = tensor
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(back, w);
    }

    #[test]
    fn tied_heads_are_not_written() {
        let device = Default::default();
        let mut c = LlamaConfig::tiny();
        c.tied_embeddings = true;
        let m = Llama::<Cpu>::new(c, &device).unwrap();
        let mut t = Tensors::default();
        t.decoder(&m, true).unwrap();
        assert!(t.0.iter().all(|(n, _)| n != "lm_head.weight"));
        assert_eq!(t.0.len(), 2 + 9 * m.config().n_layers);
    }
}
