//! Which cells of a sweep this process runs: `i/n` (0-based), or `auto` / `auto/N` read from a
//! job array's environment: Slurm's `SLURM_ARRAY_TASK_ID` and `SLURM_ARRAY_TASK_COUNT`, or a
//! Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` (which has no count variable, so its count
//! is given as `auto/N`). These variables are the schedulers' own; none carries the `RLCD_*`
//! prefix of recipe overrides.

use super::SweepError;

/// Slurm's index of this array task.
pub const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
/// Slurm's number of tasks in the array.
pub const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
/// Slurm's lowest task index of the array.
pub const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
/// Slurm's step between task indices.
pub const SLURM_STEP: &str = "SLURM_ARRAY_TASK_STEP";
/// A Kubernetes Indexed Job's index of this pod.
pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";

/// A shard as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    /// Shard `i` of `n`.
    Fixed(usize, usize),
    /// From the job array's environment; the count given (`auto/N`) or read from Slurm.
    Auto(Option<usize>),
}

impl ShardSpec {
    /// Parses `i/n`, `auto` or `auto/N`.
    pub fn parse(text: &str) -> Result<Self, SweepError> {
        let bad = || SweepError::BadShard {
            text: text.to_string(),
        };
        let (first, count) = match text.split_once('/') {
            Some((a, b)) => (a.trim(), Some(b.trim())),
            None => (text.trim(), None),
        };
        let count = count
            .map(|c| c.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(bad))
            .transpose()?;
        if first == "auto" {
            return Ok(Self::Auto(count));
        }
        let i: usize = first.parse().map_err(|_| bad())?;
        match count {
            Some(n) if i < n => Ok(Self::Fixed(i, n)),
            _ => Err(bad()),
        }
    }

    /// The shard `(i, n)`, reading the job array's variables through `var` for `auto`.
    pub fn resolve(
        self,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(usize, usize), SweepError> {
        let (given, count) = match self {
            Self::Fixed(i, n) => return Ok((i, n)),
            Self::Auto(count) => (if count.is_some() { "auto/N" } else { "auto" }, count),
        };
        let number = |name: &str| -> Result<Option<usize>, SweepError> {
            var(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| SweepError::ShardEnv {
                        message: format!("{name} = {v:?} is not a non-negative integer"),
                        fix: format!("run under a job array that sets {name}, or pass --shard i/n"),
                    })
                })
                .transpose()
        };
        if let Some(id) = number(SLURM_ID)? {
            if let Some(min) = number(SLURM_MIN)?
                && min != 0
            {
                return Err(SweepError::ShardEnv {
                    message: format!("the Slurm array starts at task {min} ({SLURM_MIN})"),
                    fix: "submit the array as --array=0-<n-1> so task ids are shard indices".into(),
                });
            }
            if let Some(step) = number(SLURM_STEP)?
                && step != 1
            {
                return Err(SweepError::ShardEnv {
                    message: format!("the Slurm array steps by {step} ({SLURM_STEP})"),
                    fix: "submit the array as --array=0-<n-1> (step 1; a %throttle is fine)".into(),
                });
            }
            let slurm_count = number(SLURM_COUNT)?;
            let n = match (count, slurm_count) {
                (Some(n), Some(m)) if n != m => {
                    return Err(SweepError::ShardEnv {
                        message: format!(
                            "--shard {given} says {n} shards but the Slurm array has {m} tasks ({SLURM_COUNT})"
                        ),
                        fix: "pass --shard auto and let the array's size decide".into(),
                    });
                }
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err(SweepError::ShardEnv {
                        message: format!("{SLURM_ID} is set but {SLURM_COUNT} is not"),
                        fix: "pass the number of shards as --shard auto/N".into(),
                    });
                }
            };
            return check(id, n, SLURM_ID);
        }
        if let Some(index) = number(K8S_INDEX)? {
            let Some(n) = count else {
                return Err(SweepError::ShardEnv {
                    message: format!(
                        "{K8S_INDEX} = {index} is set, but a Kubernetes Indexed Job has no variable holding its count"
                    ),
                    fix: "pass the Job's `completions` as --shard auto/N".into(),
                });
            };
            return check(index, n, K8S_INDEX);
        }
        Err(SweepError::ShardEnv {
            message: format!(
                "--shard {given} found neither {SLURM_ID} (a Slurm job array) nor {K8S_INDEX} (a Kubernetes Indexed Job)"
            ),
            fix: "run it as an array task, or pass --shard i/n".into(),
        })
    }
}

fn check(i: usize, n: usize, var: &str) -> Result<(usize, usize), SweepError> {
    if i >= n {
        return Err(SweepError::ShardEnv {
            message: format!("{var} = {i} is not below the shard count {n}"),
            fix: "submit one task per shard, indices 0 to n-1".into(),
        });
    }
    Ok((i, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn fixed_and_auto_shards_parse() {
        assert_eq!(ShardSpec::parse("1/4").unwrap(), ShardSpec::Fixed(1, 4));
        assert_eq!(ShardSpec::parse(" 3 / 4 ").unwrap(), ShardSpec::Fixed(3, 4));
        assert_eq!(ShardSpec::parse("auto").unwrap(), ShardSpec::Auto(None));
        assert_eq!(
            ShardSpec::parse("auto/8").unwrap(),
            ShardSpec::Auto(Some(8))
        );
        for bad in ["2/2", "1/0", "x/2", "1", "-1/2", "auto/0", "auto/x"] {
            assert!(ShardSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_arrays_give_index_and_count() {
        let slurm = env(&[
            (SLURM_ID, "2"),
            (SLURM_COUNT, "4"),
            (SLURM_MIN, "0"),
            (SLURM_STEP, "1"),
        ]);
        assert_eq!(ShardSpec::Auto(None).resolve(&slurm).unwrap(), (2, 4));
        assert_eq!(ShardSpec::Auto(Some(4)).resolve(&slurm).unwrap(), (2, 4));
        let err = ShardSpec::Auto(Some(3))
            .resolve(&slurm)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has 4 tasks"), "{err}");
        let offset = env(&[(SLURM_ID, "5"), (SLURM_COUNT, "4"), (SLURM_MIN, "3")]);
        let err = ShardSpec::Auto(None)
            .resolve(&offset)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("starts at task 3") && err.contains("--array=0-"),
            "{err}"
        );
        let stepped = env(&[(SLURM_ID, "2"), (SLURM_COUNT, "2"), (SLURM_STEP, "2")]);
        let err = ShardSpec::Auto(None)
            .resolve(&stepped)
            .unwrap_err()
            .to_string();
        assert!(err.contains("steps by 2"), "{err}");
    }

    #[test]
    fn kubernetes_jobs_need_their_count() {
        let k8s = env(&[(K8S_INDEX, "1")]);
        assert_eq!(ShardSpec::Auto(Some(3)).resolve(&k8s).unwrap(), (1, 3));
        let err = ShardSpec::Auto(None).resolve(&k8s).unwrap_err().to_string();
        assert!(err.contains("--shard auto/N"), "{err}");
        let err = ShardSpec::Auto(Some(1))
            .resolve(&k8s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not below the shard count 1"), "{err}");
    }

    #[test]
    fn no_array_is_an_error_naming_the_variables() {
        let err = ShardSpec::Auto(None)
            .resolve(&env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(SLURM_ID) && err.contains(K8S_INDEX), "{err}");
        assert_eq!(ShardSpec::Fixed(0, 2).resolve(&env(&[])).unwrap(), (0, 2));
    }
}
