//! Content-addressed, resumable artifacts and run directories.
//!
//! Layout under the recipe's results root:
//! - `cache/<stage>/<key>/`: one stage's output for one key, with `manifest.json` listing every
//!   file's size and blake3. It is written into `cache/<stage>/.tmp-<key>-<host>-<pid>-<nonce>/`,
//!   each file and the manifest (last) are fsynced, then the directory is renamed into place,
//!   so a reader either sees a complete artifact or none. A killed writer leaves only a temp
//!   dir, which the next writer of that key removes when it knows the owner is gone (same host,
//!   no such process); a temp dir of another host, or of a live process, is left with a note.
//!   A rename that finds the key already committed (by a process another host ran) verifies
//!   that artifact and keeps it.
//! - `cache/<stage>/<key>.lock`: held (an OS file lock; on a shared filesystem it must be
//!   coherent across hosts) while a process computes that key; it holds the writer's pid and
//!   host. A lock whose process died is reclaimed with a note.
//! - A directory at an artifact's place that is not a complete artifact is moved aside to
//!   `.aside-<key>-<host>-<pid>-<nonce>`, never deleted: a lookup can miss what another host
//!   just wrote.
//! - `runs/<recipe-name>/<run-id>/`: one run (`resolved.toml`, `run.log`, `plan.json`, `tables/`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// Version of the artifact layout and manifest format.
pub const STORE_FORMAT: u32 = 1;

/// The manifest's file name inside an artifact.
pub const MANIFEST: &str = "manifest.json";

/// Errors of the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The results directory cannot be created or written.
    #[error(
        "results directory not writable ({source}); fix its permissions, or point the \
         recipe's `results` key elsewhere (e.g. override `results=/tmp/rlcd-results`)"
    )]
    NotWritable {
        /// The I/O error, naming the directory.
        #[source]
        source: crate::error::IoError,
    },
    /// Another live process is computing this key.
    #[error(
        "stage `{stage}` (key {key}) is being computed by process {pid} (lock {path}); wait \
         for that run to finish or stop it, then run again"
    )]
    Locked {
        /// The stage.
        stage: String,
        /// The key.
        key: String,
        /// The pid written in the lock file ("unknown" if unreadable).
        pid: String,
        /// The lock file.
        path: PathBuf,
    },
    /// An I/O error on a store path.
    #[error(transparent)]
    Io(#[from] crate::error::IoError),
    /// An artifact file does not match its manifest.
    #[error(
        "artifact {dir} is inconsistent: {detail}; delete the directory and run again to \
         recompute it"
    )]
    Corrupt {
        /// The artifact directory.
        dir: PathBuf,
        /// What differs.
        detail: String,
    },
    /// A stage wrote something other than a plain file into its artifact.
    #[error("artifact {dir}: `{name}` is not a plain file; stages write flat files only")]
    NotAFile {
        /// The temp artifact directory.
        dir: PathBuf,
        /// The entry.
        name: String,
    },
    /// A stage or file name would escape its directory.
    #[error(
        "invalid name `{name}` for {what}: use letters, digits, `.`, `_`, `-` (and `/` in stage ids)"
    )]
    BadName {
        /// The name.
        name: String,
        /// What it names.
        what: &'static str,
    },
}

/// A writer of the store: host, process and a random nonce, which name its temp directories
/// and fill its lock files, so processes of several hosts sharing one store never take each
/// other's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The host name (letters, digits, `.`, `_` and `-` only).
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// Random hex digits, fresh per process.
    pub nonce: String,
}

