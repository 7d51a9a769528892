//! Sweeps: a cartesian grid of recipe overrides, one run per cell, one merged summary.
//!
//! Every cell is an ordinary run (`recipe::load` with the cell's `key=value` overrides, then
//! [`runner::run`]) sharing the recipe's cache, so stages a cell does not change (RLAIF's
//! Appendix N cell across a Δ sweep) are computed once. Each finished cell leaves
//! `<out>/cells/<index>-<overrides>/` with its tables and `cell.json` (written last). The
//! summary `summary.{parquet,csv,md}` stacks every cell's table in cell order with the swept
//! keys as leading (string) columns; with several tables per cell each gets
//! `summary-<stem>.*`. A sweep over `seed` (`--seeds N`) adds `across-seeds.*` ([`seeds`]):
//! each comparison's win rates across the seeds with a t-interval over seeds, and its plot.
//!
//! Sharding for job arrays: `--shard i/n` (0-based, `0 ≤ i < n`, like a Slurm array
//! `--array=0-(n-1)`) runs the cells whose index `% n == i`, and `--shard auto` reads `i` and
//! `n` from the array's environment ([`shard`]); [`merge`] then reads every
//! `cells/*/cell.json` under a directory (all shards' outputs) and writes the same summary a
//! single full sweep writes. Shards share the store: a stage another shard is computing is
//! waited for, then reused. [`args`] is the command line of `rlcd sweep`.

pub mod args;
pub mod emit;
pub mod k8s;
pub mod seeds;
pub mod shard;
pub mod skill;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use crate::recipe::{self, RecipeError};
use crate::runner::{self, RunError, RunOptions};
use crate::tables::{self, TableError, TableFiles};

/// The file that marks a finished cell.
pub const CELL_FILE: &str = "cell.json";

/// Errors of a sweep or a merge.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A grid axis has no values.
    #[error("sweep axis `{key}` has no values; give at least one, e.g. `{key}=1,2`")]
    EmptyAxis {
        /// The key.
        key: String,
    },
    /// A grid argument is not `key=v1,v2,…`.
    #[error("sweep axis `{text}` is not `key=value1,value2,…` (e.g. `theory.delta=0,1,3`)")]
    BadAxis {
        /// The argument.
        text: String,
    },
    /// The same key is swept twice.
    #[error("sweep axis `{key}` appears twice; give all its values in one `{key}=a,b,…`")]
    DuplicateAxis {
        /// The key.
        key: String,
    },
    /// A shard is not `i/n` with `0 ≤ i < n`, `auto` or `auto/N`.
    #[error(
        "shard `{text}` is not `i/n` with 0 ≤ i < n (0-based: shards of 4 are 0/4 … 3/4), `auto` or `auto/N`"
    )]
    BadShard {
        /// The shard as given.
        text: String,
    },
    /// `--shard auto` found no usable job-array variables.
    #[error("{message}\n  fix: {fix}")]
    ShardEnv {
        /// What the environment says.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// Job scripts cannot be written as asked.
    #[error("cannot emit the sweep's jobs: {detail}")]
    Emit {
        /// What is wrong.
        detail: String,
    },
    /// A sweep without a recipe (and without `--merge`).
    #[error("a sweep needs a recipe file: `rlcd sweep RECIPE --grid key=v1,v2`, or `--merge DIR`")]
    NoRecipe,
    /// A cell's recipe did not load or failed its checks (the recipe's message comes first,
    /// as `rlcd run` prints it).
    #[error("{source}\n  in sweep cell {index} ({overrides})")]
    Recipe {
        /// Cell index.
        index: usize,
        /// The cell's overrides.
        overrides: String,
        /// The recipe error.
        #[source]
        source: Box<RecipeError>,
    },
    /// A cell's run failed.
    #[error("sweep cell {index} ({overrides}): {source}")]
    Run {
        /// Cell index.
        index: usize,
        /// The cell's overrides.
        overrides: String,
        /// The run error.
        #[source]
        source: Box<RunError>,
    },
    /// A table could not be read, stacked or written.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A file could not be written or read.
    #[error(transparent)]
    Io(#[from] crate::error::IoError),
    /// The across-seed plot could not be drawn.
    #[error(transparent)]
    Plot(crate::plots::PlotError),
    /// A `cell.json` is unreadable or disagrees with the others.
    #[error("{path}: {detail}")]
    Cell {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No finished cells under a directory.
    #[error(
        "no finished sweep cells (cells/*/cell.json) under {dir}; run `rlcd sweep` with --out pointing there first"
    )]
    NoCells {
        /// The directory searched.
        dir: PathBuf,
    },
    /// Some cells have not run.
    #[error(
        "{} of {total} sweep cells are missing under {dir} (indices {}); run their shards \
         (cell i belongs to shard i % n), then merge again",
        missing.len(),
        missing.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingCells {
        /// The directory searched.
        dir: PathBuf,
        /// Missing cell indices.
        missing: Vec<usize>,
        /// Cells in the grid.
        total: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io(crate::error::IoError::new(path, source))
}

/// Writes an across-seed table `stem` beside the summaries, with its plot as `<stem>.svg`.
fn write_across(
    out: &Path,
    stem: &str,
    frame: &polars::prelude::DataFrame,
    svg: Result<String, crate::plots::PlotError>,
) -> Result<TableFiles, SweepError> {
    let files = tables::write_table(out, stem, frame)?;
    let path = out.join(format!("{stem}.svg"));
    fs::write(&path, svg.map_err(SweepError::Plot)?).map_err(io(&path))?;
    Ok(files)
}

/// How a sweep runs its cells.
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// Overrides applied to every cell before the grid's (e.g. `results=/scratch/results`).
    pub overrides: Vec<String>,
    /// No line per cell, and passed to every run: no progress bars or stage lines.
    pub quiet: bool,
    /// Passed to every run: how long to wait for a stage another shard is computing.
    pub wait_for_locks: Option<std::time::Duration>,
}

