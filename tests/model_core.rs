//! Always-on checks of the decoder, its KV cache, sampling, scoring and GGUF round trips on tiny
//! random models. Each backend-generic test runs on Flex, and on CUDA with `--features cuda`.

mod common;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use common::gguf_writer::to_gguf;
use common::max_diff;
use rlcd::model::gguf::GgufFile;
use rlcd::model::llama::{Llama, LlamaConfig, RopeStyle, ScalarHead};
use rlcd::model::load::{load_checkpoint, load_llama, load_llama_with_style, save_checkpoint};
use rlcd::model::sampling::{
    FinishReason, GenerateOptions, continuation_logprob, generate_ids, next_token_logits, pad_batch,
};
use rlcd::model::tokenizer::Tokenizer;
use rlcd::model::{GenerationRequest, Lm, Truncate};

fn model<B: Backend>(config: LlamaConfig) -> Llama<B> {
    let device = Default::default();
    B::seed(&device, 7);
    config.init::<B>(&device).expect("valid config")
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

fn logits<B: Backend>(m: &Llama<B>, rows: &[Vec<u32>]) -> Vec<f32> {
    let width = rows.iter().map(Vec::len).max().unwrap();
    let (t, mask) = pad_batch::<B>(rows, width, true, 0, &m.device());
    host(m.forward(t, mask))
}

fn decode(ids: &[u32]) -> String {
    ids.iter()
        .map(|&t| char::from(b'a' + (t % 26) as u8))
        .collect()
}

fn prompts() -> Vec<Vec<u32>> {
    vec![
        vec![5, 9, 14, 3, 77, 20, 41],
        vec![11, 2],
        vec![
            60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 1, 2,
        ],
    ]
}

fn sampled_opts() -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: 24,
        temperature: 1.0,
        top_p: 0.9,
        ..GenerateOptions::default()
    }
}

/// A sharper random model: a scaled-up untied head makes next-token distributions peaked, so
/// greedy choices are far from ties.
fn sharp<B: Backend>() -> Llama<B> {
    let mut m = model::<B>(LlamaConfig {
        tied_embeddings: false,
        ..LlamaConfig::tiny()
    });
    let head = m.lm_head.as_mut().expect("untied head");
    head.weight = Param::from_tensor(head.weight.val() * 30.0);
    m
}

