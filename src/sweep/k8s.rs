//! Kubernetes manifests for running a sweep: an Indexed Job with one `--shard auto/N` pod per
//! shard (Kubernetes gives each its `JOB_COMPLETION_INDEX`), a merge Job, and `submit.sh`,
//! which applies the shards, waits for `condition=complete` and then applies the merge. Every
//! pod mounts one persistent volume claim holding the project (recipes, templates, prompt and
//! model files) and the results root, and runs only the `rlcd` binary of its image.
//!
//! The manifest types below are the subset of `batch/v1` Job the emitted files use; they
//! serialize the files and read them back (unknown fields refused) in the tests.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SweepError;
use super::emit::{SlurmOptions, SweepJob};

/// Options of the emitted Kubernetes Jobs.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct K8sOptions {
    /// With `--emit k8s`: the container image holding the `rlcd` binary.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// With `--emit k8s`: the persistent volume claim (on a shared filesystem) holding the
    /// project and its results root.
    #[arg(long, value_name = "CLAIM")]
    pub pvc: Option<String>,
    /// With `--emit k8s`: where the claim is mounted, the pods' working directory.
    #[arg(long, value_name = "PATH", default_value = "/work")]
    pub mount: String,
}

/// A `batch/v1` Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// `batch/v1`.
    pub api_version: String,
    /// `Job`.
    pub kind: String,
    /// Name and labels.
    pub metadata: Metadata,
    /// The Job's spec.
    pub spec: JobSpec,
}

/// Object metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Object name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A Job's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// Pods that must succeed.
    pub completions: usize,
    /// Pods running at once.
    pub parallelism: usize,
    /// `Indexed` for the shards (each pod gets `JOB_COMPLETION_INDEX`), `NonIndexed` for the
    /// merge.
    pub completion_mode: String,
    /// Retries of a failed pod (0: a failed shard fails the Job).
    pub backoff_limit: usize,
    /// The pods.
    pub template: PodTemplate,
}

/// A pod template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplate {
    /// The pod spec.
    pub spec: PodSpec,
}

/// A pod spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    /// `Never`: a failed shard is reported, not restarted in place.
    pub restart_policy: String,
    /// The one container.
    pub containers: Vec<Container>,
    /// The shared volume.
    pub volumes: Vec<Volume>,
}

/// A container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Image.
    pub image: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Working directory (the mounted project).
    pub working_dir: String,
    /// Mounts.
    pub volume_mounts: Vec<VolumeMount>,
    /// Resource requests and limits.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

/// Resource requests and limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Requests (`cpu`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// Limits (`nvidia.com/gpu`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

impl Resources {
    fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

/// A volume mount.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Where it is mounted.
    pub mount_path: String,
}

/// A volume backed by a persistent volume claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// The volume's name.
    pub name: String,
    /// The claim.
    pub persistent_volume_claim: ClaimRef,
}

/// A reference to a persistent volume claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimRef {
    /// The claim's name.
    pub claim_name: String,
}

/// The files of an emitted Kubernetes sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct K8sManifests {
    /// The Indexed Job of the shards.
    pub shards: std::path::PathBuf,
    /// The merge Job.
    pub merge: std::path::PathBuf,
    /// `submit.sh`.
    pub submit: std::path::PathBuf,
    /// Shards.
    pub tasks: usize,
}

/// A Kubernetes object name from `text`: lowercase letters, digits and `-`.
fn dns_name(text: &str) -> String {
    let name: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    let name = if name.is_empty() { "sweep" } else { name };
    name.chars().take(40).collect()
}

/// `path` relative to the project root `root`, as the pods see it under `mount`.
fn in_pod(root: &Path, mount: &str, path: &Path) -> Result<String, SweepError> {
    let rel = path.strip_prefix(root).map_err(|_| SweepError::Emit {
        detail: format!(
            "{} is outside the project {}, which is all the pods mount",
            path.display(),
            root.display()
        ),
    })?;
    Ok(Path::new(mount).join(rel).to_string_lossy().into_owned())
}

