//! Plots of result tables (paper §4.3, Tables 2–4 as a figure): the win rates of every
//! comparison as bars with their 95% Wilson intervals, grouped by task and axis, against the
//! 50% line.

use plotters::prelude::*;

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
