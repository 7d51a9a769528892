//! Appendix N Monte-Carlo against its closed forms, and the runner and sweeps end to end on the
//! Appendix N recipe (resume, full caching, shards + merge).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use rlcd::plan::Plan;
use rlcd::recipe::{TheoryConfig, TheoryMethod};
use rlcd::runner::{self, RunOptions};
use rlcd::stages::appendix_n::table::ID as APPENDIX_N_TABLE;
use rlcd::stages::appendix_n::{CellCounts, simulate};
use rlcd::store::Store;
use rlcd::sweep::{self, SweepOptions};

// ---- closed forms (numerical integration, no special functions needed) ----

fn pdf(x: f64, mean: f64, sd: f64) -> f64 {
    let z = (x - mean) / sd;
    (-0.5 * z * z).exp() / (sd * (2.0 * std::f64::consts::PI).sqrt())
}

/// Simpson's rule with `n` (even) intervals.
fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        s += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

/// Standard normal CDF.
fn phi(x: f64) -> f64 {
    if x >= 0.0 {
        0.5 + integrate(|t| pdf(t, 0.0, 1.0), 0.0, x, 2000)
    } else {
        1.0 - phi(-x)
    }
}

/// RLAIF hard-pair accuracy: E[Φ(|d| / (√2 σ_D)) | |d| ≤ t], d ~ N(0, 2 σ_G²).
fn rlaif_hard(sigma_g: f64, sigma_d: f64, t: f64) -> f64 {
    let sd = sigma_g * 2f64.sqrt();
    let num = integrate(
        |d| pdf(d, 0.0, sd) * phi(d / (sigma_d * 2f64.sqrt())),
        0.0,
        t,
        200,
    );
    let den = integrate(|d| pdf(d, 0.0, sd), 0.0, t, 200);
    num / den
}

/// RLCD hard-pair accuracy: P(d > 0 | |d| ≤ t), d ~ N(Δ, 2 σ_G²).
fn rlcd_hard(sigma_g: f64, delta: f64, t: f64) -> f64 {
    let sd = sigma_g * 2f64.sqrt();
    integrate(|d| pdf(d, delta, sd), 0.0, t, 200) / integrate(|d| pdf(d, delta, sd), -t, t, 400)
}

/// |estimate − exact| within `k` standard errors of the estimate's binomial proportion.
fn within(successes: u64, n: u64, exact: f64, k: f64, what: &str) {
    assert!(n > 0, "{what}: no trials");
    let p = successes as f64 / n as f64;
    let se = (exact * (1.0 - exact) / n as f64).sqrt();
    assert!(
        (p - exact).abs() <= k * se,
        "{what}: {p:.4} vs exact {exact:.4} (n {n}, {k} se = {:.4})",
        k * se
    );
}

#[test]
fn closed_forms_reproduce_the_paper() {
    // The paper: 0.528 (RLAIF, hard), 0.574 (RLCD Δ = 3, hard).
    assert!((rlaif_hard(1.0, 1.0, 0.2) - 0.528).abs() < 0.0015);
    assert!((rlcd_hard(1.0, 3.0, 0.2) - 0.574).abs() < 0.0015);
    assert!((rlcd_hard(1.0, 0.0, 0.2) - 0.5).abs() < 1e-12);
}

/// Like [`within`] at `k` standard errors, and that tolerance is narrower than half the gap to
/// each of `others`, so the check tells `exact` apart from them.
fn within_apart(successes: u64, n: u64, exact: f64, k: f64, others: &[f64], what: &str) {
    within(successes, n, exact, k, what);
    let se = (exact * (1.0 - exact) / n as f64).sqrt();
    for other in others {
        assert!(
            k * se < (exact - other).abs() / 2.0,
            "{what}: ±{:.4} over {n} trials cannot tell {exact:.3} from {other:.3}",
            k * se
        );
    }
}