/// The shard and merge Jobs of `job`.
pub fn jobs(
    job: &SweepJob,
    slurm: &SlurmOptions,
    k8s: &K8sOptions,
) -> Result<(Job, Job), SweepError> {
    let missing = |flag: &str| SweepError::Emit {
        detail: format!("`--emit k8s` needs {flag}"),
    };
    let image = k8s.image.clone().ok_or_else(|| missing("--image IMAGE"))?;
    let claim = k8s.pvc.clone().ok_or_else(|| missing("--pvc CLAIM"))?;
    let tasks = job.tasks(slurm)?;
    let name = format!("rlcd-{}", dns_name(&job.stem()));
    let rlcd = slurm
        .rlcd
        .as_ref()
        .map_or_else(|| "rlcd".to_string(), |p| p.to_string_lossy().into_owned());
    let out = in_pod(&job.workdir, &k8s.mount, &job.out)?;
    let mut shard = vec![
        rlcd.clone(),
        "sweep".into(),
        in_pod(&job.workdir, &k8s.mount, &job.recipe)?,
    ];
    shard.extend(job.overrides.iter().cloned());
    for g in &job.grid {
        shard.extend(["--grid".to_string(), g.clone()]);
    }
    shard.extend([
        "--shard".into(),
        format!("auto/{tasks}"),
        "--out".into(),
        out.clone(),
    ]);
    if let Some(s) = job.lock_timeout {
        shard.extend(["--lock-timeout".into(), s.to_string()]);
    }
    let mut resources = Resources::default();
    if let Some(n) = slurm.cpus_per_task {
        resources.requests.insert("cpu".into(), n.to_string());
    }
    if let Some(g) = &slurm.gres {
        let count = g.rsplit(':').next().filter(|c| c.parse::<u32>().is_ok());
        match (g.starts_with("gpu"), count) {
            (true, Some(n)) => {
                resources
                    .limits
                    .insert("nvidia.com/gpu".into(), n.to_string());
            }
            (true, None) => {
                resources.limits.insert("nvidia.com/gpu".into(), "1".into());
            }
            _ => {
                return Err(SweepError::Emit {
                    detail: format!("--gres {g} has no Kubernetes counterpart (only gpu:N)"),
                });
            }
        }
    }
    let pod = |command: Vec<String>, resources: Resources| PodTemplate {
        spec: PodSpec {
            restart_policy: "Never".into(),
            containers: vec![Container {
                name: "rlcd".into(),
                image: image.clone(),
                command,
                working_dir: k8s.mount.clone(),
                volume_mounts: vec![VolumeMount {
                    name: "project".into(),
                    mount_path: k8s.mount.clone(),
                }],
                resources,
            }],
            volumes: vec![Volume {
                name: "project".into(),
                persistent_volume_claim: ClaimRef {
                    claim_name: claim.clone(),
                },
            }],
        },
    };
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_string(), "rlcd".to_string())]);
    let shards = Job {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        metadata: Metadata {
            name: name.clone(),
            labels: labels.clone(),
        },
        spec: JobSpec {
            completions: tasks,
            parallelism: slurm.throttle.unwrap_or(tasks).min(tasks),
            completion_mode: "Indexed".into(),
            backoff_limit: 0,
            template: pod(shard, resources),
        },
    };
    let merge = Job {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        metadata: Metadata {
            name: format!("{name}-merge"),
            labels,
        },
        spec: JobSpec {
            completions: 1,
            parallelism: 1,
            completion_mode: "NonIndexed".into(),
            backoff_limit: 0,
            template: pod(
                vec![rlcd, "sweep".into(), "--merge".into(), out],
                Resources::default(),
            ),
        },
    };
    Ok((shards, merge))
}

/// Writes `shards.yaml`, `merge.yaml` and `submit.sh` for `job` into `dir`.
pub fn write(
    job: &SweepJob,
    slurm: &SlurmOptions,
    k8s: &K8sOptions,
    dir: &Path,
) -> Result<K8sManifests, SweepError> {
    let (shards, merge) = jobs(job, slurm, k8s)?;
    crate::error::create_dir_all(dir)?;
    let yaml = |job: &Job| {
        serde_saphyr::to_string(job).map_err(|e| SweepError::Emit {
            detail: format!("cannot write the {} manifest: {e}", job.metadata.name),
        })
    };
    let files = K8sManifests {
        shards: dir.join("shards.yaml"),
        merge: dir.join("merge.yaml"),
        submit: dir.join("submit.sh"),
        tasks: shards.spec.completions,
    };
    let name = &shards.metadata.name;
    let submit = format!(
        "#!/bin/sh\n\
         # Applies the shards' Indexed Job, waits until it is Complete (as `kubectl wait\n\
         # --for=condition=complete` would, but stopping when it is Failed instead), then\n\
         # applies the merge Job; a failed shard means no merge.\n\
         set -eu\n\
         here=$(cd \"$(dirname \"$0\")\" && pwd)\n\
         kubectl apply -f \"$here/shards.yaml\"\n\
         while :; do\n\
         \x20   state=$(kubectl get job/{name} -o jsonpath='{{.status.conditions[*].type}}')\n\
         \x20   case \"$state\" in\n\
         \x20       *Complete*) break ;;\n\
         \x20       *Failed*) echo \"job {name} failed: kubectl logs -l job-name={name}\" >&2; exit 1 ;;\n\
         \x20   esac\n\
         \x20   sleep 10\n\
         done\n\
         kubectl apply -f \"$here/merge.yaml\"\n"
    );
    crate::error::write(&files.shards, yaml(&shards)?)?;
    crate::error::write(&files.merge, yaml(&merge)?)?;
    crate::error::write(&files.submit, submit)?;
    Ok(files)
}
