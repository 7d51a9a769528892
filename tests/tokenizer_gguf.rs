//! The GGUF tokenizer bridge: on a tiny vocabulary written by the test-support GGUF writer
//! (every `tokenizer.ggml.*` key, pre-tokenizers, roles, chat rendering and errors), and against
//! the real models' reference tokenizations (facts in `assets.md`): SmolLM2-135M-Instruct (pre
//! `smollm`) and, when present, Qwen2.5-Coder-0.5B (pre `qwen2`). Each real-model check skips
//! with a note when its asset is absent.

mod common;

use std::path::Path;

use common::gguf_writer::GgufWriter;
use rlcd::model::gguf::{GgufFile, MetaValue};
use rlcd::model::tokenizer::{ChatMessage, Tokenizer, TokenizerError};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

const SMOLLM2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"
);
const QWEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/models");

const SENTENCE: &str =
    "The capital of France is Paris. It is known for the Eiffel Tower and its museums.";
const SMOLLM2_IDS: [u32; 19] = [
    504, 3575, 282, 4649, 314, 7042, 30, 657, 314, 1343, 327, 260, 414, 46682, 18669, 284, 624,
    14739, 30,
];

/// The tokenizer of a model asset; a missing file fails the test with the fetch command.
fn load(path: &Path, asset: &str) -> Tokenizer {
    assert!(
        path.is_file(),
        "{} is absent: fetch it with `cargo run --release -- assets fetch {asset}`",
        path.display()
    );
    let g = GgufFile::open(path).expect("GGUF parses");
    Tokenizer::from_gguf(&g).expect("tokenizer builds from GGUF metadata")
}

#[test]
fn smollm2_reference_tokenization() {
    let t = load(Path::new(SMOLLM2), "smollm2-135m");
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.eos_id(), Some(2));
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.token_to_id("<|im_end|>"), Some(2));

    let ids = t.encode(SENTENCE, true).unwrap();
    assert_eq!(ids, SMOLLM2_IDS, "no BOS, exact reference ids");
    assert_eq!(t.decode(&ids, false).unwrap(), SENTENCE);
    assert_eq!(t.decode(&[198], false).unwrap(), "\n");

    // Digits split one by one under the `smollm` pre-tokenizer.
    let digits = t.encode("2024", false).unwrap();
    assert_eq!(digits.len(), 4);
    assert_eq!(t.decode(&digits, false).unwrap(), "2024");

    let msgs = [
        ChatMessage::user("How do I bake bread?"),
        ChatMessage::assistant("Mix flour, water, yeast and salt."),
    ];
    let chat = t.render_chat(&msgs, true).unwrap();
    assert_eq!(
        chat,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\n\
         Mix flour, water, yeast and salt.<|im_end|>\n<|im_start|>assistant\n"
    );
    let chat_ids = t.encode(&chat, false).unwrap();
    assert_eq!(chat_ids[0], 1, "<|im_start|> is one id");
    assert_eq!(chat_ids.iter().filter(|&&i| i == 1).count(), 4);
    assert_eq!(chat_ids.iter().filter(|&&i| i == 2).count(), 3);
    assert_eq!(t.decode(&chat_ids, false).unwrap(), chat);
    let spoken = t.decode(&chat_ids, true).unwrap();
    assert!(!spoken.contains("<|im_start|>") && spoken.contains("How do I bake bread?"));
}

/// Qwen2.5-Coder-0.5B-Instruct, checked only when a copy already sits under assets/models/.
#[test]
#[ignore = "needs the qwen2.5-coder-0.5b asset: `cargo run --release -- assets fetch qwen2.5-coder-0.5b`"]
fn qwen2_tokenizer() {
    let t = load(
        &Path::new(QWEN_DIR).join("Qwen2.5-Coder-0.5B-Instruct.gguf"),
        "qwen2.5-coder-0.5b",
    );
    assert_eq!(t.eos_id(), Some(151645));
    assert_eq!(t.token_to_id("<|im_start|>"), Some(151644));
    let ids = t.encode(SENTENCE, true).unwrap();
    assert_eq!(t.decode(&ids, false).unwrap(), SENTENCE);
    let digits = t.encode("2024", false).unwrap();
    assert_eq!(digits.len(), 4, "qwen2 splits digits one by one");
    let chat = t.render_chat(&[ChatMessage::user("Hi")], true).unwrap();
    assert!(chat.contains("<|im_start|>user\nHi<|im_end|>\n"), "{chat}");
    assert!(chat.ends_with("<|im_start|>assistant\n"), "{chat}");
}

// ---- a tiny GGUF vocabulary ---------------------------------------------------------------

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGES: [&str; 11] = [
    "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "Ġ 1",
];
const SMOL_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Tokens: 3 control tokens, the 256 byte-level characters (sorted), then merge results.
fn tiny_tokens() -> Vec<String> {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend(alphabet.iter().map(|c| c.to_string()));
    for m in MERGES {
        tokens.push(m.replace(' ', ""));
    }
    tokens
}