fn kv_cache_greedy_matches_recompute<B: Backend>() {
    let m = sharp::<B>();
    let seeds = [1, 2, 3];
    // 70 new tokens cross the 64-slot attention bucket of the cache.
    let opts = GenerateOptions {
        max_new_tokens: 70,
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let cached = generate_ids(&m, &prompts(), &seeds, &opts, &decode).unwrap();
    let full = generate_ids(
        &m,
        &prompts(),
        &seeds,
        &GenerateOptions {
            use_cache: false,
            ..opts.clone()
        },
        &decode,
    )
    .unwrap();
    for (a, b) in cached.iter().zip(&full) {
        assert_eq!(a.token_ids.len(), 70);
        assert_eq!(a.token_ids, b.token_ids);
        assert!(max_diff(&a.logprobs, &b.logprobs) < 1e-3);
        assert_eq!(a.finish_reason, FinishReason::Length);
    }
    // Greedy decoding of a sharp model is not constant: the test can tell tokens apart.
    assert!(
        cached[0]
            .token_ids
            .iter()
            .any(|&t| t != cached[0].token_ids[0])
    );
}

fn kv_cache_sampled_matches_recompute<B: Backend>() {
    let m = model::<B>(LlamaConfig::tiny());
    let seeds = [10, 20, 30];
    let opts = sampled_opts();
    let cached = generate_ids(&m, &prompts(), &seeds, &opts, &decode).unwrap();
    let full = generate_ids(
        &m,
        &prompts(),
        &seeds,
        &GenerateOptions {
            use_cache: false,
            ..opts.clone()
        },
        &decode,
    )
    .unwrap();
    for (a, b) in cached.iter().zip(&full) {
        assert_eq!(a.token_ids, b.token_ids);
        assert!(max_diff(&a.logprobs, &b.logprobs) < 1e-3);
    }
    let other_seeds = generate_ids(&m, &prompts(), &[11, 21, 31], &opts, &decode).unwrap();
    assert_ne!(
        cached[0].token_ids, other_seeds[0].token_ids,
        "seeds must matter"
    );
}

fn batched_matches_one_by_one<B: Backend>() {
    let m = model::<B>(LlamaConfig::tiny());
    let seeds = [4, 5, 6];
    let opts = sampled_opts();
    let batch = generate_ids(&m, &prompts(), &seeds, &opts, &decode).unwrap();
    for (i, p) in prompts().iter().enumerate() {
        let alone = generate_ids(&m, std::slice::from_ref(p), &[seeds[i]], &opts, &decode).unwrap();
        assert_eq!(alone[0].token_ids, batch[i].token_ids, "prompt {i}");
        assert!(max_diff(&alone[0].logprobs, &batch[i].logprobs) < 1e-4);
        assert_eq!(alone[0].text, batch[i].text);
    }
    // Reordering the batch does not change any sequence either.
    let rev_prompts: Vec<_> = prompts().into_iter().rev().collect();
    let rev = generate_ids(&m, &rev_prompts, &[6, 5, 4], &opts, &decode).unwrap();
    assert_eq!(rev[0].token_ids, batch[2].token_ids);
}

fn padding_does_not_change_logits<B: Backend>() {
    let m = model::<B>(LlamaConfig::tiny());
    let device = m.device();
    let p = vec![3u32, 8, 13, 21, 34, 55];
    let v = m.config().vocab_size;
    let alone = logits(&m, std::slice::from_ref(&p));
    // Left padding (in a batch with a longer row) and right padding.
    let long = vec![1u32; 11];
    let left = logits(&m, &[p.clone(), long]);
    let left_row = &left[5 * v..11 * v];
    assert!(max_diff(&alone, left_row) < 1e-4);
    let (t, mask) = pad_batch::<B>(std::slice::from_ref(&p), 10, false, 0, &device);
    let right = host(m.forward(t, mask));
    assert!(max_diff(&alone, &right[..6 * v]) < 1e-4);
    // next_token_logits equals the last position of the full forward.
    let next = host(next_token_logits(&m, &[p.clone(), vec![7, 7]]).unwrap());
    assert!(max_diff(&next[..v], &alone[5 * v..]) < 1e-4);
    // A different token before does change the logits (positions and content matter).
    let changed = logits(&m, &[vec![4u32, 8, 13, 21, 34, 55]]);
    assert!(max_diff(&alone[5 * v..], &changed[5 * v..]) > 1e-5);
}

fn continuation_logprob_matches_sampled<B: Backend>() {
    let m = model::<B>(LlamaConfig::tiny());
    let gens = generate_ids(&m, &prompts(), &[7, 8, 9], &sampled_opts(), &decode).unwrap();
    let conts: Vec<Vec<u32>> = gens.iter().map(|g| g.token_ids.clone()).collect();
    let scores = continuation_logprob(&m, &prompts(), &conts).unwrap();
    let sums = host(scores.sum);
    let means = host(scores.mean);
    for (i, g) in gens.iter().enumerate() {
        let want: f32 = g.logprobs.iter().sum();
        assert!(
            (sums[i] - want).abs() < 1e-3,
            "row {i}: {} vs {want}",
            sums[i]
        );
        assert!((means[i] - want / g.logprobs.len() as f32).abs() < 1e-3);
    }
}

fn gguf_round_trip_and_rope_styles<B: Backend>() {
    let device = Default::default();
    for (arch, config) in [
        ("llama", LlamaConfig::tiny()),
        (
            "qwen2",
            LlamaConfig {
                qkv_bias: true,
                tied_embeddings: false,
                ..LlamaConfig::tiny()
            },
        ),
    ] {
        let mut m = model::<B>(config);
        if arch == "qwen2" {
            // Non-zero biases so that their permutation and loading are exercised.
            for layer in &mut m.layers {
                for l in [&mut layer.attn.wq, &mut layer.attn.wk, &mut layer.attn.wv] {
                    let n = l.weight.dims()[1];
                    let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 0.3).collect();
                    l.bias = Some(Param::from_tensor(Tensor::from_data(
                        TensorData::new(b, [n]),
                        &device,
                    )));
                }
            }
        }
        let rows = prompts();
        let want = logits(&m, &rows);
        let bytes = to_gguf(&m, arch).unwrap().to_bytes();
        let g = GgufFile::from_bytes(bytes, "tiny.gguf").unwrap();
        let stored = load_llama::<B>(&g, &device).unwrap();
        let expected_style = if arch == "llama" {
            RopeStyle::Adjacent
        } else {
            RopeStyle::HalfSplit
        };
        assert_eq!(stored.config().rope_style, expected_style);
        assert_eq!(stored.config().tied_embeddings, arch == "llama");
        assert!(
            max_diff(&want, &logits(&stored, &rows)) < 1e-5,
            "{arch} as stored"
        );
        let half = load_llama_with_style::<B>(&g, RopeStyle::HalfSplit, &device).unwrap();
        assert!(
            max_diff(&want, &logits(&half, &rows)) < 1e-5,
            "{arch} half-split"
        );
        // Running stored weights with the other convention changes the output.
        if arch == "llama" {
            let wrong = stored.set_rope_style(RopeStyle::HalfSplit);
            assert!(max_diff(&want, &logits(&wrong, &rows)) > 1e-4);
        } else {
            assert!(load_llama_with_style::<B>(&g, RopeStyle::Adjacent, &device).is_err());
        }
    }
}

