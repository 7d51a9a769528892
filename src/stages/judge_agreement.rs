//! The `judge_agreement` table stage (paper §4.3: its GPT-4 judge was trusted because it agreed
//! with humans; here every judge of a run is checked against the others): per task, axis and
//! judge, over all comparisons and over each comparison alone, the share of items it decides
//! and, for a judge asked in both orders, how often both orders give the same answer; per pair
//! of judges, how often they pick the same side on the items both decide. An `lm:` judge's row
//! against the oracle says whether it meets the bar of a judge whose rows can be read: it
//! decides at least [`BAR_PCT`] % of the items and agrees with the oracle on at least
//! [`BAR_PCT`] % of the items both decide.

use std::collections::BTreeMap;

use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use super::judge::{ItemVerdicts, VERDICTS};
use super::planning::{PlanError, Planned};
use super::stage::{Ctx, Stage, StageError, StageKind, read_json};
use super::table::TableConfig;
use crate::eval::judge::{Judged, Verdict};
use crate::eval::winrate::{Estimate, Rate};
use crate::tables::{
    TableError, estimate_cols, frame_err, opt_col, render_parquet, str_col, u64_col,
};

/// The table's file stem.
pub const STEM: &str = "judge_agreement";

/// Id of the table stage.
pub const ID: &str = "judge_agreement/table";

/// The bar (percent) a judge's decided share and its agreement with the oracle must reach.
pub const BAR_PCT: f64 = 80.0;

/// The stage type.
pub struct JudgeAgreement;

/// The table over judge stages `judges` (every judge of every task).
pub fn plan(judges: Vec<String>) -> Result<Planned, PlanError> {
    Planned::new::<JudgeAgreement>(ID, &TableConfig { inputs: judges })
}

/// One row: a judge on one task and axis, against one other judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgreementRow {
    /// Task.
    pub task: String,
    /// Axis.
    pub axis: String,
    /// The comparison the row counts: [`ALL`], or one comparison as `A vs B`.
    pub comparison: String,
    /// The judge.
    pub judge: String,
    /// The judge compared with.
    pub other: String,
    /// Items (comparison × prompt) the judge decided or tied.
    pub n_items: u64,
    /// Items it decided (not a tie).
    pub n_decided: u64,
    /// Items asked in both orders.
    pub n_both_orders: u64,
    /// Of those, items whose two answers agree.
    pub n_order_consistent: u64,
    /// Items both judges judged.
    pub n_common: u64,
    /// Items both judges decided.
    pub n_both_decided: u64,
    /// Of those, items where they pick the same side.
    pub n_agree: u64,
}

impl AgreementRow {
    fn rate(n: u64, k: u64) -> Option<Estimate> {
        Rate::new(n, k)
            .ok()
            .and_then(|r| r.estimate().ok())
            .map(Estimate::percent)
    }

    /// Decided share (percent).
    pub fn decided(&self) -> Option<Estimate> {
        Self::rate(self.n_items, self.n_decided)
    }

    /// Position consistency (percent), for judges asked in both orders.
    pub fn consistency(&self) -> Option<Estimate> {
        Self::rate(self.n_both_orders, self.n_order_consistent)
    }

    /// Agreement with `other` on the items both decide (percent).
    pub fn agreement(&self) -> Option<Estimate> {
        Self::rate(self.n_both_decided, self.n_agree)
    }

    /// For an `lm:` judge against the oracle: whether it meets [`BAR_PCT`] on both counts.
    pub fn meets_bar(&self) -> Option<bool> {
        if !(self.judge.starts_with("lm:") && self.other == "oracle") {
            return None;
        }
        let decided = self.decided().map_or(0.0, |e| e.value);
        let agree = self.agreement().map_or(0.0, |e| e.value);
        Some(decided >= BAR_PCT && agree >= BAR_PCT)
    }
}

/// Items judged by one judge on one task and axis, keyed by (method A, method B, prompt).
type Items = BTreeMap<(String, String, String), Judged>;

/// The judges of one (task, axis), in input order, with their items, and the comparisons
/// (method A, method B) in input order.
struct Group {
    task: String,
    axis: String,
    judges: Vec<(String, Items)>,
    comparisons: Vec<(String, String)>,
}

/// The `comparison` of a row over every comparison of its task and axis.
pub const ALL: &str = "all";

