//! Reference checks of the GGUF decoder against llama.cpp numbers (f32 after dequantization).
//! A test fails, naming the fetch command, when its model file is absent from `assets/models/`;
//! the Qwen check is ignored by default (its asset is a 400 MB download CI does not make).

use std::path::PathBuf;

use burn::backend::Flex;
use rlcd::model::Lm;
use rlcd::model::RopeStyle;
use rlcd::model::gguf::GgufFile;
use rlcd::model::load::load_llama_with_style;

const SENTENCE: &str =
    "The capital of France is Paris. It is known for the Eiffel Tower and its museums.";
const NONSENSE: &str =
    "The capital of France is purple. Tower museums eat the Eiffel quickly known.";

/// The asset's model file; a missing file fails the test with the command that fetches it.
fn asset(file: &str, asset: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/models")
        .join(file);
    assert!(
        path.is_file(),
        "{} is absent: fetch it with `cargo run --release -- assets fetch {asset}`",
        path.display()
    );
    path
}

#[test]
fn smollm2_matches_reference() {
    let path = asset("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m");
    let device = Default::default();
    let lm = Lm::<Flex>::from_gguf_path(&path, &device).expect("load SmolLM2");
    let report = lm.score(SENTENCE).expect("score");
    eprintln!(
        "SmolLM2: logits[0][..5] = {:?}, mean NLL {:.4}, greedy next {}",
        report.logits_first5_pos0, report.mean_nll, report.greedy_next
    );
    assert_eq!(
        report.ids,
        vec![
            504, 3575, 282, 4649, 314, 7042, 30, 657, 314, 1343, 327, 260, 414, 46682, 18669, 284,
            624, 14739, 30
        ]
    );
    let expected = [15.6553f32, 6.8245, 10.5912, 5.1094, 6.5944];
    for (got, want) in report.logits_first5_pos0.iter().zip(expected) {
        assert!((got - want).abs() < 1e-2, "logit {got} vs reference {want}");
    }
    assert!(
        (report.mean_nll - 2.461).abs() < 0.02,
        "mean NLL {}",
        report.mean_nll
    );
    assert_eq!(report.greedy_next, 198);
    let nonsense = lm.score(NONSENSE).expect("score nonsense");
    eprintln!("SmolLM2: nonsense mean NLL {:.4}", nonsense.mean_nll);
    assert!(
        (nonsense.mean_nll - 7.442).abs() < 0.02,
        "mean NLL {}",
        nonsense.mean_nll
    );

    // The same weights with Q/K un-permuted run with half-split RoPE and agree.
    let g = GgufFile::open(&path).expect("open");
    let half =
        load_llama_with_style::<Flex>(&g, RopeStyle::HalfSplit, &device).expect("load half-split");
    let half = Lm::new(half, lm.tokenizer.clone()).expect("lm");
    let r2 = half.score(SENTENCE).expect("score half-split");
    assert!(
        (r2.mean_nll - report.mean_nll).abs() < 1e-3,
        "{} vs {}",
        r2.mean_nll,
        report.mean_nll
    );
    for (a, b) in r2.logits_first5_pos0.iter().zip(&report.logits_first5_pos0) {
        assert!((a - b).abs() < 1e-3);
    }
}

/// Q8_0 weights (`Llama::quantize_q8`) score the reference sentence within 0.01 nats of the
/// f32 weights (measured: 2.4591 against 2.4608) and keep its greedy next token. The nonsense
/// sentence, whose tokens the model finds unlikely, moves more (measured: 7.3733 against
/// 7.4420); its bound only guards against a broken kernel.
#[test]
fn smollm2_q8_scores_within_a_hundredth_of_f32() {
    let path = asset("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m");
    let device = Default::default();
    let lm = Lm::<Flex>::from_gguf_path(&path, &device).expect("load SmolLM2");
    let q8 = Lm::new(
        lm.model.clone().quantize_q8().expect("quantize"),
        lm.tokenizer.clone(),
    )
    .expect("lm");
    assert!(q8.model.is_q8() && !lm.model.is_q8());
    for (text, tolerance) in [(SENTENCE, 0.01), (NONSENSE, 0.1)] {
        let (f, q) = (lm.score(text).expect("f32"), q8.score(text).expect("q8"));
        eprintln!("f32 mean NLL {:.4}, Q8_0 {:.4}", f.mean_nll, q.mean_nll);
        assert!(
            (f.mean_nll - q.mean_nll).abs() < tolerance,
            "{text:?}: f32 {} vs Q8_0 {}",
            f.mean_nll,
            q.mean_nll
        );
        assert_eq!(f.greedy_next, q.greedy_next);
        assert_ne!(
            f.logits_first5_pos0, q.logits_first5_pos0,
            "Q8_0 weights were not used"
        );
    }
}

#[test]
#[ignore = "needs the qwen2.5-coder-0.5b asset: `cargo run --release -- assets fetch qwen2.5-coder-0.5b`"]
fn qwen_coder_0_5b_matches_reference() {
    let path = asset("Qwen2.5-Coder-0.5B-Instruct.gguf", "qwen2.5-coder-0.5b");
    let device = Default::default();
    let lm = Lm::<Flex>::from_gguf_path(&path, &device).expect("load Qwen2.5-Coder-0.5B");
    let good = lm.score(SENTENCE).expect("score");
    let bad = lm.score(NONSENSE).expect("score");
    eprintln!(
        "Qwen2.5-Coder-0.5B: mean NLL {:.4} / {:.4}",
        good.mean_nll, bad.mean_nll
    );
    assert!(
        (good.mean_nll - 2.222).abs() < 0.02,
        "mean NLL {}",
        good.mean_nll
    );
    assert!(
        (bad.mean_nll - 8.033).abs() < 0.02,
        "mean NLL {}",
        bad.mean_nll
    );
}
