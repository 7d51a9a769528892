//! The artifact store: atomic artifacts, lookups of complete artifacts only, locks, recovery.

use std::fs;
use std::io::Write;

use rlcd::store::{MANIFEST, Owner, Slot, Store, StoreError};

fn open_slot(store: &Store, stage: &str, key: &str) -> rlcd::store::Pending {
    match store.begin(stage, key).expect("begin") {
        Slot::Open(p) => p,
        Slot::Ready(a) => panic!("unexpected ready artifact {}", a.dir.display()),
    }
}

#[test]
fn write_commit_lookup_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("results")).unwrap();
    assert!(store.lookup("appendix_n/rlaif", "k1").is_none());
    let p = open_slot(&store, "appendix_n/rlaif", "k1");
    assert!(
        p.dir()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".tmp-k1-")
    );
    p.write_file("cell.json", b"{\"x\":1}").unwrap();
    fs::write(p.dir().join("extra.txt"), "written directly").unwrap();
    // Not visible before the commit.
    assert!(store.lookup("appendix_n/rlaif", "k1").is_none());
    let a = p.commit(serde_json::json!({"seconds": 0.5})).unwrap();
    assert_eq!(a.dir, tmp.path().join("results/cache/appendix_n/rlaif/k1"));
    let names: Vec<&str> = a.manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["cell.json", "extra.txt"]);
    let found = store
        .lookup("appendix_n/rlaif", "k1")
        .expect("complete artifact");
    assert_eq!(found, a);
    assert_eq!(found.read("cell.json").unwrap(), b"{\"x\":1}");
    found.verify().unwrap();
    assert!(found.read("missing.txt").is_err());
    // No temp dir or lock file is left behind.
    let left: Vec<String> = fs::read_dir(tmp.path().join("results/cache/appendix_n/rlaif"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["k1"]);
    // A second begin finds the artifact.
    assert!(matches!(
        store.begin("appendix_n/rlaif", "k1").unwrap(),
        Slot::Ready(_)
    ));
    // The manifest cannot be overwritten by a stage file.
    let p = open_slot(&store, "s", "k2");
    assert!(p.write_file(MANIFEST, b"{}").is_err());
    assert!(p.write_file("../escape", b"").is_err());
}

#[test]
fn incomplete_or_inconsistent_artifacts_are_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let p = open_slot(&store, "s", "k");
    p.write_file("a.txt", b"abc").unwrap();
    let a = p.commit(serde_json::Value::Null).unwrap();
    // Truncated file: the manifest no longer matches.
    fs::write(a.path("a.txt"), b"ab").unwrap();
    assert!(store.lookup("s", "k").is_none());
    // Same size, different bytes: found by lookup, caught by verify.
    fs::write(a.path("a.txt"), b"abd").unwrap();
    let found = store.lookup("s", "k").unwrap();
    let err = found.verify().unwrap_err().to_string();
    assert!(err.contains("delete the directory"), "{err}");
    // No manifest: a directory from a crashed writer is not an artifact.
    fs::remove_file(a.path(MANIFEST)).unwrap();
    assert!(store.lookup("s", "k").is_none());
    // Garbage manifest.
    fs::write(a.path(MANIFEST), b"not json").unwrap();
    assert!(store.lookup("s", "k").is_none());
    // begin moves the incomplete directory aside and writes afresh.
    let p = open_slot(&store, "s", "k");
    assert!(
        p.notes()
            .iter()
            .any(|n| n.contains("not a complete artifact")),
        "{:?}",
        p.notes()
    );
    p.write_file("a.txt", b"new").unwrap();
    p.commit(serde_json::Value::Null).unwrap();
    assert_eq!(
        store.lookup("s", "k").unwrap().read("a.txt").unwrap(),
        b"new"
    );
    // A manifest naming another key is not consistent.
    let other = tmp.path().join("cache/s/k3");
    fs::create_dir_all(&other).unwrap();
    fs::copy(
        tmp.path().join("cache/s/k").join(MANIFEST),
        other.join(MANIFEST),
    )
    .unwrap();
    fs::copy(tmp.path().join("cache/s/k/a.txt"), other.join("a.txt")).unwrap();
    assert!(store.lookup("s", "k3").is_none());
}

#[test]
fn interrupted_writes_are_cleaned_and_dropped_pendings_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    // A killed writer left a temp dir with a partial file.
    let stale = tmp.path().join("cache/s/.tmp-k-424242");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("half.bin"), b"partial").unwrap();
    assert!(store.lookup("s", "k").is_none());
    let p = open_slot(&store, "s", "k");
    assert!(!stale.exists());
    assert!(
        p.notes().iter().any(|n| n.contains("interrupted run")),
        "{:?}",
        p.notes()
    );
    let dir = p.dir().to_path_buf();
    drop(p);
    assert!(!dir.exists(), "an abandoned write removes its temp dir");
    assert!(store.lookup("s", "k").is_none());
}

