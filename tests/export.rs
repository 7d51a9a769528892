//! `rlcd export`: a small world-xs run's trained policy and preference model leave as Hugging
//! Face checkpoints that load back with the same logits, and its simulated pairs as TRL rows
//! (JSON Lines, plain and conversational, and Parquet) holding exactly the stored pairs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Tensor;
use common::rlcd_ok;
use rlcd::model::sampling::pad_batch;
use rlcd::model::{Cpu, Lm};
use rlcd::stages::simulate::read_pairs;

const BIN: &str = env!("CARGO_BIN_EXE_rlcd");

/// Runs a small recipe (an RLCD PPO method, an RLAIF DPO method, the base) to the end; returns
/// the temporary project and the run directory.
fn run() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompt-templates");
    let recipe = tmp.path().join("export.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"export-test\"\nseed = 3\ntemplates_dir = {:?}\n\n\
             [models.sim]\npreset = \"world-xs\"\n\n\
             [world]\ndocuments = 400\nprompts_train = 24\nprompts_test = 8\n\n\
             [pretrain]\nsteps = 40\nheldout_documents = 20\n\n\
             [pretrain.report]\nprompts = 4\npairs = 4\nmax_new_tokens = 8\n\n\
             [tasks.helpful]\nprompts = \"world:helpful\"\ntemplates = \"helpful\"\naxes = [\"help\"]\n\n\
             [simulate]\nn_prompts = 16\nmax_new_tokens = 16\nretries = 5\nbatch_size = 8\n\n\
             [reward]\nepochs = 1\nlr = 1e-3\nbatch_size = 4\nmax_len = 256\nheldout_pairs = 4\n\n\
             [ppo]\nsteps = 2\nrollouts = 4\nstep_batch = 4\nlr = 1e-4\nmax_response_tokens = 12\n\n\
             [dpo]\nepochs = 1\n\n\
             [methods.rlcd]\nkind = \"rlcd\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\n\
             [methods.rlaif]\nkind = \"rlaif\"\nsimulator = \"sim\"\npolicy = \"sim\"\ntrainer = \"dpo\"\n\n\
             [methods.base]\nkind = \"base\"\npolicy = \"sim\"\n\n\
             [eval]\nn_prompts = 4\nmax_new_tokens = 12\n",
            templates.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--quiet"])
        .arg(&recipe)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = tmp.path().join("results/runs/export-test");
    let run = fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    (tmp, run)
}

