//! Writing a decoder as a llama.cpp GGUF file: architecture `llama` (RoPE on adjacent channel
//! pairs, as llama.cpp's converter stores it) or, for a decoder with Q/K/V biases, `qwen2`
//! (half-split RoPE), with f32 or f16 matrices and the tokenizer as `tokenizer.ggml.*` metadata.
//! [`load_llama`](super::load::load_llama) and llama.cpp read it back.

use std::path::Path;

use burn::nn::Linear;
use burn::tensor::backend::Backend;

use super::ModelError;
use super::gguf::{GgmlType, GgufWriter, MetaValue};
use super::llama::{Llama, RopeStyle};
use super::load::{Part, gguf_name, permute_qk, tensor_values, transpose, unpermute_qk};
use super::tokenizer::Tokenizer;

/// Precision of the matrices of a written GGUF file (norms and biases stay f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufPrecision {
    /// 32-bit floats: exactly the trained weights.
    F32,
    /// IEEE half precision: half the bytes, rounded to nearest.
    F16,
}

impl GgufPrecision {
    fn ggml_type(self) -> GgmlType {
        match self {
            GgufPrecision::F32 => GgmlType::F32,
            GgufPrecision::F16 => GgmlType::F16,
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_ALL_F32` / `LLAMA_FTYPE_MOSTLY_F16`).
    fn file_type(self) -> u32 {
        match self {
            GgufPrecision::F32 => 0,
            GgufPrecision::F16 => 1,
        }
    }
}

/// How Q/K rows move from the decoder's RoPE layout to the file's.
#[derive(Clone, Copy)]
enum QkLayout {
    AsIs,
    ToAdjacent,
    ToHalfSplit,
}

struct Out<'a> {
    w: &'a mut GgufWriter,
    precision: GgufPrecision,
}

impl Out<'_> {
    fn vector<B: Backend>(
        &mut self,
        name: String,
        t: burn::tensor::Tensor<B, 1>,
    ) -> Result<(), ModelError> {
        let v = tensor_values(t)?;
        self.w.tensor(name, &[v.len()], &v, GgmlType::F32);
        Ok(())
    }

    /// A burn `Linear` (`[in, out]`) as the file's `[out, in]`, Q/K rows moved for `heads`.
    fn linear<B: Backend>(
        &mut self,
        (part, layer): (Part, usize),
        l: &Linear<B>,
        heads: Option<(usize, usize, QkLayout)>,
    ) -> Result<(), ModelError> {
        let [inp, out] = l.weight.dims();
        let reorder = |v: Vec<f32>, cols: usize| match heads {
            Some((h, hd, QkLayout::ToAdjacent)) => permute_qk(&v, h, hd, cols),
            Some((h, hd, QkLayout::ToHalfSplit)) => unpermute_qk(&v, h, hd, cols),
            Some((_, _, QkLayout::AsIs)) | None => v,
        };
        let w = reorder(transpose(&tensor_values(l.weight.val())?, inp, out), inp);
        let ty = self.precision.ggml_type();
        self.w
            .tensor(gguf_name(part, layer, false), &[out, inp], &w, ty);
        if let Some(b) = &l.bias {
            let b = reorder(tensor_values(b.val())?, 1);
            self.w
                .tensor(gguf_name(part, layer, true), &[out], &b, GgmlType::F32);
        }
        Ok(())
    }
}

/// Writes `model` and `tokenizer` to `path` as a GGUF file llama.cpp loads, its matrices in
/// `precision`; `extra` metadata (a name, provenance) is added after the model's own.
pub fn save_gguf<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    path: &Path,
    precision: GgufPrecision,
    extra: &[(String, MetaValue)],
) -> Result<(), ModelError> {
    let c = model.config();
    let tokenizer_meta = tokenizer.gguf_metadata(c.vocab_size)?;
    let (arch, layout) = match (c.qkv_bias, c.rope_style) {
        (false, RopeStyle::HalfSplit) => ("llama", QkLayout::ToAdjacent),
        (false, RopeStyle::Adjacent) => ("llama", QkLayout::AsIs),
        (true, RopeStyle::HalfSplit) => ("qwen2", QkLayout::AsIs),
        (true, RopeStyle::Adjacent) => ("qwen2", QkLayout::ToHalfSplit),
    };
    let mut w = GgufWriter::new();
    let u32_of = |v: usize| MetaValue::U32(u32::try_from(v).unwrap_or(u32::MAX));
    let key = |k: &str| format!("{arch}.{k}");
    w.meta("general.architecture", MetaValue::String(arch.into()));
    w.meta("general.file_type", MetaValue::U32(precision.file_type()));
    w.meta(key("context_length"), u32_of(c.max_seq_len));
    w.meta(key("embedding_length"), u32_of(c.d_model));
    w.meta(key("block_count"), u32_of(c.n_layers));
    w.meta(key("feed_forward_length"), u32_of(c.d_ff));
    w.meta(key("attention.head_count"), u32_of(c.n_heads));
    w.meta(key("attention.head_count_kv"), u32_of(c.n_kv_heads));
    w.meta(
        key("attention.layer_norm_rms_epsilon"),
        MetaValue::F32(c.rms_eps as f32),
    );
    w.meta(key("rope.freq_base"), MetaValue::F32(c.rope_theta as f32));
    w.meta(key("rope.dimension_count"), u32_of(c.head_dim));
    if c.head_dim * c.n_heads != c.d_model {
        w.meta(key("attention.key_length"), u32_of(c.head_dim));
        w.meta(key("attention.value_length"), u32_of(c.head_dim));
    }
    w.meta(key("vocab_size"), u32_of(c.vocab_size));
    for (k, v) in tokenizer_meta.into_iter().chain(extra.iter().cloned()) {
        w.meta(k, v);
    }

    let mut out = Out {
        w: &mut w,
        precision,
    };
    let embed = tensor_values(model.embed.weight.val())?;
    out.w.tensor(
        gguf_name(Part::Embed, 0, false),
        &[c.vocab_size, c.d_model],
        &embed,
        precision.ggml_type(),
    );
    let q = Some((c.n_heads, c.head_dim, layout));
    let k = Some((c.n_kv_heads, c.head_dim, layout));
    for (i, l) in model.layers.iter().enumerate() {
        out.vector(gguf_name(Part::AttnNorm, i, false), l.attn_norm.gamma.val())?;
        out.linear((Part::Q, i), &l.attn.wq, q)?;
        out.linear((Part::K, i), &l.attn.wk, k)?;
        out.linear((Part::V, i), &l.attn.wv, None)?;
        out.linear((Part::O, i), &l.attn.wo, None)?;
        out.vector(gguf_name(Part::FfnNorm, i, false), l.ffn_norm.gamma.val())?;
        out.linear((Part::Gate, i), &l.mlp.gate, None)?;
        out.linear((Part::Up, i), &l.mlp.up, None)?;
        out.linear((Part::Down, i), &l.mlp.down, None)?;
    }
    out.vector(gguf_name(Part::Norm, 0, false), model.norm.gamma.val())?;
    if let Some(h) = &model.lm_head {
        out.linear((Part::Head, 0), h, None)?;
    }
    w.write(path).map_err(|e| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: "cannot write the GGUF file".into(),
        source: Box::new(e),
    })
}
