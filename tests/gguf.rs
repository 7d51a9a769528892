//! The GGUF reader against files written by the test-support writer and hand-assembled
//! malformed files, and the test-support quantizers against ggml's reference rounding and
//! their error bounds.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::gguf_writer::{
    GgufWriter, WriteError, pad_to, put_payload, put_string, put_u32, put_u64, quantize, tag,
    tag_of,
};
use half::f16;
use rand::Rng;
use rlcd::model::gguf::{
    ALIGNMENT_KEY, GGUF_MAGIC, GgmlType, GgufError, GgufFile, MetaValue, dequantize,
};

/// Deepest nesting of metadata arrays the reader accepts.
const MAX_ARRAY_DEPTH: usize = 8;

fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

fn assert_exact(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == w.to_bits(), "element {i}: got {g}, want {w}");
    }
}

fn test_values(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = rlcd::seed::rng(seed);
    let mut out = Vec::with_capacity(n);
    for chunk in 0..n / 32 {
        let scale = [0.01f32, 1.0, 7.5, 0.2][chunk % 4];
        let shift = [0.0f32, 0.0, 3.0, -2.0][(chunk / 4) % 4] * scale;
        for _ in 0..32 {
            out.push(if chunk % 13 == 5 {
                0.0
            } else {
                shift + scale * rng.random_range(-1.0f32..1.0)
            });
        }
    }
    out
}

#[test]
fn reference_quantizers_give_hand_computed_bytes() {
    // Q8_0 of 0..32: amax 31, d = 31/127, q = round(i·127/31).
    let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
    let b = quantize(GgmlType::Q8_0, &x).unwrap();
    assert_eq!(b.len(), 34);
    assert_eq!(b[..2], h(31.0 / 127.0));
    assert_eq!(
        (b[2], b[3], b[2 + 15], b[2 + 16], b[2 + 31]),
        (0, 4, 61, 66, 127)
    );

    // Q4_0 of −16..16: signed absmax −16, d = 2, q = trunc(x/2 + 8.5) capped at 15.
    let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
    let b = quantize(GgmlType::Q4_0, &x).unwrap();
    assert_eq!(b[..2], [0x00, 0x40]);
    assert_eq!((b[2], b[3], b[4], b[17]), (0x80, 0x91, 0x91, 0xF8));

    // Q4_1 of 0..32 · 0.5 − 1: min −1, d = 15.5/15.
    let x: Vec<f32> = (0..32).map(|i| i as f32 * 0.5 - 1.0).collect();
    let b = quantize(GgmlType::Q4_1, &x).unwrap();
    assert_eq!(b[..4], [h(15.5 / 15.0), h(-1.0)].concat());
    assert_eq!((b[4] & 0x0F, b[4] >> 4, b[19] >> 4), (0, 8, 15));

    // Q5_0 of −16..16: d = 1, q = x + 16 with the fifth bit in qh.
    let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
    let b = quantize(GgmlType::Q5_0, &x).unwrap();
    assert_eq!(b[..2], h(1.0));
    assert_eq!(u32::from_le_bytes([b[2], b[3], b[4], b[5]]), 0xFFFF_0000);
    assert_eq!((b[6], b[21]), (0x00, 0xFF));
}

#[test]
fn round_trips_within_each_types_error_bound() {
    let x = test_values(7, 2048);
    for ty in GgmlType::ALL {
        let bytes = quantize(ty, &x).unwrap();
        assert_eq!(bytes.len(), ty.byte_size(x.len()).unwrap(), "{ty}");
        let y = dequantize(ty, &bytes, x.len()).unwrap();
        let bound = error_bounds(ty, &x);
        let mut worst = 0f32;
        for i in 0..x.len() {
            let err = (x[i] - y[i]).abs();
            assert!(
                err <= bound[i],
                "{ty} element {i}: {} → {} (bound {})",
                x[i],
                y[i],
                bound[i]
            );
            worst = worst.max(err / bound[i].max(f32::MIN_POSITIVE));
        }
        // The bounds are tight: some value uses a fair part of its budget.
        if !matches!(ty, GgmlType::F32) {
            assert!(worst > 0.2, "{ty}: worst error only {worst} of its bound");
        }
    }
}

