//! Win rates and accuracies recomputed from their counts, edge cases, and the win-rate table.

use rlcd::eval::winrate::{Rate, StatsError, WinCounts, Z95, wilson};
use rlcd::stages::winrates::{WinRateRow, frame as winrates_frame};
use rlcd::tables::{render_csv, render_markdown};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The AlpacaEval win rate recomputed from scratch: mean of per-comparison scores (1, ½, 0).
fn scores(c: &WinCounts) -> Vec<f64> {
    let mut v = vec![1.0; c.wins as usize];
    v.extend(vec![0.5; c.ties as usize]);
    v.extend(vec![0.0; c.losses as usize]);
    v
}

#[test]
fn win_rate_and_stderr_match_per_comparison_scores() {
    for c in [
        WinCounts::new(7, 2, 1),
        WinCounts::new(1, 1, 0),
        WinCounts::new(848, 152, 0),
        WinCounts::new(30, 50, 20),
    ] {
        let s = scores(&c);
        let n = s.len() as f64;
        let mean = s.iter().sum::<f64>() / n;
        let var = s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert!(close(c.win_rate().unwrap(), 100.0 * mean), "{c:?}");
        assert!(
            close(c.stderr().unwrap(), 100.0 * (var / n).sqrt()),
            "{c:?}"
        );
        let (lo, hi) = c.wilson95().unwrap();
        assert!(lo <= 100.0 * mean && 100.0 * mean <= hi, "{c:?}: {lo} {hi}");
        assert_eq!(c.total(), c.wins + c.losses + c.ties);
    }
    // Ties count half: 7 wins + 1 tie of 10 = 75%.
    assert!(close(WinCounts::new(7, 2, 1).win_rate().unwrap(), 75.0));
}

#[test]
fn wilson_matches_the_closed_form() {
    // 84.8% of 1000: the textbook Wilson interval.
    let (lo, hi) = Rate::new(1000, 848).unwrap().wilson95().unwrap();
    let (p, n, z) = (0.848_f64, 1000.0_f64, Z95);
    let c = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let h = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    assert!(close(lo, c - h) && close(hi, c + h));
    assert!(
        (lo - 0.8241).abs() < 5e-4 && (hi - 0.8691).abs() < 5e-4,
        "{lo} {hi}"
    );
    assert_eq!(
        wilson(0.5, 4, Z95),
        Rate::new(4, 2).unwrap().wilson95().unwrap()
    );
}

#[test]
fn rates_recompute_from_counts() {
    let r = Rate::new(2000, 1048).unwrap();
    assert!(close(r.rate().unwrap(), 1048.0 / 2000.0));
    assert!(close(
        r.stderr().unwrap(),
        (0.524_f64 * 0.476 / 2000.0).sqrt()
    ));
    let e = r.estimate().unwrap();
    assert!(e.ci_low < e.value && e.value < e.ci_high);
}

#[test]
fn edge_cases_do_not_panic() {
    let empty = WinCounts::default();
    assert!(matches!(empty.win_rate(), Err(StatsError::Empty { .. })));
    assert!(empty.stderr().is_err() && empty.wilson95().is_err() && empty.estimate().is_err());
    let msg = empty.win_rate().unwrap_err().to_string();
    assert!(msg.contains("0 comparisons"), "{msg}");
    assert!(matches!(
        Rate::new(0, 0).unwrap().rate(),
        Err(StatsError::Empty { .. })
    ));
    assert!(matches!(
        Rate::new(3, 4),
        Err(StatsError::TooManySuccesses { .. })
    ));
    // Fields are public: an inconsistent Rate built by hand is still refused, not computed.
    assert!(Rate { n: 3, successes: 4 }.rate().is_err());

    let ties = WinCounts::new(0, 0, 10);
    assert!(close(ties.win_rate().unwrap(), 50.0));
    assert!(close(ties.stderr().unwrap(), 0.0));
    let (lo, hi) = ties.wilson95().unwrap();
    assert!(lo < 50.0 && hi > 50.0 && lo >= 0.0 && hi <= 100.0);

    let wins = WinCounts::new(5, 0, 0);
    assert!(close(wins.win_rate().unwrap(), 100.0));
    assert!(close(wins.stderr().unwrap(), 0.0));
    let (lo, hi) = wins.wilson95().unwrap();
    assert!(close(hi, 100.0) && lo > 50.0 && lo < 100.0, "{lo}");
    let e = Rate::new(5, 5).unwrap().estimate().unwrap();
    assert!(e.value == 1.0 && e.stderr == 0.0 && e.ci_high == 1.0 && e.ci_low.is_finite());

    let one = WinCounts::new(1, 0, 0);
    assert!(close(one.stderr().unwrap(), 0.0));
    let mut c = WinCounts::default();
    for o in [Some(true), None, Some(false), Some(true)] {
        c.record(o);
    }
    assert_eq!(c, WinCounts::new(2, 1, 1));
}