fn gqa_equals_repeated_kv_heads<B: Backend>() {
    let gqa = model::<B>(LlamaConfig::tiny());
    let c = gqa.config().clone();
    assert!(c.n_kv_heads < c.n_heads);
    let group = c.n_heads / c.n_kv_heads;
    let mha_cfg = LlamaConfig {
        n_kv_heads: c.n_heads,
        ..c.clone()
    };
    let mut mha = model::<B>(mha_cfg);
    mha.embed = gqa.embed.clone();
    mha.norm = gqa.norm.clone();
    for (dst, src) in mha.layers.iter_mut().zip(&gqa.layers) {
        let mut new = src.clone();
        for (d, s) in [
            (&mut new.attn.wk, &src.attn.wk),
            (&mut new.attn.wv, &src.attn.wv),
        ] {
            // [d_model, kv·hd] → [d_model, h·hd]: query head j reads kv head j / group.
            let heads: Vec<Tensor<B, 2>> = (0..c.n_heads)
                .map(|j| {
                    s.weight
                        .val()
                        .narrow(1, (j / group) * c.head_dim, c.head_dim)
                })
                .collect();
            d.weight = Param::from_tensor(Tensor::cat(heads, 1));
        }
        *dst = new;
    }
    let rows = prompts();
    assert!(max_diff(&logits(&gqa, &rows), &logits(&mha, &rows)) < 1e-5);
}

fn tied_equals_untied_copy<B: Backend>() {
    let tied = model::<B>(LlamaConfig::tiny());
    let mut untied = model::<B>(LlamaConfig {
        tied_embeddings: false,
        ..LlamaConfig::tiny()
    });
    untied.embed = tied.embed.clone();
    untied.layers = tied.layers.clone();
    untied.norm = tied.norm.clone();
    let head = untied.lm_head.as_mut().unwrap();
    head.weight = Param::from_tensor(tied.embed.weight.val().transpose());
    let rows = prompts();
    assert!(max_diff(&logits(&tied, &rows), &logits(&untied, &rows)) < 1e-5);
    assert!(tied.config().num_params() < untied.config().num_params());
    assert_eq!(
        untied.config().num_params() - tied.config().num_params(),
        tied.config().vocab_size * tied.config().d_model
    );
}

