//! Throughput benchmarks of the model engine: generation tokens/s (KV cache on and off) and
//! training tokens/s (forward + backward + AdamW), with warm-up timed separately, and the share
//! of the machine's cores the timed run kept busy.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::model::optim::AdamWConfig;
use burn::backend::Autodiff;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::llama::{Llama, LlamaConfig};
use super::load::load_llama_path;
use super::sampling::{GenerateOptions, generate_ids};
use crate::seed;

/// What to benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchOptions {
    /// Name of the backend, copied into every row.
    pub backend: String,
    /// SmolLM2-135M GGUF to benchmark as well (skipped when `None` or absent).
    pub smollm2: Option<PathBuf>,
    /// Batch sizes for generation.
    pub batches: Vec<usize>,
    /// Prompt length in tokens for generation.
    pub prompt_len: usize,
    /// New tokens per sequence.
    pub new_tokens: usize,
    /// Largest batch also measured without the KV cache on large models (recomputation is
    /// quadratic and slow; the tiny preset always runs every batch).
    pub recompute_max_batch: usize,
    /// Sequence length of training steps.
    pub train_seq: usize,
    /// Batch size of training steps.
    pub train_batch: usize,
    /// Measured training steps (after one warm-up step).
    pub train_steps: usize,
    /// Seed of the random prompts and sampling.
    pub seed: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        let smol = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("assets/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        Self {
            backend: "flex".into(),
            smollm2: Some(smol),
            batches: vec![1, 16],
            prompt_len: 32,
            new_tokens: 64,
            recompute_max_batch: 1,
            train_seq: 256,
            train_batch: 1,
            train_steps: 2,
            seed: 0,
        }
    }
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// Model name (`tiny`, `smollm2-135m`).
    pub model: String,
    /// Backend name.
    pub backend: String,
    /// `generate-cache`, `generate-recompute` or `train`.
    pub task: String,
    /// Sequences per batch.
    pub batch: usize,
    /// Prompt length (generation) or sequence length (training).
    pub seq: usize,
    /// Tokens produced (generation: new tokens; training: tokens trained on).
    pub tokens: usize,
    /// Measured seconds (warm-up excluded).
    pub seconds: f64,
    /// `tokens / seconds`.
    pub tokens_per_s: f64,
    /// Seconds of the warm-up run (compilation, allocation, caches).
    pub warmup_s: f64,
    /// CPU time of the measured run over its wall time, in percent (200 = two cores busy);
    /// NaN where the operating system does not report CPU time.
    #[serde(default = "not_reported")]
    pub cpu_percent: f64,
}

fn not_reported() -> f64 {
    f64::NAN
}

/// `n` rows of `len` token ids drawn uniformly from `0..vocab` with `seed`.
pub fn random_rows(n: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = seed::rng(seed);
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect()
}

/// A `[rows, len]` tensor of [`random_rows`].
fn random_tokens<B: Backend>(
    [rows, len]: [usize; 2],
    vocab: usize,
    seed: u64,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let data: Vec<i64> = random_rows(rows, len, vocab, seed)
        .into_iter()
        .flatten()
        .map(i64::from)
        .collect();
    Tensor::from_data(TensorData::new(data, [rows, len]), device)
}

/// Tokens processed in a timed run, and its seconds and the warm-up's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Tokens produced, scored or trained on in the timed run.
    pub tokens: usize,
    /// Seconds of the timed run.
    pub seconds: f64,
    /// Seconds of the warm-up run before it (allocation, caches, compilation).
    pub warmup_s: f64,
    /// CPU seconds of the timed run: this process, every thread, user and system time; NaN
    /// where the operating system does not report them.
    pub cpu_s: f64,
}

impl Timing {
    /// `tokens / seconds`.
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.seconds.max(1e-9)
    }

    /// CPU time over wall time of the timed run, in percent (200 = two cores busy throughout).
    pub fn cpu_percent(&self) -> f64 {
        cpu_percent(self.cpu_s, self.seconds)
    }
}

/// `cpu_s` CPU seconds over `seconds` of wall time, in percent (200 = two cores busy).
pub fn cpu_percent(cpu_s: f64, seconds: f64) -> f64 {
    100.0 * cpu_s / seconds.max(1e-9)
}

/// Wall time and this process's CPU time since it started, for one timed run.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch {
    wall: Instant,
    cpu_s: f64,
}

impl Stopwatch {
    /// Starts both clocks.
    pub fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu_s: process_cpu_s(),
        }
    }

    /// Wall seconds since the start.
    pub fn wall_s(&self) -> f64 {
        self.wall.elapsed().as_secs_f64()
    }

    /// The timed run that started at this stopwatch: `tokens`, its wall and CPU seconds so
    /// far, and `warmup_s` of the warm-up before it.
    pub fn timing(&self, tokens: usize, warmup_s: f64) -> Timing {
        Timing {
            tokens,
            seconds: self.wall_s(),
            warmup_s,
            cpu_s: process_cpu_s() - self.cpu_s,
        }
    }
}