/// `rlcd export …` in `dir`; its stdout on success, stderr on failure.
fn export(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(BIN)
        .arg("export")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

fn logits(lm: &Lm<Cpu>, text: &str) -> Vec<f32> {
    let ids = lm.encode(text).unwrap();
    let device = Default::default();
    let (tokens, mask) = pad_batch::<Cpu>(std::slice::from_ref(&ids), ids.len(), false, 0, &device);
    let out: Tensor<Cpu, 3> = lm.model.forward(tokens, mask);
    out.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// The artifact directory of stage `id` in the run.
fn artifact(run: &Path, id: &str) -> rlcd::store::Artifact {
    let (plan, store) = rlcd::runner::open_run(run).unwrap();
    let stage = plan.stages.iter().find(|s| s.id == id).unwrap();
    store.lookup(&stage.id, &stage.key).unwrap()
}

#[test]
fn a_run_exports_models_and_pairs() {
    let (tmp, run) = run();
    let dir = tmp.path();
    let run_arg = run.to_str().unwrap();

    // Every compared policy is checked for collapse against the base policy, which never
    // collapses against itself.
    let table = rlcd::tables::read_parquet(&run.join("tables/winrates.parquet")).unwrap();
    let rows = rlcd::stages::winrates::rows_of_frame(&table).unwrap();
    assert!(!rows.is_empty());
    for r in &rows {
        assert!(r.collapsed_a.is_some() && r.collapsed_b.is_some(), "{r:?}");
        assert!((0.0..=1.0).contains(&r.distinct_a), "{r:?}");
        if r.method_b == "base" {
            assert_eq!(r.collapsed_b, Some(false), "{r:?}");
        }
    }

    // The policy, as a checkpoint that loads with the logits of the stored policy.
    let out = dir.join("policy-hf");
    let said = export(
        dir,
        &["model", run_arg, "--method", "rlcd", out.to_str().unwrap()],
    )
    .unwrap();
    assert!(said.contains("policy/rlcd/helpful"), "{said}");
    let device = Default::default();
    let (stored, format) = rlcd::stages::policy::load_policy::<Cpu>(
        &artifact(&run, "policy/rlcd/helpful").dir,
        &device,
    )
    .unwrap();
    let exported = Lm::<Cpu>::from_path(&out, &device).unwrap();
    let text = format!(
        "{}\n\nHuman: where is the cat?\n\nAssistant: here.",
        format.prefix
    );
    assert_eq!(logits(&exported, &text), logits(&stored, &text));
    let provenance: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("rlcd_export.json")).unwrap()).unwrap();
    assert_eq!(provenance["stage"], "policy/rlcd/helpful");
    assert_eq!(provenance["format"]["prefix"], format.prefix.as_str());

    // The exported checkpoint runs as a recipe's `hf` model; its cache keys follow the files a
    // load reads and nothing else in the directory.
    let recipe = dir.join("hf.toml");
    let text = fs::read_to_string(dir.join("export.toml"))
        .unwrap()
        .replace("name = \"export-test\"", "name = \"hf-test\"")
        .replace("preset = \"world-xs\"", "hf = \"policy-hf\"");
    fs::write(&recipe, text).unwrap();
    rlcd_ok(dir, &["run", "--quiet", "hf.toml"]);
    // (stage id, cached) of every stage `rlcd validate` lists.
    let states = |dir: &Path| -> Vec<(String, bool)> {
        rlcd_ok(dir, &["validate", "hf.toml"])
            .lines()
            .filter(|l| {
                l.ends_with("cached") || l.contains("cached  ←") || l.contains("to compute")
            })
            .map(|l| {
                let id = l.split_whitespace().nth(1).unwrap_or_default().to_string();
                (id, !l.contains("to compute"))
            })
            .collect()
    };
    let before = states(dir);
    assert!(
        before.len() > 10 && before.iter().all(|(_, c)| *c),
        "{before:?}"
    );
    fs::write(out.join("NOTES.md"), "not part of the model").unwrap();
    fs::write(out.join("rlcd_export.json"), "{}").unwrap();
    assert_eq!(
        states(dir),
        before,
        "files a load does not read changed a key"
    );
    let tc = out.join("tokenizer_config.json");
    let edited = fs::read_to_string(&tc).unwrap().replace(
        "\"model_max_length\"",
        "\"padding_side\": \"left\",\n  \"model_max_length\"",
    );
    fs::write(&tc, edited).unwrap();
    let after = states(dir);
    for id in ["simulate/sim/helpful/rlcd", "policy/rlcd/helpful"] {
        assert!(
            after.contains(&(id.to_string(), false)),
            "{id} kept its key after the tokenizer config changed: {after:?}"
        );
    }

    // The preference model, as a sequence classifier.
    let pm = dir.join("pm-hf");
    export(
        dir,
        &[
            "model",
            run_arg,
            "--method",
            "rlcd",
            "--what",
            "pm",
            pm.to_str().unwrap(),
        ],
    )
    .unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(pm.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForSequenceClassification");

    // Untrained methods and unknown tasks are refused with what the run has.
    let err = export(dir, &["model", run_arg, "--method", "base", "x"]).unwrap_err();
    assert!(
        err.contains("rlaif, rlcd") && err.contains("--method"),
        "{err}"
    );
    let err = export(
        dir,
        &[
            "model", run_arg, "--method", "rlcd", "--task", "harmless", "x",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("policy/rlcd/harmless") && err.contains("helpful"),
        "{err}"
    );

    // GGUF: the world's word-level vocabulary has no llama.cpp form, a preference model no
    // GGUF architecture, and f16 belongs to GGUF files; each refusal says what to do instead.
    let gguf = dir.join("policy.gguf");
    let gguf_arg = gguf.to_str().unwrap();
    let err = export(
        dir,
        &[
            "model", run_arg, "--method", "rlcd", "--format", "gguf", gguf_arg,
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("WordLevel") && err.contains("--format hf"),
        "{err}"
    );
    assert!(!gguf.exists());
    let err = export(
        dir,
        &[
            "model", run_arg, "--method", "rlcd", "--what", "pm", "--format", "gguf", gguf_arg,
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("scalar head") && err.contains("--format hf"),
        "{err}"
    );
    let err = export(
        dir,
        &["model", run_arg, "--method", "rlcd", "--dtype", "f16", "x"],
    )
    .unwrap_err();
    assert!(err.contains("--format gguf"), "{err}");

    // Every simulation's pairs as TRL rows, labels turned into chosen / rejected.
    let rlaif = read_pairs(&artifact(&run, "simulate/sim/helpful/rlaif")).unwrap();
    let rlcd = read_pairs(&artifact(&run, "simulate/sim/helpful/rlcd")).unwrap();
    assert!(!rlaif.is_empty() && !rlcd.is_empty());
    let jsonl = dir.join("pairs.jsonl");
    let said = export(dir, &["pairs", run_arg, jsonl.to_str().unwrap()]).unwrap();
    assert!(
        said.starts_with(&format!("{} pairs", rlaif.len() + rlcd.len())),
        "{said}"
    );
    let rows: Vec<serde_json::Value> = fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), rlaif.len() + rlcd.len());
    for row in &rows {
        for key in [
            "prompt",
            "chosen",
            "rejected",
            "method",
            "task",
            "simulator",
        ] {
            assert!(row[key].is_string(), "{key}: {row}");
        }
        let p = row["p_chosen"].as_f64().unwrap();
        assert!((0.5..=1.0).contains(&p), "{row}");
        if row["family"] == "rlcd" {
            assert_eq!(p, 1.0);
        }
    }
    for pair in &rlcd {
        let positive = match pair.positive_slot.unwrap() {
            rlcd::stages::simulate::Slot::A => &pair.output_a,
            rlcd::stages::simulate::Slot::B => &pair.output_b,
        };
        let row = rows
            .iter()
            .find(|r| r["family"] == "rlcd" && r["prompt_id"] == pair.prompt_id.as_str())
            .unwrap();
        assert_eq!(row["chosen"], positive.as_str(), "o+ is chosen");
        assert_eq!(row["prompt"], pair.prompt.as_str());
    }

    // One method's pairs in the conversational form.
    let conv = dir.join("conv.jsonl");
    export(
        dir,
        &[
            "pairs",
            run_arg,
            "--method",
            "rlaif",
            "--conversational",
            conv.to_str().unwrap(),
        ],
    )
    .unwrap();
    let conv: Vec<serde_json::Value> = fs::read_to_string(&conv)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(conv.len(), rlaif.len());
    for (row, pair) in conv.iter().zip(&rlaif) {
        let turns = row["prompt"].as_array().unwrap();
        assert_eq!(turns.len(), pair.turns.len());
        assert_eq!(turns.last().unwrap()["role"], "user");
        assert_eq!(row["chosen"][0]["role"], "assistant");
        assert_eq!(row["method"], "rlaif");
    }

    // Pairs written by `export pairs` train a recipe's methods again: the RLCD pairs give the
    // same preference model and PPO run as the simulated ones; conversational RLAIF rows train
    // DPO, RLCD rows context distillation.
    let rlcd_file = dir.join("rlcd-pairs.jsonl");
    export(
        dir,
        &[
            "pairs",
            run_arg,
            "--method",
            "rlcd",
            rlcd_file.to_str().unwrap(),
        ],
    )
    .unwrap();
    let text = fs::read_to_string(dir.join("export.toml")).unwrap();
    let (head, tail) = text.split_at(text.find("[methods.rlcd]").unwrap());
    let tail = &tail[tail.find("[methods.base]").unwrap()..];
    let methods = "[methods.rlcd]\nkind = \"rlcd\"\npolicy = \"sim\"\npairs = \"rlcd-pairs.jsonl\"\n\n\
                   [methods.rlaif]\nkind = \"rlaif\"\npolicy = \"sim\"\ntrainer = \"dpo\"\npairs = \"conv.jsonl\"\n\n\
                   [methods.cd]\nkind = \"context-distillation\"\npolicy = \"sim\"\npairs = \"rlcd-pairs.jsonl\"\n\n";
    let import = format!("{head}{methods}{tail}").replace("export-test", "import-test");
    fs::write(dir.join("import.toml"), import).unwrap();
    rlcd_ok(dir, &["run", "--quiet", "import.toml"]);
    let imported = fs::read_dir(dir.join("results/runs/import-test"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (plan, _) = rlcd::runner::open_run(&imported).unwrap();
    assert!(plan.stages.iter().all(|s| !s.id.starts_with("simulate/")));
    let training = |run: &Path| -> Vec<String> {
        let csv = fs::read_to_string(run.join("tables/policy_training.csv")).unwrap();
        let header: Vec<String> = csv
            .lines()
            .next()
            .unwrap()
            .split(',')
            .map(String::from)
            .collect();
        let row = csv
            .lines()
            .find(|l| l.starts_with("rlcd,"))
            .unwrap()
            .to_string();
        let cells: Vec<&str> = row.split(',').collect();
        ["initial_reward", "final_reward", "final_kl", "final_len"]
            .iter()
            .map(|c| cells[header.iter().position(|h| h == c).unwrap()].to_string())
            .collect()
    };
    // The import draws each pair's slot afresh: a swapped pair adds the same Bradley–Terry
    // term with its operands reversed, so the runs agree up to float rounding.
    for (a, b) in training(&imported).iter().zip(training(&run)) {
        let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
        assert!((a - b).abs() <= 1e-3, "imported {a} vs simulated {b}");
    }
    let csv = fs::read_to_string(imported.join("tables/policy_training.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("cd,") && l.contains(",sft,")),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("rlaif,") && l.contains(",dpo,")),
        "{csv}"
    );

    // A pair file with a bad row, a simulator beside a pair file and a kind that cannot train
    // on one are found by `rlcd validate`, each at its key.
    fs::write(
        dir.join("bad.jsonl"),
        "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"p\", \"chosen\": \"a\"}\n",
    )
    .unwrap();
    let bad = fs::read_to_string(dir.join("import.toml"))
        .unwrap()
        .replace(
            "pairs = \"conv.jsonl\"",
            "pairs = \"bad.jsonl\"\nsimulator = \"sim\"",
        )
        .replace(
            "[methods.base]\nkind = \"base\"",
            "[methods.base]\nkind = \"base\"\npairs = \"rlcd-pairs.jsonl\"",
        );
    fs::write(dir.join("bad.toml"), bad).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "bad.toml"])
        .current_dir(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for says in [
        "bad.jsonl:2:",
        "methods.rlaif.simulator",
        "method `base` (base) cannot train on a pair file",
    ] {
        assert!(err.contains(says), "{says}: {err}");
    }

    // Parquet holds the same rows.
    let parquet = dir.join("pairs.parquet");
    export(
        dir,
        &[
            "pairs",
            run_arg,
            "--format",
            "parquet",
            parquet.to_str().unwrap(),
        ],
    )
    .unwrap();
    let frame = rlcd::tables::read_parquet(&parquet).unwrap();
    assert_eq!(frame.height(), rows.len());
    let names: Vec<&str> = frame
        .get_column_names()
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "prompt",
            "chosen",
            "rejected",
            "method",
            "family",
            "task",
            "simulator",
            "prompt_id",
            "p_chosen"
        ]
    );
}

/// `python tests/fixtures/hf/make_fixtures.py ARGS` with `TRANSFORMERS_PYTHON`; panics on failure.
fn python_check(python: &str, args: &[&str]) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/make_fixtures.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "make_fixtures.py {args:?}:\n{text}");
}

