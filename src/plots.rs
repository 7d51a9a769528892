//! Plots of result tables (paper §4.3, Tables 2–4 as a figure): the win rates of every
//! comparison as bars with their 95% Wilson intervals, grouped by task and axis, against the
//! 50% line; and the PPO training curves of every method (§4.2).

use plotters::prelude::*;

use crate::stages::policy::ppo::PpoStepLog;
use crate::stages::policy_training::Curve;
use crate::stages::winrates::WinRateRow;

/// Why a plot cannot be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the {what} plot: {message}")]
pub struct PlotError {
    /// Which plot.
    pub what: &'static str,
    /// What went wrong.
    pub message: String,
}

fn plot_err(e: impl std::fmt::Display) -> PlotError {
    PlotError {
        what: "win-rate",
        message: e.to_string(),
    }
}

fn curves_err(e: impl std::fmt::Display) -> PlotError {
    PlotError {
        what: "training-curve",
        message: e.to_string(),
    }
}

/// A per-step quantity of a PPO log.
type StepValue = fn(&PpoStepLog) -> f64;

/// The per-step quantities of the training-curve figure, one column of panels each.
const CURVE_PANELS: [(&str, StepValue); 5] = [
    ("PM reward of rollouts", |s| s.score),
    ("KL to initial policy (nats)", |s| s.kl),
    ("entropy (nats/token)", |s| s.entropy),
    ("response length (tokens)", |s| s.response_len),
    ("identical rollouts (share)", |s| s.identical),
];

/// An SVG grid of PPO training curves: one row of panels per task, one column per quantity
/// (PM reward, KL to the initial policy, entropy, response length, share of identical
/// rollouts), one line per method in the same colour in every panel, against the PPO step; the
/// legend sits right of the grid. A collapsing policy shows as length and entropy falling while
/// identical rollouts rise.
pub fn training_curves_svg(curves: &[Curve]) -> Result<String, PlotError> {
    let mut tasks: Vec<&str> = Vec::new();
    let mut methods: Vec<&str> = Vec::new();
    for c in curves {
        if !tasks.contains(&c.task.as_str()) {
            tasks.push(&c.task);
        }
        if !methods.contains(&c.method.as_str()) {
            methods.push(&c.method);
        }
    }
    let colours = palette(methods.len());
    let (panel_w, panel_h, legend_w) = (250u32, 210u32, 190u32);
    let width = panel_w * CURVE_PANELS.len() as u32 + legend_w;
    let height = panel_h * tasks.len().max(1) as u32 + 30;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(curves_err)?;
        let root = root
            .titled("PPO training curves per method", ("sans-serif", 18))
            .map_err(curves_err)?;
        let (grid, legend) = root.split_horizontally(panel_w * CURVE_PANELS.len() as u32);
        let panels = grid.split_evenly((tasks.len().max(1), CURVE_PANELS.len()));
        for (ti, task) in tasks.iter().enumerate() {
            let mine: Vec<(usize, &Curve)> = curves
                .iter()
                .filter(|c| c.task == *task)
                .map(|c| (methods.iter().position(|m| *m == c.method).unwrap_or(0), c))
                .collect();
            let last = mine
                .iter()
                .flat_map(|(_, c)| c.steps.iter().map(|s| s.step))
                .max()
                .unwrap_or(0);
            for (pi, (name, value)) in CURVE_PANELS.iter().enumerate() {
                let values: Vec<f64> = mine
                    .iter()
                    .flat_map(|(_, c)| c.steps.iter().map(value))
                    .filter(|v| v.is_finite())
                    .collect();
                let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let (lo, hi) = if lo.is_finite() && hi > lo {
                    let pad = (hi - lo) * 0.05;
                    (lo - pad, hi + pad)
                } else if lo.is_finite() {
                    (lo - 0.5, lo + 0.5)
                } else {
                    (0.0, 1.0)
                };
                let area = &panels[ti * CURVE_PANELS.len() + pi];
                let mut chart = ChartBuilder::on(area)
                    .caption(format!("{task}: {name}"), ("sans-serif", 12))
                    .margin(6)
                    .x_label_area_size(22)
                    .y_label_area_size(42)
                    .build_cartesian_2d(0.0..(last.max(1)) as f64, lo..hi)
                    .map_err(curves_err)?;
                chart
                    .configure_mesh()
                    .x_labels(5)
                    .y_labels(5)
                    .label_style(("sans-serif", 10))
                    .draw()
                    .map_err(curves_err)?;
                for (mi, c) in &mine {
                    let points: Vec<(f64, f64)> = c
                        .steps
                        .iter()
                        .map(|s| (s.step as f64, value(s)))
                        .filter(|(_, v)| v.is_finite())
                        .collect();
                    chart
                        .draw_series(LineSeries::new(points, colours[*mi].stroke_width(2)))
                        .map_err(curves_err)?;
                }
            }
        }
        for (mi, method) in methods.iter().enumerate() {
            let y = 20 + 18 * mi as i32;
            legend
                .draw(&Rectangle::new(
                    [(8, y - 5), (20, y + 5)],
                    colours[mi].filled(),
                ))
                .map_err(curves_err)?;
            legend
                .draw(&Text::new(
                    method.to_string(),
                    (26, y - 6),
                    ("sans-serif", 12).into_font(),
                ))
                .map_err(curves_err)?;
        }
        root.present().map_err(curves_err)?;
    }
    Ok(svg)
}