fn qkv_bias_is_applied<B: Backend>() {
    let device = Default::default();
    let plain = model::<B>(LlamaConfig::tiny());
    let mut biased = model::<B>(LlamaConfig {
        qkv_bias: true,
        ..LlamaConfig::tiny()
    });
    biased.embed = plain.embed.clone();
    biased.norm = plain.norm.clone();
    for (dst, src) in biased.layers.iter_mut().zip(&plain.layers) {
        let mut new = src.clone();
        for l in [&mut new.attn.wq, &mut new.attn.wk, &mut new.attn.wv] {
            let n = l.weight.dims()[1];
            l.bias = Some(Param::from_tensor(Tensor::zeros([n], &device)));
        }
        *dst = new;
    }
    let rows = prompts();
    let base = logits(&plain, &rows);
    assert!(
        max_diff(&base, &logits(&biased, &rows)) < 1e-6,
        "zero bias = no bias"
    );
    let layer = &mut biased.layers[0].attn.wq;
    let n = layer.weight.dims()[1];
    layer.bias = Some(Param::from_tensor(Tensor::ones([n], &device)));
    assert!(
        max_diff(&base, &logits(&biased, &rows)) > 1e-4,
        "a bias changes the output"
    );
    assert_eq!(
        biased.config().num_params() - plain.config().num_params(),
        LlamaConfig::tiny().n_layers * (biased.config().q_dim() + 2 * biased.config().kv_dim())
    );
}

fn scalar_head_reads_last_real_token<B: Backend>() {
    let device = Default::default();
    let m = model::<B>(LlamaConfig::tiny());
    let head = ScalarHead::new(m);
    let p = vec![5u32, 6, 7, 8];
    let (t1, m1) = pad_batch::<B>(std::slice::from_ref(&p), 4, true, 0, &device);
    let alone = host(head.forward(t1, m1));
    let (t2, m2) = pad_batch::<B>(&[p.clone(), vec![1; 9]], 9, true, 0, &device);
    let left = host(head.forward(t2, m2));
    let (t3, m3) = pad_batch::<B>(&[p.clone(), vec![1; 9]], 9, false, 0, &device);
    let right = host(head.forward(t3, m3));
    assert!((alone[0] - left[0]).abs() < 1e-5);
    assert!((alone[0] - right[0]).abs() < 1e-5);
    assert!(
        (left[0] - left[1]).abs() > 1e-7,
        "different texts score differently"
    );
    let bias = host(head.score.bias.as_ref().unwrap().val());
    assert_eq!(bias, vec![0.0]);
}

fn checkpoint_round_trip<B: Backend>() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let m = model::<B>(LlamaConfig {
        qkv_bias: true,
        tied_embeddings: false,
        rope_style: RopeStyle::Adjacent,
        ..LlamaConfig::tiny()
    });
    save_checkpoint(&m, dir.path()).unwrap();
    let back = load_checkpoint::<B>(dir.path(), &device).unwrap();
    assert_eq!(back.config(), m.config());
    let rows = prompts();
    assert!(max_diff(&logits(&m, &rows), &logits(&back, &rows)) < 1e-6);
    let err = load_checkpoint::<B>(&dir.path().join("missing"), &device).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}

