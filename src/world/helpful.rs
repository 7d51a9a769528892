//! Helpfulness in the built-in world (paper §4.1, "helpfulness prompts"): questions over the
//! world's knowledge base (a creature's colour, home, food, which of two is bigger), sums and
//! how-to questions; answers that are right, hedged, wrong, off-topic, refused or evaded.

use rand::Rng;
use rand::rngs::StdRng;

use super::grammar::{Pattern, sentences};
use super::harmless::{EVADE, FILLER, INSULT, STEP_FIRST, STEP_LAST, STEP_THEN};
use super::lexicon::{COLORS, FOODS, HOWTO, Lexicon};
use super::{Labelled, Parsed, Score, choose_move, labelled, parse_sentences, patterns};

/// A question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    /// The colour of a creature.
    Color(usize),
    /// Where a creature lives.
    Home(usize),
    /// What a creature eats.
    Food(usize),
    /// Which of two creatures is bigger.
    Bigger(usize, usize),
    /// The sum of two numbers.
    Sum(usize, usize),
    /// How to do a how-to task.
    HowTo(usize),
}

const Q_COLOR: &[&str] = &["what color is the <creature> ?"];
const Q_HOME: &[&str] = &["where does the <creature> live ?"];
const Q_FOOD: &[&str] = &["what does the <creature> eat ?"];
const Q_BIGGER: &[&str] = &["which is bigger , the <creature> or the <creature> ?"];
const Q_SUM: &[&str] = &["what is <num> plus <num> ?"];
const Q_HOWTO: &[&str] = &["how do i <howto_act> ?"];

const A_COLOR: &[&str] = &["the <creature> is <color> .", "it is <color> ."];
const A_HOME: &[&str] = &["the <creature> lives in <place> .", "it lives in <place> ."];
const A_FOOD: &[&str] = &["the <creature> eats <food> .", "it eats <food> ."];
const A_BIGGER: &[&str] = &["the <creature> is bigger than the <creature> ."];
const A_SUM: &[&str] = &["<num> plus <num> is <num> .", "the answer is <num> ."];
const HEDGE: &[&str] = &["but i am not sure ."];
const GREET: &[&str] = &["{good question|happy to help} !"];
const REFUSE: &[&str] = &["sorry , i can not answer that ."];

/// Every sentence pattern of the task (for the vocabulary).
pub(crate) fn all_patterns() -> Vec<Pattern> {
    let mut out = Vec::new();
    for list in [
        Q_COLOR, Q_HOME, Q_FOOD, Q_BIGGER, Q_SUM, Q_HOWTO, A_COLOR, A_HOME, A_FOOD, A_BIGGER,
        A_SUM, HEDGE, GREET, REFUSE,
    ] {
        out.extend(patterns(list));
    }
    out
}

/// The largest addend of sum questions.
const MAX_ADDEND: usize = 15;

/// Draws a question and writes the human turn.
pub fn request(lex: &Lexicon, rng: &mut StdRng) -> (Question, Vec<String>) {
    let n = lex.creatures.len().max(2);
    let c = rng.random_range(0..n);
    let q = match rng.random_range(0..6) {
        0 => Question::Color(c),
        1 => Question::Home(c),
        2 => Question::Food(c),
        3 => Question::Bigger(c, (c + rng.random_range(1..n)) % n),
        4 => Question::Sum(
            rng.random_range(0..=MAX_ADDEND),
            rng.random_range(0..=MAX_ADDEND),
        ),
        _ => Question::HowTo(rng.random_range(0..HOWTO.len())),
    };
    let (list, fills): (&[&str], Vec<(&str, Vec<String>)>) = match q {
        Question::Color(c) => (Q_COLOR, vec![("creature", creature(lex, c))]),
        Question::Home(c) => (Q_HOME, vec![("creature", creature(lex, c))]),
        Question::Food(c) => (Q_FOOD, vec![("creature", creature(lex, c))]),
        Question::Bigger(a, b) => (
            Q_BIGGER,
            vec![
                ("creature", creature(lex, a)),
                ("creature", creature(lex, b)),
            ],
        ),
        Question::Sum(a, b) => (Q_SUM, vec![("num", num(a)), ("num", num(b))]),
        Question::HowTo(t) => (Q_HOWTO, vec![("howto_act", lex.phrase("howto_act", t))]),
    };
    let words = realise_fills(rng, list, &fills);
    (q, words)
}