#[test]
fn a_live_lock_is_an_error_naming_pid_and_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let p = open_slot(&store, "appendix_n/rlcd", "kk");
    let lock_path = tmp.path().join("cache/appendix_n/rlcd/kk.lock");
    let me = Owner::current();
    assert_eq!(
        fs::read_to_string(&lock_path).unwrap(),
        format!("{} {}", me.pid, me.host)
    );
    let err = store.begin("appendix_n/rlcd", "kk").unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    assert!(msg.contains(&lock_path.display().to_string()), "{msg}");
    assert!(msg.contains("wait for that run to finish"), "{msg}");
    drop(p);
    assert!(!lock_path.exists());
    // Another holder (an independent lock on the file) is refused the same way.
    fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let mut f = fs::File::create(&lock_path).unwrap();
    f.write_all(b"31337").unwrap();
    f.try_lock().unwrap();
    let msg = store
        .begin("appendix_n/rlcd", "kk")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("process 31337"), "{msg}");
    f.unlock().unwrap();
}

#[test]
fn a_lock_left_by_a_dead_process_is_reclaimed_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let dir = tmp.path().join("cache/s");
    fs::create_dir_all(&dir).unwrap();
    // A lock file nobody holds: its writer was killed (the OS released the lock).
    fs::write(dir.join("k.lock"), "999999").unwrap();
    let p = open_slot(&store, "s", "k");
    let note = p.notes().join("\n");
    assert!(
        note.contains("reclaimed lock") && note.contains("999999"),
        "{note}"
    );
    p.commit(serde_json::Value::Null).unwrap();
    assert!(store.lookup("s", "k").is_some());
    assert!(!dir.join("k.lock").exists());
}

#[test]
fn an_unwritable_results_dir_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // A file where the results directory should be (works even when running as root).
    let blocker = tmp.path().join("results");
    fs::write(&blocker, "not a directory").unwrap();
    let err = Store::open(&blocker).unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&blocker.display().to_string()), "{msg}");
    assert!(msg.contains("results="), "{msg}");
}

#[test]
fn run_dirs_are_unique_and_timestamped() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (a, da) = store.create_run("appendix-n", "abcd1234").unwrap();
    let (b, db) = store.create_run("appendix-n", "abcd1234").unwrap();
    assert_ne!(a, b);
    assert!(da.is_dir() && db.is_dir());
    assert_eq!(da.parent().unwrap(), tmp.path().join("runs/appendix-n"));
    // 20250102T030405Z-abcd1234
    assert_eq!(a.len(), "20250102T030405Z-abcd1234".len(), "{a}");
    assert!(a.ends_with("Z-abcd1234") && a.as_bytes()[8] == b'T', "{a}");
    let (c, _) = store.create_run("../evil name", "k").unwrap();
    assert!(tmp.path().join("runs/-evil-name").join(c).is_dir());
}

/// Processes of several hosts share one store: names carry host, pid and nonce; only temp dirs
/// whose owner is known gone are removed; a key committed by another host while this process
/// wrote is verified and kept; a directory that is not a complete artifact is moved aside.
#[test]
fn a_store_shared_between_hosts_removes_only_what_it_knows_is_dead() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let dir = tmp.path().join("cache/s");
    fs::create_dir_all(&dir).unwrap();
    let me = Owner::current();
    // A writer on another host, maybe alive; a dead writer of this host; a live one of this
    // host (pid 1 always runs).
    let foreign = dir.join(format!(".tmp-k-{}x-{}-0badf00d", me.host, me.pid));
    let dead = dir.join(format!(".tmp-k-{}-999999-12345678", me.host));
    let live = dir.join(format!(".tmp-k-{}-1-87654321", me.host));
    for d in [&foreign, &dead, &live] {
        fs::create_dir_all(d).unwrap();
        fs::write(d.join("part.bin"), b"partial").unwrap();
    }
    let p = open_slot(&store, "s", "k");
    let tail = p.dir().file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(tail, format!(".tmp-k-{}", me.tag()));
    assert_eq!(Owner::parse_tag(&me.tag()).as_ref(), Some(me));
    assert!(foreign.exists(), "a temp dir of another host is left alone");
    assert!(live.exists(), "a temp dir of a live process is left alone");
    assert!(
        !dead.exists(),
        "a temp dir of a dead process of this host is removed"
    );
    let notes = p.notes().join("\n");
    assert!(notes.contains(&format!("on {}x", me.host)), "{notes}");
    assert!(notes.contains("999999, no longer running"), "{notes}");
    // Meanwhile another host commits the same key (its lock was not coherent with ours).
    let other = Store::open(&tmp.path().join("elsewhere")).unwrap();
    let q = open_slot(&other, "s", "k");
    q.write_file("a.txt", b"same output").unwrap();
    let theirs = q.commit(serde_json::json!({"host": "other"})).unwrap();
    common_copy(&theirs.dir, &dir.join("k"));
    p.write_file("a.txt", b"same output").unwrap();
    let kept = p.commit(serde_json::json!({"host": "this"})).unwrap();
    assert_eq!(kept.manifest.meta, serde_json::json!({"host": "other"}));
    kept.verify().unwrap();
    // A directory at the artifact's place that is not complete is moved aside, not deleted.
    fs::remove_file(dir.join("k").join(MANIFEST)).unwrap();
    let p = open_slot(&store, "s", "k");
    let notes = p.notes().join("\n");
    assert!(notes.contains("aside"), "{notes}");
    let aside: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".aside-k-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(dir.join(&aside[0]).join("a.txt").exists());
}

fn common_copy(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
