//! Hugging Face checkpoints: the committed tiny `LlamaForCausalLM` / `Qwen2ForCausalLM`
//! fixtures (made by `tests/fixtures/hf/make_fixtures.py` with transformers) load with the
//! logits transformers computed, in f32, f16, bf16 and sharded form; exported decoders load
//! back with the same logits, as checkpoints and as GGUF files; broken checkpoints are refused
//! naming the file and key.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rlcd::model::gguf::GgufFile;
use rlcd::model::hf::{load_hf, save_hf, save_hf_scalar};
use rlcd::model::llama::{Llama, LlamaConfig, RopeStyle, ScalarHead};
use rlcd::model::sampling::pad_batch;
use rlcd::model::tokenizer::Tokenizer;
use rlcd::model::{Cpu, GgufPrecision, Lm, save_gguf};
use serde::Deserialize;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// What transformers computed for a fixture (`reference.json`).
#[derive(Deserialize)]
struct Reference {
    text: String,
    ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
    mean_nll: f64,
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn logits<B: Backend>(model: &Llama<B>, ids: &[u32]) -> Vec<Vec<f32>> {
    let device = model.device();
    let (tokens, mask) = pad_batch::<B>(&[ids.to_vec()], ids.len(), false, 0, &device);
    let out: Tensor<B, 3> = model.forward(tokens, mask);
    let vocab = model.config().vocab_size;
    let flat = out.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    flat.chunks(vocab).map(<[f32]>::to_vec).collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "positions");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "vocabulary");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

const FIXTURES: [&str; 5] = [
    "llama-f32",
    "llama-bf16",
    "llama-sharded",
    "qwen2-f32",
    "qwen2-f16",
];

#[test]
fn fixtures_match_transformers_logits() {
    let device = Default::default();
    for name in FIXTURES {
        let r = reference(name);
        let lm = Lm::<Cpu>::from_path(&fixture(name), &device).unwrap();
        assert_eq!(lm.encode(&r.text).unwrap(), r.ids, "{name}: tokenizer");
        let ours = logits(&lm.model, &r.ids);
        let diff = max_diff(&ours, &r.logits);
        assert!(diff <= 1e-4, "{name}: max |Δlogit| = {diff}");
        let nll = lm.score(&r.text).unwrap().mean_nll;
        assert!(
            (nll - r.mean_nll).abs() < 1e-4,
            "{name}: NLL {nll} vs {}",
            r.mean_nll
        );
    }
}

#[test]
fn half_precision_fixtures_are_the_f32_models_rounded() {
    let device = Default::default();
    for (wide, narrow, bound) in [
        ("llama-f32", "llama-bf16", 0.25),
        ("qwen2-f32", "qwen2-f16", 0.02),
    ] {
        let r = reference(wide);
        let a = logits(&load_hf::<Cpu>(&fixture(wide), &device).unwrap(), &r.ids);
        let b = logits(&load_hf::<Cpu>(&fixture(narrow), &device).unwrap(), &r.ids);
        let diff = max_diff(&a, &b);
        assert!(
            diff > 0.0 && diff < bound,
            "{narrow} vs {wide}: max |Δlogit| = {diff}"
        );
    }
}

#[test]
fn exported_checkpoints_load_back_with_the_same_logits() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    for name in ["llama-f32", "qwen2-f32"] {
        let lm = Lm::<Cpu>::from_path(&fixture(name), &device).unwrap();
        let out = dir.path().join(name);
        save_hf(&lm.model, &lm.tokenizer, &out).unwrap();
        let back = Lm::<Cpu>::from_path(&out, &device).unwrap();
        assert_eq!(back.model.config(), lm.model.config(), "{name}");
        let ids = reference(name).ids;
        assert_eq!(
            max_diff(&logits(&back.model, &ids), &logits(&lm.model, &ids)),
            0.0,
            "{name}"
        );
        assert_eq!(back.tokenizer.eos_id(), lm.tokenizer.eos_id());
    }
    // A decoder with llama.cpp's adjacent-pair RoPE is written half-split.
    let mut config = LlamaConfig::tiny();
    config.rope_style = RopeStyle::Adjacent;
    config.tied_embeddings = false;
    <Cpu as Backend>::seed(&device, 3);
    let model = Llama::<Cpu>::new(config, &device).unwrap();
    let words: Vec<String> = (0..90).map(|i| format!("w{i}")).collect();
    let tokenizer = Tokenizer::word_level(&words, &["<|bos|>", "<|eos|>", "<|pad|>"]).unwrap();
    let out = dir.path().join("adjacent");
    save_hf(&model, &tokenizer, &out).unwrap();
    let back = load_hf::<Cpu>(&out, &device).unwrap();
    assert_eq!(back.config().rope_style, RopeStyle::HalfSplit);
    let ids: Vec<u32> = (0..20).map(|i| (i * 7 % 90) as u32).collect();
    let diff = max_diff(&logits(&back, &ids), &logits(&model, &ids));
    assert!(diff < 1e-4, "adjacent → half-split: max |Δlogit| = {diff}");
}

