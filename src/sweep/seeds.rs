//! Seeds as an axis of a sweep (paper §4.3's win rates, read across draws): when a sweep varies
//! the recipe `seed`, each comparison's win rates over the seeds — every seed's rate, their
//! mean and a Student-t 95% interval over seeds — and a plot with one dot per seed.
//!
//! The interval is a t-interval over the per-seed win rates, so it carries seed-to-seed
//! variation (pretraining, simulation, preference models, PPO) and the prompt sampling inside
//! each seed's rate together; the pooled counts beside it are for reference only, since pooling
//! comparisons treats every seed's prompts as one sample and ignores the seed-to-seed spread.

use plotters::prelude::*;
use polars::prelude::{Column, DataFrame, PolarsError};

use crate::eval::winrate::WinCounts;
use crate::plots::{PlotError, palette};
use crate::stages::winrates::{self, WinRateRow};
use crate::tables::{TableError, f64_col, frame_err, opt_col, str_col, u64_col};

/// The swept key that makes seeds an axis.
pub const SEED_KEY: &str = "seed";

/// File stem of the across-seed table and plot.
pub const STEM: &str = "across-seeds";

/// Two-sided 95% quantiles of Student's t for 1–30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 0.975 quantile of Student's t with `df` ≥ 1 degrees of freedom (tabulated to 30, then
/// the first terms of its expansion around the normal quantile, within 0.1% beyond).
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        d if d <= T975.len() => T975[d - 1],
        d => {
            let z: f64 = 1.959_964;
            let d = d as f64;
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

/// One comparison across seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct AcrossSeeds {
    /// The other swept keys and their values.
    pub fixed: Vec<(String, String)>,
    /// The comparison (counts summed over the seeds).
    pub row: WinRateRow,
    /// Seeds, in sweep order.
    pub seeds: Vec<String>,
    /// Win rate of A at each seed (percent, ties ½).
    pub win_rates: Vec<f64>,
    /// Whether A's policy is marked collapsed at each seed (absent without a base to compare).
    pub collapsed_a: Vec<Option<bool>>,
    /// Whether B's policy is marked collapsed at each seed.
    pub collapsed_b: Vec<Option<bool>>,
}

