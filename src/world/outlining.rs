//! Story outlining in the built-in world (paper §4.1, "outlining prompts"): a premise (a
//! character, their setting, a goal and an obstacle) and an outline continuing
//! "Here is a possible outline:\n1." whose items can be relevant, in or out of order, repeated,
//! irrelevant, dull, or inventive. Only low quality puts stages out of story order.

use rand::Rng;
use rand::rngs::StdRng;

use super::grammar::{Binding, Pattern, words};
use super::lexicon::Lexicon;
use super::{Score, choose_move, patterns};

/// A story premise: indices into the `name`, `setting`, `goal` and `obstacle` tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Premise {
    /// The character.
    pub name: usize,
    /// Where the story happens.
    pub setting: usize,
    /// What they want.
    pub goal: usize,
    /// What stands in the way.
    pub obstacle: usize,
}

const PREMISES: &[&str] = &[
    "write {an outline|a story outline} about <name> in <setting> , who wants to <goal> but <obstacle> .",
];

/// The opening every outline starts with (paper §4.1).
pub const OUTLINE_START: &str = "Here is a possible outline:";

/// Item patterns by story stage, in story order.
const STAGES: &[&[&str]] = &[
    &["<name> lives in <setting> ."],
    &["<name> wants to <goal> ."],
    &["but <name> learns that <obstacle> ."],
    &["<name> {faces|fights} the danger ."],
    &["in the end , <name> {manages to|fails to} <goal> ."],
];
const TWIST: &[&str] = &["then <name> discovers <discovery> ."];
const FILLER: &[&str] = &["<name> <filler> ."];

/// Every sentence pattern of the task (for the vocabulary).
pub(crate) fn all_patterns() -> Vec<Pattern> {
    let mut out = patterns(PREMISES);
    for s in STAGES {
        out.extend(patterns(s));
    }
    out.extend(patterns(TWIST));
    out.extend(patterns(FILLER));
    out.push(Pattern::new("Here is a possible outline :"));
    out
}

/// Draws a premise and writes the human turn.
pub fn request(lex: &Lexicon, rng: &mut StdRng) -> (Premise, Vec<String>) {
    let p = Premise {
        name: lex.pick(rng, "name", None),
        setting: lex.pick(rng, "setting", None),
        goal: lex.pick(rng, "goal", None),
        obstacle: lex.pick(rng, "obstacle", None),
    };
    let pat = Pattern::new(PREMISES[rng.random_range(0..PREMISES.len())]);
    let words = pat.realise(rng, &mut |slot| fill(lex, &p, slot));
    (p, words)
}

fn fill(lex: &Lexicon, p: &Premise, slot: &str) -> Vec<String> {
    let i = match slot {
        "name" => p.name,
        "setting" => p.setting,
        "goal" => p.goal,
        "obstacle" => p.obstacle,
        _ => return Vec::new(),
    };
    lex.phrase(slot, i)
}

/// Recovers the premise from a human turn.
pub fn parse_request(lex: &Lexicon, words: &[String]) -> Option<Premise> {
    PREMISES.iter().find_map(|src| {
        let b = Pattern::new(src).matches(words, lex)?;
        let get = |slot: &str| b.iter().find(|x| x.slot == slot).map(|x| x.index);
        Some(Premise {
            name: get("name")?,
            setting: get("setting")?,
            goal: get("goal")?,
            obstacle: get("obstacle")?,
        })
    })
}

/// Kinds of outline items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    /// A story stage about the premise.
    Stage(usize),
    /// An inventive twist about the premise.
    Twist,
    /// A stage about a different character or goal.
    Irrelevant(usize),
    /// A dull everyday activity.
    Dull,
}

fn write_item(lex: &Lexicon, rng: &mut StdRng, p: &Premise, item: Item) -> Vec<String> {
    let pick =
        |rng: &mut StdRng, list: &[&str]| Pattern::new(list[rng.random_range(0..list.len())]);
    match item {
        Item::Stage(k) => pick(rng, STAGES[k]).realise(rng, &mut |slot| fill(lex, p, slot)),
        Item::Twist => {
            let d = lex.pick(rng, "discovery", None);
            pick(rng, TWIST).realise(rng, &mut |slot| {
                if slot == "discovery" {
                    lex.phrase("discovery", d)
                } else {
                    fill(lex, p, slot)
                }
            })
        }
        Item::Irrelevant(k) => {
            // The same stage about someone else (another name, setting and goal).
            let other = Premise {
                name: lex.pick(rng, "name", None),
                setting: lex.pick(rng, "setting", None),
                goal: lex.pick(rng, "goal", None),
                obstacle: lex.pick(rng, "obstacle", None),
            };
            let other = if other.name == p.name {
                Premise {
                    name: (p.name + 1) % lex.table("name").phrases.len().max(1),
                    ..other
                }
            } else {
                other
            };
            write_item(lex, rng, &other, Item::Stage(k))
        }
        Item::Dull => {
            let f = lex.pick(rng, "filler", None);
            pick(rng, FILLER).realise(rng, &mut |slot| {
                if slot == "filler" {
                    lex.phrase("filler", f)
                } else {
                    fill(lex, p, slot)
                }
            })
        }
    }
}

