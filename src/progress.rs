//! Progress bars on stderr: one per running stage, drawn together, hidden when quiet or when
//! stderr is not a terminal.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress bars of the stages running at the same time, drawn together on stderr.
pub fn bars() -> &'static MultiProgress {
    static BARS: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// A bar of `len` steps labelled `label`; hidden when `quiet` or stderr is not a terminal.
pub fn bar(quiet: bool, len: u64, label: &str) -> ProgressBar {
    let pb = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden())
    } else {
        bars().add(ProgressBar::new(len))
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label.to_string());
    pb
}

/// Prints a line on stderr above the bars (or plainly when stderr is not a terminal).
pub fn println(text: &str) {
    if std::io::stderr().is_terminal() {
        let _ = bars().println(text);
    } else {
        eprintln!("{text}");
    }
}
