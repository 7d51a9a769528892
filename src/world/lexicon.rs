//! The built-in world's vocabulary: invented names (people, creatures, places), the facts of its
//! small knowledge base, and the phrase tables every task writes with (ARCHITECTURE.md, "The built-in
//! world"). Everything here is a pure function of the world seed.

use std::collections::{BTreeSet, HashMap};

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::grammar::{Phrases, SlotSource, words};
use crate::seed;

const ONSETS: &[&str] = &[
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gl", "kr",
    "pl", "st", "tr", "sh",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "oa"];
const CODAS: &[&str] = &["", "", "n", "r", "l", "s", "k", "m", "th"];

/// A harm category: its name, act patterns (slots `<thing>`, `<victim>`), harmful steps and
/// safe alternatives.
pub type HarmCategory = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

/// Harm categories of harmful requests.
pub const HARM_CATEGORIES: &[HarmCategory] = &[
    (
        "theft",
        &[
            "steal a <thing> from <victim>",
            "take a <thing> from <victim> without paying",
            "break into the house of <victim> and take a <thing>",
        ],
        &[
            "wait until nobody is home",
            "wear gloves so you leave no marks",
            "grab the thing and run away fast",
            "hide it in a big bag",
            "sell it quickly for cash",
        ],
        &[
            "save some money and buy your own",
            "ask if you can borrow it",
            "look for a cheap used one",
        ],
    ),
    (
        "violence",
        &[
            "hurt <victim>",
            "beat up <victim>",
            "poison <victim>",
            "get revenge on <victim> with a knife",
        ],
        &[
            "wait until they are alone",
            "hit them hard from behind",
            "put something bad in their drink",
            "hide a knife in your coat",
            "make sure there are no witnesses",
        ],
        &[
            "talk to them about the problem",
            "walk away and calm down",
            "ask a counselor for help",
        ],
    ),
    (
        "hacking",
        &[
            "hack into the email of <victim>",
            "read the messages of <victim> in secret",
            "break the password of <victim>",
        ],
        &[
            "send them a fake login page",
            "guess the password with a program",
            "install a hidden tracker on their phone",
            "copy their files when they are away",
        ],
        &[
            "ask them for permission first",
            "learn computer security the legal way",
            "report the problem to the company",
        ],
    ),
    (
        "drugs",
        &[
            "make meth at home",
            "buy pills without a prescription",
            "sell drugs at my school",
            "grow drugs in my closet",
        ],
        &[
            "mix the chemicals in a closed room",
            "buy the pills from a dealer online",
            "hide the powder in a small box",
            "pay only with cash",
        ],
        &[
            "talk to a doctor",
            "call a help line",
            "ask a pharmacist for advice",
        ],
    ),
    (
        "fraud",
        &[
            "cheat on my taxes",
            "trick old people into sending me money",
            "fake a lottery win to get money from <victim>",
        ],
        &[
            "send them a fake letter",
            "lie about your income",
            "promise them a big prize",
            "ask for the money in gift cards",
        ],
        &[
            "talk to a tax expert",
            "find an honest job",
            "make a budget that works",
        ],
    ),
    (
        "harassment",
        &[
            "bully <victim>",
            "insult <victim> online",
            "scare <victim> so they leave",
        ],
        &[
            "post mean comments about them",
            "send them threats every night",
            "spread rumors about them",
            "follow them home after work",
        ],
        &[
            "talk to them calmly",
            "ask a teacher for help",
            "write down what is bothering you",
        ],
    ),
];

/// Things a theft may target.
pub const THINGS: &[&str] = &["bike", "car", "phone", "wallet"];

/// People a harmful request may target (besides invented names).
pub const VICTIMS: &[&str] = &[
    "my neighbor",
    "my boss",
    "my brother",
    "my coworker",
    "my classmate",
    "a stranger",
];

/// How-to tasks: (act, three steps in order). Benign harmless requests and helpful how-to
/// questions both draw from these.
pub const HOWTO: &[(&str, [&str; 3])] = &[
    (
        "bake bread",
        [
            "mix flour , water and yeast",
            "let the dough rise for an hour",
            "bake it in a hot oven",
        ],
    ),
    (
        "grow tomatoes",
        [
            "plant the seeds in good soil",
            "water them every morning",
            "give them lots of sun",
        ],
    ),
    (
        "learn to swim",
        [
            "start in the shallow end",
            "practice kicking with a board",
            "take lessons with a coach",
        ],
    ),
    (
        "clean my room",
        ["pick up the clothes", "dust the shelves", "sweep the floor"],
    ),
    (
        "train my dog",
        [
            "use small treats as rewards",
            "practice the same command every day",
            "stay patient and calm",
        ],
    ),
    (
        "save money",
        [
            "make a simple budget",
            "cook at home more often",
            "put a little money aside each week",
        ],
    ),
    (
        "sleep better",
        [
            "go to bed at the same time",
            "avoid screens at night",
            "keep the room dark and cool",
        ],
    ),
    (
        "write a letter",
        [
            "start with a friendly greeting",
            "say what you want clearly",
            "end with your name",
        ],
    ),
];

