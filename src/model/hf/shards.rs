//! The safetensors files of a checkpoint: `model.safetensors`, or the shards listed by
//! `model.safetensors.index.json`, memory-mapped and read through the `safetensors` crate.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensors};

use super::hf_err;
use crate::model::ModelError;
use crate::model::load::{Part, WeightSource, ckpt_err};

/// File holding an unsharded checkpoint's weights.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Index of a sharded checkpoint (`weight_map`: tensor name → shard file).
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The memory-mapped weight files of one checkpoint.
pub struct Shards {
    dir: PathBuf,
    /// Each file with the offset of its data (after the header).
    files: Vec<(PathBuf, memmap2::Mmap, usize)>,
    /// Tensor name → index into `files` and the tensor's header entry.
    owner: HashMap<String, (usize, TensorInfo)>,
}

fn map(path: &Path) -> Result<memmap2::Mmap, ModelError> {
    let file = std::fs::File::open(path).map_err(ckpt_err(path, "cannot open the weights"))?;
    // SAFETY: the map is read-only and private to this process; a checkpoint rewritten while it
    // is loaded is outside what any loader can guard against (transformers maps it the same way).
    unsafe { memmap2::Mmap::map(&file) }.map_err(ckpt_err(path, "cannot map the weights"))
}

/// The header of a safetensors file (validated against its length): where the data starts and
/// every tensor's entry.
fn parse(path: &Path, bytes: &[u8]) -> Result<(usize, Vec<(String, TensorInfo)>), ModelError> {
    let (n, meta) = SafeTensors::read_metadata(bytes)
        .map_err(ckpt_err(path, "not a valid safetensors file"))?;
    let tensors = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.clone()))
        .collect();
    Ok((8 + n, tensors))
}

impl Shards {
    /// The weight files of checkpoint directory `dir`: the index's shards when
    /// [`INDEX_FILE`] exists, else [`SINGLE_FILE`].
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let names = Self::file_names(dir)?;
        let mut files = Vec::with_capacity(names.len());
        let mut owner = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(hf_err(
                    &path,
                    "is missing; the checkpoint's weights are incomplete".into(),
                ));
            }
            let mmap = map(&path)?;
            let (start, tensors) = parse(&path, &mmap)?;
            for (tensor, info) in tensors {
                if let Some((prev, _)) = owner.insert(tensor.clone(), (i, info)) {
                    return Err(hf_err(
                        &path,
                        format!("tensor `{tensor}` is also in {}", names[prev]),
                    ));
                }
            }
            files.push((path, mmap, start));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            owner,
        })
    }

    /// Names of the weight files of `dir`, in a stable order.
    pub fn file_names(dir: &Path) -> Result<Vec<String>, ModelError> {
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            let text = crate::error::read_to_string(&index)
                .map_err(ckpt_err(&index, "cannot read the shard index"))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(ckpt_err(&index, "invalid JSON"))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    hf_err(&index, "key `weight_map`: missing or not an object".into())
                })?;
            let mut files = BTreeSet::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    hf_err(
                        &index,
                        format!("key `weight_map.{tensor}`: not a file name"),
                    )
                })?;
                if file.contains('/') || file.contains('\\') || file == ".." {
                    return Err(hf_err(
                        &index,
                        format!(
                            "key `weight_map.{tensor}`: `{file}` is not a file of the directory"
                        ),
                    ));
                }
                files.insert(file.to_string());
            }
            if files.is_empty() {
                return Err(hf_err(&index, "key `weight_map`: lists no tensors".into()));
            }
            return Ok(files.into_iter().collect());
        }
        if dir.join(SINGLE_FILE).is_file() {
            return Ok(vec![SINGLE_FILE.to_string()]);
        }
        Err(hf_err(
            dir,
            format!(
                "has neither {SINGLE_FILE} nor {INDEX_FILE}; a Hugging Face checkpoint \
                 directory holds config.json, the safetensors weights and tokenizer.json"
            ),
        ))
    }
}