fn strings(items: &[String]) -> MetaValue {
    MetaValue::Array(items.iter().map(|s| MetaValue::String(s.clone())).collect())
}

/// A GGUF with every tokenizer key; `edit` may replace or drop keys before writing.
fn tiny_gguf(edit: impl FnOnce(&mut Vec<(String, MetaValue)>)) -> GgufFile {
    let tokens = tiny_tokens();
    let types: Vec<MetaValue> = (0..tokens.len())
        .map(|i| MetaValue::I32(if i < SPECIALS.len() { 3 } else { 1 }))
        .collect();
    let merges: Vec<String> = MERGES.iter().map(|m| m.to_string()).collect();
    let mut kv: Vec<(String, MetaValue)> = vec![
        (
            "general.architecture".into(),
            MetaValue::String("llama".into()),
        ),
        (
            "tokenizer.ggml.model".into(),
            MetaValue::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            MetaValue::String("smollm".into()),
        ),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        ("tokenizer.ggml.token_type".into(), MetaValue::Array(types)),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
        ("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(2)),
        ("tokenizer.ggml.padding_token_id".into(), MetaValue::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), MetaValue::U32(0)),
        (
            "tokenizer.ggml.add_bos_token".into(),
            MetaValue::Bool(false),
        ),
        (
            "tokenizer.chat_template".into(),
            MetaValue::String(SMOL_TEMPLATE.into()),
        ),
    ];
    edit(&mut kv);
    let mut w = GgufWriter::new();
    for (k, v) in kv {
        w.meta(&k, v);
    }
    GgufFile::from_bytes(w.to_bytes(), "tiny.gguf").expect("tiny GGUF parses")
}

fn set(kv: &mut Vec<(String, MetaValue)>, key: &str, value: MetaValue) {
    match kv.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => kv.push((key.to_string(), value)),
    }
}

fn tiny(pre: &str) -> Tokenizer {
    let pre = pre.to_string();
    let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.pre", MetaValue::String(pre)));
    Tokenizer::from_gguf(&g).expect("tiny tokenizer builds")
}

fn id(t: &Tokenizer, token: &str) -> u32 {
    t.token_to_id(token)
        .unwrap_or_else(|| panic!("{token:?} not in vocab"))
}

#[test]
fn gguf_bpe_encodes_with_merges_and_round_trips() {
    let t = tiny("smollm");
    assert_eq!(t.vocab_size(), 3 + 256 + MERGES.len());
    let ids = t.encode("hello world", false).unwrap();
    assert_eq!(ids, vec![id(&t, "hello"), id(&t, "Ġworld")]);
    let text = "hello world! Ünïcödé ✓ tabs\tand\nnewlines  ";
    let ids = t.encode(text, false).unwrap();
    assert_eq!(t.decode(&ids, false).unwrap(), text);
    // No BOS is added when add_bos_token is false.
    assert_eq!(t.encode("hello", true).unwrap(), vec![id(&t, "hello")]);
    assert_eq!(
        (t.bos_id(), t.eos_id(), t.pad_id()),
        (Some(1), Some(2), Some(2))
    );
    assert_eq!(t.special_ids(), vec![0, 1, 2]);
    assert_eq!(t.id_to_token(id(&t, "Ġworld")).as_deref(), Some("Ġworld"));
}

#[test]
fn gguf_special_tokens_are_single_ids_and_skippable() {
    let t = tiny("smollm");
    let ids = t.encode("<|im_start|>hello<|im_end|>", false).unwrap();
    assert_eq!(ids, vec![1, id(&t, "hello"), 2]);
    assert_eq!(t.decode(&ids, true).unwrap(), "hello");
    assert_eq!(
        t.decode(&ids, false).unwrap(),
        "<|im_start|>hello<|im_end|>"
    );
    let err = t.decode(&[9999], false).unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnknownId { id: 9999, .. }),
        "{err}"
    );
}

#[test]
fn gguf_add_bos_token_is_honoured() {
    let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.add_bos_token", MetaValue::Bool(true)));
    let t = Tokenizer::from_gguf(&g).unwrap();
    let h = id(&t, "hello");
    assert_eq!(t.encode("hello", true).unwrap(), vec![1, h]);
    assert_eq!(t.encode("hello", false).unwrap(), vec![h]);
}