/// Per-value bound on |x − dequantize(quantize(x))|.
fn error_bounds(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let amax = |s: &[f32]| s.iter().fold(0f32, |a, v| a.max(v.abs()));
    let eps = 1e-6;
    let mut out = Vec::with_capacity(x.len());
    match ty {
        GgmlType::F32 => out.resize(x.len(), 0.0),
        GgmlType::F16 => out.extend(x.iter().map(|v| v.abs() * 2f32.powi(-11) + 1e-7)),
        GgmlType::BF16 => out.extend(x.iter().map(|v| v.abs() * 2f32.powi(-8))),
        // Half a step plus the f16 rounding of d (≤ 2⁻¹¹ relative, times 127 levels).
        GgmlType::Q8_0 => {
            for b in x.chunks(32) {
                out.extend([amax(b) / 127.0 * 0.57 + eps; 32]);
            }
        }
        // The level on the far side of the signed absmax is cut off: one full step.
        GgmlType::Q4_0 => {
            for b in x.chunks(32) {
                out.extend([amax(b) / 8.0 * 1.01 + eps; 32]);
            }
        }
        GgmlType::Q5_0 => {
            for b in x.chunks(32) {
                out.extend([amax(b) / 16.0 * 1.01 + eps; 32]);
            }
        }
        GgmlType::Q4_1 => {
            for b in x.chunks(32) {
                let lo = b.iter().copied().fold(f32::MAX, f32::min);
                let hi = b.iter().copied().fold(f32::MIN, f32::max);
                out.extend([(hi - lo) / 15.0 * 0.52 + lo.abs() * 2f32.powi(-11) + eps; 32]);
            }
        }
        // Mins and scales rounded up to 6-bit grids: half a step of (range + dmin)/15 + d.
        GgmlType::Q4_K => {
            for sb in x.chunks(256) {
                let m: Vec<f32> = sb
                    .chunks(32)
                    .map(|s| -s.iter().copied().fold(0f32, f32::min))
                    .collect();
                let hi: Vec<f32> = sb
                    .chunks(32)
                    .map(|s| s.iter().copied().fold(f32::MIN, f32::max))
                    .collect();
                let dmin = m.iter().copied().fold(0f32, f32::max) / 63.0 * 1.001;
                let need: Vec<f32> = (0..8).map(|i| (hi[i] + m[i] + dmin) / 15.0).collect();
                let d = need.iter().copied().fold(0f32, f32::max) / 63.0 * 1.001;
                for n in need {
                    out.extend([0.5 * (n + d) * 1.001 + eps; 32]);
                }
            }
        }
        // Scales absmax/31 rounded up to the 8-bit grid of d = max scale/127.
        GgmlType::Q6_K => {
            for sb in x.chunks(256) {
                let want: Vec<f32> = sb.chunks(16).map(|s| amax(s) / 31.0).collect();
                let d = want.iter().copied().fold(0f32, f32::max) / 127.0 * 1.001;
                for w in want {
                    out.extend([0.5 * (w + d) * 1.001 + eps; 16]);
                }
            }
        }
    }
    out
}

#[test]
fn quantize_rejects_bad_input() {
    let err = quantize(GgmlType::Q8_0, &[1.0; 31]).unwrap_err();
    assert!(matches!(
        err,
        WriteError::Gguf(GgufError::BlockMismatch {
            n_elements: 31,
            block: 32,
            ..
        })
    ));
    assert!(
        err.to_string()
            .contains("31 values is not a whole number of Q8_0 blocks of 32")
    );
    let mut x = vec![0.5f32; 256];
    x[9] = f32::NAN;
    let err = quantize(GgmlType::Q4_K, &x).unwrap_err();
    assert!(
        matches!(err, WriteError::Unrepresentable { index: 9, .. }),
        "{err}"
    );
    let err = quantize(GgmlType::F16, &[1e6]).unwrap_err();
    assert!(err.to_string().contains("f16 range"), "{err}");
    let mut x = vec![0.0f32; 32];
    x[3] = 1e12;
    let err = quantize(GgmlType::Q4_0, &x).unwrap_err();
    assert!(
        matches!(err, WriteError::Unrepresentable { index: 3, .. }),
        "{err}"
    );
}

