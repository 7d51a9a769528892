//! `cargo xtask`: project automation — sweeps over recipe grids, benchmarks, asset fetching,
//! and regenerating README.md's recipe-key reference from the schema.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod peers;

#[derive(Parser)]
#[command(name = "xtask", about = "rlcd project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Same as `rlcd sweep`: a recipe over a grid of overrides, one shard of it, or a merge.
    Sweep(Box<rlcd::sweep::args::SweepArgs>),
    /// Generation and training throughput of the model core on the CPU; writes results/bench/.
    Bench {
        /// Also benchmark this model: an asset name (`smollm2-135m`) or a GGUF path.
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// Only the tiny preset.
        #[arg(long, conflicts_with = "peers")]
        tiny_only: bool,
        /// Run the peer workloads (decoding, scoring, training, world-s pretraining) for rlcd,
        /// PyTorch eager and llama.cpp side by side; writes peers.md and peers.json. Creates a
        /// Python virtual environment under the user cache directory on first use.
        #[arg(long)]
        peers: bool,
        /// Repetitions of every peer measurement.
        #[arg(long, default_value_t = 3, requires = "peers")]
        reps: usize,
        /// Output directory.
        #[arg(long, default_value = "results/bench")]
        out: PathBuf,
    },
    /// One rlcd measurement of a peer workload in this process (run by `bench --peers`).
    #[command(hide = true)]
    BenchWorker {
        /// The workload.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(peers::WORKLOADS))]
        workload: String,
        /// The SmolLM2-135M GGUF.
        #[arg(long)]
        gguf: PathBuf,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
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

fn main() -> Result<()> {
    // The benchmark workers measure rlcd with the allocator settings its binary uses.
    rlcd::model::allocator::keep_freed_memory();
    let cli = Cli::parse();
    let root = std::env::current_dir()?;
    match cli.command {
        Command::Sweep(args) => {
            let run = rlcd::sweep::args::execute(&args, &root, &|name| std::env::var(name).ok())?;
            if let Some(jobs) = &run.emitted {
                for f in jobs.files() {
                    println!("{}", f.display());
                }
            }
            if run.cells > 0 {
                eprintln!("{} cells run; output in {}", run.cells, run.out.display());
            }
            print_tables(&run.tables)?;
        }
        Command::Bench {
            model,
            peers: true,
            reps,
            out,
            ..
        } => {
            let gguf = rlcd::assets::resolve_model(&root, &model)?;
            println!("{}", peers::run(&root, &gguf, reps, &root.join(out))?);
        }
        Command::BenchWorker {
            workload,
            gguf,
            seed,
        } => {
            let m = rlcd::model::on_pool(|| peers::run_rlcd(&workload, &gguf, seed))?;
            println!("{}", serde_json::to_string(&m)?);
        }
        Command::Bench {
            model,
            tiny_only,
            out,
            ..
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
            let rows = rlcd::model::on_pool(|| {
                rlcd::model::bench::run_bench::<rlcd::model::Cpu>(&opts, &Default::default())
            })?;
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