impl Owner {
    /// This process.
    pub fn current() -> &'static Owner {
        static CURRENT: std::sync::OnceLock<Owner> = std::sync::OnceLock::new();
        CURRENT.get_or_init(|| Owner {
            host: host_name(),
            pid: std::process::id(),
            nonce: format!("{:08x}", rand::random::<u32>()),
        })
    }

    /// `<host>-<pid>-<nonce>`, the tail of its temp-directory names.
    pub fn tag(&self) -> String {
        format!("{}-{}-{}", self.host, self.pid, self.nonce)
    }

    /// The owner named by a temp directory's tail `<host>-<pid>-<nonce>` (or `<pid>`, as
    /// written before names carried hosts, taken as this host's).
    pub fn parse_tag(tail: &str) -> Option<Owner> {
        if let Ok(pid) = tail.parse() {
            return Some(Owner {
                host: Owner::current().host.clone(),
                pid,
                nonce: String::new(),
            });
        }
        let (rest, nonce) = tail.rsplit_once('-')?;
        let (host, pid) = rest.rsplit_once('-')?;
        Some(Owner {
            host: host.to_string(),
            pid: pid.parse().ok()?,
            nonce: nonce.to_string(),
        })
    }

    /// Whether this owner is known to have exited: a process of this host that no longer
    /// exists. A process of another host is never known to be gone.
    pub fn is_gone(&self) -> bool {
        let me = Owner::current();
        self.host == me.host && self.pid != me.pid && !process_exists(self.pid)
    }

    /// `process <pid>`, with ` on <host>` when that is not this host.
    pub fn describe(&self) -> String {
        if self.host == Owner::current().host {
            format!("process {}", self.pid)
        } else {
            format!("process {} on {}", self.pid, self.host)
        }
    }
}

/// This host's name, reduced to letters, digits, `.`, `_` and `-`.
fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Whether process `pid` exists on this host (without a process table to ask, it is taken to
/// exist, so nothing of it is ever removed).
fn process_exists(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io(crate::error::IoError::new(path, source))
}

fn check_name(name: &str, what: &'static str, allow_slash: bool) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
        && (allow_slash || !name.contains('/'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName {
            name: name.to_string(),
            what,
        })
    }
}

/// One file of an artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name inside the artifact directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// blake3 of the contents, hex.
    pub blake3: String,
}

/// `manifest.json`: what a complete artifact holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`STORE_FORMAT`] when written.
    pub format: u32,
    /// Stage id.
    pub stage: String,
    /// Stage key.
    pub key: String,
    /// Files, sorted by name.
    pub files: Vec<ManifestFile>,
    /// Stage-specific metadata (seconds taken, counts, …).
    pub meta: serde_json::Value,
    /// The machine that computed the artifact (absent in artifacts written before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
}

/// A complete artifact in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    /// Its directory, `cache/<stage>/<key>/`.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Artifact {
    /// Path of a file of the artifact.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads a file the manifest lists.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        if !self.manifest.files.iter().any(|f| f.name == name) {
            return Err(StoreError::Corrupt {
                dir: self.dir.clone(),
                detail: format!("the manifest lists no file `{name}`"),
            });
        }
        let p = self.path(name);
        fs::read(&p).map_err(io(&p))
    }

    /// Re-hashes every file against the manifest.
    pub fn verify(&self) -> Result<(), StoreError> {
        for f in &self.manifest.files {
            let p = self.path(&f.name);
            let bytes = fs::read(&p).map_err(io(&p))?;
            let hash = blake3::hash(&bytes).to_hex().to_string();
            if bytes.len() as u64 != f.bytes || hash != f.blake3 {
                return Err(StoreError::Corrupt {
                    dir: self.dir.clone(),
                    detail: format!("`{}` does not match its manifest hash", f.name),
                });
            }
        }
        Ok(())
    }
}

/// The artifact store rooted at a results directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// The result of [`Store::begin`].
#[derive(Debug)]
pub enum Slot {
    /// A complete artifact already exists (possibly finished by another process meanwhile).
    Ready(Artifact),
    /// The key is locked for this process: write the artifact.
    Open(Pending),
}

