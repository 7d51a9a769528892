//! `cargo xtask bench --peers`: the model core's workloads measured side by side with PyTorch
//! eager and llama.cpp on the same machine. Every measurement is one fresh process (so peak
//! RSS is its own); tools alternate within each repetition; the table reports the median
//! tokens/s over repetitions and rlcd's ratio to each peer. Nothing here asserts a speed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use rlcd::model::bench::{
    Stopwatch, Timing, generation_rate, random_rows, scoring_rate, training_rate,
};
use rlcd::model::load::load_llama_path;
use rlcd::model::{Cpu, LlamaConfig, LoraConfig};

/// The CPU backend with autodiff, for the training workloads.
type Ad = burn::backend::Autodiff<Cpu>;
use serde::{Deserialize, Serialize};

/// The workloads, in table order. A `-q8` workload is its base workload with rlcd's Q8_0
/// weights; peers run the base workload only (PyTorch in f32, llama.cpp on the GGUF's own
/// quantization).
pub const WORKLOADS: [&str; 10] = [
    "decode-b1",
    "decode-b1-q8",
    "decode-b16",
    "decode-b16-q8",
    "score-256",
    "score-256-q8",
    "score-256-products",
    "train-256",
    "train-256-lora",
    "world-s-pretrain",
];

/// The workload a `-q8` workload quantizes.
fn base(workload: &str) -> &str {
    workload.strip_suffix("-q8").unwrap_or(workload)
}
/// The tools, in the order they run within a repetition.
const TOOLS: [&str; 3] = ["rlcd", "pytorch", "llamacpp"];
/// Prompt and new tokens of the decoding workloads.
const PROMPT_LEN: usize = 32;
const NEW_TOKENS: usize = 64;
/// The world-s pretraining workload: vocabulary, rows per step, row length, timed steps.
const WORLD_VOCAB: usize = 1536;
const WORLD_BATCH: usize = 8;
const WORLD_SEQ: usize = 256;
const WORLD_STEPS: usize = 5;
/// Exit status of a peer that cannot run a workload.
const UNSUPPORTED: i32 = 3;

/// One measurement of one workload by one tool (the JSON line every worker prints last).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// `rlcd`, `pytorch` or `llamacpp`.
    pub tool: String,
    /// One of [`WORKLOADS`].
    pub workload: String,
    /// Version of the tool.
    pub version: String,
    /// Tokens produced, scored or trained on in the timed run.
    pub tokens: usize,
    /// Seconds of the timed run.
    pub seconds: f64,
    /// Seconds of the warm-up run.
    pub warmup_s: f64,
    /// CPU seconds of the timed run (the process's every thread, user and system); NaN where
    /// the tool could not tell.
    #[serde(default = "not_reported")]
    pub cpu_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mb: f64,
    /// Threads the tool was told to use.
    pub threads: usize,
}

fn not_reported() -> f64 {
    f64::NAN
}

impl Measurement {
    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.seconds.max(1e-9)
    }

    /// CPU time over wall time of the timed run, in percent (200 = two cores busy).
    fn cpu_percent(&self) -> f64 {
        rlcd::model::bench::cpu_percent(self.cpu_s, self.seconds)
    }
}

/// Runs one rlcd workload in this process and returns its measurement.
pub fn run_rlcd(workload: &str, gguf: &Path, seed: u64) -> Result<Measurement> {
    let device = Default::default();
    let quantize = workload.ends_with("-q8");
    let smol = || -> Result<_> {
        let model = load_llama_path::<Cpu>(gguf, &device)?;
        Ok(if quantize {
            model.quantize_q8()?
        } else {
            model
        })
    };
    let timing: Timing = match base(workload) {
        "decode-b1" | "decode-b16" => {
            let batch = if base(workload) == "decode-b1" { 1 } else { 16 };
            generation_rate(&smol()?, [batch, PROMPT_LEN, NEW_TOKENS], 0.0, true, seed)?
        }
        "score-256" => scoring_rate(&smol()?, 256, seed)?,
        "score-256-products" => forward_products(256, seed),
        "train-256" => {
            let model = load_llama_path::<Ad>(gguf, &device)?;
            training_rate::<Cpu>(model, 1, 256, 2, seed)?
        }
        "train-256-lora" => {
            let model =
                load_llama_path::<Ad>(gguf, &device)?.with_lora(&LoraConfig::default(), seed);
            training_rate::<Cpu>(model, 1, 256, 2, seed)?
        }
        "world-s-pretrain" => world_pretrain(seed)?,
        other => bail!(
            "unknown workload {other:?}; one of {}",
            WORKLOADS.join(", ")
        ),
    };
    Ok(Measurement {
        tool: "rlcd".into(),
        workload: workload.into(),
        version: format!("rlcd {} (burn 0.21.0, Flex)", env!("CARGO_PKG_VERSION")),
        tokens: timing.tokens,
        seconds: timing.seconds,
        warmup_s: timing.warmup_s,
        cpu_s: timing.cpu_s,
        peak_rss_mb: peak_rss_mb(),
        threads: cores(),
    })
}