#[test]
fn monte_carlo_agrees_with_closed_forms() {
    // 10⁶ pairs per method: about 110,000 hard RLAIF pairs and 12,000 hard RLCD pairs, enough
    // for 4-s.e. tolerances that separate the paper's 0.574 from 0.528 and 0.5.
    let cfg = TheoryConfig {
        trials: 1_000_000,
        ..TheoryConfig::default()
    };
    let rlaif = simulate(&cfg, TheoryMethod::Rlaif, 11, &|_| {});
    assert_eq!(rlaif.trials, 1_000_000);
    // Overall: 1/2 + arcsin(ρ)/π with ρ = σ_G / sqrt(σ_G² + σ_D²) = 1/√2 → 0.75.
    within(rlaif.correct, rlaif.trials, 0.75, 5.0, "rlaif overall");
    within_apart(
        rlaif.hard_correct,
        rlaif.hard,
        rlaif_hard(1.0, 1.0, 0.2),
        4.0,
        &[0.5],
        "rlaif hard",
    );
    // About 11% of RLAIF pairs are hard: P(|d| ≤ 0.2), d ~ N(0, 2).
    let p_hard = integrate(|d| pdf(d, 0.0, 2f64.sqrt()), -0.2, 0.2, 200);
    within(rlaif.hard, rlaif.trials, p_hard, 5.0, "rlaif hard fraction");

    let rlcd = simulate(&cfg, TheoryMethod::Rlcd, 11, &|_| {});
    within(
        rlcd.correct,
        rlcd.trials,
        phi(3.0 / 2f64.sqrt()),
        5.0,
        "rlcd overall",
    );
    within_apart(
        rlcd.hard_correct,
        rlcd.hard,
        rlcd_hard(1.0, 3.0, 0.2),
        4.0,
        &[rlaif_hard(1.0, 1.0, 0.2), 0.5],
        "rlcd hard",
    );

    let flat = TheoryConfig {
        delta: 0.0,
        ..cfg.clone()
    };
    let rlcd0 = simulate(
        &TheoryConfig {
            trials: 100_000,
            ..flat
        },
        TheoryMethod::Rlcd,
        11,
        &|_| {},
    );
    within(rlcd0.correct, rlcd0.trials, 0.5, 5.0, "rlcd Δ=0 overall");
    within(rlcd0.hard_correct, rlcd0.hard, 0.5, 5.0, "rlcd Δ=0 hard");

    // A noiseless labeller is always right.
    let exact = TheoryConfig {
        sigma_d: 0.0,
        trials: 5000,
        ..cfg
    };
    let c = simulate(&exact, TheoryMethod::Rlaif, 1, &|_| {});
    assert_eq!(c.correct, c.trials);
}

#[test]
fn progress_reports_every_trial() {
    let cfg = TheoryConfig {
        trials: 70_001,
        ..TheoryConfig::default()
    };
    let done = std::sync::atomic::AtomicU64::new(0);
    let c: CellCounts = simulate(&cfg, TheoryMethod::Rlcd, 3, &|n| {
        done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(done.into_inner(), 70_001);
    assert_eq!(c.trials, 70_001);
}

// ---- the runner on the Appendix N recipe ----

/// A project directory with a theory recipe whose results live inside it.
fn project(trials: u64, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("prompt-templates")).unwrap();
    let recipe = tmp.path().join("appendix-n.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"appendix-n-test\"\nseed = 7\n\n[theory]\ntrials = {trials}\n\
             hard_threshold = 0.2\n{extra}"
        ),
    )
    .unwrap();
    (tmp, recipe)
}

fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        ..RunOptions::default()
    }
}