fn every_meta() -> Vec<(&'static str, MetaValue)> {
    use MetaValue as M;
    vec![
        ("general.architecture", M::String("llama".into())),
        (ALIGNMENT_KEY, M::U32(64)),
        ("t.u8", M::U8(200)),
        ("t.i8", M::I8(-7)),
        ("t.u16", M::U16(60000)),
        ("t.i16", M::I16(-30000)),
        ("t.u32", M::U32(4_000_000_000)),
        ("t.i32", M::I32(-2_000_000_000)),
        ("t.u64", M::U64(u64::MAX)),
        ("t.i64", M::I64(i64::MIN)),
        ("t.f32", M::F32(1e-5)),
        ("t.f64", M::F64(-1.0e300)),
        ("t.bool", M::Bool(true)),
        ("t.bool_false", M::Bool(false)),
        ("t.string", M::String("héllo ✓".into())),
        ("t.empty_string", M::String(String::new())),
        (
            "t.strings",
            M::Array(vec![M::String("a".into()), M::String("Ġb".into())]),
        ),
        ("t.floats", M::Array(vec![M::F32(0.5), M::F32(-2.0)])),
        ("t.empty", M::Array(vec![])),
        (
            "t.nested",
            M::Array(vec![
                M::Array(vec![M::I64(1), M::I64(-2)]),
                M::Array(vec![M::String("x".into())]),
                M::Array(vec![]),
                M::Array(vec![M::Array(vec![M::Bool(false)])]),
            ]),
        ),
        ("llama.block_count", M::U32(2)),
    ]
}

/// (name, row-major shape, type) of the sample file's tensors.
const SAMPLE_TENSORS: [(&str, &[usize], GgmlType); 9] = [
    ("token_embd.weight", &[3, 64], GgmlType::Q8_0),
    ("blk.0.attn_norm.weight", &[5], GgmlType::F32),
    ("blk.0.ffn_up.weight", &[2, 256], GgmlType::Q4_K),
    ("blk.0.ffn_down.weight", &[1, 512], GgmlType::Q6_K),
    ("q4_0", &[2, 32], GgmlType::Q4_0),
    ("q4_1", &[1, 2, 32], GgmlType::Q4_1),
    ("q5_0", &[32], GgmlType::Q5_0),
    ("f16", &[3, 3], GgmlType::F16),
    ("bf16", &[2, 1, 1, 3], GgmlType::BF16),
];

fn sample_writer() -> (GgufWriter, Vec<Vec<f32>>) {
    let mut w = GgufWriter::new();
    for (k, v) in every_meta() {
        w.meta(k, v);
    }
    let mut values = Vec::new();
    for (i, (name, shape, ty)) in SAMPLE_TENSORS.iter().enumerate() {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = test_values(100 + i as u64, n.div_ceil(32) * 32)[..n].to_vec();
        w.tensor(name, shape, *ty, &x).unwrap();
        values.push(x);
    }
    (w, values)
}

#[test]
fn writer_output_reads_back_equal() {
    let (w, values) = sample_writer();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.gguf");
    w.write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.source(), path.display().to_string());
    let want: BTreeMap<String, MetaValue> = every_meta()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(f.metadata, want);
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_start() % 64, 0);
    assert_eq!(f.file_len() % 64, 0);
    assert_eq!(f.tensors.len(), SAMPLE_TENSORS.len());
    let mut prev_end = 0;
    for ((name, shape, ty), x) in SAMPLE_TENSORS.iter().zip(&values) {
        let info = f.tensor_info(name).unwrap();
        assert_eq!(info.ggml_type, ty.id());
        assert_eq!(info.offset % 64, 0, "{name}");
        assert!(
            info.offset >= prev_end,
            "{name} overlaps the previous tensor"
        );
        prev_end = info.offset + info.byte_size().unwrap() as u64;
        assert_eq!(info.shape(), shape.to_vec());
        let (got, got_shape) = f.tensor_f32(name).unwrap();
        assert_eq!(got_shape, shape.to_vec());
        let want = dequantize(*ty, &quantize(*ty, x).unwrap(), x.len()).unwrap();
        assert_exact(&got, &want);
        if *ty == GgmlType::F32 {
            assert_exact(&got, x);
        }
        let (raw_ty, raw) = f.tensor_data(name).unwrap();
        assert_eq!((raw_ty, raw.to_vec()), (*ty, quantize(*ty, x).unwrap()));
    }
    assert_eq!(f.meta_u64("llama.block_count").unwrap(), 2);
    assert_eq!(f.meta_f64("t.f32").unwrap(), f64::from(1e-5f32));
    assert_eq!(f.meta_str("t.string").unwrap(), "héllo ✓");
    assert_eq!(f.meta_str_array("t.strings").unwrap(), vec!["a", "Ġb"]);
    assert_eq!(f.expect_architecture(&["qwen2", "llama"]).unwrap(), "llama");
}

