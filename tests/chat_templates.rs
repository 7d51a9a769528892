//! Chat rendering of the real models' chat templates (SmolLM2-135M-Instruct and
//! Qwen2.5-Coder-0.5B-Instruct, copied byte for byte from their GGUF metadata into
//! `tests/fixtures/chat_templates/`) and of a template calling the Python string and dict
//! methods Hugging Face templates use, on multi-turn conversations, pinned by snapshots. Each
//! model's GGUF template must equal its fixture and its own tokenizer must render every
//! conversation identically (SmolLM2 always; the Qwen check is ignored by default, its asset is
//! a download CI does not make).

use std::path::{Path, PathBuf};

use rlcd::model::gguf::GgufFile;
use rlcd::model::tokenizer::{ChatMessage, Tokenizer};

/// The fixture templates.
const TEMPLATES: [&str; 3] = ["smollm2-135m", "qwen2.5-coder-0.5b", "python-methods"];

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chat_templates")
        .join(format!("{name}.jinja"))
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).expect("chat template fixture")
}

/// Named multi-turn conversations: system prompts first, later and absent; tool turns;
/// whitespace, Unicode and template syntax in the text; empty turns.
fn conversations() -> Vec<(&'static str, Vec<ChatMessage>)> {
    use ChatMessage as M;
    vec![
        ("user only", vec![M::user("How do I bake bread?")]),
        (
            "system, user, assistant, user",
            vec![
                M::system("You answer in one sentence."),
                M::user("Hi! What is the capital of France?"),
                M::assistant("Paris is the capital of France."),
                M::user("And of Italy?"),
            ],
        ),
        (
            "three exchanges",
            vec![
                M::user("Hi there"),
                M::assistant("Hello! How can I help?"),
                M::user("Tell me a joke about a cat."),
                M::assistant("A cat walked into a bar and ordered nothing at all."),
                M::user("Another one, please?"),
                M::assistant("Why did the cat sit on the computer? To keep an eye on the mouse!"),
            ],
        ),
        (
            "assistant first, system later",
            vec![
                M::assistant("I start."),
                M::user("Fine."),
                M::system("Be brief."),
                M::assistant("Ok."),
            ],
        ),
        (
            "tool turns",
            vec![
                M::user("What is the weather in Paris?"),
                M::assistant("Let me check."),
                M::new("tool", "{\"temperature\": 21}"),
                M::new("tool", "{\"sky\": \"clear\"}"),
                M::user("Thanks!"),
            ],
        ),
        (
            "whitespace, unicode and template syntax",
            vec![
                M::user("  Hi, padded text \n\n"),
                M::assistant("Ünïcödé ✓ — «quotes» 'single' \"double\" {{ braces }} {% raw %}"),
                M::user("\tline one\nline two\r\n<think>hidden</think> shown!"),
            ],
        ),
        (
            "empty turns",
            vec![M::system(""), M::user(""), M::assistant("")],
        ),
    ]
}

/// Every conversation rendered by `t`, with and without the generation prompt, one document;
/// each header gives the rendering's length in bytes, so that whitespace a snapshot comparison
/// normalises (line endings, trailing newlines) still counts.
fn render_all(t: &Tokenizer) -> String {
    let mut out = String::new();
    for (name, messages) in conversations() {
        for add_generation_prompt in [false, true] {
            let text = t
                .render_chat(&messages, add_generation_prompt)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push_str(&format!(
                "===== {name} (add_generation_prompt: {add_generation_prompt}; {} bytes) =====\n{text}\n",
                text.len()
            ));
        }
    }
    out
}

