//! Preference pairs as the simulate stage stores them (paper §3, §4.2): the pair type with its
//! hard or soft label, label accuracy against a trusted judge, and the Parquet frame pairs
//! round-trip through ([`pairs_to_frame`], [`pairs_from_frame`]).

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::eval::winrate::Rate;

/// Version of the pairs frame (its `format_version` column).
pub const PAIRS_FORMAT: u32 = 1;

/// A pairs table that does not hold what [`pairs_to_frame`] writes.
#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    /// A column is missing or malformed.
    #[error(
        "pairs table, column `{column}`: {message}\n  fix: rebuild the pairs with the simulate stage (the file is damaged or from another version)"
    )]
    Frame {
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
}

/// How a set of pairs was simulated and labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Contrast prompts p+ / p−, hard label on o+ (paper §3).
    Rlcd,
    /// Two samples of p, soft label from the simulator's A/B logits (paper §4.2).
    Rlaif,
    /// RLCD outputs with RLAIF soft labels (paper §4.2).
    RlcdRescore,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 3] = [Method::Rlcd, Method::Rlaif, Method::RlcdRescore];

    /// The method's name in recipes and tables (`rlcd`, `rlaif`, `rlcd-rescore`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Rlcd => "rlcd",
            Method::Rlaif => "rlaif",
            Method::RlcdRescore => "rlcd-rescore",
        }
    }

    /// Looks a method up by its name.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A slot of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// The first output, `output_a`.
    A,
    /// The second output, `output_b`.
    B,
}

impl Slot {
    /// `"A"` or `"B"`.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// Parses `"A"` or `"B"`.
    pub fn from_name(name: &str) -> Option<Slot> {
        match name {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }
}

/// One simulated preference pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// How it was simulated and labelled.
    pub method: Method,
    /// Id of the dialogue it continues.
    pub prompt_id: String,
    /// The dialogue turns (human, assistant, …, human).
    pub turns: Vec<String>,
    /// The unmodified prompt p (the plain template rendered; no model prefix).
    pub prompt: String,
    /// Output in slot A.
    pub output_a: String,
    /// Output in slot B.
    pub output_b: String,
    /// Probability that B is preferred, in [0, 1] (exactly 0 or 1 for RLCD's hard labels).
    pub soft_label: f64,
    /// Affix pair drawn for this prompt (RLCD and RLCD-Rescore).
    pub affix_index: Option<usize>,
    /// Slot holding o+, the output sampled from p+ (RLCD and RLCD-Rescore).
    pub positive_slot: Option<Slot>,
    /// Principle of the scoring prompt (RLAIF and RLCD-Rescore).
    pub principle_index: Option<usize>,
    /// Length of `output_a` in simulator tokens (the text re-encoded).
    pub len_a: usize,
    /// Length of `output_b` in simulator tokens.
    pub len_b: usize,
    /// Sampling seed of the draw that produced `output_a`.
    pub seed_a: u64,
    /// Sampling seed of the draw that produced `output_b`.
    pub seed_b: u64,
    /// Draws `output_a` took (1 + re-samples).
    pub tries_a: u32,
    /// Draws `output_b` took.
    pub tries_b: u32,
}

impl Pair {
    /// The slot the label prefers (`soft_label > 0.5` → B, `< 0.5` → A), `None` at exactly 0.5.
    pub fn preferred(&self) -> Option<Slot> {
        if self.soft_label > 0.5 {
            Some(Slot::B)
        } else if self.soft_label < 0.5 {
            Some(Slot::A)
        } else {
            None
        }
    }

    /// The output in `slot`.
    pub fn output(&self, slot: Slot) -> &str {
        match slot {
            Slot::A => &self.output_a,
            Slot::B => &self.output_b,
        }
    }

    /// The token length of the output in `slot`.
    pub fn len(&self, slot: Slot) -> usize {
        match slot {
            Slot::A => self.len_a,
            Slot::B => self.len_b,
        }
    }
}

/// Share of `pairs` whose label agrees with `truth`, as counts with a Wilson interval.
///
/// `truth(pair)` says whether B is truly better (`Some(true)`), A is (`Some(false)`), or
/// neither (`None`: a tie or no verdict). Pairs with no verdict and pairs whose label is
/// exactly 0.5 are left out of `n`.
pub fn label_accuracy(pairs: &[Pair], truth: impl Fn(&Pair) -> Option<bool>) -> Rate {
    let (mut n, mut agree) = (0u64, 0u64);
    for p in pairs {
        let (Some(b_better), Some(label)) = (truth(p), p.preferred()) else {
            continue;
        };
        n += 1;
        agree += u64::from((label == Slot::B) == b_better);
    }
    Rate {
        n,
        successes: agree,
    }
}

/// Column names of the pairs frame, in order.
pub const PAIR_COLUMNS: [&str; 17] = [
    "method",
    "prompt_id",
    "turns",
    "prompt",
    "output_a",
    "output_b",
    "soft_label",
    "affix_index",
    "positive_slot",
    "principle_index",
    "len_a",
    "len_b",
    "seed_a",
    "seed_b",
    "tries_a",
    "tries_b",
    "format_version",
];