/// The matrix products of one SmolLM2-135M forward pass over `rows` tokens and nothing else:
/// every layer's seven projections and the tied output head, on random weights, through the
/// same calls the decoder makes on the CPU backend (`x · W`, and `x · Eᵀ` for the head). Set
/// beside `score-256`, it tells the products' share of a forward pass from the rest.
fn forward_products(rows: usize, seed: u64) -> Timing {
    use burn::tensor::{Distribution, Tensor};
    let device = Default::default();
    <Cpu as burn::tensor::backend::Backend>::seed(&device, seed);
    let rand = |shape: [usize; 2]| {
        Tensor::<Cpu, 2>::random(shape, Distribution::Normal(0.0, 0.02), &device)
    };
    let c = LlamaConfig::smollm2_135m();
    let (d, q, kv, ff) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
    // Every layer's q, k, v, o, gate, up and down weights, then the tied head read as `Eᵀ`.
    let mut weights: Vec<Tensor<Cpu, 2>> = (0..c.n_layers)
        .flat_map(|_| [[d, q], [d, kv], [d, kv], [q, d], [d, ff], [d, ff], [ff, d]].map(rand))
        .collect();
    weights.push(rand([c.vocab_size, d]).transpose());
    // One input per width a product reads: the model width, the attention output, the MLP.
    let inputs = [d, q, ff].map(|k| rand([rows, k]));
    let input = |w: &Tensor<Cpu, 2>| {
        inputs
            .iter()
            .find(|x| x.dims()[1] == w.dims()[0])
            .expect("every weight reads one of the widths")
            .clone()
    };
    let pass = || {
        for w in &weights {
            std::hint::black_box(input(w).matmul(w.clone()));
        }
    };
    let warm_up = Stopwatch::start();
    pass();
    let warmup_s = warm_up.wall_s();
    let timed = Stopwatch::start();
    pass();
    timed.timing(rows, warmup_s)
}

/// Pretraining steps of a fresh world-s model on random rows, through the world pretraining
/// stage's own loop (AdamW, schedule, gradient clipping): one warm-up step, then
/// [`WORLD_STEPS`] timed ones.
fn world_pretrain(seed: u64) -> Result<Timing> {
    use rlcd::recipe::pretrain::PretrainConfig;
    use rlcd::stages::pretrain::engine::pretrain;
    let device = Default::default();
    let config = LlamaConfig::world_s(WORLD_VOCAB);
    let model = rlcd::model::seeded_init::<Ad, _>(&device, seed, || config.init::<Ad>(&device))?;
    let rows = random_rows(64, WORLD_SEQ, WORLD_VOCAB, seed);
    let base = PretrainConfig::for_preset("world-s").context("world-s has a pretraining preset")?;
    let cfg = |steps| PretrainConfig {
        steps,
        batch_size: WORLD_BATCH,
        seq_len: WORLD_SEQ,
        ..base.clone()
    };
    let warm_up = Stopwatch::start();
    let (model, _) = pretrain(model, &rows, 0, &cfg(1), seed, &mut |_, _| {})?;
    let warmup_s = warm_up.wall_s();
    let timed = Stopwatch::start();
    let (_, log) = pretrain(model, &rows, 0, &cfg(WORLD_STEPS), seed, &mut |_, _| {})?;
    Ok(timed.timing(log.tokens, warmup_s))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Peak resident memory of this process (`VmHWM`), MiB; 0 where `/proc` does not tell.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Where the peers' virtual environment lives: `$RLCD_CACHE_DIR`, else `$XDG_CACHE_HOME/rlcd`,
/// else `~/.cache/rlcd`, with `peers-venv` below it.
fn venv_dir() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = var("RLCD_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("rlcd")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/rlcd")))
        .context("no cache directory: set RLCD_CACHE_DIR")?;
    Ok(cache.join("peers-venv"))
}

/// The peers' Python: a virtual environment holding `xtask/peers/requirements.txt`, created or
/// refreshed when its requirement lines (comments aside) changed since it was built.
fn peers_python(root: &Path) -> Result<PathBuf> {
    let reqs = root.join("xtask/peers/requirements.txt");
    let text = std::fs::read_to_string(&reqs)
        .with_context(|| format!("cannot read {}", reqs.display()))?;
    let wanted: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let venv = venv_dir()?;
    let stamp = venv.join("rlcd-requirements.txt");
    let python = venv.join("bin/python");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    eprintln!(
        "peers: installing {} into {} (once; several minutes)",
        reqs.display(),
        venv.display()
    );
    let status = |cmd: &mut Command| -> Result<()> {
        let what = format!("{cmd:?}");
        let st = cmd.status().with_context(|| format!("cannot run {what}"))?;
        if !st.success() {
            bail!("{what} failed ({st}); the peers need Python 3 with venv and pip");
        }
        Ok(())
    };
    status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    status(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&reqs),
    )?;
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(python)
}