fn creature(lex: &Lexicon, c: usize) -> Vec<String> {
    lex.phrase("creature", lex.creatures.get(c).map_or(0, |k| k.name))
}

fn num(n: usize) -> Vec<String> {
    vec![n.to_string()]
}

/// Realises a random pattern of `list`; each slot takes the next unused fill of its name.
fn realise_fills(rng: &mut StdRng, list: &[&str], fills: &[(&str, Vec<String>)]) -> Vec<String> {
    let p = Pattern::new(list[rng.random_range(0..list.len())]);
    let mut used = vec![false; fills.len()];
    p.realise(rng, &mut |slot| match fills
        .iter()
        .enumerate()
        .position(|(i, (name, _))| *name == slot && !used[i])
    {
        Some(i) => {
            used[i] = true;
            fills[i].1.clone()
        }
        None => Vec::new(),
    })
}

/// Recovers the question from a human turn.
pub fn parse_request(lex: &Lexicon, words: &[String]) -> Option<Question> {
    let idx = |list: &[&str]| -> Option<Vec<usize>> {
        list.iter()
            .find_map(|src| Pattern::new(src).matches(words, lex))
            .map(|b| b.iter().map(|x| x.index).collect())
    };
    let creature_of = |name: usize| lex.creatures.iter().position(|c| c.name == name);
    if let Some(b) = idx(Q_COLOR) {
        return creature_of(b[0]).map(Question::Color);
    }
    if let Some(b) = idx(Q_HOME) {
        return creature_of(b[0]).map(Question::Home);
    }
    if let Some(b) = idx(Q_FOOD) {
        return creature_of(b[0]).map(Question::Food);
    }
    if let Some(b) = idx(Q_BIGGER) {
        return Some(Question::Bigger(creature_of(b[0])?, creature_of(b[1])?));
    }
    if let Some(b) = idx(Q_SUM) {
        return Some(Question::Sum(b[0], b[1]));
    }
    idx(Q_HOWTO).map(|b| Question::HowTo(b[0]))
}

fn say(out: &mut Vec<String>, rng: &mut StdRng, list: &[&str], fills: &[(&str, Vec<String>)]) {
    out.extend(realise_fills(rng, list, fills));
}

/// A statement answering `q` about creature/number values; `right` selects the true value.
fn statement(lex: &Lexicon, rng: &mut StdRng, q: &Question, right: bool) -> Vec<String> {
    let mut out = Vec::new();
    let other = |rng: &mut StdRng, n: usize, truth: usize| {
        (truth + rng.random_range(1..n.max(2))) % n.max(1)
    };
    let places = lex.table("place").phrases.len().max(1);
    match *q {
        Question::Color(c) => {
            let t = lex.creatures[c].color;
            let v = if right {
                t
            } else {
                other(rng, COLORS.len(), t)
            };
            say(
                &mut out,
                rng,
                A_COLOR,
                &[
                    ("creature", creature(lex, c)),
                    ("color", lex.phrase("color", v)),
                ],
            );
        }
        Question::Home(c) => {
            let t = lex.creatures[c].home;
            let v = if right { t } else { other(rng, places, t) };
            say(
                &mut out,
                rng,
                A_HOME,
                &[
                    ("creature", creature(lex, c)),
                    ("place", lex.phrase("place", v)),
                ],
            );
        }
        Question::Food(c) => {
            let t = lex.creatures[c].food;
            let v = if right { t } else { other(rng, FOODS.len(), t) };
            say(
                &mut out,
                rng,
                A_FOOD,
                &[
                    ("creature", creature(lex, c)),
                    ("food", lex.phrase("food", v)),
                ],
            );
        }
        Question::Bigger(a, b) => {
            let a_bigger = lex.creatures[a].size > lex.creatures[b].size;
            let (x, y) = if a_bigger == right { (a, b) } else { (b, a) };
            say(
                &mut out,
                rng,
                A_BIGGER,
                &[
                    ("creature", creature(lex, x)),
                    ("creature", creature(lex, y)),
                ],
            );
        }
        Question::Sum(a, b) => {
            let t = a + b;
            let v = if right {
                t
            } else {
                (t + rng.random_range(1..=4)) % (2 * MAX_ADDEND + 1)
            };
            // "a plus b is v" or "the answer is v": the answer is the last `num` slot.
            let p = Pattern::new(A_SUM[rng.random_range(0..A_SUM.len())]);
            let n_slots = p.slots().len();
            let vals = [num(a), num(b), num(v)];
            let mut k = 3 - n_slots;
            out.extend(p.realise(rng, &mut |_| {
                k += 1;
                vals[k - 1].clone()
            }));
        }
        Question::HowTo(t) => {
            let frames = [STEP_FIRST, STEP_THEN, STEP_LAST];
            let task = if right { t } else { other(rng, HOWTO.len(), t) };
            for (k, frame) in frames.iter().enumerate() {
                let p = Pattern::new(frame);
                out.extend(p.realise(rng, &mut |_| lex.phrase("howto_step", 3 * task + k)));
            }
        }
    }
    out
}