/// Mean of per-seed values.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation of per-seed values (absent with fewer than two).
pub fn sd(values: &[f64]) -> Option<f64> {
    let n = values.len();
    (n >= 2).then(|| {
        let m = mean(values);
        (values.iter().map(|r| (r - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    })
}

/// The Student-t 95% interval of the mean of per-seed percentages, cut to 0–100 where a few
/// widely spread seeds reach past a bound (absent with fewer than two seeds).
pub fn interval(values: &[f64]) -> Option<(f64, f64)> {
    let n = values.len();
    let half = t975(n - 1) * sd(values)? / (n as f64).sqrt();
    let m = mean(values);
    Some(((m - half).max(0.0), (m + half).min(100.0)))
}

impl AcrossSeeds {
    /// Mean of the per-seed win rates.
    pub fn mean(&self) -> f64 {
        mean(&self.win_rates)
    }

    /// Sample standard deviation of the per-seed win rates (absent with one seed).
    pub fn sd(&self) -> Option<f64> {
        sd(&self.win_rates)
    }

    /// The t 95% interval of the mean over seeds (absent with one seed).
    pub fn interval(&self) -> Option<(f64, f64)> {
        interval(&self.win_rates)
    }

    /// The seeds at which A's (`a`) or B's policy is marked collapsed.
    pub fn collapsed_seeds(&self, a: bool) -> Vec<&str> {
        let marks = if a {
            &self.collapsed_a
        } else {
            &self.collapsed_b
        };
        self.seeds
            .iter()
            .zip(marks)
            .filter(|(_, m)| **m == Some(true))
            .map(|(s, _)| s.as_str())
            .collect()
    }

    /// Whether either policy is marked collapsed at the `k`th seed.
    pub fn collapsed_at(&self, k: usize) -> bool {
        self.collapsed_a[k] == Some(true) || self.collapsed_b[k] == Some(true)
    }
}

/// The swept keys' values, row by row, of a sweep summary.
pub(crate) struct SweptKeys(Vec<(String, Vec<String>)>);

impl SweptKeys {
    /// Reads the `swept` columns of `summary` (called `what` in errors).
    pub(crate) fn read(
        summary: &DataFrame,
        swept: &[String],
        what: &str,
    ) -> Result<Self, TableError> {
        swept
            .iter()
            .map(|k| Ok((k.clone(), text_column(summary, k, what)?)))
            .collect::<Result<_, TableError>>()
            .map(Self)
    }

    /// Row `i`'s values of the swept keys other than [`SEED_KEY`], and its seed.
    pub(crate) fn row(&self, i: usize) -> (Vec<(String, String)>, String) {
        let fixed = self
            .0
            .iter()
            .filter(|(k, _)| k != SEED_KEY)
            .map(|(k, v)| (k.clone(), v[i].clone()))
            .collect();
        let seed = self
            .0
            .iter()
            .find(|(k, _)| k == SEED_KEY)
            .map(|(_, v)| v[i].clone())
            .unwrap_or_default();
        (fixed, seed)
    }
}

/// A string column of a sweep summary (called `what` in errors), missing values empty.
pub(crate) fn text_column(
    summary: &DataFrame,
    name: &str,
    what: &str,
) -> Result<Vec<String>, TableError> {
    let err = |source: PolarsError| TableError::Frame {
        table: format!("{what}, column `{name}`"),
        source,
    };
    let c = summary.column(name).map_err(err)?;
    let c = c.str().map_err(err)?;
    Ok((0..c.len())
        .map(|i| c.get(i).unwrap_or_default().to_string())
        .collect())
}

/// The swept keys other than the seed as the leading columns of an across-seed table: each
/// group's `fixed` values, one row per group.
pub(crate) fn fixed_columns(fixed: &[&[(String, String)]]) -> Vec<Column> {
    let Some(first) = fixed.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(j, (key, _))| str_col(key, fixed.iter().map(|f| f[j].1.clone()).collect()))
        .collect()
}

/// The comparisons of a sweep summary of `winrates` tables (swept keys `swept` as leading
/// columns, one of them [`SEED_KEY`]), grouped over the seed; `None` when `seed` is not swept.
pub fn group(
    summary: &DataFrame,
    swept: &[String],
) -> Result<Option<Vec<AcrossSeeds>>, TableError> {
    if !swept.iter().any(|k| k == SEED_KEY) {
        return Ok(None);
    }
    let rows = winrates::rows_of_frame(summary)?;
    let keys = SweptKeys::read(summary, swept, "sweep summary")?;
    let mut out: Vec<AcrossSeeds> = Vec::new();
    for (i, r) in rows.into_iter().enumerate() {
        let (fixed, seed) = keys.row(i);
        let Ok(rate) = r.counts.win_rate() else {
            continue;
        };
        let same = |g: &AcrossSeeds| {
            g.fixed == fixed
                && (&g.row.task, &g.row.axis, &g.row.method_a, &g.row.method_b)
                    == (&r.task, &r.axis, &r.method_a, &r.method_b)
                && (&g.row.simulator, &g.row.judge) == (&r.simulator, &r.judge)
        };
        match out.iter_mut().find(|g| same(g)) {
            Some(g) => {
                let c = &mut g.row.counts;
                *c = WinCounts::new(
                    c.wins + r.counts.wins,
                    c.losses + r.counts.losses,
                    c.ties + r.counts.ties,
                );
                g.seeds.push(seed);
                g.win_rates.push(rate);
                g.collapsed_a.push(r.collapsed_a);
                g.collapsed_b.push(r.collapsed_b);
            }
            None => out.push(AcrossSeeds {
                fixed,
                collapsed_a: vec![r.collapsed_a],
                collapsed_b: vec![r.collapsed_b],
                row: r,
                seeds: vec![seed],
                win_rates: vec![rate],
            }),
        }
    }
    Ok(Some(out))
}

/// The across-seed table: the other swept keys, task, axis, method_a, method_b, simulator,
/// judge, n_seeds, seeds, win_rates_pct (per seed, in seed order), mean_win_rate_pct,
/// sd_pct, t_low_pct, t_high_pct (Student-t 95% over seeds), and the pooled n_total, n_wins,
/// n_losses, n_ties and pooled_win_rate_pct, and collapsed_a_seeds / collapsed_b_seeds: the
/// seeds at which that policy is marked collapsed (empty when none is).
pub fn frame(groups: &[AcrossSeeds]) -> Result<DataFrame, TableError> {
    let fixed: Vec<&[(String, String)]> = groups.iter().map(|g| g.fixed.as_slice()).collect();
    let mut cols = fixed_columns(&fixed);
    cols.extend(winrates::comparison_cols(groups.iter().map(|g| &g.row)));
    cols.extend([
        u64_col(
            "n_seeds",
            groups.iter().map(|g| g.seeds.len() as u64).collect(),
        ),
        str_col("seeds", groups.iter().map(|g| g.seeds.join(" ")).collect()),
        str_col(
            "win_rates_pct",
            groups
                .iter()
                .map(|g| {
                    let v: Vec<String> = g.win_rates.iter().map(|r| format!("{r:.1}")).collect();
                    v.join(" ")
                })
                .collect(),
        ),
        f64_col(
            "mean_win_rate_pct",
            groups.iter().map(AcrossSeeds::mean).collect(),
        ),
        opt_col("sd_pct", groups.iter().map(AcrossSeeds::sd).collect()),
        opt_col(
            "t_low_pct",
            groups.iter().map(|g| g.interval().map(|i| i.0)).collect(),
        ),
        opt_col(
            "t_high_pct",
            groups.iter().map(|g| g.interval().map(|i| i.1)).collect(),
        ),
        u64_col(
            "n_total",
            groups.iter().map(|g| g.row.counts.total()).collect(),
        ),
        u64_col("n_wins", groups.iter().map(|g| g.row.counts.wins).collect()),
        u64_col(
            "n_losses",
            groups.iter().map(|g| g.row.counts.losses).collect(),
        ),
        u64_col("n_ties", groups.iter().map(|g| g.row.counts.ties).collect()),
        opt_col(
            "pooled_win_rate_pct",
            groups
                .iter()
                .map(|g| g.row.counts.win_rate().ok())
                .collect(),
        ),
        str_col(
            "collapsed_a_seeds",
            groups
                .iter()
                .map(|g| g.collapsed_seeds(true).join(" "))
                .collect(),
        ),
        str_col(
            "collapsed_b_seeds",
            groups
                .iter()
                .map(|g| g.collapsed_seeds(false).join(" "))
                .collect(),
        ),
    ]);
    DataFrame::new(groups.len(), cols).map_err(frame_err(STEM))
}

fn plot_err(e: impl std::fmt::Display) -> PlotError {
    PlotError {
        what: "across-seed",
        message: e.to_string(),
    }
}

/// The label of a comparison in the plot.
fn label(g: &AcrossSeeds) -> String {
    let fixed: Vec<String> = g.fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = &g.row;
    let mut s = format!(
        "{} / {} ({}): {} vs {}",
        r.task, r.axis, r.judge, r.method_a, r.method_b
    );
    if !fixed.is_empty() {
        s = format!("{s} [{}]", fixed.join(", "));
    }
    s
}

/// An SVG of the across-seed win rates: one line per comparison with one dot per seed (a
/// colour per seed), the mean as a bar and its t interval as a whisker, against the 50% line.
pub fn svg(groups: &[AcrossSeeds]) -> Result<String, PlotError> {
    let mut seeds: Vec<String> = Vec::new();
    for g in groups {
        for s in &g.seeds {
            if !seeds.contains(s) {
                seeds.push(s.clone());
            }
        }
    }
    let labels: Vec<String> = groups.iter().map(label).collect();
    let n = groups.len().max(1);
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    // The comparison labels get a column of their own left of the plot and the seeds' legend
    // one right of it, so neither covers a dot.
    let label_w = (12 + 6 * longest as u32).clamp(160, 520);
    let (plot_w, legend_w) = (560u32, 90u32);
    let height = (28 * n + 110) as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (label_w + plot_w + legend_w, height))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root
            .titled(
                "win rate of A (%, ties ½): one dot per seed (a ring where a policy collapsed), mean and t 95% interval",
                ("sans-serif", 16),
            )
            .map_err(plot_err)?;
        let (left, rest) = root.split_horizontally(label_w);
        let (area, legend) = rest.split_horizontally(plot_w);
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(35)
            .build_cartesian_2d(0.0..100.0, -0.5..n as f64 - 0.5)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("win rate (%)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(50.0, -0.5), (50.0, n as f64 - 0.5)],
                BLACK.mix(0.5),
            )))
            .map_err(plot_err)?;
        let y = |i: usize| (n - 1 - i) as f64;
        let top = left.get_base_pixel().1;
        for (i, text) in labels.iter().enumerate() {
            let (_, py) = chart.backend_coord(&(0.0, y(i)));
            left.draw(&Text::new(
                text.clone(),
                (8, py - top - 6),
                ("sans-serif", 11).into_font(),
            ))
            .map_err(plot_err)?;
        }
        chart
            .draw_series(groups.iter().enumerate().filter_map(|(i, g)| {
                let (lo, hi) = g.interval()?;
                Some(PathElement::new(
                    vec![(lo.max(0.0), y(i)), (hi.min(100.0), y(i))],
                    BLACK.stroke_width(2),
                ))
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(groups.iter().enumerate().map(|(i, g)| {
                PathElement::new(
                    vec![(g.mean(), y(i) - 0.3), (g.mean(), y(i) + 0.3)],
                    BLACK.stroke_width(3),
                )
            }))
            .map_err(plot_err)?;
        let colours = palette(seeds.len());
        for (si, seed) in seeds.iter().enumerate() {
            let colour = colours[si];
            let dots: Vec<((f64, f64), bool)> = groups
                .iter()
                .enumerate()
                .filter_map(|(i, g)| {
                    let k = g.seeds.iter().position(|s| s == seed)?;
                    Some(((g.win_rates[k], y(i)), g.collapsed_at(k)))
                })
                .collect();
            chart
                .draw_series(dots.into_iter().map(|(p, collapsed)| {
                    let style = if collapsed {
                        colour.stroke_width(2)
                    } else {
                        colour.filled()
                    };
                    Circle::new(p, 4, style)
                }))
                .map_err(plot_err)?;
            let ly = 20 + 18 * si as i32;
            legend
                .draw(&Circle::new((14, ly), 4, colour.filled()))
                .map_err(plot_err)?;
            legend
                .draw(&Text::new(
                    format!("seed {seed}"),
                    (24, ly - 6),
                    ("sans-serif", 12).into_font(),
                ))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(task: &str, wins: u64, losses: u64, ties: u64) -> WinRateRow {
        WinRateRow {
            task: task.into(),
            axis: "help".into(),
            method_a: "rlcd".into(),
            method_b: "rlaif".into(),
            simulator: "sim".into(),
            judge: "oracle".into(),
            counts: WinCounts::new(wins, losses, ties),
            lc_win_rate: None,
            avg_len_a: 10.0,
            avg_len_b: 9.0,
            distinct_a: 1.0,
            distinct_b: 1.0,
            collapsed_a: None,
            collapsed_b: None,
        }
    }

    /// A sweep summary: the swept columns in front of the win-rate table of each cell.
    fn summary(cells: &[(&str, &str, WinRateRow)]) -> DataFrame {
        let rows: Vec<WinRateRow> = cells.iter().map(|c| c.2.clone()).collect();
        let table = winrates::frame(&rows).unwrap();
        let mut cols = vec![
            str_col("kl", cells.iter().map(|c| c.0.to_string()).collect()),
            str_col(SEED_KEY, cells.iter().map(|c| c.1.to_string()).collect()),
        ];
        cols.extend(table.columns().iter().cloned());
        DataFrame::new(rows.len(), cols).unwrap()
    }

    #[test]
    fn t_quantiles_follow_the_table_and_approach_the_normal() {
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(4), 2.776);
        assert!((t975(40) - 2.021).abs() < 2e-3, "{}", t975(40));
        assert!((t975(120) - 1.980).abs() < 2e-3, "{}", t975(120));
        assert!(t975(10_000) > 1.959 && t975(10_000) < 1.961);
    }

    #[test]
    fn comparisons_group_over_seeds_with_a_t_interval() {
        let collapsed = WinRateRow {
            collapsed_a: Some(false),
            collapsed_b: Some(true),
            ..row("helpful", 8, 2, 0)
        };
        let df = summary(&[
            ("0.1", "0", row("helpful", 6, 4, 0)),
            ("0.1", "1", collapsed),
            ("0.1", "2", row("helpful", 3, 5, 2)),
            ("0.2", "0", row("helpful", 5, 5, 0)),
        ]);
        let swept = vec!["kl".to_string(), SEED_KEY.to_string()];
        let g = group(&df, &swept).unwrap().expect("seed is swept");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].fixed, [("kl".to_string(), "0.1".to_string())]);
        assert_eq!(g[0].seeds, ["0", "1", "2"]);
        assert_eq!(g[0].win_rates, [60.0, 80.0, 40.0]);
        assert_eq!(g[0].mean(), 60.0);
        assert_eq!(g[0].sd(), Some(20.0));
        let (lo, hi) = g[0].interval().unwrap();
        let half = 4.303 * 20.0 / 3f64.sqrt();
        // 60 + 49.7 reaches past 100 and is cut there.
        assert!(
            (lo - (60.0 - half)).abs() < 1e-9 && hi == 100.0,
            "{lo} {hi}"
        );
        assert_eq!(g[0].row.counts, WinCounts::new(17, 11, 2));
        assert_eq!(g[0].collapsed_seeds(false), ["1"]);
        assert!(g[0].collapsed_seeds(true).is_empty());
        assert!(g[0].collapsed_at(1) && !g[0].collapsed_at(0));
        assert_eq!(
            (g[1].seeds.len(), g[1].sd(), g[1].interval()),
            (1, None, None)
        );
        let table = frame(&g).unwrap();
        let names: Vec<&str> = table
            .get_column_names()
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(names[..3], ["kl", "task", "axis"]);
        assert_eq!(table.height(), 2);
        let marks = table.column("collapsed_b_seeds").unwrap().str().unwrap();
        assert_eq!((marks.get(0), marks.get(1)), (Some("1"), Some("")));
        let svg = svg(&g).unwrap();
        assert!(
            svg.contains("seed 2") && svg.contains("rlcd vs rlaif"),
            "{svg}"
        );
        // Without a seed axis there is nothing to group.
        assert!(group(&df, &["kl".to_string()]).unwrap().is_none());
    }
}