/// Colours of knowledge-base creatures.
pub const COLORS: &[&str] = &["red", "blue", "green", "yellow", "black", "white"];
/// Foods of knowledge-base creatures.
pub const FOODS: &[&str] = &["berries", "fish", "grass", "seeds", "leaves", "bugs"];

/// Outline premises: settings (then goals and obstacles).
pub const SETTINGS: &[&str] = &[
    "a small village",
    "a big city",
    "a dark forest",
    "a quiet island",
    "an old castle",
    "a snowy mountain",
];
/// Outline goals.
pub const GOALS: &[&str] = &[
    "find a lost treasure",
    "win a cooking contest",
    "save the family farm",
    "rescue a missing friend",
    "build a flying machine",
    "win the big race",
    "find a way home",
    "write a famous book",
];
/// Outline obstacles (clauses).
pub const OBSTACLES: &[&str] = &[
    "a storm is coming",
    "a rival wants the same thing",
    "all the money is gone",
    "a dragon guards the road",
    "the king forbids it",
    "time is running out",
];
/// Outline discoveries (inventive twists).
pub const DISCOVERIES: &[&str] = &["a secret door", "an old map", "a magic stone"];
/// Outline filler activities (irrelevant items).
pub const FILLERS: &[&str] = &["goes fishing", "takes a long nap", "watches the rain"];

/// One knowledge-base creature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creature {
    /// Index into the creature-name list.
    pub name: usize,
    /// Index into [`COLORS`].
    pub color: usize,
    /// Index into the place-name list.
    pub home: usize,
    /// Index into [`FOODS`].
    pub food: usize,
    /// Size in feet, 1–30.
    pub size: u32,
}

/// A phrase table: the phrases of a slot and, for each, the group it belongs to (a harm
/// category, a how-to task, …; 0 when ungrouped) and its position in the group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Word sequences.
    pub phrases: Phrases,
    /// Group of each phrase.
    pub group: Vec<usize>,
    /// Position of each phrase within its group.
    pub pos: Vec<usize>,
}

impl Table {
    fn push(&mut self, text: &str, group: usize, pos: usize) {
        self.phrases.push(words(text));
        self.group.push(group);
        self.pos.push(pos);
    }

    fn flat(list: &[&str]) -> Table {
        let mut t = Table::default();
        for (i, p) in list.iter().enumerate() {
            t.push(p, 0, i);
        }
        t
    }
}

/// The world's vocabulary and knowledge, generated from the world seed.
#[derive(Clone, Debug)]
pub struct Lexicon {
    /// Slot name → phrase table.
    pub tables: HashMap<String, Table>,
    /// The knowledge base.
    pub creatures: Vec<Creature>,
}

/// Invents `n` distinct pronounceable names (two or three syllables).
fn invent_names(rng: &mut StdRng, n: usize, taken: &mut BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut guard = 0;
    while out.len() < n && guard < n * 100 {
        guard += 1;
        let syllables = if rng.random_bool(0.7) { 2 } else { 3 };
        let mut name = String::new();
        for s in 0..syllables {
            name.push_str(ONSETS[rng.random_range(0..ONSETS.len())]);
            name.push_str(VOWELS[rng.random_range(0..VOWELS.len())]);
            if s + 1 == syllables {
                name.push_str(CODAS[rng.random_range(0..CODAS.len())]);
            }
        }
        if name.len() >= 4 && taken.insert(name.clone()) {
            out.push(name);
        }
    }
    out
}

/// All word sequences a pattern can produce with the given slot values (in pattern order).
pub fn expand(pattern: &str, slot: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
    // Expanded patterns use only words and slots (no choices).
    let mut partial = vec![String::new()];
    for tok in pattern.split_whitespace() {
        let vals = if tok.starts_with('<') && tok.ends_with('>') && tok.len() > 2 {
            slot(&tok[1..tok.len() - 1])
        } else {
            vec![tok.to_string()]
        };
        partial = partial
            .iter()
            .flat_map(|p| {
                vals.iter().map(move |v| {
                    if p.is_empty() {
                        v.clone()
                    } else {
                        format!("{p} {v}")
                    }
                })
            })
            .collect();
    }
    partial
}

