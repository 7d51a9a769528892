//! The `judge_agreement` table stage (paper §4.3: its GPT-4 judge was trusted because it agreed
//! with humans; here every judge of a run is checked against the others): per task, axis and
//! judge, over all comparisons and over each comparison alone, the share of items it decides
//! and, for a judge asked in both orders, how often both orders give the same answer; per pair
//! of judges, how often they pick the same side on the items both decide. An `lm:` judge's row
//! against the oracle says whether it meets the bar of a judge whose rows can be read: it
//! decides at least [`BAR_PCT`] % of the items and agrees with the oracle on at least
//! [`BAR_PCT`] % of the items both decide. With the oracle among the judges, the rows over all
//! comparisons are repeated for each band of the oracle's score gap ([`GAP_BANDS`]): where a
//! judge fails, between outputs the oracle barely separates or between clearly different ones.

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

/// The bands of the oracle's absolute score gap that rows are repeated for: `(label, low,
/// high)`, an item in the band when `low < |gap| ≤ high` (the first band includes 0, where the
/// oracle ties). One outline item is worth 1 on the outline axis and a wrong fact 1.5 to 5 on
/// helpfulness, so the bands run from differences of detail to differences of kind.
pub const GAP_BANDS: [(&str, f64, f64); 5] = [
    ("0-0.5", f64::NEG_INFINITY, 0.5),
    ("0.5-1", 0.5, 1.0),
    ("1-2", 1.0, 2.0),
    ("2-4", 2.0, 4.0),
    ("4+", 4.0, f64::INFINITY),
];

/// The band of [`GAP_BANDS`] that oracle score gap `gap` falls in.
pub fn gap_band(gap: f64) -> &'static str {
    let g = gap.abs();
    GAP_BANDS
        .iter()
        .find(|(_, low, high)| g > *low && g <= *high)
        .map_or(GAP_BANDS[GAP_BANDS.len() - 1].0, |(label, _, _)| label)
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
    /// The band of the oracle's score gap the row counts ([`GAP_BANDS`]), or [`ALL`].
    pub oracle_gap: String,
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

    /// For an `lm:` judge against the oracle: whether it meets [`BAR_PCT`] on both counts
    /// (not asked of a band of the oracle's gap alone).
    pub fn meets_bar(&self) -> Option<bool> {
        if !(self.judge.starts_with("lm:") && self.other == "oracle") || self.oracle_gap != ALL {
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

/// The items of one row's scope: every comparison or one, and every oracle gap or one band.
struct Scope<'a> {
    comparison: Option<&'a (String, String)>,
    band: Option<&'static str>,
}

/// The rows of every judge against every other on each task and axis, in judge order: first
/// over all comparisons (`comparison` = [`ALL`]), then over each comparison alone (`A vs B`),
/// since a judge that reads wide gaps well can still fail between two aligned policies; then,
/// where a judge kept the oracle's score gaps, over all comparisons in each band of
/// [`GAP_BANDS`] that has items.
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
        // The oracle's gap band of each item it judged.
        let bands: BTreeMap<&(String, String, String), &'static str> = g
            .judges
            .iter()
            .flat_map(|(_, items)| items.iter())
            .filter_map(|(k, j)| j.gap.map(|gap| (k, gap_band(gap))))
            .collect();
        let scopes = std::iter::once(Scope {
            comparison: None,
            band: None,
        })
        .chain(g.comparisons.iter().map(|c| Scope {
            comparison: Some(c),
            band: None,
        }))
        .chain(
            GAP_BANDS
                .iter()
                .filter(|(label, _, _)| bands.values().any(|b| b == label))
                .map(|(label, _, _)| Scope {
                    comparison: None,
                    band: Some(label),
                }),
        );
        for scope in scopes {
            let comparison = scope
                .comparison
                .map_or(ALL.to_string(), |(a, b)| format!("{a} vs {b}"));
            let within = |k: &(String, String, String)| {
                scope.comparison.is_none_or(|(a, b)| k.0 == *a && k.1 == *b)
                    && scope.band.is_none_or(|band| bands.get(k) == Some(&band))
            };
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
                        oracle_gap: scope.band.unwrap_or(ALL).to_string(),
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

/// The table: task, axis, comparison, oracle_gap, judge, other, n_items, n_decided, decided_pct (with
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
        str_col("oracle_gap", s(|r| &r.oracle_gap)),
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
    /// 3: rows by band of the oracle's score gap.
    const VERSION: u32 = 3;
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
                            gap: None,
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
                    gap: None,
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

    #[test]
    fn rows_by_band_of_the_oracles_gap_count_the_items_in_that_band() {
        use Verdict::{A, B, Tie};
        assert_eq!(gap_band(0.0), "0-0.5");
        assert_eq!(gap_band(-0.5), "0-0.5");
        assert_eq!(gap_band(0.51), "0.5-1");
        assert_eq!(gap_band(-4.0), "2-4");
        assert_eq!(gap_band(4.01), "4+");
        let mut oracle = items(
            "oracle",
            &[(A, None), (B, None), (A, None), (Tie, None), (A, None)],
        );
        for ((_, j), gap) in oracle.items.iter_mut().zip([0.3, -0.7, 1.5, 0.0, 5.0]) {
            j.gap = Some(gap);
        }
        let lm = items(
            "lm:sim",
            &[
                (A, Some([A, A])),
                (A, Some([A, A])),
                (B, Some([B, B])),
                (B, Some([B, B])),
                (A, Some([A, B])),
            ],
        );
        let rows = rows(&[oracle, lm]);
        let bands: Vec<&str> = rows
            .iter()
            .filter(|r| r.judge == "lm:sim")
            .map(|r| r.oracle_gap.as_str())
            .collect();
        // Over all, over the one comparison, then the four bands with items (none in 2-4).
        assert_eq!(bands, [ALL, ALL, "0-0.5", "0.5-1", "1-2", "4+"]);
        let band = |b: &str| {
            rows.iter()
                .find(|r| r.judge == "lm:sim" && r.oracle_gap == b)
                .unwrap()
                .clone()
        };
        // 0-0.5: items 0 (both A) and 3 (oracle tie): one decided by both, agreeing.
        let low = band("0-0.5");
        assert_eq!(low.comparison, ALL);
        assert_eq!((low.n_items, low.n_both_decided, low.n_agree), (2, 1, 1));
        // 0.5-1: item 1, the judge says A where the oracle says B.
        assert_eq!(
            (band("0.5-1").n_both_decided, band("0.5-1").n_agree),
            (1, 0)
        );
        // 1-2: item 2, B against A; 4+: item 4, agreeing, with the orders split.
        assert_eq!(band("1-2").n_agree, 0);
        let high = band("4+");
        assert_eq!((high.n_agree, high.n_order_consistent), (1, 0));
        // The bar is asked of the rows over every gap only.
        assert_eq!(high.meets_bar(), None);
        assert!(band(ALL).meets_bar().is_some());
        // The oracle's own rows are banded by its gaps too.
        assert!(
            rows.iter()
                .any(|r| r.judge == "oracle" && r.oracle_gap == "1-2")
        );
        assert!(frame(&rows).unwrap().column("oracle_gap").is_ok());
    }
}