fn stop_eos_and_banned<B: Backend>() {
    let m = sharp::<B>();
    let greedy = GenerateOptions {
        max_new_tokens: 30,
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let base = generate_ids(&m, &prompts(), &[1, 2, 3], &greedy, &decode).unwrap();
    let first = base[0].token_ids[0];
    // Banning the greedy choice changes it, everywhere in the output.
    let banned = generate_ids(
        &m,
        &prompts(),
        &[1, 2, 3],
        &GenerateOptions {
            banned_ids: vec![first],
            ..greedy.clone()
        },
        &decode,
    )
    .unwrap();
    assert!(banned.iter().all(|g| !g.token_ids.contains(&first)));
    // EOS: declaring the 3rd greedy token an EOS stops there, and it is kept in the ids only.
    let eos = base[0].token_ids[2];
    let stopped = generate_ids(
        &m,
        &prompts(),
        &[1, 2, 3],
        &GenerateOptions {
            eos_ids: vec![eos],
            ..greedy.clone()
        },
        &decode,
    )
    .unwrap();
    let cut = base[0].token_ids.iter().position(|&t| t == eos).unwrap();
    assert_eq!(stopped[0].finish_reason, FinishReason::Eos);
    assert_eq!(stopped[0].token_ids, base[0].token_ids[..=cut].to_vec());
    assert_eq!(stopped[0].text, decode(&base[0].token_ids[..cut]));
    // Stop string: the text of tokens 3..5 of the greedy output.
    let full_text = decode(&base[1].token_ids);
    let stop = full_text[3..5].to_string();
    let stopped = generate_ids(
        &m,
        &prompts(),
        &[1, 2, 3],
        &GenerateOptions {
            stop: vec![stop.clone()],
            ..greedy.clone()
        },
        &decode,
    )
    .unwrap();
    assert_eq!(stopped[1].finish_reason, FinishReason::Stop);
    let at = full_text.find(&stop).unwrap();
    assert_eq!(stopped[1].text, full_text[..at]);
    assert!(stopped[1].token_ids.len() <= 5);
    // Invalid requests are errors, not panics.
    assert!(generate_ids(&m, &[vec![]], &[1], &greedy, &decode).is_err());
    assert!(generate_ids(&m, &[vec![1000]], &[1], &greedy, &decode).is_err());
    assert!(generate_ids(&m, &[vec![1]], &[1, 2], &greedy, &decode).is_err());
    let too_long = GenerateOptions {
        max_new_tokens: 10_000,
        ..greedy
    };
    assert!(generate_ids(&m, &[vec![1]], &[1], &too_long, &decode).is_err());
}

struct GradCheck<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    missing: Vec<String>,
    count: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradCheck<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.count += 1;
        let nonzero = param
            .grad(self.grads)
            .map(|g| g.abs().sum().into_scalar().elem::<f32>() > 0.0);
        if nonzero != Some(true) {
            self.missing
                .push(format!("{:?} {:?}", param.id, param.dims()));
        }
    }
}

fn gradients_reach_every_parameter<B: AutodiffBackend>() {
    let device = Default::default();
    for config in [
        LlamaConfig::tiny(),
        LlamaConfig {
            qkv_bias: true,
            tied_embeddings: false,
            rope_style: RopeStyle::Adjacent,
            ..LlamaConfig::tiny()
        },
    ] {
        let m = model::<B>(config.clone());
        // Every vocabulary row is either an input or a target, so every embedding row moves.
        let v = config.vocab_size as u32;
        let prompts: Vec<Vec<u32>> = (0..4)
            .map(|r| (0..24).map(|j| (r * 24 + j) % v).collect())
            .collect();
        let conts: Vec<Vec<u32>> = (0..4)
            .map(|r| (0..6).map(|j| (r * 7 + j * 5) % v).collect())
            .collect();
        let scores = continuation_logprob(&m, &prompts, &conts).unwrap();
        let loss = -scores.mean.mean();
        let grads = loss.backward();
        let mut check = GradCheck::<B> {
            grads: &grads,
            missing: Vec::new(),
            count: 0,
        };
        m.visit(&mut check);
        assert!(check.count >= 2 + config.n_layers * 9);
        assert!(
            check.missing.is_empty(),
            "no gradient for {:?}",
            check.missing
        );

        // The scalar head's gradients reach the trunk and the head.
        let head = ScalarHead::new(model::<B>(LlamaConfig::tiny()));
        let (t, mask) = pad_batch::<B>(&prompts, 24, true, 0, &device);
        let value = head.forward(t, mask).sum();
        let grads = value.backward();
        let g = head.score.weight.grad(&grads).expect("head gradient");
        assert!(host(g.abs().sum())[0] > 0.0);
        let g = head.trunk.layers[0]
            .mlp
            .up
            .weight
            .grad(&grads)
            .expect("trunk gradient");
        assert!(host(g.abs().sum())[0] > 0.0);
    }
}