/// User and system CPU seconds of this process so far, every thread included (`getrusage`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn process_cpu_s() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` writes one `rusage` into the pointer it is given, which points at
    // memory of that type; it reads nothing else of ours.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    if !ok {
        return f64::NAN;
    }
    // SAFETY: the call succeeded, so it filled the struct (which was zeroed before).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// User and system CPU seconds of this process so far: not reported on this platform.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn process_cpu_s() -> f64 {
    f64::NAN
}

/// Generation of `new_tokens` tokens (at `temperature`, 0 = greedy; never stopping early)
/// after `prompt_len` random prompt tokens for each of `batch` rows; the warm-up generates 4
/// tokens.
pub fn generation_rate<B: Backend>(
    model: &Llama<B>,
    [batch, prompt_len, new_tokens]: [usize; 3],
    temperature: f64,
    use_cache: bool,
    seed: u64,
) -> Result<Timing, ModelError> {
    let vocab = model.config().vocab_size;
    let decode = |_: &[u32]| String::new();
    let prompts = random_rows(batch, prompt_len, vocab, seed);
    let seeds: Vec<u64> = (0..batch as u64)
        .map(|i| seed::derive_index(seed, "bench", i))
        .collect();
    let opts = GenerateOptions {
        max_new_tokens: new_tokens,
        temperature,
        use_cache,
        ..GenerateOptions::default()
    };
    let warm = GenerateOptions {
        max_new_tokens: new_tokens.min(4),
        ..opts.clone()
    };
    let warm_up = Stopwatch::start();
    generate_ids(model, &prompts, &seeds, &warm, &decode)?;
    let warmup_s = warm_up.wall_s();
    let timed = Stopwatch::start();
    let out = generate_ids(model, &prompts, &seeds, &opts, &decode)?;
    Ok(timed.timing(out.iter().map(|g| g.token_ids.len()).sum(), warmup_s))
}

/// Scoring one random sequence of `seq` tokens: a forward pass, log-softmax over the
/// vocabulary and the log-probability of every next token, read back to the host.
pub fn scoring_rate<B: Backend>(
    model: &Llama<B>,
    seq: usize,
    seed: u64,
) -> Result<Timing, ModelError> {
    if seq < 2 {
        return Err(ModelError::Request(
            "scoring needs at least 2 tokens".into(),
        ));
    }
    let tokens = random_tokens::<B>([1, seq], model.config().vocab_size, seed, &model.device());
    let score = || -> Result<Vec<f32>, ModelError> {
        let mask = tokens.clone().greater_equal_elem(0);
        let logp = super::log_softmax(model.forward(tokens.clone(), mask)).narrow(1, 0, seq - 1);
        let next = tokens
            .clone()
            .narrow(1, 1, seq - 1)
            .reshape([1, seq - 1, 1]);
        logp.gather(2, next)
            .into_data()
            .to_vec::<f32>()
            .map_err(|e| ModelError::Data(format!("{e:?}")))
    };
    let warm_up = Stopwatch::start();
    score()?;
    let warmup_s = warm_up.wall_s();
    let timed = Stopwatch::start();
    score()?;
    Ok(timed.timing(seq, warmup_s))
}

/// Training steps of next-token cross-entropy on random `[batch, seq]` rows: forward,
/// backward and an AdamW step (lr 1e-4); one warm-up step, then `steps` timed ones.
pub fn training_rate<B: Backend>(
    model: Llama<Autodiff<B>>,
    batch: usize,
    seq: usize,
    steps: usize,
    seed: u64,
) -> Result<Timing, ModelError> {
    let cfg = model.config().clone();
    let (b, s) = (batch, seq.min(cfg.max_seq_len));
    if b == 0 || s < 2 {
        return Err(ModelError::Request(
            "training benchmark needs train_batch ≥ 1 and train_seq ≥ 2".into(),
        ));
    }
    let tokens = random_tokens::<Autodiff<B>>([b, s], cfg.vocab_size, seed, &model.device());
    let inputs = tokens.clone().narrow(1, 0, s - 1);
    let targets = tokens.narrow(1, 1, s - 1).reshape([b, s - 1, 1]);
    let mask = inputs.clone().greater_equal_elem(0);
    let mut optim = AdamWConfig::new().init::<Autodiff<B>, Llama<Autodiff<B>>>();
    let mut model = model;
    let mut step = |model: Llama<Autodiff<B>>| {
        let logp = super::log_softmax(model.forward(inputs.clone(), mask.clone()));
        let loss = -logp.gather(2, targets.clone()).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-4, model, grads)
    };
    let warm_up = Stopwatch::start();
    model = step(model);
    let warmup_s = warm_up.wall_s();
    let timed = Stopwatch::start();
    for _ in 0..steps {
        model = step(model);
    }
    drop(model);
    Ok(timed.timing(steps * b * (s - 1), warmup_s))
}