#[test]
fn winrates_table_renders_stably() {
    let row = |a: &str, b: &str, counts: WinCounts| WinRateRow {
        task: "harmless".into(),
        axis: "harm".into(),
        method_a: a.into(),
        method_b: b.into(),
        simulator: "sim-s".into(),
        judge: "oracle".into(),
        counts,
        lc_win_rate: Some(81.2),
        avg_len_a: 66.5,
        avg_len_b: 42.125,
        distinct_a: 0.25,
        distinct_b: 1.0,
        collapsed_a: Some(a == "rlcd"),
        collapsed_b: None,
    };
    let df = winrates_frame(&[
        row("rlcd", "rlaif", WinCounts::new(848, 140, 12)),
        row("rlcd", "rlcd-rescore", WinCounts::new(0, 0, 0)),
    ])
    .unwrap();
    insta::assert_snapshot!("winrate_table_md", render_markdown(&df).unwrap());
    insta::assert_snapshot!(
        "winrate_table_csv",
        String::from_utf8(render_csv(&df).unwrap()).unwrap()
    );
}

#[test]
fn the_win_rate_plot_has_one_bar_and_one_interval_per_judged_comparison() {
    let row = |task: &str, b: &str, counts: WinCounts| WinRateRow {
        task: task.into(),
        axis: "help".into(),
        method_a: "rlcd".into(),
        method_b: b.into(),
        simulator: "sim-s".into(),
        judge: "oracle".into(),
        counts,
        lc_win_rate: None,
        avg_len_a: 10.0,
        avg_len_b: 12.0,
        distinct_a: 1.0,
        distinct_b: 1.0,
        collapsed_a: None,
        collapsed_b: None,
    };
    let rows = [
        row("helpful", "rlaif", WinCounts::new(70, 20, 10)),
        row("helpful", "base", WinCounts::new(40, 50, 10)),
        row("harmless", "rlaif", WinCounts::new(30, 30, 40)),
        row("harmless", "base", WinCounts::new(0, 0, 0)),
    ];
    let svg = rlcd::plots::winrates_svg(&rows).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    for label in [
        "helpful / help (oracle)",
        "harmless / help (oracle)",
        "rlcd vs rlaif",
        "rlcd vs base",
    ] {
        assert!(svg.contains(label), "{label}");
    }
    // Background, 3 bars (the comparison without counts is left out), the legend's fill and
    // border, and its two swatches.
    assert_eq!(svg.matches("<rect").count(), 1 + 3 + 2 + 2);
    // Bar heights follow the rates, series by series: rlaif 75% and 50%, base 45%.
    let bars: Vec<f64> = svg
        .lines()
        .filter(|l| {
            l.starts_with("<rect") && !l.contains("#FFFFFF") && !l.contains("fill=\"none\"")
        })
        .filter_map(|l| l.split("height=\"").nth(1)?.split('"').next()?.parse().ok())
        .filter(|&h: &f64| h > 10.0)
        .collect();
    assert_eq!(bars.len(), 3, "{bars:?}");
    let unit = bars[0] / 75.0;
    assert!((bars[1] / unit - 50.0).abs() < 1.0, "{bars:?}");
    assert!((bars[2] / unit - 45.0).abs() < 1.0, "{bars:?}");
}
