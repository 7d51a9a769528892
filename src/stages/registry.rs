//! The registry of stage types: the one place that maps each [`StageKind`] to its type, so the
//! runner dispatches through the [`Stage`] trait and never by name.

use super::stage::{Ctx, Stage, StageError, StageKind};
use super::{
    appendix_n, contrast, generate, heldout_pairs, import_pairs, judge, judge_agreement,
    judge_skill, judge_tuning, pair_judge, pair_labels, pm_agreement, pm_eval, policy,
    policy_training, pretrain, reward, simulate, winrates, world_eval, world_report,
};

/// Runs `S` on its configuration deserialized from `config`.
fn run_as<S: Stage>(
    ctx: &Ctx<'_>,
    config: &serde_json::Value,
) -> Result<serde_json::Value, StageError> {
    let typed: S::Config = typed::<S>(config)?;
    S::run(ctx, &typed)
}

fn typed<S: Stage>(config: &serde_json::Value) -> Result<S::Config, StageError> {
    serde_json::from_value(config.clone()).map_err(|source| StageError::Config {
        kind: S::KIND.name(),
        source,
    })
}

/// The configuration `config` of a stage of `S` deserialized and serialized again.
fn round_trip_as<S: Stage>(config: &serde_json::Value) -> Result<serde_json::Value, StageError> {
    let typed: S::Config = typed::<S>(config)?;
    serde_json::to_value(&typed).map_err(|source| StageError::Config {
        kind: S::KIND.name(),
        source,
    })
}

macro_rules! registry {
    ($($kind:ident => $ty:ty),* $(,)?) => {
        /// Computes a stage of `kind` with `config` (its serialized configuration).
        pub fn run(
            kind: StageKind,
            ctx: &Ctx<'_>,
            config: &serde_json::Value,
        ) -> Result<serde_json::Value, StageError> {
            match kind {
                $(StageKind::$kind => run_as::<$ty>(ctx, config),)*
            }
        }

        /// The format version of `kind`.
        pub fn version(kind: StageKind) -> u32 {
            match kind {
                $(StageKind::$kind => <$ty as Stage>::VERSION,)*
            }
        }

        /// The table a stage of `kind` writes (`<stem>.parquet`), for table stages.
        pub fn table(kind: StageKind) -> Option<&'static str> {
            match kind {
                $(StageKind::$kind => <$ty as Stage>::TABLE,)*
            }
        }

        /// The upstream ids `config` names for a stage of `kind`.
        pub fn inputs(kind: StageKind, config: &serde_json::Value) -> Result<Vec<String>, StageError> {
            match kind {
                $(StageKind::$kind => Ok(<$ty as Stage>::inputs(&typed::<$ty>(config)?)),)*
            }
        }

        /// `config` read as the typed configuration of `kind` and written back: equal to
        /// `config` exactly when every field of it is one the stage reads.
        pub fn round_trip(kind: StageKind, config: &serde_json::Value) -> Result<serde_json::Value, StageError> {
            match kind {
                $(StageKind::$kind => round_trip_as::<$ty>(config),)*
            }
        }

        #[cfg(test)]
        fn declared_kinds() -> Vec<StageKind> {
            vec![$(<$ty as Stage>::KIND,)*]
        }
    };
}

registry! {
    AppendixNCell => appendix_n::cell::Cell,
    AppendixNTable => appendix_n::table::Table,
    Contrast => contrast::Contrast,
    Pretrain => pretrain::Pretrain,
    JudgeTuning => judge_tuning::JudgeTuningStage,
    WorldEval => world_eval::WorldEval,
    WorldReport => world_report::WorldReport,
    Simulate => simulate::Simulate,
    ImportPairs => import_pairs::ImportPairs,
    HeldoutPairs => heldout_pairs::HeldoutPairs,
    Reward => reward::Reward,
    PmEval => pm_eval::PmEval,
    PairJudge => pair_judge::PairJudge,
    PairLabels => pair_labels::PairLabels,
    PmAgreement => pm_agreement::PmAgreement,
    Policy => policy::Policy,
    Generate => generate::Generate,
    Judge => judge::Judge,
    Winrates => winrates::Winrates,
    PolicyTraining => policy_training::PolicyTraining,
    JudgeAgreement => judge_agreement::JudgeAgreement,
    JudgeSkill => judge_skill::JudgeSkill,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_its_own_type() {
        assert_eq!(declared_kinds(), StageKind::ALL.to_vec());
    }
}
