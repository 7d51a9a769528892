//! The judging-skill axis across seeds (paper §4's 7B → 30B contrast made continuous): from a
//! seed sweep's stacked `judge_skill` tables, per simulator and task the simulator's RLAIF label
//! accuracy, both preference models' agreement with the oracle and RLCD's win rate over RLAIF,
//! each as its per-seed values, their mean and a Student-t 95% interval over seeds; and a plot
//! of the win rate against the label accuracy.

use plotters::prelude::*;
use polars::prelude::{DataFrame, PolarsError};

use super::seeds::{self, SEED_KEY, SweptKeys};
use crate::plots::{PlotError, palette};
use crate::stages::judge_skill::STEM as TABLE;
use crate::tables::{TableError, frame_err, opt_col, str_col, u64_col};

/// File stem of the across-seed judging-skill table and plot.
pub const STEM: &str = "judge-skill";

/// The measures of a row, as `(column in the judge_skill table, name here)`.
const MEASURES: [(&str, &str); 5] = [
    ("rlaif_label_accuracy_pct", "rlaif_label"),
    ("rlcd_label_accuracy_pct", "rlcd_label"),
    ("rlaif_pm_accuracy_pct", "rlaif_pm"),
    ("rlcd_pm_accuracy_pct", "rlcd_pm"),
    ("win_rate_pct", "win_rate"),
];

/// One simulator on one task, across seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct SkillAcross {
    /// The other swept keys and their values.
    pub fixed: Vec<(String, String)>,
    /// The simulator.
    pub simulator: String,
    /// Task.
    pub task: String,
    /// The task's main axis.
    pub axis: String,
    /// Seeds, in sweep order.
    pub seeds: Vec<String>,
    /// Per measure of [`MEASURES`], its value at each seed (percent; `None` where absent).
    pub values: [Vec<Option<f64>>; 5],
    /// Seeds at which either policy is marked collapsed.
    pub collapsed: u64,
}

impl SkillAcross {
    /// The values of measure `m` present at every seed they were measured.
    fn present(&self, m: usize) -> Vec<f64> {
        self.values[m].iter().flatten().copied().collect()
    }

    /// Mean of measure `m` over the seeds that have it.
    pub fn mean(&self, m: usize) -> Option<f64> {
        let v = self.present(m);
        (!v.is_empty()).then(|| seeds::mean(&v))
    }

    /// The t 95% interval of measure `m`'s mean.
    pub fn interval(&self, m: usize) -> Option<(f64, f64)> {
        seeds::interval(&self.present(m))
    }
}

fn err(name: &str) -> impl Fn(PolarsError) -> TableError + '_ {
    move |source| TableError::Frame {
        table: format!("sweep summary of {TABLE}, column `{name}`"),
        source,
    }
}

fn text(df: &DataFrame, name: &str) -> Result<Vec<String>, TableError> {
    seeds::text_column(df, name, &format!("sweep summary of {TABLE}"))
}

