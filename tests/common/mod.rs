//! Fixtures shared by the integration tests that need a small trained world model, and the GGUF
//! writer of the model tests ([`gguf_writer`]).

pub mod gguf_writer;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::tensor::backend::Backend;
use rand::Rng;
use rlcd::model::LlamaConfig;
use rlcd::model::Lm;
use rlcd::prompts::{Dialogue, contrast_prompts};
use rlcd::recipe::PretrainConfig;
use rlcd::stages::pretrain::{WorldPretrain, load_world_lm, pretrain_world};
use rlcd::stages::simulate::{Method, Pair, Slot};
use rlcd::templates::Templates;
use rlcd::world::grammar::join;
use rlcd::world::{Task, World};

/// Copies directory `from` to `to`, recursively (for throwaway project roots).
/// `rlcd ARGS` in `dir`, which must succeed; its stdout.
#[allow(dead_code)]
pub fn rlcd_ok<S: AsRef<OsStr> + std::fmt::Debug>(dir: &Path, args: &[S]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rlcd"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rlcd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[allow(dead_code)]
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The project's prompt templates.
#[allow(dead_code)]
pub fn templates() -> Templates {
    Templates::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("prompt-templates"))
        .expect("templates")
}

/// world-xs pretrained for 40 steps on `world`'s corpus (seed `seed`; a few seconds) on the
/// CPU, loaded on backend `B`.
#[allow(dead_code)]
pub fn world_xs<B: Backend>(world: &World, templates: &Templates, seed: u64) -> Lm<B> {
    world_xs_steps(world, templates, seed, 40)
}

/// world-xs pretrained for `steps` steps (see [`world_xs`]).
#[allow(dead_code)]
pub fn world_xs_steps<B: Backend>(
    world: &World,
    templates: &Templates,
    seed: u64,
    steps: usize,
) -> Lm<B> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = PretrainConfig::for_preset("world-xs").expect("preset");
    config.steps = steps;
    let words = rlcd::stages::pretrain::vocabulary_words(templates).expect("templates");
    let job = WorldPretrain {
        world,
        templates,
        vocabulary_words: &words,
        preset: "world-xs",
        architecture: LlamaConfig::preset_with_vocab("world-xs", 0).expect("preset"),
        config,
        heldout_documents: 0,
        judge_questions: rlcd::world::corpus::JudgeQuestions::default(),
        seed,
    };
    let t = Instant::now();
    pretrain_world::<burn::backend::Autodiff<rlcd::model::Cpu>>(
        &job,
        &Default::default(),
        dir.path(),
        &mut |_, _| {},
    )
    .expect("pretraining");
    eprintln!("world-xs pretrained in {:.1}s", t.elapsed().as_secs_f64());
    load_world_lm(dir.path(), &Default::default()).expect("load")
}

/// Two world responses of independent latent quality per prompt, labelled by the oracle
/// (ties dropped); `label` decides the stored label from the oracle's verdict.
#[allow(dead_code)]
pub fn oracle_pairs(
    world: &World,
    templates: &Templates,
    task: Task,
    dialogues: &[Dialogue],
    per_prompt: usize,
    seed: u64,
) -> Vec<(Pair, bool)> {
    let plain = contrast_prompts(templates, task.name(), dialogues, seed).expect("prompts");
    let mut rng = rlcd::seed::rng(seed);
    let mut out = Vec::new();
    for (d, c) in dialogues.iter().zip(&plain) {
        let req = world
            .parse_request(task, d.turns.last().expect("turn"))
            .expect("world request");
        for k in 0..per_prompt {
            let mut texts = Vec::new();
            let mut scores = Vec::new();
            for _ in 0..2 {
                let q: f64 = rng.sample(rand_distr::StandardNormal);
                let text = join(&world.respond(&req, q, &mut rng).1);
                scores.push(
                    world
                        .score_request(&req, &text)
                        .axis(task.main_axis())
                        .expect("axis"),
                );
                texts.push(text);
            }
            if scores[0] == scores[1] {
                continue;
            }
            let b_better = scores[1] > scores[0];
            out.push((
                Pair {
                    method: Method::Rlcd,
                    prompt_id: format!("{}#{k}", d.id),
                    turns: d.turns.clone(),
                    prompt: c.plain.clone(),
                    output_a: texts[0].clone(),
                    output_b: texts[1].clone(),
                    soft_label: if b_better { 1.0 } else { 0.0 },
                    affix_index: None,
                    positive_slot: Some(if b_better { Slot::B } else { Slot::A }),
                    principle_index: None,
                    len_a: 0,
                    len_b: 0,
                    seed_a: 0,
                    seed_b: 0,
                    tries_a: 1,
                    tries_b: 1,
                },
                b_better,
            ));
        }
    }
    out
}

/// The largest absolute difference between two equally long vectors.
#[allow(dead_code)]
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