impl Store {
    /// Opens (creating) the store under `results_root`; errors name the directory when it
    /// cannot be created or written.
    pub fn open(results_root: &Path) -> Result<Store, StoreError> {
        let not_writable = |source| StoreError::NotWritable {
            source: crate::error::IoError::new(results_root, source),
        };
        for sub in ["cache", "runs"] {
            fs::create_dir_all(results_root.join(sub)).map_err(not_writable)?;
        }
        let probe = results_root
            .join("cache")
            .join(format!(".probe-{}", Owner::current().tag()));
        File::create(&probe).map_err(not_writable)?;
        fs::remove_file(&probe).map_err(not_writable)?;
        Ok(Store {
            root: results_root.to_path_buf(),
        })
    }

    /// The results root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn stage_dir(&self, stage: &str) -> PathBuf {
        self.root.join("cache").join(stage)
    }

    /// Where the artifact of `stage` / `key` lives (whether or not it exists).
    pub fn artifact_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.stage_dir(stage).join(key)
    }

    /// A directory where a long stage keeps its resumable state (checkpoints) while it runs:
    /// `<key>.work` beside the artifact. It survives an interrupted run (a restarted stage
    /// resumes from it) and is removed once the artifact is committed.
    pub fn work_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.stage_dir(stage).join(format!("{key}.work"))
    }

    /// The complete artifact of `stage` / `key`, if any: its manifest parses, names this stage
    /// and key, and every listed file exists with the listed size.
    pub fn lookup(&self, stage: &str, key: &str) -> Option<Artifact> {
        check_name(stage, "a stage id", true).ok()?;
        check_name(key, "a key", false).ok()?;
        complete(self.artifact_dir(stage, key), stage, key)
    }

    /// Deletes the artifact of `stage` / `key` if present (forces recomputation).
    pub fn remove(&self, stage: &str, key: &str) -> Result<(), StoreError> {
        check_name(stage, "a stage id", true)?;
        check_name(key, "a key", false)?;
        let dir = self.artifact_dir(stage, key);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// Takes the lock of `stage` / `key`. Returns the artifact if it is complete by then;
    /// otherwise removes leftover temp dirs of the key and opens a fresh one to write into.
    pub fn begin(&self, stage: &str, key: &str) -> Result<Slot, StoreError> {
        check_name(stage, "a stage id", true)?;
        check_name(key, "a key", false)?;
        let sdir = self.stage_dir(stage);
        fs::create_dir_all(&sdir).map_err(|source| StoreError::NotWritable {
            source: crate::error::IoError::new(&sdir, source),
        })?;
        let lock = KeyLock::acquire(&sdir.join(format!("{key}.lock")), stage, key)?;
        if let Some(a) = self.lookup(stage, key) {
            return Ok(Slot::Ready(a));
        }
        let mut notes = lock.note.iter().cloned().collect::<Vec<_>>();
        let me = Owner::current();
        let prefix = format!(".tmp-{key}-");
        for entry in fs::read_dir(&sdir).map_err(io(&sdir))? {
            let entry = entry.map_err(io(&sdir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(tail) = name.strip_prefix(&prefix) else {
                continue;
            };
            let p = entry.path();
            match Owner::parse_tag(tail) {
                Some(owner) if owner.is_gone() || owner == *me => {
                    fs::remove_dir_all(&p).map_err(io(&p))?;
                    notes.push(format!(
                        "removed {} left by an interrupted run ({}, no longer running)",
                        p.display(),
                        owner.describe()
                    ));
                }
                Some(owner) => notes.push(format!(
                    "left {} of {} in place: it may still be running",
                    p.display(),
                    owner.describe()
                )),
                None => notes.push(format!(
                    "left {} in place: its name does not say which process wrote it",
                    p.display()
                )),
            }
        }
        let final_dir = sdir.join(key);
        if final_dir.exists() {
            let aside = sdir.join(format!(".aside-{key}-{}", me.tag()));
            fs::rename(&final_dir, &aside).map_err(io(&final_dir))?;
            notes.push(format!(
                "moved {}, which is not a complete artifact, aside to {}",
                final_dir.display(),
                aside.display()
            ));
        }
        let tmp = sdir.join(format!("{prefix}{}", me.tag()));
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        Ok(Slot::Open(Pending {
            stage: stage.to_string(),
            key: key.to_string(),
            tmp,
            final_dir,
            notes,
            committed: false,
            _lock: lock,
        }))
    }

    /// Creates `runs/<recipe>/<run-id>/` with run-id = UTC timestamp + `short_key`
    /// (`20250102T030405Z-1a2b3c4d`, suffixed `-2`, `-3`, … if taken).
    pub fn create_run(
        &self,
        recipe: &str,
        short_key: &str,
    ) -> Result<(String, PathBuf), StoreError> {
        let name: String = recipe
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = name.trim_start_matches('.');
        let name = if name.is_empty() { "run" } else { name };
        let parent = self.root.join("runs").join(name);
        fs::create_dir_all(&parent).map_err(|source| StoreError::NotWritable {
            source: crate::error::IoError::new(&parent, source),
        })?;
        let base = format!("{}-{short_key}", utc_stamp(std::time::SystemTime::now()));
        for n in 1.. {
            let id = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let dir = parent.join(&id);
            match fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&dir)(e)),
            }
        }
        unreachable!("an unbounded counter always finds a free name")
    }
}