fn table_bytes(run_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(run_dir.join("tables"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn runs_resume_and_reuse_the_cache_byte_for_byte() {
    let (tmp, recipe) = project(40_000, "");
    let resolved = rlcd::recipe::load(&recipe, &[]).unwrap();
    let first = runner::run(&resolved, &quiet()).unwrap();
    assert!(first.stages.iter().all(|s| !s.cached), "{:?}", first.stages);
    let ids: Vec<&str> = first.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["appendix_n/rlaif", "appendix_n/rlcd", APPENDIX_N_TABLE]
    );
    let run_dir = &first.run_dir;
    assert!(run_dir.starts_with(tmp.path().join("results/runs/appendix-n-test")));
    for f in [
        "resolved.toml",
        "plan.json",
        "run.log",
        "tables/appendix-n.parquet",
    ] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let names: Vec<String> = table_bytes(run_dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["appendix-n.csv", "appendix-n.md", "appendix-n.parquet"]
    );
    let log = fs::read_to_string(run_dir.join("run.log")).unwrap();
    assert!(log.contains("computed appendix_n/rlaif"), "{log}");
    let reference = table_bytes(run_dir);

    // Second run: everything cached, identical tables.
    let second = runner::run(&resolved, &quiet()).unwrap();
    assert!(second.stages.iter().all(|s| s.cached));
    assert_ne!(second.run_dir, first.run_dir);
    assert_eq!(table_bytes(&second.run_dir), reference);
    let log = fs::read_to_string(second.run_dir.join("run.log")).unwrap();
    assert!(log.contains("cached   appendix_n/rlcd"), "{log}");

    // A run killed while computing the RLCD cell: its artifact and the table's are gone, a
    // half-written temp dir and the dead process's lock file remain.
    let store = Store::open(&tmp.path().join("results")).unwrap();
    let plan = Plan::build(&resolved).unwrap();
    let rlcd = plan.stage("appendix_n/rlcd").unwrap();
    let table = plan.stage(APPENDIX_N_TABLE).unwrap();
    store.remove(&rlcd.id, &rlcd.key).unwrap();
    store.remove(&table.id, &table.key).unwrap();
    let stage_dir = tmp.path().join("results/cache/appendix_n/rlcd");
    fs::create_dir_all(stage_dir.join(format!(".tmp-{}-999999", rlcd.key))).unwrap();
    fs::write(
        stage_dir.join(format!(".tmp-{}-999999/cell.json", rlcd.key)),
        "{\"trunc",
    )
    .unwrap();
    fs::write(stage_dir.join(format!("{}.lock", rlcd.key)), "999999").unwrap();
    let resumed = runner::run(&resolved, &quiet()).unwrap();
    let cached: Vec<bool> = resumed.stages.iter().map(|s| s.cached).collect();
    assert_eq!(cached, [true, false, false]);
    assert_eq!(table_bytes(&resumed.run_dir), reference);
    let log = fs::read_to_string(resumed.run_dir.join("run.log")).unwrap();
    assert!(
        log.contains("reclaimed lock") && log.contains("interrupted run"),
        "{log}"
    );
    assert!(!stage_dir.join(format!(".tmp-{}-999999", rlcd.key)).exists());

    // `report` rebuilds the same tables from the store through plan.json.
    fs::remove_dir_all(resumed.run_dir.join("tables")).unwrap();
    let reports = runner::report(&resumed.run_dir).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].stem, "appendix-n");
    assert_eq!(table_bytes(&resumed.run_dir), reference);

    // The table itself: counts recompute the rates; RLAIF has no Δ, RLCD no σ_D.
    let csv = String::from_utf8(reference[0].1.clone()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "method,delta,sigma_g,sigma_d,n_trials,n_correct,accuracy_pct,accuracy_stderr_pct,\
         accuracy_ci_low_pct,accuracy_ci_high_pct,n_hard,n_hard_correct,hard_accuracy_pct,\
         hard_stderr_pct,hard_ci_low_pct,hard_ci_high_pct"
    );
    for line in &lines[1..] {
        let f: Vec<&str> = line.split(',').collect();
        let (n, k): (f64, f64) = (f[4].parse().unwrap(), f[5].parse().unwrap());
        assert_eq!(f[6], format!("{:.4}", 100.0 * k / n), "{line}");
        let (h, hk): (f64, f64) = (f[10].parse().unwrap(), f[11].parse().unwrap());
        assert_eq!(f[12], format!("{:.4}", 100.0 * hk / h), "{line}");
    }
    assert!(
        lines[1].starts_with("rlaif,,1.0000,1.0000,40000,"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("rlcd,3.0000,1.0000,,40000,"),
        "{}",
        lines[2]
    );
    let md = String::from_utf8(reference[1].1.clone()).unwrap();
    insta::assert_snapshot!("appendix_n_run_table_md", md);
}

#[test]
fn report_recomputes_a_table_whose_format_changed_since_the_run() {
    let (tmp, recipe) = project(2_000, "");
    let resolved = rlcd::recipe::load(&recipe, &[]).unwrap();
    let run = runner::run(&resolved, &quiet()).unwrap();
    let want = table_bytes(&run.run_dir);
    // Make the run look as if an older build made it: its table stage at version 1 under
    // another key, the table's artifact gone from the store.
    let plan_path = run.run_dir.join("plan.json");
    let mut plan: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&plan_path).unwrap()).unwrap();
    let table = plan["stages"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["id"] == APPENDIX_N_TABLE)
        .unwrap();
    let key = table["key"].as_str().unwrap().to_string();
    assert!(table["version"].as_u64().unwrap() > 1);
    table["version"] = 1.into();
    table["key"] = "0".repeat(32).into();
    fs::write(&plan_path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
    let store = rlcd::store::Store::open(&tmp.path().join("results")).unwrap();
    store.remove(APPENDIX_N_TABLE, &key).unwrap();
    fs::remove_dir_all(run.run_dir.join("tables")).unwrap();

    let reports = runner::report(&run.run_dir).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(table_bytes(&run.run_dir), want);
    assert!(
        store.lookup(APPENDIX_N_TABLE, &key).is_some(),
        "the table is computed again under this build's key"
    );

    // Without the cells it is computed from, the error names the missing stage.
    store.remove(APPENDIX_N_TABLE, &key).unwrap();
    fs::remove_dir_all(tmp.path().join("results/cache/appendix_n/rlcd")).unwrap();
    let msg = runner::report(&run.run_dir).unwrap_err().to_string();
    assert!(
        msg.contains("appendix_n/rlcd") && msg.contains("resolved.toml"),
        "{msg}"
    );
}

