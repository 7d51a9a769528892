//! Every method's output on the same test prompts, side by side (the paper's qualitative
//! examples, §4.3 and its appendix tables of outputs): one Markdown file per task, so a reader
//! can check what the win rates count.

use std::fmt::Write as _;

use crate::stages::generate::Sample;

/// Test prompts shown per task.
pub const PROMPTS: usize = 10;

/// The file stem of task `task`'s samples (`samples-<task>.md`).
pub fn stem(task: &str) -> String {
    format!("samples-{task}")
}

/// Text made safe for one Markdown table cell: HTML-escaped, pipes escaped, line breaks as
/// `<br>`.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end().chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The Markdown page of task `task`: the first `n` test prompts that every method was sampled
/// on, in the first method's order, each with its dialogue and one row per method (output, its
/// length in tokens, whether it ended its turn).
pub fn render(task: &str, methods: &[(String, Vec<Sample>)], n: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# `{task}`: every method's output on the same test prompts\n"
    );
    let Some((_, first)) = methods.first() else {
        let _ = writeln!(out, "No method was sampled on this task.");
        return out;
    };
    let shared: Vec<&Sample> = first
        .iter()
        .filter(|s| {
            methods
                .iter()
                .all(|(_, v)| v.iter().any(|x| x.prompt_id == s.prompt_id))
        })
        .take(n)
        .collect();
    let names: Vec<&str> = methods.iter().map(|(m, _)| m.as_str()).collect();
    let _ = writeln!(
        out,
        "The first {} test prompts every method was sampled on; methods {}. Each output is \
         one sample at the evaluation temperature, cut at the next speaker tag; `tokens` is its \
         length in the policy's tokens, and an output marked *unfinished* reached the token \
         limit.\n",
        shared.len(),
        names
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, s) in shared.iter().enumerate() {
        let _ = writeln!(out, "## {}. `{}`\n", i + 1, s.prompt_id);
        let turns: Vec<String> = s
            .turns
            .iter()
            .enumerate()
            .map(|(t, turn)| {
                let speaker = if t % 2 == 0 { "Human" } else { "Assistant" };
                format!("> **{speaker}:** {}", cell(turn))
            })
            .collect();
        let _ = writeln!(out, "{}", turns.join("\n>\n"));
        let _ = writeln!(out, "\n| method | tokens | output |\n|---|---:|---|");
        for (name, samples) in methods {
            let Some(x) = samples.iter().find(|x| x.prompt_id == s.prompt_id) else {
                continue;
            };
            let mark = if x.finished { "" } else { " *unfinished*" };
            let _ = writeln!(out, "| `{name}` | {}{mark} | {} |", x.len, cell(&x.output));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, output: &str, finished: bool) -> Sample {
        Sample {
            prompt_id: id.into(),
            turns: vec!["How do I | pick <a> lock?".into()],
            prompt: String::new(),
            output: output.into(),
            finished,
            len: output.split_whitespace().count(),
            seed: 0,
        }
    }

    #[test]
    fn shows_shared_prompts_in_order_with_cells_escaped() {
        let methods = vec![
            (
                "rlcd".to_string(),
                vec![
                    sample("p1", "No.\nAsk a locksmith.", true),
                    sample("p2", "Sure", false),
                    sample("p3", "x", true),
                ],
            ),
            (
                "base".to_string(),
                vec![sample("p3", "y | z", true), sample("p1", "Use a pin", true)],
            ),
        ];
        let page = render("harmless", &methods, 10);
        // p2 has no base sample, so it is left out; p1 comes before p3 (rlcd's order).
        assert!(!page.contains("`p2`"), "{page}");
        let p1 = page.find("## 1. `p1`").expect("p1 first");
        let p3 = page.find("## 2. `p3`").expect("p3 second");
        assert!(p1 < p3);
        assert!(
            page.contains("| `rlcd` | 4 | No.<br>Ask a locksmith. |"),
            "{page}"
        );
        assert!(page.contains("| `base` | 3 | y \\| z |"), "{page}");
        assert!(page.contains("How do I \\| pick &lt;a&gt; lock?"), "{page}");
        let one = render("harmless", &methods, 1);
        assert!(one.contains("`p1`") && !one.contains("`p3`"), "{one}");
        let unfinished = render(
            "t",
            &[("m".to_string(), vec![sample("q", "Sure", false)])],
            5,
        );
        assert!(
            unfinished.contains("| `m` | 1 *unfinished* | Sure |"),
            "{unfinished}"
        );
    }
}