fn real(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, TableError> {
    let c = df.column(name).map_err(err(name))?;
    let c = c.f64().map_err(err(name))?;
    Ok((0..c.len()).map(|i| c.get(i)).collect())
}

fn flag(df: &DataFrame, name: &str) -> Result<Vec<bool>, TableError> {
    let c = df.column(name).map_err(err(name))?;
    let c = c.bool().map_err(err(name))?;
    Ok((0..c.len()).map(|i| c.get(i).unwrap_or(false)).collect())
}

/// The rows of a sweep summary of `judge_skill` tables (swept keys `swept` as leading columns),
/// grouped over the seed; `None` when `seed` is not swept.
pub fn group(
    summary: &DataFrame,
    swept: &[String],
) -> Result<Option<Vec<SkillAcross>>, TableError> {
    if !swept.iter().any(|k| k == SEED_KEY) {
        return Ok(None);
    }
    let keys = SweptKeys::read(summary, swept, &format!("sweep summary of {TABLE}"))?;
    let (sim, task, axis) = (
        text(summary, "simulator")?,
        text(summary, "task")?,
        text(summary, "axis")?,
    );
    let measures: Vec<Vec<Option<f64>>> = MEASURES
        .iter()
        .map(|(col, _)| real(summary, col))
        .collect::<Result<_, _>>()?;
    let (ca, cb) = (
        flag(summary, "collapsed_rlcd")?,
        flag(summary, "collapsed_rlaif")?,
    );
    let mut out: Vec<SkillAcross> = Vec::new();
    for i in 0..sim.len() {
        let (fixed, seed) = keys.row(i);
        let at = match out
            .iter()
            .position(|g| g.fixed == fixed && (&g.simulator, &g.task) == (&sim[i], &task[i]))
        {
            Some(at) => at,
            None => {
                out.push(SkillAcross {
                    fixed,
                    simulator: sim[i].clone(),
                    task: task[i].clone(),
                    axis: axis[i].clone(),
                    seeds: Vec::new(),
                    values: Default::default(),
                    collapsed: 0,
                });
                out.len() - 1
            }
        };
        let g = &mut out[at];
        g.seeds.push(seed);
        for (m, column) in measures.iter().enumerate() {
            g.values[m].push(column[i]);
        }
        g.collapsed += u64::from(ca[i] || cb[i]);
    }
    Ok(Some(out))
}

/// The across-seed judging-skill table: the other swept keys, simulator, task, axis, n_seeds,
/// seeds; per measure (rlaif_label, rlcd_label, rlaif_pm, rlcd_pm, win_rate) its per-seed
/// values (`<m>_pct`, in seed order), their mean (`mean_<m>_pct`) and t 95% interval
/// (`<m>_t_low_pct`, `<m>_t_high_pct`); and n_collapsed, the seeds at which either policy is
/// marked collapsed.
pub fn frame(groups: &[SkillAcross]) -> Result<DataFrame, TableError> {
    let fixed: Vec<&[(String, String)]> = groups.iter().map(|g| g.fixed.as_slice()).collect();
    let mut cols = seeds::fixed_columns(&fixed);
    let s = |f: fn(&SkillAcross) -> String| groups.iter().map(f).collect::<Vec<_>>();
    cols.extend([
        str_col("simulator", s(|g| g.simulator.clone())),
        str_col("task", s(|g| g.task.clone())),
        str_col("axis", s(|g| g.axis.clone())),
        u64_col(
            "n_seeds",
            groups.iter().map(|g| g.seeds.len() as u64).collect(),
        ),
        str_col("seeds", s(|g| g.seeds.join(" "))),
    ]);
    for (m, (_, name)) in MEASURES.iter().enumerate() {
        cols.push(str_col(
            &format!("{name}_pct"),
            groups
                .iter()
                .map(|g| {
                    let v: Vec<String> = g.values[m]
                        .iter()
                        .map(|v| v.map_or("–".to_string(), |v| format!("{v:.1}")))
                        .collect();
                    v.join(" ")
                })
                .collect(),
        ));
        cols.push(opt_col(
            &format!("mean_{name}_pct"),
            groups.iter().map(|g| g.mean(m)).collect(),
        ));
        cols.push(opt_col(
            &format!("{name}_t_low_pct"),
            groups.iter().map(|g| g.interval(m).map(|i| i.0)).collect(),
        ));
        cols.push(opt_col(
            &format!("{name}_t_high_pct"),
            groups.iter().map(|g| g.interval(m).map(|i| i.1)).collect(),
        ));
    }
    cols.push(u64_col(
        "n_collapsed",
        groups.iter().map(|g| g.collapsed).collect(),
    ));
    DataFrame::new(groups.len(), cols).map_err(frame_err(STEM))
}

fn plot_err(e: impl std::fmt::Display) -> PlotError {
    PlotError {
        what: "judging-skill",
        message: e.to_string(),
    }
}

/// Index of the RLAIF label accuracy and of the win rate in [`MEASURES`].
const LABEL: usize = 0;
const WIN: usize = 4;

/// An SVG of RLCD's win rate over RLAIF (y) against the simulator's RLAIF label accuracy (x):
/// per task a colour, a small dot per seed, the means as a large dot labelled with the
/// simulator, and their t 95% intervals as whiskers in both directions; the 50% line.
pub fn svg(groups: &[SkillAcross]) -> Result<String, PlotError> {
    let mut tasks: Vec<String> = Vec::new();
    for g in groups {
        if !tasks.contains(&g.task) {
            tasks.push(g.task.clone());
        }
    }
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (820, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "RLCD vs RLAIF win rate against the simulator's label accuracy (mean, t 95%)",
                ("sans-serif", 16),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(30.0..100.0, 0.0..100.0)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("simulator's RLAIF label accuracy vs the oracle (%)")
            .y_desc("RLCD win rate over RLAIF, oracle, main axis (%)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(30.0, 50.0), (100.0, 50.0)],
                BLACK.mix(0.5),
            )))
            .map_err(plot_err)?;
        let colours = palette(tasks.len());
        for (ti, task) in tasks.iter().enumerate() {
            let colour = colours[ti];
            let mine: Vec<&SkillAcross> = groups.iter().filter(|g| &g.task == task).collect();
            let dots: Vec<(f64, f64)> = mine
                .iter()
                .flat_map(|g| {
                    g.values[LABEL]
                        .iter()
                        .zip(&g.values[WIN])
                        .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
                })
                .collect();
            chart
                .draw_series(
                    dots.into_iter()
                        .map(|p| Circle::new(p, 2, colour.mix(0.5).filled())),
                )
                .map_err(plot_err)?;
            let means: Vec<(&SkillAcross, (f64, f64))> = mine
                .iter()
                .filter_map(|g| Some((*g, (g.mean(LABEL)?, g.mean(WIN)?))))
                .collect();
            for (g, (x, y)) in &means {
                let mut whiskers = Vec::new();
                if let Some((lo, hi)) = g.interval(WIN) {
                    whiskers.push(vec![(*x, lo.max(0.0)), (*x, hi.min(100.0))]);
                }
                if let Some((lo, hi)) = g.interval(LABEL) {
                    whiskers.push(vec![(lo.max(30.0), *y), (hi.min(100.0), *y)]);
                }
                chart
                    .draw_series(
                        whiskers
                            .into_iter()
                            .map(|w| PathElement::new(w, colour.stroke_width(2))),
                    )
                    .map_err(plot_err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        g.simulator.clone(),
                        (*x + 0.6, *y + 1.5),
                        ("sans-serif", 11).into_font(),
                    )))
                    .map_err(plot_err)?;
            }
            let mut line: Vec<(f64, f64)> = means.iter().map(|(_, p)| *p).collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(std::iter::once(PathElement::new(
                    line.clone(),
                    colour.mix(0.6),
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(line.into_iter().map(|p| Circle::new(p, 5, colour.filled())))
                .map_err(plot_err)?
                .label(task.clone())
                .legend(move |(x, y)| Circle::new((x + 5, y), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::Column;

    fn summary() -> DataFrame {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let f = |v: &[Option<f64>]| v.to_vec();
        DataFrame::new(
            4,
            vec![
                Column::new("seed".into(), s(&["0", "0", "1", "1"])),
                Column::new("simulator".into(), s(&["j0", "j1", "j0", "j1"])),
                Column::new("task".into(), s(&["helpful"; 4])),
                Column::new("axis".into(), s(&["help"; 4])),
                Column::new(
                    "rlaif_label_accuracy_pct".into(),
                    f(&[Some(50.0), Some(70.0), Some(54.0), Some(80.0)]),
                ),
                Column::new("rlcd_label_accuracy_pct".into(), f(&[Some(85.0); 4])),
                Column::new(
                    "rlaif_pm_accuracy_pct".into(),
                    f(&[None, Some(60.0), None, Some(62.0)]),
                ),
                Column::new("rlcd_pm_accuracy_pct".into(), f(&[Some(75.0); 4])),
                Column::new(
                    "win_rate_pct".into(),
                    f(&[Some(70.0), Some(55.0), Some(60.0), Some(45.0)]),
                ),
                Column::new("collapsed_rlcd".into(), vec![false, false, true, false]),
                Column::new("collapsed_rlaif".into(), vec![false, false, false, false]),
            ],
        )
        .expect("frame")
    }

    #[test]
    fn seeds_group_by_simulator_with_t_intervals() {
        let swept = vec!["seed".to_string()];
        let groups = group(&summary(), &swept).unwrap().expect("seed swept");
        assert_eq!(groups.len(), 2);
        let j0 = &groups[0];
        assert_eq!((j0.simulator.as_str(), j0.seeds.len()), ("j0", 2));
        assert_eq!(j0.mean(LABEL), Some(52.0));
        assert_eq!(j0.mean(WIN), Some(65.0));
        // Two seeds 70 and 60: sd √50, half-width t(1) · √50 / √2 = 12.706 · 5, cut to 0–100.
        let (lo, hi) = j0.interval(WIN).unwrap();
        assert!(
            (lo - (65.0 - 63.53)).abs() < 1e-9 && hi == 100.0,
            "{lo} {hi}"
        );
        assert_eq!(j0.mean(2), None, "absent PM agreement stays absent");
        assert_eq!(j0.collapsed, 1);
        assert_eq!(groups[1].mean(2), Some(61.0));
        let df = frame(&groups).unwrap();
        assert_eq!(df.height(), 2);
        let col = df.column("win_rate_pct").unwrap();
        assert_eq!(col.str().unwrap().get(0), Some("70.0 60.0"));
        assert!(svg(&groups).unwrap().contains("<svg"));
        assert!(group(&summary(), &[]).unwrap().is_none());
    }
}