#[test]
fn header_only_reads_agree_with_whole_reads_and_refuse_tensor_data() {
    let (mut w, _) = sample_writer();
    // Metadata larger than the first read (16 MiB), so the header is read in a second pass
    // (32 MiB), which still ends inside the tensor data (16 MiB more).
    w.meta("t.big", MetaValue::String("x".repeat(20 << 20)));
    w.tensor("big", &[4 << 20], GgmlType::F32, &vec![0.5; 4 << 20])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-header.gguf");
    w.write(&path).unwrap();
    let whole = GgufFile::open(&path).unwrap();
    let header = GgufFile::open_header(&path).unwrap();
    assert_eq!(header.metadata, whole.metadata);
    assert_eq!(header.tensors, whole.tensors);
    assert_eq!(
        (header.data_start(), header.file_len()),
        (whole.data_start(), whole.file_len())
    );
    assert!(whole.file_len() > 32 << 20);
    let err = header.tensor_data(SAMPLE_TENSORS[0].0).unwrap_err();
    assert!(err.to_string().contains("header only"), "{err}");
    // A file cut inside its tensor data fails on the header read as on the whole read.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let (a, b) = (
        GgufFile::open(&path).unwrap_err().to_string(),
        GgufFile::open_header(&path).unwrap_err().to_string(),
    );
    assert_eq!(a, b);
    assert!(a.contains("past the end") || a.contains("truncated"), "{a}");
}

#[test]
fn default_alignment_is_32_and_version_2_is_accepted() {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", MetaValue::String("qwen2".into()));
    w.tensor("a", &[3], GgmlType::F32, &[1.0, 2.0, 3.0])
        .unwrap();
    w.tensor("b", &[32], GgmlType::Q8_0, &[0.25; 32]).unwrap();
    let mut bytes = w.to_bytes();
    let f = GgufFile::from_bytes(bytes.clone(), "v3").unwrap();
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_start() % 32, 0);
    assert_eq!(f.tensor_info("b").unwrap().offset, 32);
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = GgufFile::from_bytes(bytes, "v2").unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.tensor_f32("a").unwrap().0, vec![1.0, 2.0, 3.0]);
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    let err = w
        .tensor("x", &[2, 3], GgmlType::F32, &[0.0; 5])
        .unwrap_err();
    assert!(
        err.to_string().contains("does not hold the 5 values"),
        "{err}"
    );
    let err = w
        .tensor("x", &[2, 16], GgmlType::Q8_0, &[0.0; 32])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not a multiple of the Q8_0 block size 32"),
        "{err}"
    );
    let err = w
        .tensor("x", &[1, 1, 1, 1, 1], GgmlType::F32, &[0.0])
        .unwrap_err();
    assert!(matches!(err, WriteError::InvalidTensor { .. }), "{err}");
    let long = "n".repeat(64);
    assert!(w.tensor(&long, &[1], GgmlType::F32, &[0.0]).is_err());
    w.tensor("x", &[1], GgmlType::F32, &[0.0]).unwrap();
    let err = w.tensor("x", &[1], GgmlType::F32, &[0.0]).unwrap_err();
    assert!(err.to_string().contains("already added"), "{err}");

    w.meta(
        "mixed",
        MetaValue::Array(vec![MetaValue::U8(1), MetaValue::I8(1)]),
    );
    w.meta(ALIGNMENT_KEY, MetaValue::U32(48));
    let err = w.try_to_bytes().unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot write GGUF metadata 'mixed': an array mixes u8 and i8"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(w.write(&dir.path().join("x.gguf")).is_err());
    // The rejected entries are left out of the plain bytes, which still parse.
    let f = GgufFile::from_bytes(w.to_bytes(), "partial").unwrap();
    assert!(f.meta("mixed").is_none());
    assert_eq!(f.alignment(), 32);
    let err = GgufWriter::new()
        .write(Path::new("/nonexistent-dir/x.gguf"))
        .unwrap_err();
    assert!(matches!(err, WriteError::Write(_)), "{err}");
}