/// `cell.json`: which cell of which grid a directory holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// Index in the full grid (row-major: the last axis varies fastest).
    pub index: usize,
    /// Number of cells in the grid.
    pub total: usize,
    /// The grid: axis keys with their values.
    pub grid: Vec<(String, Vec<String>)>,
    /// This cell's `(key, value)` overrides, in axis order.
    pub overrides: Vec<(String, String)>,
    /// Stems of the tables the cell wrote next to this file.
    pub tables: Vec<String>,
    /// The run directory of the cell.
    pub run_dir: PathBuf,
}

/// One cell run by [`sweep`].
#[derive(Clone, Debug, PartialEq)]
pub struct CellOutcome {
    /// Index in the grid.
    pub index: usize,
    /// The cell's overrides.
    pub overrides: Vec<(String, String)>,
    /// `<out>/cells/<index>-…/`.
    pub dir: PathBuf,
    /// The cell's run directory.
    pub run_dir: PathBuf,
    /// Stages reused from the cache.
    pub cached: usize,
    /// Stages computed.
    pub computed: usize,
}

/// The outcome of [`sweep`].
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// Cells run by this invocation (this shard's, or all).
    pub cells: Vec<CellOutcome>,
    /// Summary files written in `out` (none for a shard: merge the shards instead).
    pub summary: Vec<TableFiles>,
}

fn check_shard(i: usize, n: usize) -> Result<(), SweepError> {
    if n == 0 || i >= n {
        return Err(SweepError::BadShard {
            text: format!("{i}/{n}"),
        });
    }
    Ok(())
}

/// Parses an axis `key=v1,v2,…`.
pub fn parse_axis(text: &str) -> Result<(String, Vec<String>), SweepError> {
    let (k, v) = text.split_once('=').ok_or_else(|| SweepError::BadAxis {
        text: text.to_string(),
    })?;
    let key = k.trim().to_string();
    if key.is_empty() {
        return Err(SweepError::BadAxis {
            text: text.to_string(),
        });
    }
    let values: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if values.is_empty() {
        return Err(SweepError::EmptyAxis { key });
    }
    Ok((key, values))
}