#[test]
fn scalar_heads_export_as_sequence_classification() {
    let device = Default::default();
    let lm = Lm::<Cpu>::from_path(&fixture("qwen2-f32"), &device).unwrap();
    let pm = ScalarHead::new(lm.model.clone());
    let dir = tempfile::tempdir().unwrap();
    save_hf_scalar(&pm, &lm.tokenizer, dir.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "Qwen2ForSequenceClassification");
    assert_eq!(config["num_labels"], 1);
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("score.weight").unwrap().shape(), &[1, 32]);
    assert_eq!(st.tensor("score.bias").unwrap().shape(), &[1]);
    assert!(st.tensor("lm_head.weight").is_err());
    assert!(st.tensor("model.layers.1.self_attn.k_proj.bias").is_ok());
}

/// The fixtures, written as GGUF files, load back through the GGUF reader with transformers'
/// logits and the same tokenization; f16 files are the f32 models rounded; writing a loaded
/// GGUF again gives the same bytes; a word-level vocabulary has no GGUF form.
#[test]
fn fixtures_export_to_gguf_and_load_back() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    for (name, arch) in [("llama-f32", "llama"), ("qwen2-f32", "qwen2")] {
        let r = reference(name);
        let lm = Lm::<Cpu>::from_path(&fixture(name), &device).unwrap();
        let path = dir.path().join(format!("{name}.gguf"));
        save_gguf(&lm.model, &lm.tokenizer, &path, GgufPrecision::F32, &[]).unwrap();
        let g = GgufFile::open(&path).unwrap();
        assert_eq!(g.architecture().unwrap(), arch);
        assert_eq!(
            g.tensor_info("blk.0.attn_q.bias").is_some(),
            arch == "qwen2",
            "{name}"
        );
        let back = Lm::<Cpu>::from_path(&path, &device).unwrap();
        for text in [
            r.text.as_str(),
            "Digits 12345 and  two spaces,\n\nnew lines\ttabs; ünïcödé?",
            "",
        ] {
            assert_eq!(
                back.encode(text).unwrap(),
                lm.encode(text).unwrap(),
                "{name}: {text:?}"
            );
        }
        let roles = |t: &Tokenizer| (t.bos_id(), t.eos_id(), t.pad_id(), t.special_ids());
        assert_eq!(roles(&back.tokenizer), roles(&lm.tokenizer), "{name}");
        let diff = max_diff(&logits(&back.model, &r.ids), &r.logits);
        assert!(
            diff <= 1e-4,
            "{name}: GGUF max |Δlogit| vs transformers = {diff}"
        );

        let again = dir.path().join(format!("{name}-again.gguf"));
        save_gguf(
            &back.model,
            &back.tokenizer,
            &again,
            GgufPrecision::F32,
            &[],
        )
        .unwrap();
        assert!(
            std::fs::read(&again).unwrap() == std::fs::read(&path).unwrap(),
            "{name}: a loaded GGUF wrote different bytes"
        );

        let half = dir.path().join(format!("{name}-f16.gguf"));
        save_gguf(&lm.model, &lm.tokenizer, &half, GgufPrecision::F16, &[]).unwrap();
        let h = Lm::<Cpu>::from_path(&half, &device).unwrap();
        let diff = max_diff(&logits(&h.model, &r.ids), &logits(&back.model, &r.ids));
        assert!(
            diff > 0.0 && diff < 0.02,
            "{name}: f16 max |Δlogit| = {diff}"
        );
    }
    let words: Vec<String> = (0..90).map(|i| format!("w{i}")).collect();
    let tokenizer = Tokenizer::word_level(&words, &["<|bos|>", "<|eos|>", "<|pad|>"]).unwrap();
    let model = Llama::<Cpu>::new(LlamaConfig::tiny(), &device).unwrap();
    let err = save_gguf(
        &model,
        &tokenizer,
        &dir.path().join("world.gguf"),
        GgufPrecision::F32,
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("WordLevel") && err.contains("--format hf"),
        "{err}"
    );
    assert!(!dir.path().join("world.gguf").exists());
}

