//! Seeds as a sweep axis: `rlcd sweep --seeds N` runs a recipe at seeds 0…N−1 and writes the
//! across-seed table (per-seed win rates, their mean and t interval, pooled counts) and plot;
//! with `world.seed` the world's pretrained model is computed once for all seeds.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// Runs `rlcd sweep --seeds n` over `recipe` in `dir`, asserts it succeeds and returns its
/// output directory.
fn sweep_seeds(dir: &Path, recipe: &Path, n: usize) -> PathBuf {
    let out_dir = dir.join("sweep");
    let n = n.to_string();
    let args: [&OsStr; 7] = [
        "sweep".as_ref(),
        "--quiet".as_ref(),
        "--seeds".as_ref(),
        n.as_ref(),
        "--out".as_ref(),
        out_dir.as_ref(),
        recipe.as_ref(),
    ];
    common::rlcd_ok(dir, &args);
    out_dir
}

#[test]
fn a_seed_sweep_tabulates_win_rates_across_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompt-templates");
    let recipe = tmp.path().join("seeds.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"seeds-test\"\ntemplates_dir = {:?}\n\n\
             [models.sim]\npreset = \"world-xs\"\n\n\
             [world]\nseed = 0\ndocuments = 400\nprompts_train = 24\nprompts_test = 8\n\n\
             [pretrain]\nsteps = 40\nheldout_documents = 20\n\n\
             [pretrain.report]\nprompts = 4\npairs = 4\nmax_new_tokens = 8\n\n\
             [tasks.helpful]\nprompts = \"world:helpful\"\ntemplates = \"helpful\"\naxes = [\"help\"]\n\n\
             [simulate]\nn_prompts = 16\nmax_new_tokens = 16\nretries = 5\nbatch_size = 8\n\n\
             [distill]\nepochs = 1\n\n\
             [methods.distilled]\nkind = \"context-distillation\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\n\
             [methods.base]\nkind = \"base\"\npolicy = \"sim\"\n\n\
             [eval]\nn_prompts = 8\nmax_new_tokens = 12\ncomparisons = [[\"distilled\", \"base\"]]\n",
            templates.display().to_string()
        ),
    )
    .unwrap();
    let out_dir = sweep_seeds(tmp.path(), &recipe, 3);

    // One pretrained world model serves every seed.
    let pretrained = fs::read_dir(tmp.path().join("results/cache/pretrain"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .filter(|e| e.as_ref().unwrap().path().join("manifest.json").is_file())
        .count();
    assert_eq!(pretrained, 1);

    // The summary stacks each seed's win rates; the across-seed table groups them.
    let summary = fs::read_to_string(out_dir.join("summary-winrates.csv")).unwrap();
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let per_seed: Vec<(String, String, f64)> = summary
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let comparison = format!("{} vs {}", f[col("method_a")], f[col("method_b")]);
            (
                comparison,
                f[col("seed")].to_string(),
                f[col("win_rate_pct")].parse().unwrap(),
            )
        })
        .collect();
    let across = fs::read_to_string(out_dir.join("across-seeds.csv")).unwrap();
    let header: Vec<&str> = across.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = across
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert!(!rows.is_empty());
    for r in &rows {
        let comparison = format!("{} vs {}", r[col("method_a")], r[col("method_b")]);
        let rates: Vec<f64> = per_seed
            .iter()
            .filter(|(c, _, _)| *c == comparison)
            .map(|(_, _, w)| *w)
            .collect();
        assert_eq!(r[col("n_seeds")], "3");
        assert_eq!(r[col("seeds")], "0 1 2");
        assert_eq!(rates.len(), 3, "{comparison}");
        let mean: f64 = r[col("mean_win_rate_pct")].parse().unwrap();
        assert!(
            (mean - rates.iter().sum::<f64>() / 3.0).abs() < 1e-6,
            "{r:?}"
        );
        let (lo, hi): (f64, f64) = (
            r[col("t_low_pct")].parse().unwrap(),
            r[col("t_high_pct")].parse().unwrap(),
        );
        assert!(lo <= mean && mean <= hi, "{r:?}");
    }
    let svg = fs::read_to_string(out_dir.join("across-seeds.svg")).unwrap();
    assert!(svg.contains("seed 2"));
}