/// Runs one measurement in a fresh process; `None` when the tool cannot run the workload.
fn measure(
    tool: &str,
    workload: &str,
    gguf: &Path,
    root: &Path,
    python: &Path,
    seed: u64,
) -> Result<Option<Measurement>> {
    let threads = cores();
    let mut cmd = if tool == "rlcd" {
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("bench-worker");
        c
    } else {
        let mut c = Command::new(python);
        c.arg(root.join("xtask/peers/bench_peers.py")).args([
            "--tool",
            tool,
            "--threads",
            &threads.to_string(),
        ]);
        c
    };
    cmd.args(["--workload", workload, "--seed", &seed.to_string()])
        .arg("--gguf")
        .arg(gguf);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start the {tool} worker"))?;
    if out.status.code() == Some(UNSUPPORTED) {
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{tool} {workload} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    let m: Measurement = serde_json::from_str(last)
        .with_context(|| format!("{tool} {workload} printed no measurement: {last:?}"))?;
    Ok(Some(m))
}

/// The machine a table was measured on: CPU model, SIMD features, cores, threads.
pub fn machine() -> String {
    rlcd::machine::Machine::detect().summary()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs every workload for every tool `reps` times (tools alternating) and writes
/// `peers.json` (every measurement) and `peers.md` (the table) to `out`; returns the table.
pub fn run(root: &Path, gguf: &Path, reps: usize, out: &Path) -> Result<String> {
    let python = peers_python(root)?;
    let mut all: Vec<Measurement> = Vec::new();
    for rep in 0..reps {
        for workload in WORKLOADS {
            for tool in TOOLS
                .into_iter()
                .filter(|t| *t == "rlcd" || base(workload) == workload)
            {
                eprintln!("peers: repetition {}/{reps}: {tool} {workload}", rep + 1);
                if let Some(m) = measure(tool, workload, gguf, root, &python, rep as u64)? {
                    all.push(m);
                }
            }
        }
    }
    let table = table(&all, reps);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("peers.json"), serde_json::to_string_pretty(&all)?)?;
    std::fs::write(out.join("peers.md"), &table)?;
    Ok(table)
}

fn table(all: &[Measurement], reps: usize) -> String {
    let of = |tool: &str, workload: &str| -> Vec<&Measurement> {
        all.iter()
            .filter(|m| m.tool == tool && m.workload == workload)
            .collect()
    };
    let rate = |ms: &[&Measurement]| median(ms.iter().map(|m| m.tokens_per_s()).collect());
    let rss = |ms: &[&Measurement]| median(ms.iter().map(|m| m.peak_rss_mb).collect());
    let cpu = |ms: &[&Measurement]| median(ms.iter().map(|m| m.cpu_percent()).collect());
    let cell = |v: f64, digits: usize| {
        if v.is_nan() {
            "–".to_string()
        } else {
            format!("{v:.digits$}")
        }
    };
    let versions: Vec<String> = TOOLS
        .iter()
        .filter_map(|t| all.iter().find(|m| m.tool == *t))
        .map(|m| format!("{}: {}", m.tool, m.version))
        .collect();
    let mut s = format!(
        "Machine: {}. Threads per tool: {}. Median of {reps} repetitions; each measurement is \
         a fresh process, tools alternating. CPU % is the process's CPU time (every thread, \
         user and system) over the wall time of the timed run: 100 per core kept busy. \
         Versions: {}.\n\n\
         | workload | rlcd tok/s | PyTorch tok/s | llama.cpp tok/s | rlcd / PyTorch | rlcd / llama.cpp | rlcd CPU % | PyTorch CPU % | llama.cpp CPU % | rlcd peak RSS MiB | PyTorch peak RSS MiB | llama.cpp peak RSS MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        machine(),
        cores(),
        versions.join("; ")
    );
    for w in WORKLOADS {
        let (r, p, l) = (
            of("rlcd", w),
            of("pytorch", base(w)),
            of("llamacpp", base(w)),
        );
        let (rr, pr, lr) = (rate(&r), rate(&p), rate(&l));
        s.push_str(&format!(
            "| {w} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(rr, 1),
            cell(pr, 1),
            cell(lr, 1),
            cell(rr / pr, 2) + if pr.is_nan() { "" } else { "×" },
            cell(rr / lr, 2) + if lr.is_nan() { "" } else { "×" },
            cell(cpu(&r), 0),
            cell(cpu(&p), 0),
            cell(cpu(&l), 0),
            cell(rss(&r), 0),
            cell(rss(&p), 0),
            cell(rss(&l), 0),
        ));
    }
    s
}