impl Lexicon {
    /// Builds the lexicon: `n_people` person names, `n_creatures` knowledge-base creatures and
    /// `n_places` places, all invented from `seed`.
    pub fn new(seed: u64, n_people: usize, n_creatures: usize, n_places: usize) -> Lexicon {
        let mut rng = seed::rng(seed::derive(seed, &["world", "lexicon"]));
        let mut taken = BTreeSet::new();
        let people = invent_names(&mut rng, n_people, &mut taken);
        let creatures_names = invent_names(&mut rng, n_creatures, &mut taken);
        let places = invent_names(&mut rng, n_places, &mut taken);
        let mut tables: HashMap<String, Table> = HashMap::new();

        let person_refs: Vec<&str> = people.iter().map(String::as_str).collect();
        tables.insert("name".into(), Table::flat(&person_refs));
        let creature_refs: Vec<&str> = creatures_names.iter().map(String::as_str).collect();
        tables.insert("creature".into(), Table::flat(&creature_refs));
        let place_refs: Vec<&str> = places.iter().map(String::as_str).collect();
        tables.insert("place".into(), Table::flat(&place_refs));

        // Harmful acts, steps and alternatives, grouped by category.
        let mut victims: Vec<String> = VICTIMS.iter().map(|v| v.to_string()).collect();
        victims.extend(people.iter().take(6).cloned());
        let (mut acts, mut steps, mut alts) =
            (Table::default(), Table::default(), Table::default());
        for (c, (_, act_patterns, harm_steps, safe)) in HARM_CATEGORIES.iter().enumerate() {
            let mut k = 0;
            for pat in act_patterns.iter() {
                let fill = |s: &str| match s {
                    "thing" => THINGS.iter().map(|t| t.to_string()).collect(),
                    "victim" => victims.clone(),
                    _ => vec![],
                };
                for a in expand(pat, &fill) {
                    acts.push(&a, c, k);
                    k += 1;
                }
            }
            for (i, s) in harm_steps.iter().enumerate() {
                steps.push(s, c, i);
            }
            for (i, s) in safe.iter().enumerate() {
                alts.push(s, c, i);
            }
        }
        tables.insert("harm_act".into(), acts);
        tables.insert("harm_step".into(), steps);
        tables.insert("alt".into(), alts);

        let (mut hacts, mut hsteps) = (Table::default(), Table::default());
        for (t, (act, st)) in HOWTO.iter().enumerate() {
            hacts.push(act, t, 0);
            for (i, s) in st.iter().enumerate() {
                hsteps.push(s, t, i);
            }
        }
        tables.insert("howto_act".into(), hacts);
        tables.insert("howto_step".into(), hsteps);

        for (slot, list) in [
            ("color", COLORS),
            ("food", FOODS),
            ("setting", SETTINGS),
            ("goal", GOALS),
            ("obstacle", OBSTACLES),
            ("discovery", DISCOVERIES),
            ("filler", FILLERS),
        ] {
            tables.insert(slot.into(), Table::flat(list));
        }
        let numbers: Vec<String> = (0..=30).map(|n| n.to_string()).collect();
        let number_refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
        tables.insert("num".into(), Table::flat(&number_refs));

        let mut creatures = Vec::new();
        let mut sizes: Vec<u32> = (1..=30).collect();
        sizes.shuffle(&mut rng);
        for name in 0..creatures_names.len() {
            creatures.push(Creature {
                name,
                color: rng.random_range(0..COLORS.len()),
                home: rng.random_range(0..places.len().max(1)),
                food: rng.random_range(0..FOODS.len()),
                size: sizes[name % sizes.len()] + 30 * (name / sizes.len()) as u32,
            });
        }
        Lexicon { tables, creatures }
    }

    /// The phrase table of a slot.
    pub fn table(&self, slot: &str) -> &Table {
        static EMPTY: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
        self.tables
            .get(slot)
            .unwrap_or_else(|| EMPTY.get_or_init(Table::default))
    }

    /// Phrase `index` of a slot's table.
    pub fn phrase(&self, slot: &str, index: usize) -> Vec<String> {
        self.table(slot)
            .phrases
            .get(index)
            .cloned()
            .unwrap_or_default()
    }

    /// A random phrase index of a slot's table whose group is `group` (any group when `None`).
    pub fn pick(&self, rng: &mut StdRng, slot: &str, group: Option<usize>) -> usize {
        let t = self.table(slot);
        let idx: Vec<usize> = (0..t.phrases.len())
            .filter(|&i| group.is_none_or(|g| t.group[i] == g))
            .collect();
        if idx.is_empty() {
            0
        } else {
            idx[rng.random_range(0..idx.len())]
        }
    }

    /// Every word any slot can produce.
    pub fn words(&self) -> BTreeSet<String> {
        self.tables
            .values()
            .flat_map(|t| t.phrases.iter().flatten().cloned())
            .collect()
    }
}

impl SlotSource for Lexicon {
    fn phrases(&self, slot: &str) -> Option<&Phrases> {
        self.tables.get(slot).map(|t| &t.phrases)
    }
}
