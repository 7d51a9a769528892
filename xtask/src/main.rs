//! `cargo xtask`: project automation — sweeps over recipe grids, benchmarks, asset fetching,
//! and regenerating README.md's recipe-key reference from the schema.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "rlcd project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a recipe over the cartesian product of `--grid key=v1,v2` overrides (sharing cached
    /// stages) and merge every cell's tables into one summary with the swept keys as columns.
    Sweep {
        /// The recipe file (omit with `--merge`).
        recipe: Option<PathBuf>,
        /// A swept key and its values: `theory.delta=0,1,2,3`. Repeat for more axes.
        #[arg(long = "grid", value_name = "KEY=V1,V2,…")]
        grid: Vec<String>,
        /// Run only shard `i` of `n`: cells whose index ≡ i (mod n), i counting from 0
        /// (a Slurm `--array=0-(n-1)` job passes `$SLURM_ARRAY_TASK_ID/n`).
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Output directory (default: results/sweeps/<recipe file stem>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Merge the shard outputs found under this directory instead of running.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["recipe", "grid", "shard"])]
        merge: Option<PathBuf>,
    },
    /// Generation and training throughput of the model core on the CPU; writes results/bench/.
    Bench {
        /// Also benchmark this model: an asset name (`smollm2-135m`) or a GGUF path.
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// Only the tiny preset.
        #[arg(long)]
        tiny_only: bool,
        /// Output directory.
        #[arg(long, default_value = "results/bench")]
        out: PathBuf,
    },
    /// Rewrite README.md's recipe-key reference from the recipe schema (`rlcd schema
    /// --markdown`).
    Readme,
    /// Fetch model assets and prompt sets (same as `rlcd assets fetch`).
    FetchAssets {
        /// Asset names, `all` (required models), or `prompts`.
        #[arg(default_value = "all")]
        names: Vec<String>,
    },
}

fn print_tables(files: &[rlcd::tables::TableFiles]) -> Result<()> {
    for f in files {
        let md = std::fs::read_to_string(&f.markdown)
            .with_context(|| format!("cannot read {}", f.markdown.display()))?;
        println!("{}\n{md}", f.markdown.display());
    }
    Ok(())
}

fn default_out(recipe: &Path) -> PathBuf {
    let stem = recipe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    PathBuf::from("results/sweeps").join(stem)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = std::env::current_dir()?;
    match cli.command {
        Command::Sweep {
            recipe,
            grid,
            shard,
            out,
            merge,
        } => {
            if let Some(dir) = merge {
                return print_tables(&rlcd::sweep::merge(&dir)?);
            }
            let recipe = recipe.context("a recipe file is required (or use --merge DIR)")?;
            let grid = grid
                .iter()
                .map(|g| rlcd::sweep::parse_axis(g))
                .collect::<Result<Vec<_>, _>>()?;
            let shard = shard.as_deref().map(rlcd::sweep::parse_shard).transpose()?;
            let out = out.unwrap_or_else(|| default_out(&recipe));
            let outcome = rlcd::sweep::sweep(&recipe, &grid, shard, &out)?;
            eprintln!(
                "{} cells run; output in {}",
                outcome.cells.len(),
                out.display()
            );
            print_tables(&outcome.summary)?;
        }
        Command::Bench {
            model,
            tiny_only,
            out,
        } => {
            let smollm2 = if tiny_only {
                None
            } else {
                Some(rlcd::assets::resolve_model(&root, &model)?)
            };
            let opts = rlcd::model::bench::BenchOptions {
                smollm2,
                ..Default::default()
            };
            let rows =
                rlcd::model::bench::run_bench::<rlcd::model::Cpu>(&opts, &Default::default())?;
            println!(
                "{}",
                rlcd::model::bench::write_rows(&rows, &root.join(out))?
            );
        }
        Command::Readme => {
            let path = root.join("README.md");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let block = rlcd::recipe::reference::markdown();
            let updated = rlcd::recipe::reference::splice(&text, &block).with_context(|| {
                format!(
                    "{} has no generated recipe-key block; add the lines `{}` and `{}` where it belongs",
                    path.display(),
                    rlcd::recipe::reference::BEGIN,
                    rlcd::recipe::reference::END
                )
            })?;
            std::fs::write(&path, updated)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{}: recipe-key reference regenerated", path.display());
        }
        Command::FetchAssets { names } => {
            let progress = |m: &str| eprintln!("{m}");
            for name in names {
                if name == "prompts" {
                    rlcd::assets::fetch_prompts(&root, &progress)?;
                } else {
                    rlcd::assets::fetch(&root, &name, &progress)?;
                }
            }
        }
    }
    Ok(())
}
