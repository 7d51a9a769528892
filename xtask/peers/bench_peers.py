#!/usr/bin/env python3
"""Peer measurements for `cargo xtask bench`: PyTorch eager and llama.cpp.

    python bench_peers.py --tool {pytorch,llamacpp} --workload W --gguf PATH --threads N [--seed S]

Runs ONE measurement of ONE workload in this process: build the inputs, one
short warm-up run of the same workload (timed as warmup_s), then the timed run.
The last line of stdout is one JSON object:
    {"tool", "workload", "version", "tokens", "seconds", "warmup_s", "cpu_s",
     "peak_rss_mb", "threads", "load_s"}
(cpu_s: the process's CPU seconds during the timed run, every thread, user and
system; load_s, the model load time, is informative only). A workload that a tool
cannot run exits with status 3 and "unsupported: ..." on stderr.

Both tools come from requirements.txt beside this file (torch + transformers,
and llama-cpp-python, which compiles llama.cpp natively during pip install).

- pytorch: the GGUF is dequantized to float32 by transformers
  (`from_pretrained(dir, gguf_file=name)`) and run eagerly with SDPA attention;
  no torch.compile.
- train-256-lora: every weight frozen, rank-8 adapters (alpha 8, B zero) on
  the query and value projections written out in PyTorch (peft's LoRA
  computation without its wrappers), AdamW over the adapters only.
- score-256-products: the matrix products of a 256-token SmolLM2-135M forward
  pass alone (seven projections per layer and the tied output head, random
  weights), as rlcd's worker runs them; set beside score-256 it separates the
  products from the rest of a forward pass.
- llamacpp: llama-cpp-python's low-level ctypes API over libllama (its own
  quantized Q4_1 kernels on the GGUF as is); inference workloads only.

Decoding is greedy (argmax) and never stops early; both tools use the same
manual loop: one prefill forward over the prompts (logits of the last position
only) giving the first new token, then new-1 single-token forwards with the KV
cache. transformers' `generate` is not used: its per-step logits processors and
stopping criteria are overhead that an inference engine does not have.
"""
import argparse
import glob
import json
import os
import resource
import sys
import time

import numpy as np

VOCAB = 49152  # SmolLM2-135M
PROMPT_LEN, NEW_TOKENS, WARMUP_NEW_TOKENS = 32, 64, 4
SCORE_LEN = TRAIN_LEN = 256
TRAIN_STEPS = 2
WORLD = dict(vocab=1536, batch=8, seq=256, steps=5)
DECODE_BATCH = {"decode-b1": 1, "decode-b16": 16}
WORKLOADS = ("decode-b1", "decode-b16", "score-256", "score-256-products", "train-256",
             "train-256-lora", "world-s-pretrain")
# score-256-products: SmolLM2-135M's widths (model, key/value, MLP, layers, vocabulary).
SMOL = dict(d=576, kv=192, ff=1536, layers=30, vocab=49152)
# train-256-lora: the defaults of peft's LoraConfig for LLaMA models, as rlcd's.
LORA = dict(rank=8, alpha=8.0, targets=("q_proj", "v_proj"))


# CPU seconds of the last call to timed(): the process's every thread, user and system.
LAST_CPU_S = [float("nan")]