/// `YYYYMMDDTHHMMSSZ` for a time (UTC).
pub fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// An artifact being written, holding its key's lock. Dropped without [`Pending::commit`], it
/// removes its temp dir.
#[derive(Debug)]
pub struct Pending {
    stage: String,
    key: String,
    tmp: PathBuf,
    final_dir: PathBuf,
    notes: Vec<String>,
    committed: bool,
    _lock: KeyLock,
}

impl Pending {
    /// The temp directory to write files into.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Notes about recovered state (reclaimed locks, removed temp dirs), for the run log.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Writes one file into the artifact.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        check_name(name, "an artifact file", false)?;
        if name == MANIFEST {
            return Err(StoreError::BadName {
                name: name.to_string(),
                what: "an artifact file (reserved for the manifest)",
            });
        }
        let p = self.tmp.join(name);
        fs::write(&p, bytes).map_err(io(&p))
    }

    /// Fsyncs every file, writes `manifest.json` last and renames the directory into place.
    pub fn commit(mut self, meta: serde_json::Value) -> Result<Artifact, StoreError> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.tmp).map_err(io(&self.tmp))? {
            let entry = entry.map_err(io(&self.tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let p = entry.path();
            if !entry.file_type().map_err(io(&p))?.is_file() {
                return Err(StoreError::NotAFile {
                    dir: self.tmp.clone(),
                    name,
                });
            }
            if name == MANIFEST {
                continue;
            }
            let f = File::open(&p).map_err(io(&p))?;
            f.sync_all().map_err(io(&p))?;
            let bytes = fs::read(&p).map_err(io(&p))?;
            files.push(ManifestFile {
                name,
                bytes: bytes.len() as u64,
                blake3: blake3::hash(&bytes).to_hex().to_string(),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            format: STORE_FORMAT,
            stage: self.stage.clone(),
            key: self.key.clone(),
            files,
            meta,
            machine: Some(Machine::detect()),
        };
        let mp = self.tmp.join(MANIFEST);
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| io(&mp)(e.into()))?;
        let mut f = File::create(&mp).map_err(io(&mp))?;
        f.write_all(&text).map_err(io(&mp))?;
        f.sync_all().map_err(io(&mp))?;
        drop(f);
        sync_dir(&self.tmp);
        if let Err(e) = fs::rename(&self.tmp, &self.final_dir) {
            // Another process (on another host, past an incoherent lock) committed the key
            // first: keep its artifact if it is complete and sound.
            let Some(theirs) = complete(self.final_dir.clone(), &self.stage, &self.key) else {
                return Err(io(&self.final_dir)(e));
            };
            theirs.verify()?;
            return Ok(theirs);
        }
        if let Some(parent) = self.final_dir.parent() {
            sync_dir(parent);
        }
        self.committed = true;
        Ok(Artifact {
            dir: self.final_dir.clone(),
            manifest,
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The complete artifact of `stage` / `key` in `dir`: its manifest parses, names this stage
/// and key, and every listed file exists with the listed size.
fn complete(dir: PathBuf, stage: &str, key: &str) -> Option<Artifact> {
    let text = fs::read(dir.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_slice(&text).ok()?;
    if manifest.stage != stage || manifest.key != key || manifest.format != STORE_FORMAT {
        return None;
    }
    for f in &manifest.files {
        let meta = fs::metadata(dir.join(&f.name)).ok()?;
        if !meta.is_file() || meta.len() != f.bytes {
            return None;
        }
    }
    Some(Artifact { dir, manifest })
}

/// Fsyncs a directory so a rename into it is durable (best effort where unsupported).
fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// The holder a lock file's text `<pid> <host>` (or `<pid>`) names, for messages.
fn holder(text: &str) -> String {
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (None, _) => "unknown".into(),
        (Some(pid), Some(host)) if host != Owner::current().host => format!("{pid} on {host}"),
        (Some(pid), _) => pid.to_string(),
    }
}

/// The per-key lock: an OS lock on `<key>.lock`, which holds `<pid> <host>` of its owner.
#[derive(Debug)]
struct KeyLock {
    file: File,
    path: PathBuf,
    note: Option<String>,
}

impl KeyLock {
    fn acquire(path: &Path, stage: &str, key: &str) -> Result<KeyLock, StoreError> {
        for _ in 0..16 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io(path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let mut s = String::new();
                    let _ = file.read_to_string(&mut s);
                    return Err(StoreError::Locked {
                        stage: stage.to_string(),
                        key: key.to_string(),
                        pid: holder(&s),
                        path: path.to_path_buf(),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io(path)(e)),
            }
            // The previous holder unlinks the file before unlocking; if the path now names
            // another file (or none), our lock guards nothing: retry on the current file.
            if !same_file(&file, path) {
                continue;
            }
            let mut previous = String::new();
            let _ = file.read_to_string(&mut previous);
            let previous = previous.trim().to_string();
            let owner = Owner::current();
            let me = format!("{} {}", owner.pid, owner.host);
            let note = (!previous.is_empty() && previous != me).then(|| {
                format!(
                    "reclaimed lock {} left by process {}, which is no longer running",
                    path.display(),
                    holder(&previous)
                )
            });
            file.set_len(0).map_err(io(path))?;
            file.seek(SeekFrom::Start(0)).map_err(io(path))?;
            file.write_all(me.as_bytes()).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
            return Ok(KeyLock {
                file,
                path: path.to_path_buf(),
                note,
            });
        }
        Err(StoreError::Locked {
            stage: stage.to_string(),
            key: key.to_string(),
            pid: "unknown (the lock file keeps changing)".into(),
            path: path.to_path_buf(),
        })
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Unlink before unlocking so a waiter that opened this file sees it is stale.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_matches_known_dates() {
        let t = |s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(utc_stamp(t(0)), "19700101T000000Z");
        assert_eq!(utc_stamp(t(951_782_400)), "20000229T000000Z");
        assert_eq!(utc_stamp(t(1_735_787_045)), "20250102T030405Z");
    }

    #[test]
    fn names_cannot_escape() {
        assert!(check_name("appendix_n/rlaif", "s", true).is_ok());
        assert!(check_name("../x", "s", true).is_err());
        assert!(check_name("a/b", "s", false).is_err());
        assert!(check_name(".tmp", "s", false).is_err());
    }
}