#[test]
fn report_names_the_fix_when_the_cache_is_gone() {
    let (tmp, recipe) = project(2_000, "methods = [\"rlaif\"]\n");
    let resolved = rlcd::recipe::load(&recipe, &[]).unwrap();
    let run = runner::run(&resolved, &quiet()).unwrap();
    assert_eq!(run.stages.len(), 2);
    fs::remove_dir_all(tmp.path().join("results/cache")).unwrap();
    let msg = runner::report(&run.run_dir).unwrap_err().to_string();
    assert!(
        msg.contains("appendix_n/table") && msg.contains("resolved.toml"),
        "{msg}"
    );
}

#[test]
fn recipes_with_methods_but_no_tasks_run_only_the_theory_stages() {
    let (tmp, recipe) = project(1_000, "");
    let mut text = fs::read_to_string(&recipe).unwrap();
    text.push_str(
        "\n[models.sim]\npreset = \"tiny\"\n\n[methods.rlcd]\nkind = \"rlcd\"\n\
         simulator = \"sim\"\npolicy = \"sim\"\n\n[methods.rlaif]\nkind = \"rlaif\"\n\
         simulator = \"sim\"\npolicy = \"sim\"\n",
    );
    fs::write(&recipe, text).unwrap();
    let resolved = match rlcd::recipe::load(&recipe, &[]) {
        Ok(r) => r,
        Err(e) => panic!("the recipe must load: {e}"),
    };
    let plan = Plan::build(&resolved).unwrap();
    let store = Store::open(&tmp.path().join("results")).unwrap();
    let text = plan.describe(&store);
    assert!(
        text.contains("appendix_n/rlaif") && text.contains("to compute"),
        "{text}"
    );
    // Without tasks the methods have nothing to simulate or align: only the theory stages
    // run.
    let summary = runner::run(&resolved, &quiet()).unwrap();
    assert!(
        summary
            .stages
            .iter()
            .all(|s| s.id.starts_with("appendix_n"))
    );
    assert!(
        !text.contains("policy/") && !text.contains("judge/"),
        "{text}"
    );
}