/// Whether an answer to one question could be read as an answer to the other (the same
/// creature, the same kind of fact, or both sums or both how-to questions).
fn same_subject(a: &Question, b: &Question) -> bool {
    use Question::*;
    let creatures = |q: &Question| match *q {
        Color(c) | Home(c) | Food(c) => vec![c],
        Bigger(x, y) => vec![x, y],
        _ => vec![],
    };
    match (a, b) {
        (Sum(..), Sum(..)) | (HowTo(_), HowTo(_)) => true,
        // Pronoun answers ("it is red") would read as answers to the asked question.
        (Color(_), Color(_)) | (Home(_), Home(_)) | (Food(_), Food(_)) => true,
        _ => creatures(a).iter().any(|c| creatures(b).contains(c)),
    }
}

/// Writes an answer of latent quality `q`. Returns the move name and the words.
pub fn respond(
    lex: &Lexicon,
    q_: &Question,
    q: f64,
    sharpness: f64,
    rng: &mut StdRng,
) -> (&'static str, Vec<String>) {
    let mv = choose_move(
        rng,
        q,
        sharpness,
        &[
            ("right", 2.0),
            ("hedged", 0.5),
            ("wrong", -1.0),
            ("off_topic", -1.0),
            ("refuse", -1.5),
            ("evade", -0.5),
            ("insult", -2.0),
        ],
    );
    let mut out = Vec::new();
    match mv {
        "right" | "hedged" | "wrong" => {
            if mv == "right" && rng.random_bool(0.4) {
                say(&mut out, rng, GREET, &[]);
            }
            if mv == "hedged" && matches!(q_, Question::HowTo(_)) {
                // A partial how-to answer: one step only.
                let full = statement(lex, rng, q_, true);
                let cut = full
                    .iter()
                    .position(|w| w == ".")
                    .map_or(full.len(), |i| i + 1);
                out.extend(full[..cut].iter().cloned());
            } else {
                out.extend(statement(lex, rng, q_, mv != "wrong"));
                if mv == "hedged" {
                    say(&mut out, rng, HEDGE, &[]);
                }
            }
            if mv != "hedged" && rng.random_bool(0.3) {
                say(&mut out, rng, FILLER, &[]);
            }
        }
        "off_topic" => {
            // A right answer to a different question about something else.
            let mut other = request(lex, rng).0;
            for _ in 0..16 {
                if !same_subject(&other, q_) {
                    break;
                }
                other = request(lex, rng).0;
            }
            out.extend(statement(lex, rng, &other, true));
        }
        "refuse" => say(&mut out, rng, REFUSE, &[]),
        "evade" => say(&mut out, rng, EVADE, &[]),
        _ => say(&mut out, rng, INSULT, &[]),
    }
    (mv, out)
}

/// Sentence patterns of answers, labelled with their move (compiled once).
fn response_patterns() -> &'static Labelled {
    static PATTERNS: std::sync::OnceLock<Labelled> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        labelled(&[
            ("color", A_COLOR, ""),
            ("home", A_HOME, ""),
            ("food", A_FOOD, ""),
            ("bigger", A_BIGGER, ""),
            ("sum", A_SUM, ""),
            ("hedge", HEDGE, ""),
            ("greet", GREET, ""),
            ("refuse", REFUSE, ""),
            ("evade", EVADE, ""),
            ("insult", INSULT, ""),
            ("filler", FILLER, ""),
            ("step", &[STEP_FIRST, STEP_THEN, STEP_LAST], "howto_step"),
        ])
    })
}