/// The judging-skill axis: simulators of one preset pretrained with different judging corpora
/// (`[models.<name>.judging]`), each with its RLCD and RLAIF methods, give the `judge_skill`
/// table per seed and, across seeds, the judge-skill table and plot.
#[test]
fn a_judge_skill_sweep_tabulates_rlcd_against_label_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompt-templates");
    let recipe = tmp.path().join("skill.toml");
    let mut text = format!(
        "name = \"skill-test\"\ntemplates_dir = {:?}\n\n\
         [models.pol]\npreset = \"world-xs\"\n\n\
         [models.sim-a]\npreset = \"world-xs\"\n\n\
         [models.sim-b]\npreset = \"world-xs\"\n\n\
         [models.sim-b.judging]\nsharpness = 8.0\njudgment_frac = 0.3\nquestions_frac = 0.2\n\n\
         [world]\nseed = 0\ndocuments = 500\nprompts_train = 24\nprompts_test = 8\n\n\
         [pretrain]\nsteps = 120\nheldout_documents = 20\n\n\
         [pretrain.report]\nprompts = 4\npairs = 4\nmax_new_tokens = 8\n\n\
         [tasks.helpful]\nprompts = \"world:helpful\"\ntemplates = \"helpful\"\naxes = [\"help\"]\n\n\
         [simulate]\nn_prompts = 16\nmax_new_tokens = 16\nretries = 5\nbatch_size = 8\n\n\
         [reward]\nepochs = 1\nheldout_pairs = 8\n\n\
         [ppo]\nsteps = 2\nrollouts = 4\nstep_batch = 4\nlr = 1e-4\nmax_response_tokens = 12\n\n\
         [eval]\nn_prompts = 8\nmax_new_tokens = 12\n",
        templates.display().to_string()
    );
    for sim in ["a", "b"] {
        for kind in ["rlcd", "rlaif"] {
            text.push_str(&format!(
                "\n[methods.{kind}-{sim}]\nkind = \"{kind}\"\nsimulator = \"sim-{sim}\"\npolicy = \"pol\"\n"
            ));
        }
    }
    fs::write(&recipe, text).unwrap();
    let out_dir = sweep_seeds(tmp.path(), &recipe, 2);

    // The world's world-xs serves the policy and sim-a; sim-b has a corpus of its own.
    let pretrained: Vec<String> = fs::read_dir(tmp.path().join("results/cache/pretrain"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .map(|p| fs::read_to_string(p.join("manifest.json")).unwrap())
        .collect();
    assert_eq!(pretrained.len(), 2, "{pretrained:?}");
    let report = fs::read_to_string(out_dir.join("summary-world_report.csv")).unwrap();
    assert!(report.contains("world-xs-sim-b,"), "{report}");

    // Per seed one row per simulator; across seeds the means of those rows.
    let read = |name: &str| -> (Vec<String>, Vec<Vec<String>>) {
        let text = fs::read_to_string(out_dir.join(name)).unwrap();
        let mut lines = text.lines();
        let header = lines
            .next()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        let rows = lines
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        (header, rows)
    };
    let (h, per_seed) = read("summary-judge_skill.csv");
    let at = |h: &[String], name: &str| h.iter().position(|c| c == name).unwrap();
    assert_eq!(per_seed.len(), 4, "{per_seed:?}");
    let (ha, across) = read("judge-skill.csv");
    assert_eq!(across.len(), 2, "{across:?}");
    for row in &across {
        let sim = &row[at(&ha, "simulator")];
        assert_eq!(row[at(&ha, "n_seeds")], "2");
        for (column, mean) in [
            ("win_rate_pct", "mean_win_rate_pct"),
            ("rlaif_label_accuracy_pct", "mean_rlaif_label_pct"),
        ] {
            let values: Vec<f64> = per_seed
                .iter()
                .filter(|r| &r[at(&h, "simulator")] == sim)
                .map(|r| r[at(&h, column)].parse().unwrap())
                .collect();
            assert_eq!(values.len(), 2);
            let m: f64 = row[at(&ha, mean)].parse().unwrap();
            // The tables hold 4 decimals, so the mean of the printed values may differ by
            // half a unit in the last place.
            assert!(
                (m - (values[0] + values[1]) / 2.0).abs() <= 1e-4,
                "{sim} {column}: {m} against {values:?}"
            );
        }
    }
    let svg = fs::read_to_string(out_dir.join("judge-skill.svg")).unwrap();
    assert!(svg.contains("sim-b") && svg.contains("helpful"));
}
