//! The sweep command line, shared by `rlcd sweep` and `cargo xtask sweep`: a recipe, its
//! overrides, grid axes, a shard, an output directory; or `--merge DIR`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::emit::{self, SlurmOptions, SlurmScripts, SweepJob};
use super::k8s::{self, K8sManifests, K8sOptions};
use super::shard::ShardSpec;
use super::{SweepError, SweepOptions, check_cells, merge, parse_axis, sweep_with};
use crate::tables::TableFiles;

/// Arguments of a sweep.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SweepArgs {
    /// The recipe file (omit with `--merge`).
    pub recipe: Option<PathBuf>,
    /// Overrides applied to every cell before its grid values: `key=value`.
    #[arg(value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// A swept key and its values: `theory.delta=0,1,2,3`. Repeat for more axes; cells are
    /// their cartesian product, the last axis varying fastest.
    #[arg(long = "grid", value_name = "KEY=V1,V2,…")]
    pub grid: Vec<String>,
    /// Seeds as an axis: the same as `--grid seed=0,1,…,N−1`. The summary then also holds the
    /// across-seed table and plot (`across-seeds.*`).
    #[arg(long, value_name = "N", conflicts_with = "merge")]
    pub seeds: Option<u32>,
    /// Run only shard `i` of `n` (cells whose index ≡ i mod n, i from 0); `auto` reads a
    /// Slurm array's task id and count, `auto/N` a Kubernetes Indexed Job's index with N
    /// shards.
    #[arg(long, value_name = "I/N|auto|auto/N")]
    pub shard: Option<String>,
    /// Output directory (default: results/sweeps/<recipe file stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Merge the shard outputs found under this directory instead of running.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["recipe", "grid", "shard", "overrides"])]
    pub merge: Option<PathBuf>,
    /// Longest wait, in seconds, for a stage another process (another shard) is computing;
    /// without it a shard waits as long as that process runs.
    #[arg(long, value_name = "SECONDS")]
    pub lock_timeout: Option<u64>,
    /// No line per cell and no progress bars or stage lines.
    #[arg(long)]
    pub quiet: bool,
    /// Check every cell, then write job scripts into DIR instead of running: `slurm` (a job
    /// array of `--shard auto` tasks, a merge job and `submit.sh`) or `k8s` (an Indexed Job of
    /// `--shard auto/N` pods, a merge Job and `submit.sh`).
    #[arg(long, num_args = 2, value_names = ["KIND", "DIR"], conflicts_with_all = ["merge", "shard"])]
    pub emit: Vec<String>,
    /// Options of the emitted jobs.
    #[command(flatten)]
    pub slurm: SlurmOptions,
    /// Options of the emitted Kubernetes Jobs.
    #[command(flatten)]
    pub k8s: K8sOptions,
}

/// What a sweep command produced.
#[derive(Debug)]
pub struct SweepRun {
    /// The output directory.
    pub out: PathBuf,
    /// Cells this process ran (0 for a merge).
    pub cells: usize,
    /// The shard run, when sharded.
    pub shard: Option<(usize, usize)>,
    /// The summary tables (none for a shard: merge the shards' outputs to get them).
    pub tables: Vec<TableFiles>,
    /// The job files written by `--emit`.
    pub emitted: Option<Emitted>,
}

/// The files `--emit` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Emitted {
    /// A Slurm job array, its merge job and `submit.sh`.
    Slurm(SlurmScripts),
    /// An Indexed Job, its merge Job and `submit.sh`.
    K8s(K8sManifests),
}

impl Emitted {
    /// The files, `submit.sh` last.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Emitted::Slurm(s) => vec![&s.array, &s.merge, &s.submit],
            Emitted::K8s(k) => vec![&k.shards, &k.merge, &k.submit],
        }
    }

    /// Shards.
    pub fn tasks(&self) -> usize {
        match self {
            Emitted::Slurm(s) => s.tasks,
            Emitted::K8s(k) => k.tasks,
        }
    }
}