/// A metadata entry as (key, value type, payload bytes).
type RawMeta = (String, u32, Vec<u8>);

fn rm(key: &str, v: &MetaValue) -> RawMeta {
    let mut payload = Vec::new();
    put_payload(&mut payload, v);
    (key.to_string(), tag_of(v), payload)
}

/// Hand-assembles a file: header, metadata, tensor directory (name, dims, type, offset),
/// padding to 32 and `data`.
fn raw_file(
    version: u32,
    meta: &[RawMeta],
    tensors: &[(&str, &[u64], u32, u64)],
    data: &[u8],
) -> Vec<u8> {
    let mut out = GGUF_MAGIC.to_vec();
    put_u32(&mut out, version);
    put_u64(&mut out, tensors.len() as u64);
    put_u64(&mut out, meta.len() as u64);
    for (k, t, payload) in meta {
        put_string(&mut out, k);
        put_u32(&mut out, *t);
        out.extend_from_slice(payload);
    }
    for (name, dims, ty, offset) in tensors {
        put_string(&mut out, name);
        put_u32(&mut out, dims.len() as u32);
        for &d in *dims {
            put_u64(&mut out, d);
        }
        put_u32(&mut out, *ty);
        put_u64(&mut out, *offset);
    }
    pad_to(&mut out, 32);
    out.extend_from_slice(data);
    out
}

fn arch(a: &str) -> RawMeta {
    rm("general.architecture", &MetaValue::String(a.into()))
}

fn parse_err(bytes: Vec<u8>) -> GgufError {
    GgufFile::from_bytes(bytes, "test.gguf").unwrap_err()
}

#[test]
fn truncation_at_every_cut_is_an_error_never_a_panic() {
    let (w, _) = sample_writer();
    let bytes = w.to_bytes();
    let full = GgufFile::from_bytes(bytes.clone(), "full").unwrap();
    let data_start = full.data_start() as usize;
    let data_end = full
        .tensors
        .iter()
        .map(|t| data_start + t.offset as usize + t.byte_size().unwrap())
        .max()
        .unwrap();
    for cut in 0..bytes.len() {
        let res = GgufFile::from_bytes(bytes[..cut].to_vec(), "cut.gguf");
        if cut >= data_end {
            assert!(res.is_ok(), "cut {cut} in the trailing padding");
            continue;
        }
        let err = res.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'cut.gguf'"), "cut {cut}: {msg}");
        assert!(
            msg.contains(&format!("file is {cut} bytes")),
            "cut {cut}: {msg}"
        );
        if cut + 64 <= data_start {
            assert!(
                matches!(err, GgufError::Truncated { .. }),
                "cut {cut}: {msg}"
            );
        } else if cut >= data_start {
            assert!(
                matches!(err, GgufError::TensorPastEof { .. }),
                "cut {cut}: {msg}"
            );
        } else {
            assert!(
                matches!(
                    err,
                    GgufError::Truncated { .. } | GgufError::TensorPastEof { .. }
                ),
                "cut {cut}: {msg}"
            );
        }
    }
}

#[test]
fn tensor_data_past_eof_names_the_tensor_and_sizes() {
    let bytes = raw_file(
        3,
        &[arch("llama")],
        &[("blk.0.attn_q.weight", &[32, 2], 8, 0)],
        &[0u8; 40],
    );
    let len = bytes.len();
    let start = len - 40;
    let err = parse_err(bytes);
    assert_eq!(
        err.to_string(),
        format!(
            "'test.gguf': tensor 'blk.0.attn_q.weight' data runs past end of file (offset {start}, size 68, file is {len} bytes); the file is truncated, download it again"
        )
    );
    // An offset near u64::MAX must not overflow.
    let err = parse_err(raw_file(
        3,
        &[],
        &[("w", &[4], 0, u64::MAX - 31)],
        &[0u8; 16],
    ));
    assert!(matches!(err, GgufError::TensorPastEof { .. }), "{err}");
}

