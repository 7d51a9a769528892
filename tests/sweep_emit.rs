//! The job files `rlcd sweep --emit` writes, pinned by snapshots: the Slurm array, merge and
//! submit scripts, and the Kubernetes Indexed Job and merge Job, which read back as `batch/v1`
//! Jobs (unknown fields refused) equal to the ones written.

use std::path::PathBuf;

use rlcd::sweep::emit::{SlurmOptions, SweepJob, slurm};
use rlcd::sweep::k8s::{self, Job, K8sOptions};

fn job(root: &std::path::Path) -> SweepJob {
    SweepJob {
        workdir: root.to_path_buf(),
        rlcd: PathBuf::from("/opt/rlcd/bin/rlcd"),
        recipe: root.join("recipes/theory/appendix-n.toml"),
        overrides: vec!["seed=1".into()],
        grid: vec!["theory.delta=0,1,2,3".into(), "theory.sigma_d=1,2".into()],
        out: root.join("results/sweeps/delta"),
        cells: 8,
        lock_timeout: Some(3600),
    }
}

fn options() -> SlurmOptions {
    SlurmOptions {
        tasks: Some(4),
        throttle: Some(2),
        cpus_per_task: Some(8),
        gres: Some("gpu:1".into()),
        time: Some("4:00:00".into()),
        sbatch_args: vec!["--partition=gpu".into()],
        rlcd: None,
    }
}

#[test]
fn slurm_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = PathBuf::from("/shared/project");
    let files = slurm(&job(&root), &options(), dir.path()).expect("scripts");
    assert_eq!(files.tasks, 4);
    assert!(
        files.logs.is_dir(),
        "Slurm needs the log directory to exist"
    );
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .expect("script")
            .replace(&dir.path().display().to_string(), "<DIR>")
    };
    insta::assert_snapshot!("slurm_array", read(&files.array));
    insta::assert_snapshot!("slurm_merge", read(&files.merge));
    insta::assert_snapshot!("slurm_submit", read(&files.submit));
}

#[test]
fn kubernetes_manifests_are_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = PathBuf::from("/shared/project");
    let k8s_opts = K8sOptions {
        image: Some("registry.example/rlcd:0.1".into()),
        pvc: Some("rlcd-project".into()),
        mount: "/work".into(),
    };
    let slurm_opts = SlurmOptions {
        rlcd: Some(PathBuf::from("rlcd")),
        ..options()
    };
    let files = k8s::write(&job(&root), &slurm_opts, &k8s_opts, dir.path()).expect("manifests");
    let (shards, merge) = k8s::jobs(&job(&root), &slurm_opts, &k8s_opts).expect("jobs");
    for (path, written, name) in [
        (&files.shards, &shards, "k8s_shards"),
        (&files.merge, &merge, "k8s_merge"),
    ] {
        let text = std::fs::read_to_string(path).expect("manifest");
        let back: Job = serde_saphyr::from_str(&text).expect("a batch/v1 Job");
        assert_eq!(&back, written);
        assert_eq!(
            (back.api_version.as_str(), back.kind.as_str()),
            ("batch/v1", "Job")
        );
        insta::assert_snapshot!(name, text);
    }
    assert_eq!(shards.spec.completion_mode, "Indexed");
    assert_eq!((shards.spec.completions, shards.spec.parallelism), (4, 2));
    let command = &shards.spec.template.spec.containers[0].command;
    assert!(
        command.windows(2).any(|w| w == ["--shard", "auto/4"]),
        "{command:?}"
    );
    insta::assert_snapshot!(
        "k8s_submit",
        std::fs::read_to_string(&files.submit).expect("submit.sh")
    );
    // Without an image or a claim there is nothing to run.
    let err = k8s::jobs(&job(&root), &slurm_opts, &K8sOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--image"), "{err}");
}