def timed(fn, *args):
    """Run fn(*args) and return (its result, wall seconds); its CPU seconds go to
    LAST_CPU_S."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    LAST_CPU_S[0] = time.process_time() - start_cpu
    return result, time.perf_counter() - start


def random_ids(rng, shape, vocab=VOCAB):
    return rng.integers(0, vocab, size=shape, dtype=np.int64)


# ---------------------------------------------------------------- PyTorch --

def add_lora(torch, model, seed):
    """Freezes every weight and puts a LoRA adapter on each target projection."""

    class Lora(torch.nn.Module):
        def __init__(self, base, rank, alpha, generator):
            super().__init__()
            self.base = base
            bound = 1.0 / base.in_features ** 0.5
            a = torch.empty(rank, base.in_features).uniform_(-bound, bound, generator=generator)
            self.a = torch.nn.Parameter(a)
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            self.scale = alpha / rank

        def forward(self, x):
            return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale

    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    for layer in model.model.layers:
        for name in LORA["targets"]:
            base = getattr(layer.self_attn, name)
            setattr(layer.self_attn, name, Lora(base, LORA["rank"], LORA["alpha"], generator))


def products(torch, rows):
    """The matrix products of one SmolLM2-135M forward pass over `rows` tokens and nothing
    else: every layer's seven projections and the tied output head (x @ E.T), on random
    weights. Returns (tokens, seconds, warmup_s, load_s)."""
    d, kv, ff = SMOL["d"], SMOL["kv"], SMOL["ff"]
    rand = lambda *shape: torch.randn(*shape) * 0.02
    layers, load_s = timed(lambda: [
        [rand(*s) for s in ((d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d))]
        for _ in range(SMOL["layers"])])
    head, x, h = rand(SMOL["vocab"], d), rand(rows, d), rand(rows, ff)

    @torch.inference_mode()
    def one_pass():
        for layer in layers:
            for w in layer:
                (h if w.shape[0] == ff else x) @ w
        x @ head.T

    _, warmup_s = timed(one_pass)
    _, seconds = timed(one_pass)
    return rows, seconds, warmup_s, load_s


def run_pytorch(args, rng):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF dequantization progress bar
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)
    version = f"torch {torch.__version__} / transformers {transformers.__version__}"

    def load_gguf():
        folder, name = os.path.split(os.path.abspath(args.gguf))
        return AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, attn_implementation="sdpa")

    @torch.inference_mode()
    def decode(model, prompts, new_tokens):
        """Greedy decoding; returns the [batch, new_tokens] generated ids."""
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=prompts, cache=cache, use_cache=True, logits_to_keep=1).logits
        generated = [logits[:, -1].argmax(-1, keepdim=True)]
        for _ in range(new_tokens - 1):
            logits = model(input_ids=generated[-1], cache=cache, use_cache=True).logits
            generated.append(logits[:, -1].argmax(-1, keepdim=True))
        return torch.cat(generated, dim=1)

    @torch.inference_mode()
    def score(model, ids):
        """Log-probability of each next token, [1, len - 1]."""
        logprobs = torch.log_softmax(model(input_ids=ids).logits, dim=-1)
        return logprobs[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]

    def train(model, opt, batches, clip):
        for ids in batches:
            model(input_ids=ids, labels=ids).loss.backward()  # labels are shifted inside
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return sum(ids.shape[0] * (ids.shape[1] - 1) for ids in batches)

    def tensor(shape, vocab=VOCAB):
        return torch.from_numpy(random_ids(rng, shape, vocab))

    w = args.workload
    if w == "score-256-products":
        return (version, *products(torch, SCORE_LEN))
    if w == "world-s-pretrain":
        config = LlamaConfig(
            vocab_size=WORLD["vocab"], hidden_size=128, intermediate_size=384,
            num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
            tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-5,
            max_position_embeddings=WORLD["seq"], attn_implementation="sdpa")
        model, load_s = timed(LlamaForCausalLM, config)
    else:
        model, load_s = timed(load_gguf)

    if w in DECODE_BATCH:
        model.eval()
        prompts = tensor((DECODE_BATCH[w], PROMPT_LEN))
        _, warmup_s = timed(decode, model, prompts, WARMUP_NEW_TOKENS)
        generated, seconds = timed(decode, model, prompts, NEW_TOKENS)
        tokens = generated.numel()
    elif w == "score-256":
        model.eval()
        ids = tensor((1, SCORE_LEN))
        _, warmup_s = timed(score, model, ids)
        _, seconds = timed(score, model, ids)
        tokens = SCORE_LEN
    elif w in ("train-256", "train-256-lora"):
        model.train()
        if w == "train-256-lora":
            add_lora(torch, model, args.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        batches = [tensor((1, TRAIN_LEN)) for _ in range(1 + TRAIN_STEPS)]
        _, warmup_s = timed(train, model, opt, batches[:1], None)
        tokens, seconds = timed(train, model, opt, batches[1:], None)
    else:  # world-s-pretrain
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        batches = [tensor((WORLD["batch"], WORLD["seq"]), WORLD["vocab"])
                   for _ in range(1 + WORLD["steps"])]
        _, warmup_s = timed(train, model, opt, batches[:1], 1.0)
        tokens, seconds = timed(train, model, opt, batches[1:], 1.0)
    return version, tokens, seconds, warmup_s, load_s


# -------------------------------------------------------------- llama.cpp --

class LlamaCpp:
    """A libllama context driven through llama-cpp-python's ctypes bindings."""

    def __init__(self, gguf, threads, n_seq, n_ctx):
        import llama_cpp as L
        self.L = L
        # Silence llama.cpp's log lines on stderr (keep a reference to the callback).
        self._quiet = L.llama_log_callback(lambda level, text, data: None)
        L.llama_log_set(self._quiet, None)
        L.llama_backend_init()
        self.model = L.llama_model_load_from_file(gguf.encode(), L.llama_model_default_params())
        if not self.model:
            sys.exit(f"llama.cpp could not load {gguf}")
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        cp = L.llama_context_default_params()
        cp.n_seq_max, cp.n_ctx = n_seq, n_ctx  # the KV cache is split among the sequences
        cp.n_batch = cp.n_ubatch = 512  # a whole b16 prefill (16 x 32) is one ubatch
        cp.n_threads = cp.n_threads_batch = threads
        self.ctx = L.llama_init_from_model(self.model, cp)
        self.batch = L.llama_batch_init(512, 0, 1)

    def clear(self):
        self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), True)

    def decode(self, tokens, positions, seqs, want_logits):
        """One llama_decode call; returns the logits of the flagged tokens, in order."""
        b = self.batch
        for i, (tok, pos, seq, out) in enumerate(zip(tokens, positions, seqs, want_logits)):
            b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = tok, pos, 1, seq, out
        b.n_tokens = len(tokens)
        if self.L.llama_decode(self.ctx, b) != 0:
            sys.exit("llama_decode failed")
        n_out = int(sum(want_logits))
        return np.ctypeslib.as_array(self.L.llama_get_logits(self.ctx), shape=(n_out, self.n_vocab))

    def generate(self, prompts, new_tokens):
        """Greedy decoding of [batch, len] prompts (one sequence id per row);
        returns the [batch, new_tokens] generated ids."""
        self.clear()
        n_seq, n_prompt = prompts.shape
        seqs = np.repeat(np.arange(n_seq), n_prompt)
        last = np.tile(np.arange(n_prompt) == n_prompt - 1, n_seq)
        logits = self.decode(prompts.ravel().tolist(), np.tile(np.arange(n_prompt), n_seq).tolist(),
                             seqs.tolist(), last.tolist())
        generated = [logits.argmax(-1)]
        for step in range(new_tokens - 1):
            logits = self.decode(generated[-1].tolist(), [n_prompt + step] * n_seq,
                                 list(range(n_seq)), [True] * n_seq)
            generated.append(logits.argmax(-1))
        return np.stack(generated, axis=1)

    def score(self, ids):
        """Logits at every position, then log-softmax (numpy) and next-token gather;
        returns the log-probability of each next token, [len - 1]."""
        self.clear()
        n = len(ids)
        logits = self.decode(ids.tolist(), list(range(n)), [0] * n, [True] * n)
        top = logits.max(-1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(-1))
        return logits[np.arange(n - 1), ids[1:]] - log_z[:-1]