#[test]
fn bad_magic_and_versions() {
    let good = raw_file(3, &[arch("llama")], &[], &[]);
    let mut b = good.clone();
    b[..4].copy_from_slice(b"GGML");
    let err = parse_err(b);
    assert!(matches!(err, GgufError::BadMagic { .. }), "{err}");
    assert!(
        err.to_string().contains("'test.gguf' is not a GGUF file"),
        "{err}"
    );
    let err = parse_err(b"PK\x03".to_vec());
    assert!(matches!(err, GgufError::BadMagic { .. }), "{err}");
    let err = parse_err(b"GG".to_vec());
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
    let err = parse_err(Vec::new());
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");

    for v in [0u32, 1, 4, 0xFFFF_FFFF] {
        let err = parse_err(raw_file(v, &[], &[], &[]));
        assert!(matches!(err, GgufError::UnsupportedVersion { version, .. } if version == v));
        assert!(
            err.to_string().contains(&format!(
                "is GGUF version {v}, which is not supported (supported: 2, 3)"
            )),
            "{err}"
        );
    }
    let err = parse_err(raw_file(3u32.swap_bytes(), &[], &[], &[]));
    assert!(
        matches!(err, GgufError::BigEndian { version: 3, .. }),
        "{err}"
    );
}

#[test]
fn unknown_tensor_type_parses_but_does_not_dequantize() {
    let bytes = raw_file(
        3,
        &[arch("llama"), rm("llama.block_count", &MetaValue::U32(30))],
        &[
            ("odd", &[256], 13, 0),
            ("weird", &[7], 1000, 0),
            ("ok", &[2], 0, 0),
        ],
        &[0u8; 176],
    );
    let f = GgufFile::from_bytes(bytes, "test.gguf").unwrap();
    assert_eq!(f.meta_u64("llama.block_count").unwrap(), 30);
    assert_eq!(f.tensor_f32("ok").unwrap(), (vec![0.0, 0.0], vec![2]));
    let err = f.tensor_f32("odd").unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, GgufError::UnsupportedType { id: 13, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("tensor 'odd' has unsupported quantization type id 13 (supported: F32 (0), F16 (1), BF16 (30), Q4_0 (2), Q4_1 (3), Q5_0 (6), Q8_0 (8), Q4_K (12), Q6_K (14))"),
        "{msg}"
    );
    assert!(msg.contains("ggml's Q5_K"), "{msg}");
    let msg = f.tensor_f32("weird").unwrap_err().to_string();
    assert!(
        msg.contains("unsupported quantization type id 1000 (supported: "),
        "{msg}"
    );
    assert!(!msg.contains("ggml's"), "{msg}");
}