#[test]
fn pre_tokenizer_decides_digit_splitting() {
    let (one, two, three) = ("1", "2", "3");
    let smol = tiny("smollm");
    let digits: Vec<u32> = [one, two, three].iter().map(|d| id(&smol, d)).collect();
    assert_eq!(smol.encode("123", false).unwrap(), digits);
    let gpt2 = tiny("gpt2");
    assert_eq!(
        gpt2.encode("123", false).unwrap(),
        vec![id(&gpt2, "12"), id(&gpt2, "3")]
    );
    // GPT-2's regex keeps the space with the number (" 1" merges); smollm splits digits first.
    assert_eq!(gpt2.encode(" 1", false).unwrap(), vec![id(&gpt2, "Ġ1")]);
    assert_eq!(
        smol.encode(" 1", false).unwrap(),
        vec![id(&smol, "Ġ"), id(&smol, "1")]
    );
    let qwen = tiny("qwen2");
    assert_eq!(qwen.encode("123", false).unwrap(), digits);
    let text = "It'S 12 o'clock\r\n  done";
    assert_eq!(
        qwen.decode(&qwen.encode(text, false).unwrap(), false)
            .unwrap(),
        text
    );
}

#[test]
fn chat_rendering_uses_the_gguf_template() {
    let t = tiny("smollm");
    let msgs = [
        ChatMessage::user("What is 2+2?"),
        ChatMessage::assistant("4."),
    ];
    let text = t.render_chat(&msgs, true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
         <|im_start|>assistant\n4.<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = t.encode(&text, false).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 4);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 3);
    assert_eq!(t.decode(&ids, false).unwrap(), text);
}

#[test]
fn chatml_fallback_when_no_template() {
    let g = tiny_gguf(|kv| kv.retain(|(k, _)| k != "tokenizer.chat_template"));
    let t = Tokenizer::from_gguf(&g).unwrap();
    assert!(t.chat_template().is_none());
    let msgs = [ChatMessage::system("Be brief."), ChatMessage::user("Hi")];
    assert_eq!(
        t.render_chat(&msgs, false).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
    assert!(
        t.render_chat(&msgs, true)
            .unwrap()
            .ends_with("<|im_start|>assistant\n")
    );
}

#[test]
fn chat_template_raise_exception_and_python_methods() {
    let tpl = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user turn') }}{% endif %}\
               {% for m in messages %}{{ m.role.upper() }}: {{ m.content.strip() }}{% if m.content.strip().startswith('Hi') %}!{% endif %}{{ '\\n' }}{% endfor %}\
               {% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}{% endfor %}";
    let g = tiny_gguf(|kv| set(kv, "tokenizer.chat_template", MetaValue::String(tpl.into())));
    let t = Tokenizer::from_gguf(&g).unwrap();
    let ok = t
        .render_chat(
            &[
                ChatMessage::user("  Hi there "),
                ChatMessage::assistant("yo"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(ok, "USER: Hi there!\nASSISTANT: yo\nx=1");
    let err = t
        .render_chat(&[ChatMessage::assistant("hello")], false)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TokenizerError::ChatTemplate { .. }));
    assert!(
        msg.contains("Conversations must start with a user turn"),
        "{msg}"
    );
    assert!(msg.contains("tokenizer.chat_template"), "{msg}");
}

#[test]
fn missing_tokenizer_key_is_named() {
    let g = tiny_gguf(|kv| kv.retain(|(k, _)| k != "tokenizer.ggml.tokens"));
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MissingKey { key, .. } if key == "tokenizer.ggml.tokens")
    );
    assert!(err.to_string().starts_with("tiny.gguf: "), "{err}");
    assert!(err.to_string().contains("tokenizer.ggml.tokens"));
    let g = tiny_gguf(|kv| kv.retain(|(k, _)| k != "tokenizer.ggml.model"));
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(
        err.to_string()
            .contains("`tokenizer.ggml.model` is missing"),
        "{err}"
    );
}

#[test]
fn unknown_model_and_pre_are_rejected_with_the_supported_list() {
    let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.model", MetaValue::String("rwkv".into())));
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(matches!(err, TokenizerError::UnsupportedModel { .. }));
    assert!(
        err.to_string().contains("`rwkv`") && err.to_string().contains("gpt2"),
        "{err}"
    );
    let g = tiny_gguf(|kv| {
        set(
            kv,
            "tokenizer.ggml.pre",
            MetaValue::String("klingon".into()),
        )
    });
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TokenizerError::UnsupportedPre { .. }));
    assert!(
        msg.contains("klingon") && msg.contains("smollm") && msg.contains("qwen2"),
        "{msg}"
    );
    let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.pre", MetaValue::U32(7)));
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(matches!(err, TokenizerError::WrongType { .. }), "{err}");
}

#[test]
fn malformed_or_dangling_merges_are_rejected() {
    let bad = vec!["h e".to_string(), "hello".to_string()];
    let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.merges", strings(&bad)));
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MalformedMerge { index: 1, merge, .. } if merge == "hello"),
        "{err}"
    );
    let dangling = vec!["q z".to_string()];
    let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.merges", strings(&dangling)));
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(matches!(err, TokenizerError::Build { .. }), "{err}");
    assert!(err.to_string().contains("qz"), "{err}");
}

#[test]
fn out_of_range_role_id_is_rejected() {
    let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.eos_token_id", MetaValue::U32(100_000)));
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(
        matches!(err, TokenizerError::IdOutOfRange { id: 100_000, .. }),
        "{err}"
    );
}