def run_llamacpp(args, rng):
    import llama_cpp
    w = args.workload
    if w not in DECODE_BATCH and w != "score-256":
        print(f"unsupported: llama.cpp runs the decode and score-256 workloads only, not {w}",
              file=sys.stderr)
        sys.exit(3)
    libllama = glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libllama.so.*.*.*"))
    version = f"llama-cpp-python {llama_cpp.__version__} / {os.path.basename(libllama[0])}"
    if w in DECODE_BATCH:
        n_seq = DECODE_BATCH[w]
        # 128 KV cells per sequence hold the 32 prompt + 64 new tokens.
        engine, load_s = timed(LlamaCpp, args.gguf, args.threads, n_seq, n_seq * 128)
        prompts = random_ids(rng, (n_seq, PROMPT_LEN))
        _, warmup_s = timed(engine.generate, prompts, WARMUP_NEW_TOKENS)
        generated, seconds = timed(engine.generate, prompts, NEW_TOKENS)
        tokens = generated.size
    else:
        engine, load_s = timed(LlamaCpp, args.gguf, args.threads, 1, SCORE_LEN)
        ids = random_ids(rng, SCORE_LEN)
        _, warmup_s = timed(engine.score, ids)
        _, seconds = timed(engine.score, ids)
        tokens = SCORE_LEN
    return version, tokens, seconds, warmup_s, load_s


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tool", required=True, choices=("pytorch", "llamacpp"))
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--gguf", help="SmolLM2-135M-Instruct GGUF (not read by world-s-pretrain)")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.gguf is None and args.workload not in ("world-s-pretrain", "score-256-products"):
        p.error(f"--gguf is required for {args.workload}")
    rng = np.random.default_rng(args.seed)
    run = run_pytorch if args.tool == "pytorch" else run_llamacpp
    version, tokens, seconds, warmup_s, load_s = run(args, rng)
    print(json.dumps({
        "tool": args.tool, "workload": args.workload, "version": version,
        "tokens": tokens, "seconds": round(seconds, 6), "warmup_s": round(warmup_s, 6),
        "cpu_s": round(LAST_CPU_S[0], 6),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": args.threads, "load_s": round(load_s, 3),
    }))


if __name__ == "__main__":
    main()