/// The grid's cells in order (row-major: the last axis varies fastest).
pub fn cells(grid: &[(String, Vec<String>)]) -> Result<Vec<Vec<(String, String)>>, SweepError> {
    let mut seen = std::collections::BTreeSet::new();
    for (k, vs) in grid {
        if !seen.insert(k) {
            return Err(SweepError::DuplicateAxis { key: k.clone() });
        }
        if vs.is_empty() {
            return Err(SweepError::EmptyAxis { key: k.clone() });
        }
    }
    let mut out: Vec<Vec<(String, String)>> = vec![vec![]];
    for (k, vs) in grid {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                vs.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((k.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    Ok(out)
}

fn describe(overrides: &[(String, String)]) -> String {
    if overrides.is_empty() {
        return "no overrides".into();
    }
    overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cell_dir_name(index: usize, overrides: &[(String, String)]) -> String {
    let slug: String = overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '=' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if slug.is_empty() {
        format!("{index:04}")
    } else {
        format!("{index:04}-{slug}")
    }
}

/// A cell of a grid: index, overrides, label, and the recipe resolved with them.
type Checked = (usize, Vec<(String, String)>, String, recipe::Resolved);

/// Every cell of `grid` over the recipe at `recipe_path` (after `overrides`), resolved and
/// checked as `rlcd validate` checks a recipe; the first cell with a problem is the error.
fn checked_cells(
    recipe_path: &Path,
    grid: &[(String, Vec<String>)],
    overrides: &[String],
) -> Result<Vec<Checked>, SweepError> {
    let mut checked = Vec::new();
    for (index, cell) in cells(grid)?.into_iter().enumerate() {
        let label = describe(&cell);
        let mut args = overrides.to_vec();
        args.extend(cell.iter().map(|(k, v)| format!("{k}={v}")));
        let resolved = recipe::load(recipe_path, &args)
            .and_then(|r| crate::preflight::check(&r).map(|_notes| r))
            .map_err(|source| SweepError::Recipe {
                index,
                overrides: label.clone(),
                source: Box::new(source),
            })?;
        checked.push((index, cell, label, resolved));
    }
    Ok(checked)
}

/// Checks every cell of `grid` as a sweep does before running any; returns how many there are.
pub fn check_cells(
    recipe_path: &Path,
    grid: &[(String, Vec<String>)],
    overrides: &[String],
) -> Result<usize, SweepError> {
    Ok(checked_cells(recipe_path, grid, overrides)?.len())
}

/// Runs the sweep with default options; see [`sweep_with`].
pub fn sweep(
    recipe_path: &Path,
    grid: &[(String, Vec<String>)],
    shard: Option<(usize, usize)>,
    out: &Path,
) -> Result<SweepOutcome, SweepError> {
    sweep_with(recipe_path, grid, shard, out, &SweepOptions::default())
}

/// Runs every cell of `grid` (or only shard `i/n`'s, 0-based) of the recipe at `recipe_path`,
/// writes each cell under `out/cells/`, and, when not sharded, the merged summary in `out`.
pub fn sweep_with(
    recipe_path: &Path,
    grid: &[(String, Vec<String>)],
    shard: Option<(usize, usize)>,
    out: &Path,
    opts: &SweepOptions,
) -> Result<SweepOutcome, SweepError> {
    if let Some((i, n)) = shard {
        check_shard(i, n)?;
    }
    // Every cell of the grid is resolved and checked before any runs.
    let checked = checked_cells(recipe_path, grid, &opts.overrides)?;
    let total = checked.len();
    let cells_dir = out.join("cells");
    fs::create_dir_all(&cells_dir).map_err(io(&cells_dir))?;
    let mut outcomes = Vec::new();
    let mut records = Vec::new();
    for (index, overrides, label, resolved) in checked {
        if let Some((i, n)) = shard
            && index % n != i
        {
            continue;
        }
        if outcomes.is_empty() {
            // The warnings (ignored `RLCD_*` variables) are the same for every cell.
            for warning in &resolved.warnings {
                eprintln!("warning: {warning}");
            }
        }
        if !opts.quiet {
            eprintln!("sweep cell {index}/{total}: {label}");
        }
        let summary = runner::run(
            &resolved,
            &RunOptions {
                quiet: opts.quiet,
                wait_for_locks: opts.wait_for_locks,
                jobs: 0,
            },
        )
        .map_err(|source| SweepError::Run {
            index,
            overrides: label.clone(),
            source: Box::new(source),
        })?;
        let dir = cells_dir.join(cell_dir_name(index, &overrides));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        for t in &summary.tables {
            tables::write_table(&dir, &t.stem, &t.frame)?;
        }
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let record = CellRecord {
            index,
            total,
            grid: grid.to_vec(),
            overrides: overrides.clone(),
            tables: summary.tables.iter().map(|t| t.stem.clone()).collect(),
            run_dir: summary.run_dir.clone(),
        };
        let cell_path = dir.join(CELL_FILE);
        let text = serde_json::to_vec_pretty(&record).map_err(|e| SweepError::Cell {
            path: cell_path.clone(),
            detail: e.to_string(),
        })?;
        tables::write_atomic(&cell_path, &text)?;
        let cached = summary.stages.iter().filter(|s| s.cached).count();
        outcomes.push(CellOutcome {
            index,
            overrides,
            dir: dir.clone(),
            run_dir: summary.run_dir,
            cached,
            computed: summary.stages.len() - cached,
        });
        records.push((dir, record));
    }
    let summary = if shard.is_none() {
        write_summary(out, &records)?
    } else {
        vec![]
    };
    Ok(SweepOutcome {
        cells: outcomes,
        summary,
    })
}

/// Merges every finished cell under `dir` (any depth: `dir/shard-0/cells/…`,
/// `dir/cells/…`) into `dir/summary.*`. Errors if cells disagree on the grid or some are
/// missing.
pub fn merge(dir: &Path) -> Result<Vec<TableFiles>, SweepError> {
    let mut found = Vec::new();
    find_cells(dir, &mut found)?;
    found.sort();
    let mut by_index: BTreeMap<usize, (PathBuf, CellRecord)> = BTreeMap::new();
    let mut first: Option<(PathBuf, CellRecord)> = None;
    for path in found {
        let text = fs::read(&path).map_err(io(&path))?;
        let rec: CellRecord = serde_json::from_slice(&text).map_err(|e| SweepError::Cell {
            path: path.clone(),
            detail: format!("not a sweep cell record ({e})"),
        })?;
        if let Some((p0, r0)) = &first {
            if r0.grid != rec.grid || r0.total != rec.total {
                return Err(SweepError::Cell {
                    path: path.clone(),
                    detail: format!(
                        "belongs to a different sweep grid than {}; merge each sweep's \
                         directory separately",
                        p0.display()
                    ),
                });
            }
        } else {
            first = Some((path.clone(), rec.clone()));
        }
        let cell_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        by_index.entry(rec.index).or_insert((cell_dir, rec));
    }
    let Some((_, r0)) = first else {
        return Err(SweepError::NoCells {
            dir: dir.to_path_buf(),
        });
    };
    let missing: Vec<usize> = (0..r0.total)
        .filter(|i| !by_index.contains_key(i))
        .collect();
    if !missing.is_empty() {
        return Err(SweepError::MissingCells {
            dir: dir.to_path_buf(),
            missing,
            total: r0.total,
        });
    }
    let records: Vec<(PathBuf, CellRecord)> = by_index.into_values().collect();
    write_summary(dir, &records)
}

fn find_cells(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SweepError> {
    let entries = fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let p = entry.path();
        if !entry.file_type().map_err(io(&p))?.is_dir() {
            continue;
        }
        let is_cell = p
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "cells")
            && p.join(CELL_FILE).is_file();
        if is_cell {
            out.push(p.join(CELL_FILE));
        } else {
            find_cells(&p, out)?;
        }
    }
    Ok(())
}

/// Stacks each table over the cells (in the given order) with the swept keys in front.
fn write_summary(
    out: &Path,
    records: &[(PathBuf, CellRecord)],
) -> Result<Vec<TableFiles>, SweepError> {
    let Some((p0, r0)) = records.first() else {
        return Ok(vec![]);
    };
    for (p, r) in records {
        if r.tables != r0.tables {
            return Err(SweepError::Cell {
                path: p.join(CELL_FILE),
                detail: format!(
                    "has tables [{}] but {} has [{}]; every cell of a sweep must write the \
                     same tables",
                    r.tables.join(", "),
                    p0.join(CELL_FILE).display(),
                    r0.tables.join(", ")
                ),
            });
        }
    }
    let mut written = Vec::new();
    for stem in &r0.tables {
        let mut stacked: Option<DataFrame> = None;
        for (dir, rec) in records {
            let df = tables::read_parquet(&dir.join(format!("{stem}.parquet")))?;
            let h = df.height();
            let mut cols: Vec<Column> = rec
                .overrides
                .iter()
                .map(|(k, v)| Column::new(k.as_str().into(), vec![v.clone(); h]))
                .collect();
            cols.extend(df.columns().iter().cloned());
            let frame = DataFrame::new(h, cols).map_err(|source| TableError::Frame {
                table: format!("summary of {stem}"),
                source,
            })?;
            stacked = Some(match stacked {
                None => frame,
                Some(mut acc) => {
                    acc.vstack_mut_owned(frame)
                        .map_err(|source| TableError::Frame {
                            table: format!("summary of {stem} (cell {})", rec.index),
                            source,
                        })?;
                    acc
                }
            });
        }
        let mut df = stacked.unwrap_or_default();
        df.rechunk_mut();
        let swept = || -> Vec<String> { r0.overrides.iter().map(|(k, _)| k.clone()).collect() };
        if stem == crate::stages::winrates::STEM
            && let Some(groups) = seeds::group(&df, &swept())?
        {
            written.push(write_across(
                out,
                seeds::STEM,
                &seeds::frame(&groups)?,
                seeds::svg(&groups),
            )?);
        }
        if stem == crate::stages::judge_skill::STEM
            && let Some(groups) = skill::group(&df, &swept())?
        {
            written.push(write_across(
                out,
                skill::STEM,
                &skill::frame(&groups)?,
                skill::svg(&groups),
            )?);
        }
        let name = if r0.tables.len() == 1 {
            "summary".to_string()
        } else {
            format!("summary-{stem}")
        };
        written.push(tables::write_table(out, &name, &df)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_row_major_and_validated() {
        let grid = vec![
            ("a".to_string(), vec!["1".to_string(), "2".to_string()]),
            (
                "b".to_string(),
                vec!["x".to_string(), "y".to_string(), "z".to_string()],
            ),
        ];
        let c = cells(&grid).expect("cells");
        assert_eq!(c.len(), 6);
        assert_eq!(c[1], [("a".into(), "1".into()), ("b".into(), "y".into())]);
        assert_eq!(c[3], [("a".into(), "2".into()), ("b".into(), "x".into())]);
        assert_eq!(cells(&[]).expect("empty grid").len(), 1);
        let dup = vec![grid[0].clone(), grid[0].clone()];
        assert!(matches!(cells(&dup), Err(SweepError::DuplicateAxis { .. })));
    }

    #[test]
    fn axes_parse() {
        assert_eq!(
            parse_axis("theory.delta=0, 1,3").expect("axis"),
            (
                "theory.delta".into(),
                vec!["0".into(), "1".into(), "3".into()]
            )
        );
        assert!(matches!(
            parse_axis("theory.delta="),
            Err(SweepError::EmptyAxis { .. })
        ));
        assert!(matches!(
            parse_axis("delta"),
            Err(SweepError::BadAxis { .. })
        ));
    }

    #[test]
    fn cell_dirs_are_safe_names() {
        assert_eq!(
            cell_dir_name(3, &[("theory.delta".into(), "1.5".into())]),
            "0003-theory.delta=1.5"
        );
        assert_eq!(
            cell_dir_name(0, &[("p".into(), "a/b c".into())]),
            "0000-p=a_b_c"
        );
    }
}
