//! The GGUF tokenizer against the real models' reference tokenizations (facts in
//! `assets.md`): SmolLM2-135M-Instruct (pre `smollm`) and, when present, Qwen2.5-Coder-0.5B
//! (pre `qwen2`). Each check skips with a note when its asset is absent.

use std::path::Path;

use rlcd::model::gguf::GgufFile;
use rlcd::model::tokenizer::{ChatMessage, Tokenizer};

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

fn load(path: &Path) -> Option<Tokenizer> {
    if !path.is_file() {
        eprintln!(
            "skipping: {} is absent (fetch it with `cargo xtask fetch-assets`)",
            path.display()
        );
        return None;
    }
    let g = GgufFile::open(path).expect("GGUF parses");
    Some(Tokenizer::from_gguf(&g).expect("tokenizer builds from GGUF metadata"))
}

#[test]
fn smollm2_reference_tokenization() {
    let Some(t) = load(Path::new(SMOLLM2)) else {
        return;
    };
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
fn qwen2_tokenizer_when_present() {
    let found = std::fs::read_dir(QWEN_DIR).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase());
            name.is_some_and(|n| n.contains("qwen2.5-coder-0.5b") && n.ends_with(".gguf"))
        })
    });
    let Some(path) = found else {
        eprintln!("skipping: no Qwen2.5-Coder-0.5B GGUF under {QWEN_DIR}");
        return;
    };
    let Some(t) = load(&path) else {
        return;
    };
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