/// A world tokenizer with ChatML's special tokens carrying `template` (through a sibling
/// `tokenizer_config.json`, as a Hugging Face tokenizer does).
fn with_template(template: &str) -> Tokenizer {
    let words: Vec<String> = ["hello", "world"].iter().map(|w| w.to_string()).collect();
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let world = Tokenizer::word_level(&words, &specials).expect("world tokenizer");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokenizer.json");
    world.save(&path).expect("save tokenizer.json");
    let config = serde_json::json!({
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "chat_template": template,
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string())
        .expect("write tokenizer_config.json");
    let t = Tokenizer::from_file(&path).expect("tokenizer with a chat template");
    assert_eq!(t.chat_template(), Some(template));
    t
}

#[test]
fn chat_templates_render_the_fixture_conversations() {
    for name in TEMPLATES {
        let rendered = render_all(&with_template(&fixture(name)));
        insta::assert_snapshot!(name, rendered);
    }
}

/// The model asset `file`'s template equals fixture `name`, and renders identically.
fn model_carries_its_fixture(name: &str, file: &str, asset: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/models")
        .join(file);
    assert!(
        path.is_file(),
        "{} is absent: fetch it with `cargo run --release -- assets fetch {asset}`",
        path.display()
    );
    let g = GgufFile::open(&path).expect("GGUF parses");
    let model = Tokenizer::from_gguf(&g).expect("tokenizer builds from GGUF metadata");
    let template = fixture(name);
    assert_eq!(
        model.chat_template(),
        Some(template.as_str()),
        "{name}: the model's chat template differs from {}",
        fixture_path(name).display()
    );
    assert_eq!(
        render_all(&model),
        render_all(&with_template(&template)),
        "{name}: the model's own tokenizer renders differently"
    );
}

#[test]
fn smollm2_carries_its_fixture_template() {
    model_carries_its_fixture(
        "smollm2-135m",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "smollm2-135m",
    );
}

#[test]
#[ignore = "needs the qwen2.5-coder-0.5b asset: `cargo run --release -- assets fetch qwen2.5-coder-0.5b`"]
fn qwen_carries_its_fixture_template() {
    model_carries_its_fixture(
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct.gguf",
        "qwen2.5-coder-0.5b",
    );
}

/// Dialogue prompts go through a chat template as the model's own conversation: human turns
/// are user messages, an assistant tag's affix goes into that message's header after the role
/// name (the reply's too), and the final tag's lead opens the reply; replies end with the
/// template's end of turn, and text that is no dialogue is refused. A template whose headers do
/// not name the role gets the affix at the start of the message.
#[test]
fn dialogue_prompts_become_the_models_own_conversation() {
    use rlcd::model::PolicyFormat;
    use rlcd::model::pm::PmFormat;
    let t = with_template(&fixture("smollm2-135m"));
    let prompt = "\n\nHuman: Hi\n\nAssistant (rude response): Go away.\n\nHuman: How are you?\n\nAssistant (kind response): Here is a possible outline:\n1.";
    let system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
    let query = format!(
        "{system}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant (rude response)\nGo away.<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant (kind response)\nHere is a possible outline:\n1."
    );
    assert_eq!(t.chat_prompt(prompt).expect("chat prompt"), query);
    let plain = t
        .chat_prompt("\n\nHuman: Hi\n\nAssistant:")
        .expect("plain prompt");
    assert_eq!(
        plain,
        format!("{system}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    );

    let format = PolicyFormat::chat(&t).expect("chat format");
    assert_eq!(format.end_of_turn, "<|im_end|>");
    // A reply ends at any special token: one that opens the next message without closing its
    // own (`<|im_start|>user…`) ends there too, as a raw reply ends at the next speaker tag.
    for token in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        let id = t.token_to_id(token).expect("special token");
        assert!(format.end_ids.contains(&id), "{token} does not end a reply");
    }
    assert_eq!(format.generate_options().eos_ids, format.end_ids);
    assert_eq!(format.generate_options().stop, format.stop);
    assert!(PolicyFormat::pretrained().end_ids.is_empty());
    assert!(PolicyFormat::world().end_ids.is_empty());
    assert_eq!(format.query(&t, prompt).expect("query"), query);
    assert_eq!(
        PolicyFormat::pretrained().query(&t, prompt).expect("raw"),
        prompt
    );
    let pm = PmFormat::pretrained(&format, 512);
    assert_eq!(
        pm.text(&t, prompt, " 2. Rest").expect("pm text"),
        format!("{query} 2. Rest<|im_end|>")
    );
    let unnamed = with_template(
        "{% for m in messages %}{{ '<|im_start|>' + ('me' if m['role'] == 'assistant' else m['role']) + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>me\n' }}{% endif %}",
    );
    assert_eq!(
        unnamed.chat_prompt(prompt).expect("fallback"),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>me\n(rude response) Go away.<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>me\n(kind response) Here is a possible outline:\n1."
    );
    assert_eq!(
        pm.text(&t, "\n\nHuman: Hi\n\nAssistant:", " Hello")
            .expect("pm text"),
        format!("{plain}Hello<|im_end|>")
    );
    let raw = PmFormat::pretrained(&PolicyFormat::pretrained(), 512);
    assert_eq!(
        raw.text(&t, "\n\nHuman: Hi\n\nAssistant:", "Hello")
            .expect("raw"),
        "\n\nHuman: Hi\n\nAssistant: Hello"
    );

    // A judge's question is one user message; its answer opening starts the reply.
    let question = "Which is kinder?\n\n(A) x\n\n(B) y\n\n\n\nThe answer is: (";
    assert_eq!(
        format.question(&t, question).expect("question"),
        format!(
            "{system}<|im_start|>user\nWhich is kinder?\n\n(A) x\n\n(B) y<|im_end|>\n<|im_start|>assistant\nThe answer is: ("
        )
    );
    assert_eq!(
        PolicyFormat::world().question(&t, question).expect("raw"),
        format!("<|bos|>{question}")
    );

    let refused = t
        .chat_prompt("Consider a conversation")
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not a dialogue"), "{refused}");
    assert!(refused.contains("chat = false"), "{refused}");
}

/// Every shipped task's p+, p− and p read back into the dialogue they were rendered from, so
/// any of them can go through a chat template.
#[test]
fn every_shipped_contrast_prompt_reads_back_into_its_dialogue() {
    use rlcd::prompts::contrast_prompts;
    use rlcd::templates::Templates;
    use rlcd::world::format::{Dialogue, Split, tagged_dialogue};
    let templates =
        Templates::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("prompt-templates"))
            .expect("templates");
    let turns: Vec<String> = ["How do I\n\nbake bread?", "With flour.", "And then?"]
        .map(String::from)
        .to_vec();
    let dialogue = Dialogue {
        id: "d".into(),
        split: Split::Train,
        turns: turns.clone(),
    };
    for task in ["harmless", "helpful", "outlining"] {
        let c = contrast_prompts(&templates, task, std::slice::from_ref(&dialogue), 0)
            .expect("render")
            .remove(0);
        for (side, text) in [("p+", &c.positive), ("p-", &c.negative), ("p", &c.plain)] {
            let d = tagged_dialogue(text).unwrap_or_else(|| panic!("{task} {side}: {text:?}"));
            let read: Vec<&str> = d.turns.iter().map(|t| t.text.as_str()).collect();
            assert_eq!(read, turns, "{task} {side}");
            assert_eq!(d.note.is_some(), side != "p", "{task} {side}");
            assert_eq!(d.turns[1].note.is_some(), side != "p", "{task} {side}");
        }
    }
}