/// An exported world-xs policy loads in `transformers` with rlcd's NLL and logits (1e-3), and
/// exported pairs load with `datasets.load_dataset("json", …)` in TRL's columns, plain and
/// conversational. CI runs it when `TRANSFORMERS_PYTHON` names a Python with the packages of
/// `tests/fixtures/hf/requirements.txt`.
#[test]
#[ignore = "needs TRANSFORMERS_PYTHON: a Python with the packages of tests/fixtures/hf/requirements.txt"]
fn exports_load_in_transformers_and_datasets() {
    let python = std::env::var("TRANSFORMERS_PYTHON")
        .expect("TRANSFORMERS_PYTHON names a Python with torch, transformers and datasets");
    let (tmp, run) = run();
    let dir = tmp.path();
    let run_arg = run.to_str().unwrap();
    let out = dir.join("policy-hf");
    export(
        dir,
        &["model", run_arg, "--method", "rlcd", out.to_str().unwrap()],
    )
    .unwrap();
    let text = "<|bos|>\n\nHuman: where is the cat?\n\nAssistant: here it is.";
    let score = rlcd_ok(
        dir,
        &[
            "lm",
            "score",
            "--model",
            out.to_str().unwrap(),
            "--text",
            text,
            "--json",
        ],
    );
    let score_file = dir.join("score.json");
    fs::write(&score_file, score).unwrap();
    python_check(
        &python,
        &[
            "check-export",
            out.to_str().unwrap(),
            score_file.to_str().unwrap(),
        ],
    );
    for extra in [None, Some("--conversational")] {
        let file = dir.join("pairs.jsonl");
        let mut args = vec!["pairs", run_arg];
        args.extend(extra);
        args.push(file.to_str().unwrap());
        export(dir, &args).unwrap();
        python_check(&python, &["check-pairs", file.to_str().unwrap()]);
    }
}