fn frame_err(column: &str, message: impl std::fmt::Display) -> PairsError {
    PairsError::Frame {
        column: column.to_string(),
        message: message.to_string(),
    }
}

/// The pairs as a frame with [`PAIR_COLUMNS`]: `turns` is a JSON array of strings,
/// `positive_slot` is `"A"`/`"B"`, optional fields are null when absent, counts and seeds are
/// u64, and `format_version` is [`PAIRS_FORMAT`].
pub fn pairs_to_frame(pairs: &[Pair]) -> Result<DataFrame, PairsError> {
    let strs = |f: &dyn Fn(&Pair) -> String| -> Vec<String> { pairs.iter().map(f).collect() };
    let u64s = |f: &dyn Fn(&Pair) -> u64| -> Vec<u64> { pairs.iter().map(f).collect() };
    let opt = |f: &dyn Fn(&Pair) -> Option<usize>| -> Vec<Option<u64>> {
        pairs.iter().map(|p| f(p).map(|x| x as u64)).collect()
    };
    let turns = pairs
        .iter()
        .map(|p| serde_json::to_string(&p.turns))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| frame_err("turns", e))?;
    let slots: Vec<Option<String>> = pairs
        .iter()
        .map(|p| p.positive_slot.map(|s| s.name().to_string()))
        .collect();
    let cols = vec![
        Column::new("method".into(), strs(&|p| p.method.name().to_string())),
        Column::new("prompt_id".into(), strs(&|p| p.prompt_id.clone())),
        Column::new("turns".into(), turns),
        Column::new("prompt".into(), strs(&|p| p.prompt.clone())),
        Column::new("output_a".into(), strs(&|p| p.output_a.clone())),
        Column::new("output_b".into(), strs(&|p| p.output_b.clone())),
        Column::new(
            "soft_label".into(),
            pairs.iter().map(|p| p.soft_label).collect::<Vec<f64>>(),
        ),
        Column::new("affix_index".into(), opt(&|p| p.affix_index)),
        Column::new("positive_slot".into(), slots),
        Column::new("principle_index".into(), opt(&|p| p.principle_index)),
        Column::new("len_a".into(), u64s(&|p| p.len_a as u64)),
        Column::new("len_b".into(), u64s(&|p| p.len_b as u64)),
        Column::new("seed_a".into(), u64s(&|p| p.seed_a)),
        Column::new("seed_b".into(), u64s(&|p| p.seed_b)),
        Column::new("tries_a".into(), u64s(&|p| u64::from(p.tries_a))),
        Column::new("tries_b".into(), u64s(&|p| u64::from(p.tries_b))),
        Column::new(
            "format_version".into(),
            vec![u64::from(PAIRS_FORMAT); pairs.len()],
        ),
    ];
    DataFrame::new(pairs.len(), cols).map_err(|e| frame_err("*", e))
}

fn col<'f>(df: &'f DataFrame, name: &str) -> Result<&'f Column, PairsError> {
    df.column(name)
        .map_err(|_| frame_err(name, "missing from the table"))
}