fn row(
    name: &str,
    opts: &BenchOptions,
    task: &str,
    batch: usize,
    seq: usize,
    t: Timing,
) -> BenchRow {
    BenchRow {
        model: name.into(),
        backend: opts.backend.clone(),
        task: task.into(),
        batch,
        seq,
        tokens: t.tokens,
        seconds: t.seconds,
        tokens_per_s: t.tokens_per_s(),
        warmup_s: t.warmup_s,
        cpu_percent: t.cpu_percent(),
    }
}

fn bench_generation<B: Backend>(
    name: &str,
    model: &Llama<B>,
    opts: &BenchOptions,
    full_recompute_batches: usize,
    rows: &mut Vec<BenchRow>,
) -> Result<(), ModelError> {
    for &batch in &opts.batches {
        for use_cache in [true, false] {
            if !use_cache && batch > full_recompute_batches {
                continue;
            }
            let shape = [batch, opts.prompt_len, opts.new_tokens];
            let t = generation_rate(model, shape, 1.0, use_cache, opts.seed)?;
            let task = if use_cache {
                "generate-cache"
            } else {
                "generate-recompute"
            };
            rows.push(row(name, opts, task, batch, opts.prompt_len, t));
        }
    }
    Ok(())
}

fn bench_training<B: Backend>(
    name: &str,
    model: Llama<Autodiff<B>>,
    opts: &BenchOptions,
    rows: &mut Vec<BenchRow>,
) -> Result<(), ModelError> {
    let seq = opts.train_seq.min(model.config().max_seq_len);
    let t = training_rate::<B>(
        model,
        opts.train_batch,
        seq,
        opts.train_steps,
        opts.seed ^ 1,
    )?;
    rows.push(row(name, opts, "train", opts.train_batch, seq, t));
    Ok(())
}

/// Runs the benchmarks for the tiny preset and, when its file exists, SmolLM2-135M.
pub fn run_bench<B: Backend>(
    opts: &BenchOptions,
    device: &B::Device,
) -> Result<Vec<BenchRow>, ModelError> {
    let mut rows = Vec::new();
    B::seed(device, opts.seed);
    let tiny_cfg = LlamaConfig::tiny();
    let tiny = tiny_cfg.init::<B>(device)?;
    bench_generation("tiny", &tiny, opts, usize::MAX, &mut rows)?;
    let tiny_ad = tiny_cfg.init::<Autodiff<B>>(device)?;
    bench_training::<B>("tiny", tiny_ad, opts, &mut rows)?;
    if let Some(path) = opts.smollm2.as_ref().filter(|p| p.exists()) {
        let smol = load_llama_path::<B>(path, device)?;
        bench_generation(
            "smollm2-135m",
            &smol,
            opts,
            opts.recompute_max_batch,
            &mut rows,
        )?;
        drop(smol);
        let smol_ad = load_llama_path::<Autodiff<B>>(path, device)?;
        bench_training::<B>("smollm2-135m", smol_ad, opts, &mut rows)?;
    }
    Ok(rows)
}

/// Formats rows as a Markdown table.
pub fn markdown(rows: &[BenchRow]) -> String {
    let mut out = String::from(
        "| model | backend | task | batch | seq | tokens | seconds | tokens/s | warm-up s | CPU % |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.3} | {:.1} | {:.3} | {:.0} |\n",
            r.model,
            r.backend,
            r.task,
            r.batch,
            r.seq,
            r.tokens,
            r.seconds,
            r.tokens_per_s,
            r.warmup_s,
            r.cpu_percent
        ));
    }
    out
}

/// Writes `rows` to `dir` as `bench.json`, `bench.csv` and `bench.md`; returns the Markdown
/// table.
pub fn write_rows(rows: &[BenchRow], dir: &Path) -> Result<String, ModelError> {
    let fail = |path: &Path, e: &dyn std::fmt::Display| {
        ModelError::Request(format!(
            "cannot write benchmark results to {}: {e}; check that the directory is writable",
            path.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, &e))?;
    let json = serde_json::to_string_pretty(rows).map_err(|e| fail(dir, &e))?;
    let mut csv = String::from(
        "model,backend,task,batch,seq,tokens,seconds,tokens_per_s,warmup_s,cpu_percent\n",
    );
    for r in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{:.6},{:.3},{:.6},{:.1}\n",
            r.model,
            r.backend,
            r.task,
            r.batch,
            r.seq,
            r.tokens,
            r.seconds,
            r.tokens_per_s,
            r.warmup_s,
            r.cpu_percent
        ));
    }
    let table = markdown(rows);
    for (name, text) in [
        ("bench.json", &json),
        ("bench.csv", &csv),
        ("bench.md", &table),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| fail(&path, &e))?;
    }
    Ok(table)
}