/// `rlcd lm convert` turns a Hugging Face checkpoint into a GGUF file and that back into a
/// checkpoint; all three score a text alike.
#[test]
fn lm_convert_moves_models_between_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/qwen2-f32");
    let gguf = dir.join("qwen2.gguf");
    let back = dir.join("qwen2-hf");
    let convert = |from: &Path, format: &str, to: &Path| {
        rlcd_ok(
            dir,
            &[
                "lm",
                "convert",
                "--model",
                from.to_str().unwrap(),
                "--format",
                format,
                to.to_str().unwrap(),
            ],
        )
    };
    assert!(convert(&fixture, "gguf", &gguf).contains("qwen2.gguf"));
    convert(&gguf, "hf", &back);
    let text = "<|im_start|>user\nthe cat sat on 12 mats<|im_end|>";
    let score = |model: &Path| -> serde_json::Value {
        let out = rlcd_ok(
            dir,
            &[
                "lm",
                "score",
                "--model",
                model.to_str().unwrap(),
                "--text",
                text,
                "--json",
            ],
        );
        serde_json::from_str(&out).unwrap()
    };
    let (a, b, c) = (score(&fixture), score(&gguf), score(&back));
    assert_eq!(a["ids"], b["ids"]);
    assert_eq!(a["ids"], c["ids"]);
    let nll = |v: &serde_json::Value| v["mean_nll"].as_f64().unwrap();
    assert!((nll(&a) - nll(&b)).abs() < 1e-5, "{a} {b}");
    assert_eq!(nll(&b), nll(&c));
}