#[test]
fn plan_keys_follow_what_each_cell_reads() {
    let (_tmp, recipe) = project(1_000, "");
    let key = |over: &[&str], id: &str| {
        let over: Vec<String> = over.iter().map(|s| s.to_string()).collect();
        let r = rlcd::recipe::load(&recipe, &over).unwrap();
        Plan::build(&r).unwrap().stage(id).unwrap().key.clone()
    };
    let base_rlaif = key(&[], "appendix_n/rlaif");
    let base_rlcd = key(&[], "appendix_n/rlcd");
    assert_eq!(key(&["theory.delta=1.5"], "appendix_n/rlaif"), base_rlaif);
    assert_ne!(key(&["theory.delta=1.5"], "appendix_n/rlcd"), base_rlcd);
    assert_eq!(key(&["theory.sigma_d=2.0"], "appendix_n/rlcd"), base_rlcd);
    assert_ne!(key(&["theory.sigma_d=2.0"], "appendix_n/rlaif"), base_rlaif);
    assert_ne!(key(&["seed=8"], "appendix_n/rlaif"), base_rlaif);
    assert_ne!(key(&["theory.trials=999"], "appendix_n/rlcd"), base_rlcd);
    assert_ne!(
        key(&["theory.delta=1.5"], APPENDIX_N_TABLE),
        key(&[], APPENDIX_N_TABLE)
    );
}

// ---- sweeps ----