fn str_values(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, PairsError> {
    let c = col(df, name)?
        .str()
        .map_err(|e| frame_err(name, format!("not a string column ({e})")))?;
    Ok((0..c.len()).map(|i| c.get(i).map(str::to_string)).collect())
}

fn u64_values(df: &DataFrame, name: &str) -> Result<Vec<Option<u64>>, PairsError> {
    let c = col(df, name)?
        .u64()
        .map_err(|e| frame_err(name, format!("not a u64 column ({e})")))?;
    Ok((0..c.len()).map(|i| c.get(i)).collect())
}

fn required<T>(v: Option<T>, name: &str, row: usize) -> Result<T, PairsError> {
    v.ok_or_else(|| frame_err(name, format!("null in row {row}")))
}

fn narrow<T: TryFrom<u64>>(v: u64, name: &str, row: usize) -> Result<T, PairsError> {
    T::try_from(v).map_err(|_| frame_err(name, format!("value {v} in row {row} is out of range")))
}

/// Reads pairs back from a frame written by [`pairs_to_frame`] (e.g. after
/// `tables::read_parquet`).
pub fn pairs_from_frame(df: &DataFrame) -> Result<Vec<Pair>, PairsError> {
    for v in u64_values(df, "format_version")?.into_iter().flatten() {
        if v != u64::from(PAIRS_FORMAT) {
            return Err(frame_err(
                "format_version",
                format!("version {v}, but this build reads version {PAIRS_FORMAT}"),
            ));
        }
    }
    let method = str_values(df, "method")?;
    let prompt_id = str_values(df, "prompt_id")?;
    let turns = str_values(df, "turns")?;
    let prompt = str_values(df, "prompt")?;
    let output_a = str_values(df, "output_a")?;
    let output_b = str_values(df, "output_b")?;
    let labels = col(df, "soft_label")?
        .f64()
        .map_err(|e| frame_err("soft_label", format!("not a f64 column ({e})")))?;
    let soft_label: Vec<Option<f64>> = (0..labels.len()).map(|i| labels.get(i)).collect();
    let affix = u64_values(df, "affix_index")?;
    let slot = str_values(df, "positive_slot")?;
    let principle = u64_values(df, "principle_index")?;
    let len_a = u64_values(df, "len_a")?;
    let len_b = u64_values(df, "len_b")?;
    let seed_a = u64_values(df, "seed_a")?;
    let seed_b = u64_values(df, "seed_b")?;
    let tries_a = u64_values(df, "tries_a")?;
    let tries_b = u64_values(df, "tries_b")?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let m = required(method[i].clone(), "method", i)?;
        let method = Method::from_name(&m)
            .ok_or_else(|| frame_err("method", format!("unknown method {m:?} in row {i}")))?;
        let t = required(turns[i].clone(), "turns", i)?;
        let turns: Vec<String> = serde_json::from_str(&t)
            .map_err(|e| frame_err("turns", format!("row {i} is not a JSON string array: {e}")))?;
        let soft_label = required(soft_label[i], "soft_label", i)?;
        if !(0.0..=1.0).contains(&soft_label) {
            return Err(frame_err(
                "soft_label",
                format!("{soft_label} in row {i} is not a probability"),
            ));
        }
        let positive_slot = match &slot[i] {
            None => None,
            Some(s) => Some(Slot::from_name(s).ok_or_else(|| {
                frame_err("positive_slot", format!("{s:?} in row {i} is not A or B"))
            })?),
        };
        let opt_usize = |v: Option<u64>, name: &str| -> Result<Option<usize>, PairsError> {
            v.map(|x| narrow::<usize>(x, name, i)).transpose()
        };
        out.push(Pair {
            method,
            prompt_id: required(prompt_id[i].clone(), "prompt_id", i)?,
            turns,
            prompt: required(prompt[i].clone(), "prompt", i)?,
            output_a: required(output_a[i].clone(), "output_a", i)?,
            output_b: required(output_b[i].clone(), "output_b", i)?,
            soft_label,
            affix_index: opt_usize(affix[i], "affix_index")?,
            positive_slot,
            principle_index: opt_usize(principle[i], "principle_index")?,
            len_a: narrow(required(len_a[i], "len_a", i)?, "len_a", i)?,
            len_b: narrow(required(len_b[i], "len_b", i)?, "len_b", i)?,
            seed_a: required(seed_a[i], "seed_a", i)?,
            seed_b: required(seed_b[i], "seed_b", i)?,
            tries_a: narrow(required(tries_a[i], "tries_a", i)?, "tries_a", i)?,
            tries_b: narrow(required(tries_b[i], "tries_b", i)?, "tries_b", i)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::simulate::simulator::prob_b;

    fn pair(soft_label: f64) -> Pair {
        Pair {
            method: Method::Rlcd,
            prompt_id: "p".into(),
            turns: vec!["Hello".into()],
            prompt: "\n\nHuman: Hello\n\nAssistant:".into(),
            output_a: "a".into(),
            output_b: "b".into(),
            soft_label,
            affix_index: Some(3),
            positive_slot: Some(Slot::A),
            principle_index: None,
            len_a: 1,
            len_b: 1,
            seed_a: u64::MAX,
            seed_b: 7,
            tries_a: 1,
            tries_b: 2,
        }
    }

    #[test]
    fn labels_prefer_by_threshold_and_accuracy_skips_ties() {
        assert_eq!(pair(0.9).preferred(), Some(Slot::B));
        assert_eq!(pair(0.1).preferred(), Some(Slot::A));
        assert_eq!(pair(0.5).preferred(), None);
        let pairs = vec![pair(1.0), pair(0.0), pair(0.5), pair(0.7)];
        // Truth: B better for the first three, no verdict for the last.
        let rate = label_accuracy(&pairs, |p| (p.soft_label != 0.7).then_some(true));
        assert_eq!(rate, Rate { n: 2, successes: 1 });
    }

    #[test]
    fn methods_and_slots_round_trip_their_names() {
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        assert_eq!(Slot::from_name("B"), Some(Slot::B));
        assert_eq!(Slot::from_name("b"), None);
        assert!((prob_b(0.0, 0.0) - 0.5).abs() < 1e-15);
        assert!((prob_b(0.0, 2.0f64.ln()) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_damaged_frame_names_the_column() {
        let mut df = pairs_to_frame(&[pair(1.0)]).expect("frame");
        df.drop_in_place("seed_b").expect("column");
        let err = pairs_from_frame(&df).expect_err("missing column");
        assert!(err.to_string().contains("`seed_b`"), "{err}");
        let df = pairs_to_frame(&[pair(1.5)]).expect("frame");
        let err = pairs_from_frame(&df).expect_err("bad label");
        assert!(err.to_string().contains("not a probability"), "{err}");
    }
}
