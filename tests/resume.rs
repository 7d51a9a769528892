//! A run killed during PPO resumes from the policy stage's last checkpoint and ends with the
//! same tables as a run that was never interrupted.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rlcd");

fn project() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompt-templates");
    let recipe = tmp.path().join("resume.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"resume-test\"\nseed = 2\ntemplates_dir = {:?}\n\n\
             [models.sim]\npreset = \"world-xs\"\n\n\
             [world]\ndocuments = 400\nprompts_train = 24\nprompts_test = 8\n\n\
             [pretrain]\nsteps = 40\nheldout_documents = 20\n\n\
             [pretrain.report]\nprompts = 4\npairs = 4\nmax_new_tokens = 8\n\n\
             [tasks.helpful]\nprompts = \"world:helpful\"\ntemplates = \"helpful\"\naxes = [\"help\"]\n\n\
             [simulate]\nn_prompts = 16\nmax_new_tokens = 32\nretries = 1\nbatch_size = 16\n\n\
             [reward]\nepochs = 1\nlr = 1e-3\nbatch_size = 4\nmax_len = 256\nheldout_pairs = 4\n\n\
             [ppo]\nsteps = 12\nrollouts = 8\nstep_batch = 4\nlr = 1e-4\nmax_response_tokens = 24\n\
             checkpoint_every = 1\n\n\
             [methods.rlcd]\nkind = \"rlcd\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\n\
             [methods.base]\nkind = \"base\"\npolicy = \"sim\"\n\n\
             [eval]\nn_prompts = 8\nmax_new_tokens = 24\n",
            templates.display().to_string()
        ),
    )
    .unwrap();
    (tmp, recipe)
}

fn run_to_end(dir: &Path, recipe: &Path) -> PathBuf {
    common::rlcd_ok(
        dir,
        &["run".as_ref(), "--quiet".as_ref(), recipe.as_os_str()],
    );
    let runs = dir.join("results/runs/resume-test");
    let mut ids: Vec<PathBuf> = fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    ids.pop().unwrap()
}

/// The PPO checkpoint of the policy stage, once one exists.
fn checkpoint(dir: &Path) -> Option<PathBuf> {
    let stage = dir.join("results/cache/policy/rlcd/helpful");
    fs::read_dir(&stage)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "work"))
        .map(|p| p.join("latest/state.json"))
        .filter(|p| p.is_file())
}

#[test]
fn a_run_killed_during_ppo_resumes_and_gives_the_same_tables() {
    let (whole_dir, whole_recipe) = project();
    let whole = run_to_end(whole_dir.path(), &whole_recipe);

    let (dir, recipe) = project();
    let mut child = Command::new(BIN)
        .args(["run", "--quiet"])
        .arg(&recipe)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while checkpoint(dir.path()).is_none() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before PPO checkpointed"
        );
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = run_to_end(dir.path(), &recipe);

    // The policy stage started from the checkpoint, not from step 0.
    let manifest = fs::read_dir(dir.path().join("results/cache/policy/rlcd/helpful"))
        .unwrap()
        .map(|e| e.unwrap().path().join("manifest.json"))
        .find(|p| p.is_file())
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&fs::read(manifest).unwrap()).unwrap();
    let from = meta["meta"]["resumed_from_step"].as_u64();
    assert!(from.is_some_and(|s| (1..12).contains(&s)), "{meta}");

    let read = |run: &Path, name: &str| fs::read_to_string(run.join("tables").join(name)).unwrap();
    assert_eq!(read(&resumed, "winrates.csv"), read(&whole, "winrates.csv"));
    // policy_training also records seconds, which differ; every other column is equal.
    let without_seconds = |text: String| -> Vec<String> {
        text.lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string())
            .collect()
    };
    assert_eq!(
        without_seconds(read(&resumed, "policy_training.csv")),
        without_seconds(read(&whole, "policy_training.csv"))
    );
}

#[test]
fn judge_tuning_resumed_from_a_checkpoint_equals_an_uninterrupted_run() {
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    use rlcd::model::Lm;
    use rlcd::recipe::JudgeTuning;
    use rlcd::recipe::WorldConfig;
    use rlcd::stages::checkpoint::{self, Checkpoints};
    use rlcd::stages::judge_tuning::{draw_pairs, tune};
    use rlcd::world::World;
    type Train = Autodiff<rlcd::model::Cpu>;

    let config = WorldConfig {
        documents: 300,
        ..WorldConfig::default()
    };
    let world = World::new(&config, 31).expect("world");
    let templates = common::templates();
    let lm = common::world_xs_steps::<Train>(&world, &templates, 3, 20);
    let pairs = draw_pairs(&world, 0.5, 12, 8);
    // 12 questions, 4 per step, 2 passes: 6 steps.
    let tuning = JudgeTuning {
        pairs: 12,
        epochs: 2,
        batch_size: 4,
        lr: 1e-3,
        ..JudgeTuning::default()
    };
    let run = |ckpt: &Checkpoints| {
        let fresh = Lm::new(lm.model.clone(), lm.tokenizer.clone()).expect("lm");
        tune(
            fresh,
            &world,
            &templates,
            &pairs,
            &tuning,
            4,
            ckpt,
            &mut |_, _| {},
        )
        .expect("tune")
    };
    let (whole, whole_state, _) = run(&Checkpoints::default());
    assert_eq!(whole_state.losses.len(), 6);

    let dir = tempfile::tempdir().expect("tempdir");
    let first = Checkpoints {
        dir: Some(dir.path().to_path_buf()),
        every: 0,
        stop_after: Some(4),
    };
    let (_, half, _) = run(&first);
    assert_eq!(
        half.losses.len(),
        4,
        "the interrupted run stops after 4 steps"
    );
    assert_eq!(checkpoint::step(dir.path()), Some(4));
    // A fresh process: the pretrained model is passed again and replaced by the checkpoint.
    let rest = Checkpoints {
        stop_after: None,
        ..first
    };
    let (resumed, resumed_state, _) = run(&rest);
    assert_eq!(
        resumed_state.losses, whole_state.losses,
        "every step's loss"
    );
    let w = |lm: &Lm<Train>| rlcd::stages::pretrain::weights_blake3(&lm.model.valid());
    assert_eq!(w(&resumed), w(&whole), "final weights");
}
