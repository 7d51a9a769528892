//! `config.json` of a Hugging Face `LlamaForCausalLM` / `Qwen2ForCausalLM` checkpoint, read into
//! a [`LlamaConfig`] and written from one.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::hf_err;
use crate::model::ModelError;
use crate::model::llama::{LlamaConfig, RopeStyle};
use crate::model::load::ckpt_err;

/// Architectures (`config.json` key `architectures`) the loader understands.
pub const SUPPORTED: [&str; 2] = ["LlamaForCausalLM", "Qwen2ForCausalLM"];

/// The decoder family of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `LlamaForCausalLM` (`model_type = "llama"`): no projection biases.
    Llama,
    /// `Qwen2ForCausalLM` (`model_type = "qwen2"`): Q, K and V biases.
    Qwen2,
}

impl Family {
    /// The `architectures` entry of a causal LM of this family.
    pub fn architecture(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    /// The `model_type` of this family.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }
}

/// The keys of `config.json` the decoder reads; the many others transformers writes are
/// ignored.
#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default)]
    hidden_act: Option<String>,
    max_position_embeddings: usize,
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
}

/// A checkpoint's family and decoder shape.
#[derive(Clone, Debug, PartialEq)]
pub struct HfConfig {
    /// The decoder family.
    pub family: Family,
    /// The decoder shape (half-split RoPE, as Hugging Face stores Q and K).
    pub config: LlamaConfig,
}

/// The RoPE scaling type a `rope_scaling` / `rope_parameters` object names, if any but the
/// plain one.
fn rope_scaling_type(v: &Value) -> Option<String> {
    let kind = v.get("rope_type").or_else(|| v.get("type"))?.as_str()?;
    (kind != "default").then(|| kind.to_string())
}