/// A copy of fixture `name` in a temporary directory, for breaking.
fn copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

fn load_err(dir: &Path) -> String {
    match Lm::<Cpu>::from_path(dir, &Default::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_checkpoints_name_the_file_and_key() {
    let d = copy("llama-f32");
    edit_config(d.path(), |v| {
        v["architectures"] = serde_json::json!(["GPT2LMHeadModel"])
    });
    let err = load_err(d.path());
    assert!(
        err.contains("config.json") && err.contains("GPT2LMHeadModel"),
        "{err}"
    );

    let d = copy("llama-f32");
    edit_config(d.path(), |v| v["intermediate_size"] = serde_json::json!(48));
    let err = load_err(d.path());
    assert!(
        err.contains("model.safetensors") && err.contains("mlp.gate_proj.weight"),
        "{err}"
    );
    assert!(err.contains("[48, 32]"), "{err}");

    let d = copy("llama-f32");
    edit_config(d.path(), |v| v["num_hidden_layers"] = serde_json::json!(3));
    let err = load_err(d.path());
    assert!(err.contains("model.layers.2."), "{err}");

    let d = copy("qwen2-f32");
    edit_config(d.path(), |v| {
        v["tie_word_embeddings"] = serde_json::json!(false)
    });
    let err = load_err(d.path());
    assert!(
        err.contains("tie_word_embeddings") && err.contains("lm_head.weight"),
        "{err}"
    );

    let d = copy("llama-sharded");
    std::fs::remove_file(d.path().join("model-00002-of-00003.safetensors")).unwrap();
    let err = load_err(d.path());
    assert!(err.contains("model-00002-of-00003.safetensors"), "{err}");

    let d = copy("llama-f32");
    std::fs::remove_file(d.path().join("tokenizer.json")).unwrap();
    let err = load_err(d.path());
    assert!(err.contains("tokenizer.json"), "{err}");

    let d = copy("llama-f32");
    std::fs::write(d.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = load_err(d.path());
    assert!(
        err.contains("model.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("llama-f32").join("config.json"),
        d.path().join("config.json"),
    )
    .unwrap();
    let err = load_err(d.path());
    assert!(err.contains("model.safetensors"), "{err}");
}

/// The fixtures written as GGUF files (f32 and f16) run in llama.cpp: its own tokenizer gives
/// the reference ids and its logits match transformers'. CI runs it when `TRANSFORMERS_PYTHON`
/// names a Python with the packages of `tests/fixtures/hf/requirements.txt`.
#[test]
#[ignore = "needs TRANSFORMERS_PYTHON: a Python with llama-cpp-python (tests/fixtures/hf/requirements.txt)"]
fn gguf_exports_run_in_llama_cpp() {
    let python = std::env::var("TRANSFORMERS_PYTHON")
        .expect("TRANSFORMERS_PYTHON names a Python with llama-cpp-python");
    let script = fixture("make_fixtures.py");
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    for name in ["llama-f32", "qwen2-f32"] {
        let lm = Lm::<Cpu>::from_path(&fixture(name), &device).unwrap();
        for (precision, tol) in [(GgufPrecision::F32, "1e-4"), (GgufPrecision::F16, "0.02")] {
            let path = dir.path().join(format!("{name}-{precision:?}.gguf"));
            save_gguf(&lm.model, &lm.tokenizer, &path, precision, &[]).unwrap();
            let out = std::process::Command::new(&python)
                .arg(&script)
                .arg("check-gguf")
                .arg(&path)
                .arg(fixture(name).join("reference.json"))
                .args(["--tol", tol])
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("{name} {precision:?}:\n{text}");
            assert!(out.status.success(), "{name} {precision:?}:\n{text}");
        }
    }
}