/// The rows of every judge against every other on each task and axis, in judge order: first
/// over all comparisons (`comparison` = [`ALL`]), then over each comparison alone (`A vs B`),
/// since a judge that reads wide gaps well can still fail between two aligned policies.
pub fn rows(verdicts: &[ItemVerdicts]) -> Vec<AgreementRow> {
    let mut groups: Vec<Group> = Vec::new();
    for v in verdicts {
        let at = match groups
            .iter()
            .position(|g| g.task == v.task && g.axis == v.axis)
        {
            Some(i) => i,
            None => {
                groups.push(Group {
                    task: v.task.clone(),
                    axis: v.axis.clone(),
                    judges: Vec::new(),
                    comparisons: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        let pair = (v.method_a.clone(), v.method_b.clone());
        if !g.comparisons.contains(&pair) {
            g.comparisons.push(pair);
        }
        let j = match g.judges.iter().position(|(name, _)| *name == v.judge) {
            Some(j) => j,
            None => {
                g.judges.push((v.judge.clone(), Items::new()));
                g.judges.len() - 1
            }
        };
        for (prompt, judged) in &v.items {
            let k = (v.method_a.clone(), v.method_b.clone(), prompt.clone());
            g.judges[j].1.insert(k, *judged);
        }
    }
    let mut out = Vec::new();
    for g in &groups {
        let scopes = std::iter::once(None).chain(g.comparisons.iter().map(Some));
        for scope in scopes {
            let comparison = scope.map_or(ALL.to_string(), |(a, b)| format!("{a} vs {b}"));
            let within =
                |k: &(String, String, String)| scope.is_none_or(|(a, b)| k.0 == *a && k.1 == *b);
            for (name, items) in &g.judges {
                let mine: Vec<(&(String, String, String), &Judged)> =
                    items.iter().filter(|(k, _)| within(k)).collect();
                let n_decided = mine
                    .iter()
                    .filter(|(_, j)| j.verdict != Verdict::Tie)
                    .count() as u64;
                let orders: Vec<[Verdict; 2]> = mine.iter().filter_map(|(_, j)| j.orders).collect();
                let n_order_consistent = orders.iter().filter(|[x, y]| x == y).count() as u64;
                for (other, theirs) in g.judges.iter().filter(|(o, _)| o != name) {
                    let common: Vec<(Verdict, Verdict)> = mine
                        .iter()
                        .filter_map(|(k, j)| theirs.get(*k).map(|t| (j.verdict, t.verdict)))
                        .collect();
                    let both: Vec<&(Verdict, Verdict)> = common
                        .iter()
                        .filter(|(x, y)| *x != Verdict::Tie && *y != Verdict::Tie)
                        .collect();
                    out.push(AgreementRow {
                        task: g.task.clone(),
                        axis: g.axis.clone(),
                        comparison: comparison.clone(),
                        judge: name.clone(),
                        other: other.clone(),
                        n_items: mine.len() as u64,
                        n_decided,
                        n_both_orders: orders.len() as u64,
                        n_order_consistent,
                        n_common: common.len() as u64,
                        n_both_decided: both.len() as u64,
                        n_agree: both.iter().filter(|(x, y)| x == y).count() as u64,
                    });
                }
            }
        }
    }
    out
}

/// The table: task, axis, comparison, judge, other, n_items, n_decided, decided_pct (with
/// stderr and Wilson CI), n_both_orders, n_order_consistent, order_consistency_pct (with CI),
/// n_common, n_both_decided, n_agree, agreement_pct (with stderr and CI), meets_bar.
pub fn frame(rows: &[AgreementRow]) -> Result<DataFrame, TableError> {
    let s = |f: fn(&AgreementRow) -> &String| rows.iter().map(|r| f(r).clone()).collect();
    let n = |f: fn(&AgreementRow) -> u64| rows.iter().map(f).collect::<Vec<u64>>();
    let est = |f: fn(&AgreementRow) -> Option<Estimate>| rows.iter().map(f).collect::<Vec<_>>();
    let mut cols = vec![
        str_col("task", s(|r| &r.task)),
        str_col("axis", s(|r| &r.axis)),
        str_col("comparison", s(|r| &r.comparison)),
        str_col("judge", s(|r| &r.judge)),
        str_col("other", s(|r| &r.other)),
        u64_col("n_items", n(|r| r.n_items)),
        u64_col("n_decided", n(|r| r.n_decided)),
    ];
    cols.extend(estimate_cols(
        "decided_pct",
        "decided_stderr_pct",
        "decided_ci_low_pct",
        "decided_ci_high_pct",
        &est(AgreementRow::decided),
    ));
    cols.push(u64_col("n_both_orders", n(|r| r.n_both_orders)));
    cols.push(u64_col("n_order_consistent", n(|r| r.n_order_consistent)));
    cols.push(opt_col(
        "order_consistency_pct",
        est(AgreementRow::consistency)
            .iter()
            .map(|e| e.map(|e| e.value))
            .collect(),
    ));
    cols.push(u64_col("n_common", n(|r| r.n_common)));
    cols.push(u64_col("n_both_decided", n(|r| r.n_both_decided)));
    cols.push(u64_col("n_agree", n(|r| r.n_agree)));
    cols.extend(estimate_cols(
        "agreement_pct",
        "agreement_stderr_pct",
        "agreement_ci_low_pct",
        "agreement_ci_high_pct",
        &est(AgreementRow::agreement),
    ));
    cols.push(Column::new(
        "meets_bar".into(),
        rows.iter().map(AgreementRow::meets_bar).collect::<Vec<_>>(),
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}

impl Stage for JudgeAgreement {
    const KIND: StageKind = StageKind::JudgeAgreement;
    const VERSION: u32 = 2;
    const TABLE: Option<&'static str> = Some(STEM);
    type Config = TableConfig;

    fn inputs(config: &TableConfig) -> Vec<String> {
        config.inputs.clone()
    }

    fn run(ctx: &Ctx<'_>, config: &TableConfig) -> Result<serde_json::Value, StageError> {
        let mut verdicts: Vec<ItemVerdicts> = Vec::new();
        for id in &config.inputs {
            verdicts.extend(read_json::<Vec<ItemVerdicts>>(&ctx.input(id)?, VERDICTS)?);
        }
        let rows = rows(&verdicts);
        if rows.is_empty() {
            return Err(StageError::Degenerate {
                what: format!(
                    "the {STEM} table has no rows: fewer than two judges on any task ({} judge \
                     stages)",
                    config.inputs.len()
                ),
                fix: "name at least two judges in `eval.judges`".into(),
            });
        }
        let frame = frame(&rows)?;
        ctx.write(&format!("{STEM}.parquet"), &render_parquet(&frame)?)?;
        Ok(serde_json::json!({ "rows": rows.len() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(judge: &str, verdicts: &[(Verdict, Option<[Verdict; 2]>)]) -> ItemVerdicts {
        ItemVerdicts {
            judge: judge.into(),
            task: "helpful".into(),
            axis: "help".into(),
            method_a: "rlcd".into(),
            method_b: "rlaif".into(),
            items: verdicts
                .iter()
                .enumerate()
                .map(|(i, (verdict, orders))| {
                    (
                        format!("p{i}"),
                        Judged {
                            verdict: *verdict,
                            orders: *orders,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn judges_are_counted_against_each_other() {
        use Verdict::{A, B, Tie};
        let oracle = items(
            "oracle",
            &[(A, None), (B, None), (A, None), (Tie, None), (A, None)],
        );
        let lm = items(
            "lm:sim",
            &[
                (A, Some([A, A])),
                (A, Some([A, A])),
                (Tie, Some([A, B])),
                (B, Some([B, B])),
                (A, Some([A, A])),
            ],
        );
        let rows = rows(&[oracle.clone(), lm.clone()]);
        assert_eq!(
            rows.len(),
            4,
            "2 judges over all comparisons and over the one"
        );
        assert_eq!(rows[0].comparison, ALL);
        assert_eq!(rows[2].comparison, "rlcd vs rlaif");
        assert_eq!(
            rows[0],
            AgreementRow {
                comparison: ALL.into(),
                ..rows[2].clone()
            }
        );
        let (o, l) = (&rows[0], &rows[1]);
        assert_eq!((o.judge.as_str(), o.other.as_str()), ("oracle", "lm:sim"));
        assert_eq!((o.n_items, o.n_decided, o.n_both_orders), (5, 4, 0));
        assert_eq!(o.consistency(), None);
        // Both decide items 0, 1 and 4; they agree on 0 and 4.
        assert_eq!((l.n_common, l.n_both_decided, l.n_agree), (5, 3, 2));
        assert_eq!(
            (l.n_decided, l.n_both_orders, l.n_order_consistent),
            (4, 5, 4)
        );
        assert_eq!(l.consistency().map(|e| e.value), Some(80.0));
        assert_eq!(l.decided().map(|e| e.value), Some(80.0));
        // Decides 80 %, but agrees with the oracle on 2 of 3: below the bar.
        assert_eq!(l.meets_bar(), Some(false));
        assert_eq!(o.meets_bar(), None);
        let df = frame(&rows).unwrap();
        assert_eq!(df.height(), 4);
        assert!(df.column("meets_bar").is_ok() && df.column("comparison").is_ok());

        // A second comparison: the judges agree on all of it; each comparison's row counts
        // its own items, and the rows over all comparisons count both.
        let other = |mut v: ItemVerdicts| {
            v.method_b = "base".into();
            v.items.iter_mut().for_each(|(_, j)| {
                *j = Judged {
                    verdict: A,
                    orders: j.orders.map(|_| [A, A]),
                }
            });
            v
        };
        let rows = super::rows(&[oracle.clone(), lm.clone(), other(oracle), other(lm)]);
        assert_eq!(rows.len(), 6);
        let find = |c: &str, judge: &str| {
            rows.iter()
                .find(|r| r.comparison == c && r.judge == judge)
                .unwrap()
                .clone()
        };
        let (all, first, second) = (
            find(ALL, "lm:sim"),
            find("rlcd vs rlaif", "lm:sim"),
            find("rlcd vs base", "lm:sim"),
        );
        assert_eq!((first.n_both_decided, first.n_agree), (3, 2));
        assert_eq!((second.n_both_decided, second.n_agree), (5, 5));
        assert_eq!((all.n_items, all.n_both_decided, all.n_agree), (10, 8, 7));
        // Over all comparisons the judge passes (9 of 10 decided, 7 of 8 agree) while it
        // fails the first comparison alone (2 of 3 agree).
        assert_eq!(all.meets_bar(), Some(true));
        assert_eq!(first.meets_bar(), Some(false));
        assert_eq!(second.meets_bar(), Some(true));
    }
}