/// Hugging Face's tensor names for Llama and Qwen2 causal LMs.
pub fn hf_name(part: Part, layer: usize, bias: bool) -> String {
    let suffix = if bias { "bias" } else { "weight" };
    let block = |n: &str| format!("model.layers.{layer}.{n}.{suffix}");
    match part {
        Part::Embed => format!("model.embed_tokens.{suffix}"),
        Part::AttnNorm => block("input_layernorm"),
        Part::Q => block("self_attn.q_proj"),
        Part::K => block("self_attn.k_proj"),
        Part::V => block("self_attn.v_proj"),
        Part::O => block("self_attn.o_proj"),
        Part::FfnNorm => block("post_attention_layernorm"),
        Part::Gate => block("mlp.gate_proj"),
        Part::Up => block("mlp.up_proj"),
        Part::Down => block("mlp.down_proj"),
        Part::Norm => format!("model.norm.{suffix}"),
        Part::Head => format!("lm_head.{suffix}"),
    }
}

/// Little-endian values of `dtype` widened to f32, or `None` for a dtype the loader does not
/// read.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let pairs = || {
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => pairs().map(|b| half::f16::from_bits(b).to_f32()).collect(),
        Dtype::BF16 => pairs().map(|b| half::bf16::from_bits(b).to_f32()).collect(),
        _ => return None,
    })
}

impl WeightSource for Shards {
    fn name(&self, part: Part, layer: usize, bias: bool) -> String {
        hf_name(part, layer, bias)
    }

    fn has(&self, name: &str) -> bool {
        self.owner.contains_key(name)
    }

    fn values(&self, name: &str, expect: &[usize]) -> Result<Vec<f32>, ModelError> {
        let (path, dtype, bytes) = self.view(name, expect)?;
        to_f32(dtype, bytes).ok_or_else(|| unreadable(path, name, dtype))
    }
}

fn unreadable(path: &Path, name: &str, dtype: Dtype) -> ModelError {
    hf_err(
        path,
        format!("tensor `{name}` is {dtype:?}; the loader reads F32, F16 and BF16 weights"),
    )
}

impl Shards {
    /// Checks that tensor `name` exists with shape `expect` and a dtype the loader reads.
    pub fn check(&self, name: &str, expect: &[usize]) -> Result<(), ModelError> {
        let (path, dtype, _) = self.view(name, expect)?;
        match dtype {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(()),
            other => Err(unreadable(path, name, other)),
        }
    }

    /// The file holding tensor `name`, its dtype and its bytes; its shape must be `expect`.
    fn view(&self, name: &str, expect: &[usize]) -> Result<(&Path, Dtype, &[u8]), ModelError> {
        let Some((i, info)) = self.owner.get(name) else {
            return Err(hf_err(
                &self.dir,
                format!(
                    "no tensor `{name}` in its safetensors files; the checkpoint is incomplete \
                     or its config.json describes another model"
                ),
            ));
        };
        let (path, map, start) = &self.files[*i];
        if info.shape != expect {
            return Err(hf_err(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, but config.json implies {expect:?}",
                    info.shape
                ),
            ));
        }
        let (a, b) = info.data_offsets;
        let bytes = map
            .get(start + a..start + b)
            .ok_or_else(|| hf_err(path, format!("tensor `{name}` lies outside the file")))?;
        Ok((path, info.dtype, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_widens_exactly() {
        let v = [1.5f32, -0.25, 3.0e-3];
        let f16: Vec<u8> = v
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = v
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect();
        let back16 = to_f32(Dtype::F16, &f16).unwrap();
        let backb = to_f32(Dtype::BF16, &bf16).unwrap();
        for (i, x) in v.iter().enumerate() {
            assert_eq!(back16[i], half::f16::from_f32(*x).to_f32());
            assert_eq!(backb[i], half::bf16::from_f32(*x).to_f32());
        }
        assert_eq!(back16[0], 1.5);
        assert!(to_f32(Dtype::I8, &[1, 2]).is_none());
    }
}