#[test]
fn architecture_checks() {
    let f = GgufFile::from_bytes(raw_file(3, &[arch("llama")], &[], &[]), "m.gguf").unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    let err = f.expect_architecture(&["qwen2", "gemma3"]).unwrap_err();
    assert!(
        matches!(err, GgufError::ArchitectureMismatch { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "'m.gguf': model architecture is 'llama', but only 'qwen2', 'gemma3' are supported here; use a model file of a supported architecture"
    );
    let err = f.expect_architecture(&["qwen2"]).unwrap_err();
    assert!(
        err.to_string().contains("only 'qwen2' is supported"),
        "{err}"
    );

    let f = GgufFile::from_bytes(raw_file(3, &[], &[], &[]), "m.gguf").unwrap();
    let err = f.expect_architecture(&["llama"]).unwrap_err();
    assert!(matches!(err, GgufError::MissingKey { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("metadata key 'general.architecture' is missing")
    );
}

#[test]
fn missing_and_mistyped_keys_and_tensors_are_named() {
    let bytes = raw_file(
        3,
        &[
            arch("llama"),
            rm("llama.block_count", &MetaValue::U32(30)),
            rm("llama.rope.freq_base", &MetaValue::F32(10000.0)),
            rm("mixed", &MetaValue::Array(vec![MetaValue::U8(1)])),
        ],
        &[("blk.0.attn_q.weight", &[4], 0, 0)],
        &[0u8; 16],
    );
    let f = GgufFile::from_bytes(bytes, "m.gguf").unwrap();
    let err = f.meta_u64("llama.block_cont").unwrap_err();
    assert_eq!(
        err.to_string(),
        "'m.gguf': metadata key 'llama.block_cont' is missing (did you mean 'llama.block_count'?); use a model file converted by a current llama.cpp, or check the key name"
    );
    let err = f.meta_u64("llama.rope.freq_base").unwrap_err();
    assert!(matches!(err, GgufError::WrongType { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("holds f32 10000, expected a non-negative integer")
    );
    assert_eq!(f.meta_f64("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(f.meta_f64("llama.block_count").unwrap(), 30.0);
    let err = f.meta_str("llama.block_count").unwrap_err();
    assert!(
        err.to_string()
            .contains("'llama.block_count' holds u32 30, expected a string")
    );
    let err = f.meta_str_array("mixed").unwrap_err();
    assert!(
        err.to_string().contains("expected an array of strings"),
        "{err}"
    );
    let err = f.meta_str_array("general.architecture").unwrap_err();
    assert!(
        err.to_string().contains("holds a string \"llama\""),
        "{err}"
    );
    let err = f.tensor_f32("blk.0.attn_q").unwrap_err();
    assert!(matches!(err, GgufError::MissingTensor { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("has no tensor named 'blk.0.attn_q' (did you mean 'blk.0.attn_q.weight'?)"),
        "{err}"
    );
    assert!(f.tensor_info("nope").is_none());
}

#[test]
fn corrupt_structures_give_clear_errors() {
    let corrupt = |bytes: Vec<u8>, needle: &str| {
        let err = parse_err(bytes);
        let msg = err.to_string();
        assert!(
            matches!(err, GgufError::Corrupt { .. }),
            "expected Corrupt for {needle}: {msg}"
        );
        assert!(msg.contains(needle), "{msg} lacks {needle}");
        assert!(msg.starts_with("'test.gguf' is corrupt: "), "{msg}");
    };
    // Absurd counts.
    let mut b = raw_file(3, &[], &[], &[]);
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    corrupt(b, "declares 18446744073709551615 tensors (limit 1048576)");
    let mut b = raw_file(3, &[], &[], &[]);
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    corrupt(b, "metadata entries");
    // Unknown value types, at top level and inside an array.
    corrupt(
        raw_file(3, &[("k".into(), 13, vec![0; 8])], &[], &[]),
        "unknown value type 13",
    );
    let mut payload = 77u32.to_le_bytes().to_vec();
    payload.extend(1u64.to_le_bytes());
    corrupt(
        raw_file(3, &[("k".into(), tag::ARRAY, payload)], &[], &[]),
        "array of unknown value type 77",
    );
    corrupt(
        raw_file(3, &[("b".into(), tag::BOOL, vec![2])], &[], &[]),
        "bool byte 2",
    );
    corrupt(
        raw_file(
            3,
            &[(
                "s".into(),
                tag::STRING,
                [2u64.to_le_bytes().to_vec(), vec![0xC3, 0x28]].concat(),
            )],
            &[],
            &[],
        ),
        "not valid UTF-8",
    );
    corrupt(
        raw_file(
            3,
            &[rm("k", &MetaValue::U8(1)), rm("k", &MetaValue::U8(2))],
            &[],
            &[],
        ),
        "appears twice",
    );
    // Arrays nested too deep.
    let mut deep = MetaValue::Array(vec![MetaValue::U8(1)]);
    for _ in 0..MAX_ARRAY_DEPTH {
        deep = MetaValue::Array(vec![deep]);
    }
    corrupt(
        raw_file(3, &[rm("deep", &deep)], &[], &[]),
        "nests arrays deeper",
    );
    // Alignment.
    corrupt(
        raw_file(3, &[rm(ALIGNMENT_KEY, &MetaValue::U32(48))], &[], &[]),
        "power of two",
    );
    corrupt(
        raw_file(
            3,
            &[rm(ALIGNMENT_KEY, &MetaValue::String("x".into()))],
            &[],
            &[],
        ),
        "general.alignment",
    );
    // Tensor directory.
    corrupt(
        raw_file(3, &[], &[("t", &[1, 1, 1, 1, 1], 0, 0)], &[0; 4]),
        "has 5 dimensions",
    );
    corrupt(
        raw_file(3, &[], &[("t", &[], 0, 0)], &[0; 4]),
        "has 0 dimensions",
    );
    corrupt(
        raw_file(3, &[], &[("t", &[u64::MAX, 2], 0, 0)], &[]),
        "element count overflows",
    );
    corrupt(
        raw_file(3, &[], &[("t", &[1], 0, 0), ("t", &[1], 0, 32)], &[0; 64]),
        "tensor name 't' appears twice",
    );
    corrupt(
        raw_file(3, &[], &[("t", &[16, 2], 8, 0)], &[0; 68]),
        "rows of 16 values",
    );
    corrupt(
        raw_file(3, &[], &[("t", &[4], 0, 8)], &[0; 64]),
        "not a multiple of the alignment 32",
    );
}

#[test]
fn huge_declared_lengths_are_truncation_errors() {
    // A string claiming 2⁶⁰ bytes and an array claiming 2⁶⁰ elements.
    let mut b = raw_file(
        3,
        &[("k".into(), tag::STRING, (1u64 << 60).to_le_bytes().to_vec())],
        &[],
        &[],
    );
    b.truncate(b.len() - 4);
    let err = parse_err(b);
    assert!(
        matches!(err, GgufError::Truncated { needed, .. } if needed == 1 << 60),
        "{err}"
    );
    let mut payload = tag::U32.to_le_bytes().to_vec();
    payload.extend((1u64 << 60).to_le_bytes());
    let err = parse_err(raw_file(3, &[("k".into(), tag::ARRAY, payload)], &[], &[]));
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("metadata array 'k' of 1152921504606846976 u32 values")
    );
}

#[test]
fn mutated_tensor_directory_is_rechecked() {
    let (w, _) = sample_writer();
    let mut f = GgufFile::from_bytes(w.to_bytes(), "m").unwrap();
    f.tensors[0].offset = u64::MAX;
    f.tensors[1].dims = vec![u64::MAX, u64::MAX];
    f.tensors[2].dims = vec![100];
    let names: Vec<String> = f.tensors.iter().map(|t| t.name.clone()).collect();
    assert!(matches!(
        f.tensor_f32(&names[0]),
        Err(GgufError::TensorPastEof { .. })
    ));
    assert!(f.tensor_f32(&names[1]).is_err());
    assert!(matches!(
        f.tensor_f32(&names[2]),
        Err(GgufError::BlockMismatch { .. })
    ));
}

#[test]
fn random_corruption_never_panics() {
    let (w, _) = sample_writer();
    let good = w.to_bytes();
    let header_end = GgufFile::from_bytes(good.clone(), "g")
        .unwrap()
        .data_start() as usize;
    let mut rng = rlcd::seed::rng(rlcd::seed::derive(0, &["gguf", "fuzz"]));
    let (mut parsed, mut failed) = (0, 0);
    for _ in 0..1500 {
        let mut b = good.clone();
        for _ in 0..rng.random_range(1..6) {
            // Mostly hit the header and directory, where the structure lives.
            let i = if rng.random_bool(0.85) {
                rng.random_range(0..header_end)
            } else {
                rng.random_range(0..b.len())
            };
            b[i] = match rng.random_range(0..4) {
                0 => rng.random(),
                1 => b[i] ^ (1 << rng.random_range(0..8)),
                2 => 0xFF,
                _ => 0,
            };
        }
        if rng.random_bool(0.3) {
            let cut = rng.random_range(0..b.len());
            b.truncate(cut);
        }
        match GgufFile::from_bytes(b, "fuzz") {
            Ok(f) => {
                parsed += 1;
                for t in f.tensors.clone() {
                    let _ = f.tensor_f32(&t.name);
                }
                let _ = f.architecture();
                let _ = f.meta_str_array("t.strings");
                let _ = format!("{f:?}");
            }
            Err(e) => {
                failed += 1;
                assert!(e.to_string().contains("fuzz"), "{e}");
            }
        }
    }
    assert!(
        parsed > 50 && failed > 50,
        "parsed {parsed}, failed {failed}"
    );
}