/// Writes the assistant turn (starting with [`OUTLINE_START`]) of latent quality `q`.
pub fn respond(
    lex: &Lexicon,
    p: &Premise,
    q: f64,
    sharpness: f64,
    rng: &mut StdRng,
) -> (&'static str, Vec<String>) {
    let mut items: Vec<Item> = Vec::new();
    let mut twist = false;
    let mut bad = 0;
    for k in 0..STAGES.len() {
        let mv = choose_move(
            rng,
            q,
            sharpness,
            &[
                ("keep", 1.0),
                ("twist", if twist { -9.0 } else { 1.5 }),
                ("irrelevant", -1.0),
                ("dull", -0.5),
                ("skip", -0.5),
                ("repeat", -1.0),
            ],
        );
        match mv {
            "keep" => items.push(Item::Stage(k)),
            "twist" => {
                twist = true;
                items.push(Item::Stage(k));
                items.push(Item::Twist);
            }
            "irrelevant" => {
                bad += 1;
                items.push(Item::Irrelevant(k));
            }
            "dull" => {
                bad += 1;
                items.push(Item::Dull);
            }
            "skip" => bad += 1,
            _ => {
                bad += 1;
                items.push(Item::Stage(k));
                items.push(Item::Stage(k));
            }
        }
    }
    // Low quality also shuffles the story out of order.
    let p_shuffle = 1.0 / (1.0 + (sharpness * q * 2.0).exp());
    if items.len() > 2 && rng.random_bool(p_shuffle.clamp(0.0, 1.0)) {
        bad += 1;
        let i = rng.random_range(0..items.len() - 1);
        let j = rng.random_range(i + 1..items.len());
        items.swap(i, j);
    }
    let mut out = words(OUTLINE_START);
    let mut previous: Option<Vec<String>> = None;
    for (n, item) in items.iter().enumerate() {
        out.push("\n".into());
        out.push((n + 1).to_string());
        out.push(".".into());
        // A repeated stage repeats the previous item word for word.
        let text = match (&previous, n > 0 && items[n - 1] == *item) {
            (Some(prev), true) => prev.clone(),
            _ => write_item(lex, rng, p, *item),
        };
        out.extend(text.iter().cloned());
        previous = Some(text);
    }
    let label = if bad == 0 {
        "good"
    } else if bad <= 2 {
        "mixed"
    } else {
        "poor"
    };
    (label, out)
}

/// Item lines of an outline: the text after the first line break of the opening (when
/// present), split at line breaks, with the item numbers removed.
fn items_of(response: &[String]) -> Vec<Vec<String>> {
    let start = words(OUTLINE_START);
    let body = if response.starts_with(&start) {
        &response[start.len()..]
    } else {
        response
    };
    let mut out = Vec::new();
    for line in body.split(|w| w == "\n") {
        let mut line: &[String] = line;
        if line.len() >= 2 && line[0].chars().all(|c| c.is_ascii_digit()) && line[1] == "." {
            line = &line[2..];
        }
        if !line.is_empty() {
            out.push(line.to_vec());
        }
    }
    out
}

/// The compiled item patterns: stages in story order, twists, dull items.
struct ItemPatterns {
    stages: Vec<Vec<Pattern>>,
    twist: Vec<Pattern>,
    filler: Vec<Pattern>,
}

fn item_patterns() -> &'static ItemPatterns {
    static PATTERNS: std::sync::OnceLock<ItemPatterns> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| ItemPatterns {
        stages: STAGES.iter().map(|list| patterns(list)).collect(),
        twist: patterns(TWIST),
        filler: patterns(FILLER),
    })
}

/// Scores an outline (the whole assistant turn, or its continuation after "1.") on `outline`.
pub fn score(lex: &Lexicon, p: &Premise, response: &[String]) -> Score {
    let items = items_of(response);
    let matches_premise = |b: &[Binding]| {
        b.iter().all(|x| match x.slot.as_str() {
            "name" => x.index == p.name,
            "setting" => x.index == p.setting,
            "goal" => x.index == p.goal,
            "obstacle" => x.index == p.obstacle,
            _ => true,
        })
    };
    let mut s = Score::default();
    let mut value = 0.0;
    let mut stages_seen: Vec<usize> = Vec::new();
    let mut max_stage: Option<usize> = None;
    let mut twist = false;
    let mut parsed_any = false;
    let mut seen_items: Vec<&Vec<String>> = Vec::new();
    for item in &items {
        if seen_items.contains(&item) {
            s.repeats += 1;
            value -= 1.0;
            continue;
        }
        seen_items.push(item);
        let pats = item_patterns();
        let stage = pats.stages.iter().enumerate().find_map(|(k, list)| {
            list.iter()
                .find_map(|p| p.matches(item, lex))
                .map(|b| (k, b))
        });
        if let Some((k, b)) = stage {
            parsed_any = true;
            s.moves.push("stage");
            if !matches_premise(&b) {
                value -= 1.0;
                continue;
            }
            if stages_seen.contains(&k) {
                value -= 1.0;
                continue;
            }
            if max_stage.is_some_and(|m| k < m) {
                value -= 1.0;
            }
            stages_seen.push(k);
            max_stage = Some(max_stage.map_or(k, |m| m.max(k)));
            value += 1.0;
            continue;
        }
        if let Some(b) = pats.twist.iter().find_map(|p| p.matches(item, lex)) {
            parsed_any = true;
            s.moves.push("twist");
            if matches_premise(&b) && !twist {
                twist = true;
                value += 1.5;
            } else {
                value -= 1.0;
            }
            continue;
        }
        if pats.filler.iter().any(|p| p.matches(item, lex).is_some()) {
            parsed_any = true;
            s.moves.push("dull");
            value -= 0.5;
            continue;
        }
        s.unparsed += 1;
        value -= super::UNPARSED_PENALTY;
    }
    if !parsed_any {
        return Score::incoherent();
    }
    if stages_seen.contains(&0) && stages_seen.contains(&(STAGES.len() - 1)) {
        value += 1.0;
    }
    s.outline = Some(value);
    s
}