impl HfConfig {
    /// Reads `config.json` at `path`.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let text = crate::error::read_to_string(path).map_err(ckpt_err(
            path,
            "cannot read the Hugging Face config; is the directory a checkpoint?",
        ))?;
        Self::parse(&text, path)
    }

    /// Parses the text of a `config.json` (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ModelError> {
        let raw: Raw = serde_json::from_str(text).map_err(ckpt_err(
            path,
            "not a LlamaForCausalLM or Qwen2ForCausalLM config",
        ))?;
        let err = |key: &str, message: String| hf_err(path, format!("key `{key}`: {message}"));
        let family = match (raw.architectures.first(), raw.model_type.as_deref()) {
            (Some(a), _) if a == "LlamaForCausalLM" => Family::Llama,
            (Some(a), _) if a == "Qwen2ForCausalLM" => Family::Qwen2,
            (Some(a), _) => {
                return Err(err(
                    "architectures",
                    format!(
                        "architecture `{a}` is not supported; supported: {}",
                        SUPPORTED.join(", ")
                    ),
                ));
            }
            (None, Some("llama")) => Family::Llama,
            (None, Some("qwen2")) => Family::Qwen2,
            (None, other) => {
                return Err(err(
                    "model_type",
                    format!(
                        "model type {other:?} is not supported; expected `llama` or `qwen2` \
                         (or `architectures` naming {})",
                        SUPPORTED.join(" / ")
                    ),
                ));
            }
        };
        if let Some(act) = &raw.hidden_act
            && act != "silu"
        {
            return Err(err(
                "hidden_act",
                format!(
                    "activation `{act}` is not supported; the decoder's MLP is SwiGLU (`silu`)"
                ),
            ));
        }
        if raw.mlp_bias == Some(true) {
            return Err(err(
                "mlp_bias",
                "MLP biases are not supported; only `false`".into(),
            ));
        }
        if family == Family::Llama && raw.attention_bias == Some(true) {
            return Err(err(
                "attention_bias",
                "Llama attention biases (including the output projection's) are not supported"
                    .into(),
            ));
        }
        if raw.use_sliding_window == Some(true) {
            return Err(err(
                "use_sliding_window",
                "sliding-window attention is not supported; only `false`".into(),
            ));
        }
        for (key, value) in [
            ("rope_scaling", &raw.rope_scaling),
            ("rope_parameters", &raw.rope_parameters),
        ] {
            if let Some(kind) = value.as_ref().and_then(rope_scaling_type) {
                return Err(err(
                    key,
                    format!("RoPE scaling `{kind}` is not supported; only plain RoPE (`default`)"),
                ));
            }
        }
        let rope_theta = raw
            .rope_theta
            .or_else(|| {
                raw.rope_parameters
                    .as_ref()
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10_000.0);
        let n_heads = raw.num_attention_heads;
        if n_heads == 0 {
            return Err(err("num_attention_heads", "is 0".into()));
        }
        let config = LlamaConfig {
            vocab_size: raw.vocab_size,
            d_model: raw.hidden_size,
            n_layers: raw.num_hidden_layers,
            n_heads,
            n_kv_heads: raw.num_key_value_heads.unwrap_or(n_heads),
            head_dim: raw.head_dim.unwrap_or(raw.hidden_size / n_heads),
            d_ff: raw.intermediate_size,
            rms_eps: raw.rms_norm_eps,
            rope_theta,
            rope_style: RopeStyle::HalfSplit,
            qkv_bias: family == Family::Qwen2,
            tied_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            max_seq_len: raw.max_position_embeddings,
        };
        config
            .validate()
            .map_err(|e| hf_err(path, format!("the shape it describes is invalid: {e}")))?;
        Ok(Self { family, config })
    }

    /// The family a decoder exports as: Qwen2 when it has Q/K/V biases, else Llama.
    pub fn family_of(config: &LlamaConfig) -> Family {
        if config.qkv_bias {
            Family::Qwen2
        } else {
            Family::Llama
        }
    }

    /// `config.json` for `config` (written half-split; the weights must be too), with the
    /// tokenizer's special-token ids and, for a scalar-head model, the
    /// `…ForSequenceClassification` architecture with one label.
    pub fn to_json(
        config: &LlamaConfig,
        tokens: [Option<u32>; 3],
        sequence_classification: bool,
    ) -> Value {
        let family = Self::family_of(config);
        let [bos, eos, pad] = tokens;
        let architecture = if sequence_classification {
            family
                .architecture()
                .replace("ForCausalLM", "ForSequenceClassification")
        } else {
            family.architecture().to_string()
        };
        let mut v = json!({
            "architectures": [architecture],
            "model_type": family.model_type(),
            "vocab_size": config.vocab_size,
            "hidden_size": config.d_model,
            "intermediate_size": config.d_ff,
            "num_hidden_layers": config.n_layers,
            "num_attention_heads": config.n_heads,
            "num_key_value_heads": config.n_kv_heads,
            "head_dim": config.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": config.max_seq_len,
            "rms_norm_eps": config.rms_eps,
            "rope_theta": config.rope_theta,
            "tie_word_embeddings": config.tied_embeddings,
            "attention_dropout": 0.0,
            "torch_dtype": "float32",
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": pad,
        });
        let map = v.as_object_mut().expect("a JSON object");
        match family {
            Family::Llama => {
                map.insert("attention_bias".into(), json!(false));
                map.insert("mlp_bias".into(), json!(false));
            }
            Family::Qwen2 => {
                map.insert("use_sliding_window".into(), json!(false));
            }
        }
        if sequence_classification {
            map.insert("num_labels".into(), json!(1));
            map.insert("id2label".into(), json!({"0": "LABEL_0"}));
            map.insert("label2id".into(), json!({"LABEL_0": 0}));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "hidden_act": "silu"
        })
    }

    fn parse(v: &Value) -> Result<HfConfig, ModelError> {
        HfConfig::parse(&v.to_string(), Path::new("ckpt/config.json"))
    }

    #[test]
    fn reads_the_decoder_shape() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.family, Family::Llama);
        assert_eq!(
            (c.config.head_dim, c.config.n_kv_heads, c.config.qkv_bias),
            (8, 2, false)
        );
        assert!(!c.config.tied_embeddings);
        let mut v = base();
        v["architectures"] = json!(["Qwen2ForCausalLM"]);
        v["tie_word_embeddings"] = json!(true);
        v.as_object_mut().unwrap().remove("rope_theta");
        v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1e6});
        let c = parse(&v).unwrap();
        assert_eq!(c.family, Family::Qwen2);
        assert!(c.config.qkv_bias && c.config.tied_embeddings);
        assert_eq!(c.config.rope_theta, 1e6);
    }

    #[test]
    fn written_config_reads_back() {
        let mut config = parse(&base()).unwrap().config;
        for (bias, tied) in [(false, false), (true, true)] {
            config.qkv_bias = bias;
            config.tied_embeddings = tied;
            let v = HfConfig::to_json(&config, [Some(1), Some(2), None], false);
            assert_eq!(parse(&v).unwrap().config, config);
        }
    }

    #[test]
    fn unsupported_configs_name_the_file_and_key() {
        let cases: [(&str, Value, &str); 6] = [
            (
                "architectures",
                json!(["MistralForCausalLM"]),
                "MistralForCausalLM",
            ),
            ("hidden_act", json!("gelu"), "gelu"),
            (
                "rope_scaling",
                json!({"rope_type": "llama3", "factor": 8.0}),
                "llama3",
            ),
            ("attention_bias", json!(true), "attention_bias"),
            ("mlp_bias", json!(true), "mlp_bias"),
            ("num_key_value_heads", json!(3), "invalid"),
        ];
        for (key, value, says) in cases {
            let mut v = base();
            v[key] = value;
            let err = parse(&v).unwrap_err().to_string();
            assert!(err.contains("ckpt/config.json"), "{err}");
            assert!(err.contains(says), "{key}: {err}");
        }
        let mut v = base();
        v.as_object_mut().unwrap().remove("hidden_size");
        let err = parse(&v).unwrap_err().to_string();
        assert!(
            err.contains("ckpt/config.json") && err.contains("hidden_size"),
            "{err}"
        );
    }
}
