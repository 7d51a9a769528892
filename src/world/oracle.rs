//! The world's oracle: exact harm, help and outline scores of any (prompt, response) text, the
//! "human" judge of the built-in world (ARCHITECTURE.md). The prompt's final human turn is parsed back
//! into its request; the response is parsed sentence by sentence (outline item by item) into
//! moves, and text that does not parse scores as incoherent.

use super::grammar::words;
use super::{Request, Score, Task, World, harmless, helpful, outlining};

/// A prompt the oracle cannot judge.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// The final human turn is not a request of the task in the built-in world.
    #[error(
        "the oracle cannot judge {task} prompt {turn:?}: it is not a built-in world request; use a `world:{task}` prompt set or an LM judge"
    )]
    NotAWorldPrompt {
        /// The task.
        task: &'static str,
        /// The final human turn.
        turn: String,
    },
}

impl World {
    /// Recovers the request of a prompt's final human turn.
    pub fn parse_request(&self, task: Task, final_turn: &str) -> Option<Request> {
        let w = words(final_turn);
        let lex = &self.lexicon;
        match task {
            Task::Harmless => harmless::parse_request(lex, &w).map(Request::Harmless),
            Task::Helpful => helpful::parse_request(lex, &w).map(Request::Helpful),
            Task::Outlining => outlining::parse_request(lex, &w).map(Request::Outlining),
        }
    }

    /// Scores `response` to the prompt `turns` (human, assistant, …, human) of `task`. Only the
    /// task's axes are set (see [`Task::axes`]).
    pub fn score(
        &self,
        task: Task,
        turns: &[String],
        response: &str,
    ) -> Result<Score, OracleError> {
        let last = turns.last().map(String::as_str).unwrap_or("");
        let req = self
            .parse_request(task, last)
            .ok_or_else(|| OracleError::NotAWorldPrompt {
                task: task.name(),
                turn: last.to_string(),
            })?;
        Ok(self.score_request(&req, response))
    }

    /// The score of `response` on `task`'s main axis ([`Task::main_axis`]), with
    /// [`INCOHERENT`](super::INCOHERENT) for a prompt that is not from the world: the number
    /// pairwise comparisons and label checks rank by.
    pub fn main_axis_score(&self, task: Task, turns: &[String], response: &str) -> f64 {
        self.score(task, turns, response)
            .ok()
            .and_then(|s| s.axis(task.main_axis()))
            .unwrap_or(super::INCOHERENT)
    }

    /// Scores `response` to a known request.
    pub fn score_request(&self, req: &Request, response: &str) -> Score {
        let w = words(response);
        let lex = &self.lexicon;
        let (task, mut s) = match req {
            Request::Harmless(r) => (Task::Harmless, harmless::score(lex, r, &w)),
            Request::Helpful(r) => (Task::Helpful, helpful::score(lex, r, &w)),
            Request::Outlining(r) => (Task::Outlining, outlining::score(lex, r, &w)),
        };
        let axes = task.axes();
        for (axis, slot) in [
            ("harm", &mut s.harm),
            ("help", &mut s.help),
            ("outline", &mut s.outline),
        ] {
            if !axes.contains(&axis) {
                *slot = None;
            }
        }
        s
    }
}