#[test]
fn shards_merge_to_the_full_sweep_byte_for_byte() {
    let (tmp, recipe) = project(20_000, "");
    let grid = vec![
        (
            "theory.delta".to_string(),
            vec!["0".to_string(), "1.5".to_string(), "3".to_string()],
        ),
        (
            "theory.sigma_d".to_string(),
            vec!["0.5".to_string(), "1".to_string()],
        ),
    ];
    let opts = |results: &str| SweepOptions {
        overrides: vec![format!("results={}", tmp.path().join(results).display())],
        quiet: true,
        ..SweepOptions::default()
    };
    let full_out = tmp.path().join("sweep-full");
    let full = sweep::sweep_with(&recipe, &grid, None, &full_out, &opts("results-a")).unwrap();
    assert_eq!(full.cells.len(), 6);
    // Δ varies slowest: the RLAIF cell depends only on σ_D, so cells 2.. reuse it.
    assert_eq!(full.cells[0].computed, 3);
    assert_eq!(full.cells[2].cached, 1, "{:?}", full.cells[2]);
    assert_eq!(full.summary.len(), 1);
    let full_csv = fs::read(full_out.join("summary.csv")).unwrap();

    // Two shards into their own directories, computed from an empty cache.
    let shard_root = tmp.path().join("sweep-shards");
    for i in 0..2 {
        let out = shard_root.join(format!("shard-{i}"));
        let part =
            sweep::sweep_with(&recipe, &grid, Some((i, 2)), &out, &opts("results-b")).unwrap();
        assert_eq!(part.cells.len(), 3);
        assert!(part.cells.iter().all(|c| c.index % 2 == i));
        assert!(part.summary.is_empty());
    }
    // Merging one shard alone names the missing cells.
    let msg = sweep::merge(&shard_root.join("shard-0"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("3 of 6") && msg.contains("1, 3, 5"), "{msg}");
    let merged = sweep::merge(&shard_root).unwrap();
    assert_eq!(merged.len(), 1);
    assert_eq!(fs::read(shard_root.join("summary.csv")).unwrap(), full_csv);
    assert_eq!(
        fs::read(shard_root.join("summary.md")).unwrap(),
        fs::read(full_out.join("summary.md")).unwrap()
    );
    // Merging the full sweep's own directory reproduces its summary too.
    sweep::merge(&full_out).unwrap();
    assert_eq!(fs::read(full_out.join("summary.csv")).unwrap(), full_csv);

    let csv = String::from_utf8(full_csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("theory.delta,theory.sigma_d,method,delta,"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 1 + 12);
    assert!(lines[1].starts_with("0,0.5,rlaif,"), "{}", lines[1]);
    assert!(lines[2].starts_with("0,0.5,rlcd,0.0000,"), "{}", lines[2]);
    assert!(lines[12].starts_with("3,1,rlcd,3.0000,"), "{}", lines[12]);
    let summary = rlcd::tables::read_parquet(&full_out.join("summary.parquet")).unwrap();
    assert_eq!(summary.height(), 12);
}

#[test]
fn bad_shards_and_grids_are_refused() {
    let (tmp, recipe) = project(1_000, "");
    let out = tmp.path().join("o");
    let grid = vec![("theory.delta".to_string(), vec!["1".to_string()])];
    let err = sweep::sweep(&recipe, &grid, Some((2, 2)), &out).unwrap_err();
    assert!(err.to_string().contains("0-based"), "{err}");
    let empty = vec![("theory.delta".to_string(), vec![])];
    assert!(sweep::sweep(&recipe, &empty, None, &out).is_err());
    let msg = sweep::merge(&tmp.path().join("prompt-templates"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no finished sweep cells"), "{msg}");
}

/// The paper-scale recipe (10^7 trials per method), run through the runner; prints its table and
/// the seconds each stage took. `cargo test --release --test appendix_n -- --ignored --nocapture`
#[test]
#[ignore = "paper scale: 2 × 10^7 pairs"]
fn paper_scale_recipe() {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/theory/appendix-n.toml");
    let tmp = tempfile::tempdir().unwrap();
    let results = format!("results={}", tmp.path().join("results").display());
    let resolved = rlcd::recipe::load(&recipe, &[results]).unwrap();
    assert_eq!(resolved.recipe.theory.as_ref().unwrap().trials, 10_000_000);
    let t0 = std::time::Instant::now();
    let run = runner::run(&resolved, &quiet()).unwrap();
    let total = t0.elapsed().as_secs_f64();
    for s in &run.stages {
        println!("{:<18} {:>7.2}s", s.id, s.seconds);
    }
    println!(
        "total {total:.2}s on {} threads",
        rayon::current_num_threads()
    );
    println!("{}", run.tables[0].markdown);
    let csv = fs::read_to_string(run.run_dir.join("tables/appendix-n.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // Accuracies are in percent; compare them as fractions.
    let num = |s: &str| s.parse::<f64>().unwrap() / 100.0;
    assert!((num(rows[0][6]) - 0.75).abs() < 0.005, "{csv}");
    assert!(
        (num(rows[0][12]) - rlaif_hard(1.0, 1.0, 0.2)).abs() < 0.005,
        "{csv}"
    );
    assert!(
        (num(rows[1][12]) - rlcd_hard(1.0, 3.0, 0.2)).abs() < 0.01,
        "{csv}"
    );

    // Δ = 0: the RLAIF cell comes from the cache; RLCD labels are coin flips.
    let results = format!("results={}", tmp.path().join("results").display());
    let flat = rlcd::recipe::load(&recipe, &[results, "theory.delta=0".into()]).unwrap();
    let run = runner::run(&flat, &quiet()).unwrap();
    assert!(run.stages[0].cached && !run.stages[1].cached);
    println!("{}", run.tables[0].markdown);
    let csv = fs::read_to_string(run.run_dir.join("tables/appendix-n.csv")).unwrap();
    let rlcd: Vec<&str> = csv.lines().nth(2).unwrap().split(',').collect();
    assert!((num(rlcd[6]) - 0.5).abs() < 0.005 && (num(rlcd[12]) - 0.5).abs() < 0.005);
}

// ---- the runner on a contrast-prompt recipe (the other stage kind of this build) ----

#[test]
fn contrast_stages_write_prompts_and_key_on_templates() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let templates = tmp.path().join("prompt-templates");
    common::copy_dir(&repo.join("prompt-templates"), &templates);
    let recipe = tmp.path().join("contrast.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"contrast-test\"\nseed = 3\n\n[tasks.harmless]\nprompts = \"{}\"\n\
             templates = \"harmless\"\nn_prompts = 2\n\n[tasks.outlining]\nprompts = \"{}\"\n\
             templates = \"outlining\"\n",
            repo.join("recipes/examples/prompts/harmless.jsonl")
                .display(),
            repo.join("recipes/examples/prompts/outlining.txt")
                .display(),
        ),
    )
    .unwrap();
    let resolved = rlcd::recipe::load(&recipe, &[]).unwrap();
    let first = runner::run(&resolved, &quiet()).unwrap();
    let ids: Vec<&str> = first.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["contrast/harmless", "contrast/outlining"]);
    assert!(first.tables.is_empty());
    let store = Store::open(&tmp.path().join("results")).unwrap();
    let stage = first.plan.stage("contrast/harmless").unwrap();
    let artifact = store.lookup(&stage.id, &stage.key).unwrap();
    let text = String::from_utf8(artifact.read("contrast.jsonl").unwrap()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "n_prompts caps the train prompts");
    for l in &lines {
        for k in ["id", "plain", "positive", "negative"] {
            assert!(l[k].is_string(), "{l}");
        }
        assert_ne!(l["positive"], l["negative"]);
        assert!(l["affix_index"].is_u64());
    }
    assert!(
        stage.config["templates"]
            .as_object()
            .is_some_and(|t| t.contains_key("harmless/positive.j2")),
        "the contrast stage carries the texts it renders"
    );

    // Unchanged inputs: cached. An edited template: only its task recomputes.
    let again = runner::run(&resolved, &quiet()).unwrap();
    assert!(again.stages.iter().all(|s| s.cached));
    let pos = templates.join("harmless/positive.j2");
    let mut t = fs::read_to_string(&pos).unwrap();
    t.push_str("{# edited #}");
    fs::write(&pos, t).unwrap();
    let edited = runner::run(&resolved, &quiet()).unwrap();
    let cached: Vec<bool> = edited.stages.iter().map(|s| s.cached).collect();
    assert_eq!(cached, [false, true]);
}

#[test]
fn a_stage_locked_by_another_run_fails_fast_or_is_waited_for() {
    let (tmp, recipe) = project(1_000, "methods = [\"rlaif\"]\n");
    let resolved = rlcd::recipe::load(&recipe, &[]).unwrap();
    let plan = Plan::build(&resolved).unwrap();
    let cell = plan.stage("appendix_n/rlaif").unwrap();
    let dir = tmp.path().join("results/cache/appendix_n/rlaif");
    fs::create_dir_all(&dir).unwrap();
    let lock_path = dir.join(format!("{}.lock", cell.key));
    let holder = fs::File::create(&lock_path).unwrap();
    fs::write(&lock_path, "4242").unwrap();
    holder.try_lock().unwrap();

    let err = runner::run(&resolved, &quiet()).unwrap_err().to_string();
    assert!(
        err.contains("process 4242") && err.contains("appendix_n/rlaif"),
        "{err}"
    );

    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(holder);
    });
    let patient = RunOptions {
        quiet: true,
        wait_for_locks: Some(std::time::Duration::from_secs(30)),
        jobs: 1,
    };
    let run = runner::run(&resolved, &patient).unwrap();
    release.join().unwrap();
    assert!(!run.stages[0].cached && run.stages[0].seconds >= 0.2);
}