/// The default output directory of a sweep of `recipe`, under `root`.
pub fn default_out(root: &Path, recipe: &Path) -> PathBuf {
    let stem = recipe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    root.join("results/sweeps").join(stem)
}

/// Runs (or merges) the sweep `args` describe, from project root `root`, reading a job
/// array's shard through `var` (the process environment in the binaries).
pub fn execute(
    args: &SweepArgs,
    root: &Path,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<SweepRun, SweepError> {
    if let Some(dir) = &args.merge {
        return Ok(SweepRun {
            out: dir.clone(),
            cells: 0,
            shard: None,
            tables: merge(dir)?,
            emitted: None,
        });
    }
    let recipe = args.recipe.as_ref().ok_or(SweepError::NoRecipe)?;
    let grid_args = grid_args(args)?;
    let grid = grid_args
        .iter()
        .map(|g| parse_axis(g))
        .collect::<Result<Vec<_>, _>>()?;
    let shard = args
        .shard
        .as_deref()
        .map(|s| ShardSpec::parse(s)?.resolve(var))
        .transpose()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(root, recipe));
    if let [kind, dir] = args.emit.as_slice() {
        let args = SweepArgs {
            grid: grid_args,
            seeds: None,
            ..args.clone()
        };
        return emit(&args, root, recipe, &grid, &out, kind, Path::new(dir));
    }
    let opts = SweepOptions {
        overrides: args.overrides.clone(),
        quiet: args.quiet,
        wait_for_locks: Some(args.lock_timeout.map_or(Duration::MAX, Duration::from_secs)),
    };
    let outcome = sweep_with(recipe, &grid, shard, &out, &opts)?;
    Ok(SweepRun {
        out,
        cells: outcome.cells.len(),
        shard,
        tables: outcome.summary,
        emitted: None,
    })
}

/// The grid axes of `args`: `--grid` as given, then `seed=0,…,N−1` for `--seeds N`.
fn grid_args(args: &SweepArgs) -> Result<Vec<String>, SweepError> {
    let mut grid = args.grid.clone();
    match args.seeds {
        None => {}
        Some(0) => {
            return Err(SweepError::EmptyAxis {
                key: super::seeds::SEED_KEY.into(),
            });
        }
        Some(n) => {
            let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            grid.push(format!("{}={}", super::seeds::SEED_KEY, values.join(",")));
        }
    }
    Ok(grid)
}

/// Checks every cell of the sweep, then writes the jobs of `kind` into `dir`.
fn emit(
    args: &SweepArgs,
    root: &Path,
    recipe: &Path,
    grid: &[(String, Vec<String>)],
    out: &Path,
    kind: &str,
    dir: &Path,
) -> Result<SweepRun, SweepError> {
    if kind != "slurm" && kind != "k8s" {
        return Err(SweepError::Emit {
            detail: format!(
                "unknown job kind `{kind}`; write `--emit slurm DIR` or `--emit k8s DIR`"
            ),
        });
    }
    let cells = check_cells(recipe, grid, &args.overrides)?;
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    };
    let rlcd = match &args.slurm.rlcd {
        Some(p) => absolute(p),
        None => std::env::current_exe().map_err(|e| SweepError::Emit {
            detail: format!("cannot tell where this rlcd binary is ({e}); pass --rlcd PATH"),
        })?,
    };
    let job = SweepJob {
        workdir: root.to_path_buf(),
        rlcd,
        recipe: absolute(recipe),
        overrides: args.overrides.clone(),
        grid: args.grid.clone(),
        out: absolute(out),
        cells,
        lock_timeout: args.lock_timeout,
    };
    let emitted = if kind == "slurm" {
        Emitted::Slurm(emit::slurm(&job, &args.slurm, &absolute(dir))?)
    } else {
        Emitted::K8s(k8s::write(&job, &args.slurm, &args.k8s, &absolute(dir))?)
    };
    Ok(SweepRun {
        out: job.out,
        cells: 0,
        shard: None,
        tables: Vec::new(),
        emitted: Some(emitted),
    })
}
