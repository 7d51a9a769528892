//! Resumable training state in a stage's work directory ([`Ctx::work_dir`]): a long training
//! loop (PPO, paper §3; the judge's fine-tuning, §4.3) writes its model, optimiser state and
//! progress into `next`, then swaps `next` in for `latest`, so a process killed at any moment
//! leaves one complete checkpoint and the restarted stage continues from it.
//!
//! [`Ctx::work_dir`]: super::Ctx::work_dir

use std::io;
use std::path::{Path, PathBuf};

use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};

/// The file in a checkpoint that holds the loop's progress (step, logs); a checkpoint is
/// complete when it exists, since it is written last.
pub const STATE: &str = "state.json";

/// How optimiser records are written: full precision, so a resumed run is the uninterrupted one.
pub type OptimRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Where and how often a training loop checkpoints, and when it stops early.
#[derive(Clone, Debug, Default)]
pub struct Checkpoints {
    /// Directory of the checkpoints (resumed from when it holds one).
    pub dir: Option<PathBuf>,
    /// Checkpoint after every this many steps (0: only at a planned stop).
    pub every: usize,
    /// Return after this many steps in total, checkpointed (a planned interruption).
    pub stop_after: Option<usize>,
}

impl Checkpoints {
    /// Whether the loop stops before running 0-based step `step` (the planned stop is reached).
    pub fn stops_at(&self, step: usize) -> bool {
        self.stop_after.is_some_and(|s| step >= s)
    }

    /// Where to checkpoint once `done` of `total` steps are finished: every `every` steps and
    /// at the planned stop, never after the last step (the stage's artifact follows it).
    pub fn due(&self, done: usize, total: usize) -> Option<&Path> {
        let due = self.every > 0 && done.is_multiple_of(self.every);
        let stopping = self.stop_after == Some(done);
        self.dir
            .as_deref()
            .filter(|_| (due || stopping) && done < total)
    }
}

const LATEST: &str = "latest";
const NEXT: &str = "next";
const OLD: &str = "old";

/// Writes a checkpoint into `dir`: `fill` writes every file but [`STATE`] into the directory it
/// is given, then `state` is written there as JSON and the directory replaces the previous
/// checkpoint. `io` turns a file-system failure at a path into the caller's error.
pub fn save<E, S: serde::Serialize>(
    dir: &Path,
    state: &S,
    io: impl Fn(&Path, String) -> E,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let fs = |path: &Path, r: io::Result<()>| r.map_err(|e| io(path, e.to_string()));
    let next = dir.join(NEXT);
    if next.exists() {
        fs(&next, std::fs::remove_dir_all(&next))?;
    }
    fs(&next, std::fs::create_dir_all(&next))?;
    fill(&next)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| io(&next, e.to_string()))?;
    fs(&next, std::fs::write(next.join(STATE), json))?;
    let (latest, old) = (dir.join(LATEST), dir.join(OLD));
    if latest.exists() {
        if old.exists() {
            fs(&old, std::fs::remove_dir_all(&old))?;
        }
        fs(&latest, std::fs::rename(&latest, &old))?;
    }
    fs(&latest, std::fs::rename(&next, &latest))?;
    if old.exists() {
        fs(&old, std::fs::remove_dir_all(&old))?;
    }
    Ok(())
}

/// The checkpoint to resume from, if `dir` holds one: a complete `latest`, or the `old` one
/// left when a process died while replacing it.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    [LATEST, OLD]
        .iter()
        .map(|n| dir.join(n))
        .find(|d| d.join(STATE).is_file())
}

/// The step a loop resuming from checkpoint directory `dir` starts at, from the `step` field of
/// its latest checkpoint's state (`None`: no checkpoint).
pub fn step(dir: &Path) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Step {
        step: usize,
    }
    read_state::<Step>(&latest(dir)?).ok().map(|s| s.step)
}

/// The progress saved in the checkpoint directory `from` (one [`latest`] returned).
pub fn read_state<S: serde::de::DeserializeOwned>(from: &Path) -> Result<S, String> {
    let path = from.join(STATE);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, step: usize) -> Result<(), String> {
        save(
            dir,
            &step,
            |p, e| format!("{}: {e}", p.display()),
            |next| {
                std::fs::write(next.join("weights"), step.to_string()).map_err(|e| e.to_string())
            },
        )
    }

    #[test]
    fn the_latest_complete_checkpoint_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(latest(dir.path()), None);
        write(dir.path(), 3).unwrap();
        write(dir.path(), 7).unwrap();
        let from = latest(dir.path()).unwrap();
        assert_eq!(read_state::<usize>(&from).unwrap(), 7);
        assert_eq!(std::fs::read_to_string(from.join("weights")).unwrap(), "7");
        // A process that died after moving `latest` aside, before `next` took its place.
        std::fs::rename(dir.path().join(LATEST), dir.path().join(OLD)).unwrap();
        std::fs::create_dir_all(dir.path().join(NEXT)).unwrap();
        let from = latest(dir.path()).unwrap();
        assert_eq!(read_state::<usize>(&from).unwrap(), 7);
        // The next save replaces both the stale `next` and `old`.
        write(dir.path(), 9).unwrap();
        assert_eq!(
            read_state::<usize>(&latest(dir.path()).unwrap()).unwrap(),
            9
        );
        assert!(!dir.path().join(OLD).exists() && !dir.path().join(NEXT).exists());
    }
}