/// A prompt longer than the context leaves it: `Left` generates exactly what the prompt's
/// BOS and last tokens generate; `Error` refuses with the lengths.
fn left_truncation_keeps_bos_and_the_end<B: Backend>() {
    let m = model::<B>(LlamaConfig {
        max_seq_len: 24,
        ..LlamaConfig::tiny()
    });
    let words: Vec<String> = (0..80).map(|i| format!("w{i}")).collect();
    let tokenizer = Tokenizer::word_level(&words, &["<|bos|>", "<|eos|>", "<|pad|>"]).unwrap();
    let lm = Lm::new(m, tokenizer).unwrap();
    let long: Vec<&str> = words.iter().take(30).map(String::as_str).collect();
    let request = |prompt: String| GenerationRequest { prompt, seed: 5 };
    let opts = GenerateOptions {
        max_new_tokens: 8,
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let full = format!("<|bos|> {}", long.join(" "));
    // 16 tokens of room: BOS and the last 15 words.
    let kept = format!("<|bos|> {}", long[15..].join(" "));
    assert_eq!(
        lm.encode_prompt(&full, 16, Truncate::Left).unwrap(),
        lm.encode(&kept).unwrap()
    );
    let cut = lm.generate(&[request(full.clone())], &opts).unwrap();
    let by_hand = lm.generate(&[request(kept)], &opts).unwrap();
    assert_eq!(cut[0].token_ids, by_hand[0].token_ids);
    assert_eq!(cut[0].token_ids.len(), 8);
    let strict = GenerateOptions {
        truncate: Truncate::Error,
        ..opts
    };
    let err = lm.generate(&[request(full)], &strict).unwrap_err();
    assert!(
        err.to_string()
            .contains("sequence of 39 tokens exceeds the model's max_seq_len 24"),
        "{err}"
    );
}

/// The CPU backend's own matrix kernels (decoding shapes split over cores) give the logits burn's
/// matmul gives: the same weights run on Flex (kernels) and on `Autodiff<Flex>` (burn's ops
/// only), for a tied and an untied head, a padded batch and KV-cache steps.
#[test]
fn flex_kernels_match_burn_matmul() {
    type Ad = burn::backend::Autodiff<burn::backend::Flex>;
    for tied in [true, false] {
        let config = LlamaConfig {
            d_ff: 512,
            vocab_size: 512,
            tied_embeddings: tied,
            ..LlamaConfig::tiny()
        };
        let mut trained: Llama<Ad> = model(config);
        // Sharpen the head (as `sharp` does) so greedy choices are far from ties.
        match trained.lm_head.as_mut() {
            Some(head) => head.weight = Param::from_tensor((head.weight.val() * 30.0).detach()),
            None => {
                trained.embed.weight =
                    Param::from_tensor((trained.embed.weight.val() * 30.0).detach())
            }
        }
        let plain: Llama<burn::backend::Flex> = trained.valid();
        let rows = prompts();
        let (a, b) = (logits(&trained, &rows), logits(&plain, &rows));
        assert!(max_diff(&a, &b) < 1e-3, "tied {tied}: {}", max_diff(&a, &b));
        let greedy = GenerateOptions {
            max_new_tokens: 5,
            temperature: 0.0,
            ..GenerateOptions::default()
        };
        let seeds = [1, 2, 3];
        let with_ad = generate_ids(&trained, &rows, &seeds, &greedy, &decode).unwrap();
        let with_flex = generate_ids(&plain, &rows, &seeds, &greedy, &decode).unwrap();
        for (x, y) in with_ad.iter().zip(&with_flex) {
            assert_eq!(x.token_ids, y.token_ids, "tied {tied}");
        }
    }
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod flex {
            $( #[test] fn $name() { super::$name::<burn::backend::Flex>(); } )*
            #[test]
            fn gradients_reach_every_parameter() {
                super::gradients_reach_every_parameter::<burn::backend::Autodiff<burn::backend::Flex>>();
            }
        }
        #[cfg(feature = "cuda")]
        mod cuda {
            $( #[test] fn $name() { super::$name::<burn::backend::Cuda>(); } )*
            #[test]
            fn gradients_reach_every_parameter() {
                super::gradients_reach_every_parameter::<burn::backend::Autodiff<burn::backend::Cuda>>();
            }
        }
    };
}

backend_tests!(
    kv_cache_greedy_matches_recompute,
    kv_cache_sampled_matches_recompute,
    batched_matches_one_by_one,
    padding_does_not_change_logits,
    continuation_logprob_matches_sampled,
    gguf_round_trip_and_rope_styles,
    gqa_equals_repeated_kv_heads,
    tied_equals_untied_copy,
    qkv_bias_is_applied,
    scalar_head_reads_last_real_token,
    checkpoint_round_trip,
    left_truncation_keeps_bos_and_the_end,
    stop_eos_and_banned,
);

#[test]
fn presets_have_documented_sizes() {
    let smol = LlamaConfig::smollm2_135m().num_params();
    assert!((134_000_000..135_000_000).contains(&smol), "{smol}");
    let xs = LlamaConfig::world_xs(1500).num_params();
    assert!((150_000..250_000).contains(&xs), "{xs}");
    let s = LlamaConfig::world_s(1500).num_params();
    assert!((900_000..1_100_000).contains(&s), "{s}");
    let m = LlamaConfig::world_m(1500).num_params();
    assert!((1_900_000..2_100_000).contains(&m), "{m}");
    assert!(m > 2 * s, "world-m is the larger size: {m} vs {s}");
    for name in LlamaConfig::PRESETS {
        let c = LlamaConfig::preset(name).unwrap();
        c.validate().unwrap();
    }
    assert!(LlamaConfig::preset("smollm3").is_none());
    let bad = LlamaConfig {
        n_kv_heads: 3,
        ..LlamaConfig::tiny()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn bench_smoke() {
    use rlcd::model::bench::{BenchOptions, run_bench};
    let opts = BenchOptions {
        smollm2: None,
        batches: vec![1, 2],
        prompt_len: 8,
        new_tokens: 6,
        train_seq: 16,
        train_batch: 2,
        train_steps: 1,
        ..BenchOptions::default()
    };
    let rows = run_bench::<burn::backend::Flex>(&opts, &Default::default()).unwrap();
    // 2 batches × (cache, recompute) + 1 training row.
    assert_eq!(rows.len(), 5);
    for r in &rows {
        assert!(
            r.tokens > 0 && r.seconds > 0.0 && r.tokens_per_s > 0.0,
            "{r:?}"
        );
    }
    assert_eq!(rows[4].task, "train");
    assert_eq!(rows[4].tokens, 2 * 15);
}

/// Full benchmark (tiny + SmolLM2-135M when present): `cargo test --release --test model_core
/// -- --ignored bench_full --nocapture`.
#[test]
#[ignore]
fn bench_full() {
    use rlcd::model::bench::{BenchOptions, run_bench};
    let rows =
        run_bench::<burn::backend::Flex>(&BenchOptions::default(), &Default::default()).unwrap();
    for r in rows {
        println!(
            "{:<14} {:<20} batch {:>2} seq {:>3} tokens {:>5} {:>8.2}s {:>9.1} tok/s (warm-up {:.2}s)",
            r.model, r.task, r.batch, r.seq, r.tokens, r.seconds, r.tokens_per_s, r.warmup_s
        );
    }
}
