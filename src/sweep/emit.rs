//! Job scripts for running a sweep on a Slurm cluster: a job array with one shard per task
//! (`--shard auto`), a merge job, and `submit.sh`, which submits the array and then the merge
//! with `--dependency=afterok:<array> --kill-on-invalid-dep=yes`, so a failed shard cancels
//! the merge. A node runs only the `rlcd` binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::SweepError;
use crate::error::IoError;

/// Slurm resources and options of the array's tasks.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SlurmOptions {
    /// With `--emit slurm`: array tasks (shards); default one per cell.
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,
    /// With `--emit slurm`: most array tasks running at once (`--array=…%K`).
    #[arg(long, value_name = "K")]
    pub throttle: Option<usize>,
    /// With `--emit slurm`: CPU cores per task (`#SBATCH --cpus-per-task`).
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<usize>,
    /// With `--emit slurm`: generic resources per task, e.g. `gpu:1` (`#SBATCH --gres`).
    #[arg(long, value_name = "GRES")]
    pub gres: Option<String>,
    /// With `--emit slurm`: time limit per task, e.g. `4:00:00` (`#SBATCH --time`).
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// With `--emit slurm`: another `#SBATCH` option for both jobs, e.g.
    /// `--partition=gpu`. Repeat for more.
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// With `--emit`: the `rlcd` binary the nodes run (default: this one).
    #[arg(long, value_name = "PATH")]
    pub rlcd: Option<PathBuf>,
}

/// What the jobs run: one sweep, its shards and its merge.
#[derive(Clone, Debug)]
pub struct SweepJob {
    /// Working directory of every job (the project root: recipes and templates).
    pub workdir: PathBuf,
    /// The `rlcd` binary.
    pub rlcd: PathBuf,
    /// The recipe.
    pub recipe: PathBuf,
    /// Overrides of every cell.
    pub overrides: Vec<String>,
    /// The grid axes as given (`key=v1,v2`).
    pub grid: Vec<String>,
    /// The sweep's output directory.
    pub out: PathBuf,
    /// Cells in the grid.
    pub cells: usize,
    /// `--lock-timeout`, when given.
    pub lock_timeout: Option<u64>,
}

impl SweepJob {
    /// The shards the jobs run: `--tasks` (default one per cell), at most one per cell;
    /// `--tasks`, `--throttle` and `--cpus-per-task` of 0 are errors.
    pub fn tasks(&self, opts: &SlurmOptions) -> Result<usize, SweepError> {
        if opts.tasks == Some(0) || opts.throttle == Some(0) || opts.cpus_per_task == Some(0) {
            return Err(SweepError::Emit {
                detail: "--tasks, --throttle and --cpus-per-task must be at least 1".into(),
            });
        }
        Ok(opts.tasks.unwrap_or(self.cells).min(self.cells).max(1))
    }

    /// The recipe file's stem, which names the jobs.
    pub fn stem(&self) -> String {
        self.recipe
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sweep".into())
    }
}

/// The files of an emitted Slurm sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmScripts {
    /// The job-array script.
    pub array: PathBuf,
    /// The merge job's script.
    pub merge: PathBuf,
    /// `submit.sh`.
    pub submit: PathBuf,
    /// Where the jobs' logs go (`shard-<i>.log`, `merge.log`).
    pub logs: PathBuf,
    /// Array tasks.
    pub tasks: usize,
}

fn quote(arg: &str) -> Result<String, SweepError> {
    shlex::try_quote(arg)
        .map(|q| q.into_owned())
        .map_err(|_| SweepError::Emit {
            detail: format!("{arg:?} contains a NUL byte and cannot be put in a shell script"),
        })
}

fn quote_path(path: &Path) -> Result<String, SweepError> {
    quote(&path.to_string_lossy())
}

/// `#SBATCH` header lines common to both jobs.
fn header(out: &mut String, name: &str, log: &Path, opts: &SlurmOptions) -> Result<(), SweepError> {
    let w = |out: &mut String, line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    w(out, format!("#SBATCH --job-name={name}"));
    w(out, format!("#SBATCH --output={}", log.display()));
    for arg in &opts.sbatch_args {
        if arg.contains('\n') {
            return Err(SweepError::Emit {
                detail: format!("--sbatch-arg {arg:?} spans several lines"),
            });
        }
        w(out, format!("#SBATCH {arg}"));
    }
    Ok(())
}

