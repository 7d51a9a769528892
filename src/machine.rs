//! The machine a result was computed on: CPU model, SIMD features, threads, compiled backends.
//! Float rounding differs between CPUs (and SIMD paths), so every artifact and every run
//! records it beside its numbers.

use serde::{Deserialize, Serialize};

/// A feature's name and its run-time check.
#[cfg(target_arch = "x86_64")]
type FeatureCheck = (&'static str, fn() -> bool);

/// SIMD features whose presence changes which kernels (and which rounding) run, in report order.
#[cfg(target_arch = "x86_64")]
const X86_FEATURES: &[FeatureCheck] = &[
    ("sse4.2", || std::arch::is_x86_feature_detected!("sse4.2")),
    ("avx", || std::arch::is_x86_feature_detected!("avx")),
    ("avx2", || std::arch::is_x86_feature_detected!("avx2")),
    ("fma", || std::arch::is_x86_feature_detected!("fma")),
    ("f16c", || std::arch::is_x86_feature_detected!("f16c")),
    ("avx512f", || std::arch::is_x86_feature_detected!("avx512f")),
    ("avx512bw", || {
        std::arch::is_x86_feature_detected!("avx512bw")
    }),
    ("avx512vnni", || {
        std::arch::is_x86_feature_detected!("avx512vnni")
    }),
    ("avx512bf16", || {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }),
];

/// Where a result was computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`'s `model name`), or `unknown`.
    pub cpu: String,
    /// Instruction-set architecture (`x86_64`, `aarch64`, …).
    pub arch: String,
    /// SIMD features detected at run time (x86-64: SSE4.2 up to AVX-512 BF16).
    pub simd: Vec<String>,
    /// Logical cores the OS offers this process.
    pub cores: usize,
    /// Threads of the compute pool (rayon), which CPU kernels split work over.
    pub threads: usize,
    /// Backends compiled into this build (`cpu`, and `cuda` with the `cuda` feature).
    pub backends: Vec<String>,
    /// The rlcd version.
    pub version: String,
}

/// The CPU model name from `/proc/cpuinfo` (Linux), else `unknown`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn simd_features() -> Vec<String> {
    #[cfg(target_arch = "x86_64")]
    {
        X86_FEATURES
            .iter()
            .filter(|(_, present)| present())
            .map(|(name, _)| (*name).to_string())
            .collect()
    }
    #[cfg(target_arch = "aarch64")]
    {
        let mut v = Vec::new();
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push("neon".to_string());
        }
        v
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

impl Machine {
    /// This machine, as this process sees it.
    pub fn detect() -> Self {
        let mut backends = vec!["cpu".to_string()];
        if cfg!(feature = "cuda") {
            backends.push("cuda".to_string());
        }
        Self {
            cpu: cpu_model(),
            arch: std::env::consts::ARCH.to_string(),
            simd: simd_features(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads: rayon::current_num_threads(),
            backends,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// One line: `CPU (arch; SIMD …; N cores, T threads; backends …)`.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}; SIMD {}; {} cores, {} threads; backends {})",
            self.cpu,
            self.arch,
            if self.simd.is_empty() {
                "none detected".to_string()
            } else {
                self.simd.join(" ")
            },
            self.cores,
            self.threads,
            self.backends.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_described() {
        let m = Machine::detect();
        assert!(m.cores >= 1 && m.threads >= 1);
        assert_eq!(m.backends[0], "cpu");
        assert!(!m.cpu.is_empty() && !m.arch.is_empty());
        #[cfg(target_arch = "x86_64")]
        assert!(m.simd.iter().any(|f| f == "sse4.2"), "{m:?}");
        let line = m.summary();
        assert!(line.contains(&m.cpu) && line.contains("threads"), "{line}");
        let back: Machine = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
