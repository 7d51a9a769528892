//! Sweeps on a real Slurm: a one-node cluster on this host, started by `.ci/slurm/up` (CI runs
//! it before the tests). The array and merge jobs `rlcd sweep --emit slurm` writes, submitted
//! through their `submit.sh`, reproduce the single-process sweep byte for byte; a cell that
//! fails makes Slurm cancel the merge, and the failing task's log names the cell and the error.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rlcd");

const RECIPE: &str = "name = \"slurm-theory\"\nseed = 3\n\n[theory]\ntrials = 20000\n";

/// Fails, saying how to start one, unless a Slurm controller answers on this host.
fn require_slurm() {
    let answers = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    assert!(
        answers,
        "these tests need a running Slurm on this host: run `bash .ci/slurm/up` as root (it \
         installs Debian's slurmctld, slurmd, slurm-client and munge with apt when absent, and \
         starts them)"
    );
}

fn rlcd(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .expect("the rlcd binary runs")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Submits the emitted jobs; returns the array's and the merge's job ids.
fn submit(jobs: &Path) -> (String, String) {
    let out = ok(
        Command::new("sh")
            .arg(jobs.join("submit.sh"))
            .output()
            .expect("sh runs"),
        "submit.sh",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let ids: Vec<String> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 2, "submit.sh printed {text:?}");
    (ids[0].clone(), ids[1].clone())
}

/// The states of job `id` (one per array task), once none is pending or running (up to
/// two minutes).
fn final_states(id: &str) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let out = Command::new("scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .expect("scontrol runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let states: Vec<String> = text
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("JobState="))
                    .map(str::to_string)
            })
            .collect();
        let busy = states.iter().any(|s| {
            matches!(
                s.as_str(),
                "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING"
            )
        });
        if !states.is_empty() && !busy {
            return states;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "job {id} still not finished after two minutes: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn an_emitted_array_and_merge_reproduce_the_single_process_sweep() {
    require_slurm();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("recipe.toml"), RECIPE).expect("recipe");
    let grid = ["--grid", "theory.delta=0,1,2,3"];
    let mut single = vec!["sweep", "recipe.toml", "--quiet", "--out", "single"];
    single.extend(grid);
    ok(rlcd(dir.path(), &single), "the single-process sweep");
    let mut emit = vec![
        "sweep",
        "recipe.toml",
        "--out",
        "array",
        "--emit",
        "slurm",
        "jobs",
    ];
    emit.extend(grid);
    emit.extend(["--tasks", "2"]);
    ok(rlcd(dir.path(), &emit), "--emit slurm");
    let (array, merge) = submit(&dir.path().join("jobs"));
    assert_eq!(final_states(&array), ["COMPLETED", "COMPLETED"]);
    assert_eq!(final_states(&merge), ["COMPLETED"]);
    assert_eq!(
        std::fs::read(dir.path().join("array/summary.csv")).expect("merged summary"),
        std::fs::read(dir.path().join("single/summary.csv")).expect("single summary"),
    );
}

#[test]
fn a_failing_cell_cancels_the_merge_and_its_log_names_the_cell() {
    require_slurm();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("recipe.toml"), RECIPE).expect("recipe");
    let emit = [
        "sweep",
        "recipe.toml",
        "--out",
        "array",
        "--grid",
        "results=results-a,results-b",
        "--emit",
        "slurm",
        "jobs",
    ];
    ok(rlcd(dir.path(), &emit), "--emit slurm");
    // After the cells were checked, cell 1's results root becomes a file: its run fails.
    std::fs::write(dir.path().join("results-b"), b"not a directory").expect("write");
    let (array, merge) = submit(&dir.path().join("jobs"));
    let mut states = final_states(&array);
    states.sort();
    assert_eq!(states, ["COMPLETED", "FAILED"]);
    assert_eq!(final_states(&merge), ["CANCELLED"]);
    let log = std::fs::read_to_string(dir.path().join("jobs/logs/shard-1.log")).expect("log");
    assert!(
        log.contains("sweep cell 1 (results=results-b)") && log.contains("not writable"),
        "{log}"
    );
    assert!(!dir.path().join("array/summary.csv").exists());
}