/// Tableau's ten qualitative colours, the first series' colours.
const QUALITATIVE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// `n` distinct colours, one per series of a figure: the qualitative palette, then evenly
/// spaced hues (a darker and a lighter band alternating) for the series beyond it. A colour
/// that would repeat one already given is shifted until it does not, so no two series share
/// a colour whatever their number.
pub fn palette(n: usize) -> Vec<RGBColor> {
    let mut out: Vec<RGBColor> = QUALITATIVE.iter().copied().take(n).collect();
    let extra = n.saturating_sub(QUALITATIVE.len());
    for i in 0..extra {
        let hue = i as f64 / extra as f64;
        let lightness = if i % 2 == 0 { 0.38 } else { 0.62 };
        let (r, g, b) = HSLColor(hue, 0.7, lightness).rgb();
        let mut colour = RGBColor(r, g, b);
        while out.contains(&colour) {
            // Step through the 2^24 colours from here; at most `n` of them are taken.
            let packed =
                (u32::from(colour.0) << 16) | (u32::from(colour.1) << 8) | u32::from(colour.2);
            let next = (packed + 1) & 0xFF_FFFF;
            colour = RGBColor((next >> 16) as u8, (next >> 8) as u8, next as u8);
        }
        out.push(colour);
    }
    out
}