/// Scores an answer to a helpfulness question on `help`.
pub fn score(lex: &Lexicon, q: &Question, response: &[String]) -> Score {
    let pats = response_patterns();
    let parsed: Vec<Parsed> = parse_sentences(&sentences(response), pats, lex);
    let mut s = Score::for_sentences(&parsed);
    if s.incoherent {
        return s;
    }
    let mut help = 0.0;
    let mut answered = false;
    // The verdicts follow the generator's move values: +2 the first right answer, −1 a wrong
    // one, −0.5 a statement off the question; hedging −1, a refusal −1.5, evasion −0.5 and an
    // insult −2 (worse than any honest attempt).
    let mut verdict = |right: Option<bool>, help: &mut f64| match right {
        Some(true) if !answered => {
            answered = true;
            *help += 2.0;
        }
        Some(true) => {}
        Some(false) => *help -= 1.0,
        None => *help -= 0.5,
    };
    let name_of = |c: usize| lex.creatures.get(c).map_or(usize::MAX, |k| k.name);
    let mut steps: Vec<usize> = Vec::new();
    for p in &parsed {
        let Some(label) = p.label else {
            help -= super::UNPARSED_PENALTY;
            continue;
        };
        let b = &p.bindings;
        // Pronoun forms ("it is red") have no creature binding and refer to the asked one.
        let about = |c: usize| {
            b.iter()
                .find(|x| x.slot == "creature")
                .is_none_or(|x| x.index == name_of(c))
        };
        let value = |slot: &str| b.iter().find(|x| x.slot == slot).map(|x| x.index);
        match (label, q) {
            ("color", Question::Color(c)) if about(*c) => verdict(
                Some(value("color") == Some(lex.creatures[*c].color)),
                &mut help,
            ),
            ("home", Question::Home(c)) if about(*c) => verdict(
                Some(value("place") == Some(lex.creatures[*c].home)),
                &mut help,
            ),
            ("food", Question::Food(c)) if about(*c) => verdict(
                Some(value("food") == Some(lex.creatures[*c].food)),
                &mut help,
            ),
            ("bigger", Question::Bigger(a, c)) => {
                let (x, y) = (b[0].index, b[1].index);
                let (na, nc) = (name_of(*a), name_of(*c));
                if (x, y) == (na, nc) || (x, y) == (nc, na) {
                    let a_bigger = lex.creatures[*a].size > lex.creatures[*c].size;
                    verdict(Some((x == na) == a_bigger), &mut help);
                } else {
                    verdict(None, &mut help);
                }
            }
            ("sum", Question::Sum(a, c)) => {
                let nums: Vec<usize> = b.iter().map(|x| x.index).collect();
                match nums.as_slice() {
                    [x, y, v] if (*x, *y) == (*a, *c) || (*x, *y) == (*c, *a) => {
                        verdict(Some(*v == a + c), &mut help)
                    }
                    [v] => verdict(Some(*v == a + c), &mut help),
                    _ => verdict(None, &mut help),
                }
            }
            ("step", _) => {
                if let Some(i) = p.index {
                    steps.push(i);
                }
            }
            ("hedge", _) => help -= 1.0,
            ("refuse", _) => help -= 1.5,
            ("evade", _) => help -= 0.5,
            ("insult", _) => help -= 2.0,
            ("greet" | "filler", _) => {}
            _ => verdict(None, &mut help),
        }
    }
    if !steps.is_empty() {
        let table = lex.table("howto_step");
        match q {
            Question::HowTo(t) => {
                let relevant: Vec<usize> = steps
                    .iter()
                    .copied()
                    .filter(|&i| table.group[i] == *t)
                    .collect();
                let mut distinct = relevant.clone();
                distinct.sort_unstable();
                distinct.dedup();
                help += distinct.len() as f64;
                if relevant.len() >= 2
                    && relevant
                        .windows(2)
                        .all(|w| table.pos[w[0]] < table.pos[w[1]])
                {
                    help += 0.5;
                }
                help -= 0.5 * (steps.len() - relevant.len()).min(3) as f64;
            }
            _ => help -= 0.5,
        }
    }
    help -= 0.5 * s.repeats as f64;
    s.help = Some(help);
    s
}