/// Writes `array.sbatch`, `merge.sbatch` and `submit.sh` for `job` into `dir` (and creates
/// `dir/logs`, which Slurm does not create).
pub fn slurm(job: &SweepJob, opts: &SlurmOptions, dir: &Path) -> Result<SlurmScripts, SweepError> {
    let tasks = job.tasks(opts)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(IoError::at(&logs))?;
    let stem = job.stem();
    let rlcd = quote_path(&job.rlcd)?;
    let workdir = quote_path(&job.workdir)?;

    let mut array = String::from("#!/bin/bash\n");
    let _ = writeln!(
        array,
        "# One shard of the sweep of {} per array task; `rlcd sweep --shard auto` reads the\n# task's index and the array's size from Slurm.",
        job.recipe.display()
    );
    header(
        &mut array,
        &format!("rlcd-{stem}"),
        &logs.join("shard-%a.log"),
        opts,
    )?;
    let throttle = opts.throttle.map(|k| format!("%{k}")).unwrap_or_default();
    let _ = writeln!(array, "#SBATCH --array=0-{}{throttle}", tasks - 1);
    if let Some(n) = opts.cpus_per_task {
        let _ = writeln!(array, "#SBATCH --cpus-per-task={n}");
    }
    if let Some(g) = &opts.gres {
        let _ = writeln!(array, "#SBATCH --gres={g}");
    }
    if let Some(t) = &opts.time {
        let _ = writeln!(array, "#SBATCH --time={t}");
    }
    let mut command = vec![rlcd.clone(), "sweep".into(), quote_path(&job.recipe)?];
    for o in &job.overrides {
        command.push(quote(o)?);
    }
    for g in &job.grid {
        command.push("--grid".into());
        command.push(quote(g)?);
    }
    command.extend(["--shard".into(), "auto".into(), "--out".into()]);
    command.push(quote_path(&job.out)?);
    if let Some(s) = job.lock_timeout {
        command.extend(["--lock-timeout".into(), s.to_string()]);
    }
    let _ = writeln!(
        array,
        "set -euo pipefail\ncd {workdir}\nexec {}",
        command.join(" ")
    );

    let mut merge = String::from("#!/bin/bash\n");
    let _ = writeln!(
        merge,
        "# Merges every shard's cells into the sweep's summary (runs after the whole array)."
    );
    header(
        &mut merge,
        &format!("rlcd-{stem}-merge"),
        &logs.join("merge.log"),
        opts,
    )?;
    let _ = writeln!(
        merge,
        "set -euo pipefail\ncd {workdir}\nexec {rlcd} sweep --merge {}",
        quote_path(&job.out)?
    );

    let submit = "#!/bin/sh\n\
        # Submits the shard array, then the merge, which runs only if every shard succeeded\n\
        # (a failed shard cancels it).\n\
        set -eu\n\
        here=$(cd \"$(dirname \"$0\")\" && pwd)\n\
        array=$(sbatch --parsable \"$here/array.sbatch\")\n\
        array=${array%%;*}\n\
        merge=$(sbatch --parsable --dependency=afterok:\"$array\" --kill-on-invalid-dep=yes \"$here/merge.sbatch\")\n\
        merge=${merge%%;*}\n\
        echo \"array job $array, merge job $merge\"\n";

    let files = SlurmScripts {
        array: dir.join("array.sbatch"),
        merge: dir.join("merge.sbatch"),
        submit: dir.join("submit.sh"),
        logs,
        tasks,
    };
    for (path, text) in [
        (&files.array, array.as_str()),
        (&files.merge, merge.as_str()),
        (&files.submit, submit),
    ] {
        crate::error::write(path, text)?;
        set_executable(path)?;
    }
    Ok(files)
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<(), SweepError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(IoError::at(path))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<(), SweepError> {
    Ok(())
}