/// An SVG bar chart of win rates: one group per (task, axis, judge), one bar per comparison
/// (`method_a vs method_b`), each with its Wilson 95% interval; rows without comparisons are
/// left out. The legend sits right of the groups.
pub fn winrates_svg(rows: &[WinRateRow]) -> Result<String, PlotError> {
    let mut groups: Vec<String> = Vec::new();
    let mut series: Vec<String> = Vec::new();
    for r in rows {
        let g = format!("{} / {} ({})", r.task, r.axis, r.judge);
        if !groups.contains(&g) {
            groups.push(g);
        }
        let s = format!("{} vs {}", r.method_a, r.method_b);
        if !series.contains(&s) {
            series.push(s);
        }
    }
    let width = (180 * groups.len().max(1) + 300) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "win rate of A (%, ties ½) with 95% Wilson CI",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(10)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..groups.len().max(1) as f64 + 1.4, 0.0..100.0)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("win rate (%)")
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 50.0), (groups.len() as f64, 50.0)],
                BLACK.mix(0.5),
            )))
            .map_err(plot_err)?;
        let k = series.len().max(1) as f64;
        let bar = 0.8 / k;
        let colours = palette(series.len());
        for (si, name) in series.iter().enumerate() {
            let colour = colours[si];
            let mine: Vec<(f64, f64, f64, f64)> = rows
                .iter()
                .filter(|r| &format!("{} vs {}", r.method_a, r.method_b) == name)
                .filter_map(|r| {
                    let g = format!("{} / {} ({})", r.task, r.axis, r.judge);
                    let gi = groups.iter().position(|x| *x == g)? as f64;
                    let est = r.counts.estimate().ok()?;
                    let x0 = gi + 0.1 + bar * si as f64;
                    Some((x0, est.value, est.ci_low, est.ci_high))
                })
                .collect();
            chart
                .draw_series(mine.iter().map(|&(x0, v, _, _)| {
                    Rectangle::new([(x0, 0.0), (x0 + bar * 0.9, v)], colour.filled())
                }))
                .map_err(plot_err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
            chart
                .draw_series(mine.iter().map(|&(x0, _, lo, hi)| {
                    let xc = x0 + bar * 0.45;
                    PathElement::new(vec![(xc, lo), (xc, hi)], BLACK.stroke_width(2))
                }))
                .map_err(plot_err)?;
        }
        chart
            .draw_series(groups.iter().enumerate().map(|(gi, g)| {
                Text::new(
                    g.clone(),
                    (gi as f64 + 0.05, 97.0),
                    ("sans-serif", 13).into_font(),
                )
            }))
            .map_err(plot_err)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_curves_draw_one_line_per_method_and_panel() {
        let step = |step: usize, score: f64| PpoStepLog {
            step,
            score,
            kl: 0.1 * step as f64,
            entropy: 1.0,
            response_len: 20.0,
            unfinished: 0,
            clip_frac: 0.0,
            value_loss: 0.0,
            policy_loss: 0.0,
            loss: 0.0,
            kl_coef: 0.05,
            identical: 0.0,
        };
        let curve = |method: &str, task: &str| Curve {
            method: method.into(),
            simulator: "sim".into(),
            task: task.into(),
            steps: (0..4).map(|i| step(i, i as f64)).collect(),
        };
        let curves = [
            curve("rlcd", "harmless"),
            curve("rlaif", "harmless"),
            curve("rlcd", "helpful"),
        ];
        let svg = training_curves_svg(&curves).unwrap();
        // Two methods on harmless and one on helpful, each drawn in all five panels.
        // (Curves are drawn 2 px wide, the axes and mesh 1 px.)
        let lines = svg
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\""))
            .count();
        assert_eq!(lines, 3 * CURVE_PANELS.len());
        assert!(svg.contains("helpful: KL to initial policy"));
        assert!(
            svg.lines().any(|l| l.trim() == "rlaif"),
            "the legend names each method"
        );
    }

    #[test]
    fn every_series_of_a_figure_gets_its_own_colour() {
        for n in 0..=64 {
            let colours = palette(n);
            assert_eq!(colours.len(), n);
            for (i, a) in colours.iter().enumerate() {
                for b in &colours[..i] {
                    assert_ne!(a, b, "{n} series: colour {i} repeats");
                }
            }
        }
        // The first series keep the qualitative palette whatever the number.
        assert_eq!(palette(16)[..10], QUALITATIVE);
        assert_eq!(palette(3)[..], QUALITATIVE[..3]);
    }

    #[test]
    fn colours_beyond_the_qualitative_palette_stay_apart() {
        // Sixteen series: the six beyond the ten qualitative colours are clearly different
        // from each other (not only as bytes).
        let colours = palette(16);
        let extra = &colours[QUALITATIVE.len()..];
        for (i, a) in extra.iter().enumerate() {
            for b in &extra[..i] {
                let d = (i32::from(a.0) - i32::from(b.0)).abs()
                    + (i32::from(a.1) - i32::from(b.1)).abs()
                    + (i32::from(a.2) - i32::from(b.2)).abs();
                assert!(d > 60, "{a:?} and {b:?} are too close");
            }
        }
    }
}
