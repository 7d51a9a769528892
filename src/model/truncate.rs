//! Prompts longer than a model's context leaves them (paper Appendix B: the simulator, the
//! policies and the judges read multi-turn conversations). `Left` drops the oldest tokens, so
//! the model reads the end of the conversation, which it answers; `Error` refuses instead.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ModelError;

/// What happens to a prompt longer than the room a model has for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Truncate {
    /// Drop the prompt's oldest tokens (after a leading BOS, which stays) until it fits.
    #[default]
    Left,
    /// Fail: `rlcd validate` names the prompt and its token count.
    Error,
}

impl Truncate {
    /// The recipe spelling (`"left"`, `"error"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Error => "error",
        }
    }
}

/// `ids` fitted into `room` tokens as `mode` says: unchanged when they fit; under
/// [`Truncate::Left`] a leading `bos` and the last tokens are kept; under [`Truncate::Error`]
/// a [`ModelError::TooLong`] (with `max` = `room`).
pub fn fit(
    ids: Vec<u32>,
    room: usize,
    bos: Option<u32>,
    mode: Truncate,
) -> Result<Vec<u32>, ModelError> {
    if ids.len() <= room {
        return Ok(ids);
    }
    if mode == Truncate::Error || room == 0 {
        return Err(ModelError::TooLong {
            len: ids.len(),
            max: room,
        });
    }
    let keep_bos = room >= 2 && bos.is_some() && ids.first() == bos.as_ref();
    let mut out = Vec::with_capacity(room);
    if keep_bos {
        out.push(ids[0]);
    }
    out.extend_from_slice(&ids[ids.len() - (room - out.len())..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_that_fit_are_unchanged() {
        let ids = vec![1, 10, 11];
        assert_eq!(fit(ids.clone(), 3, Some(1), Truncate::Error).unwrap(), ids);
        assert_eq!(fit(ids.clone(), 8, Some(1), Truncate::Left).unwrap(), ids);
    }

    #[test]
    fn left_keeps_a_leading_bos_and_the_last_tokens() {
        let ids = vec![1, 10, 11, 12, 13, 14];
        assert_eq!(
            fit(ids.clone(), 4, Some(1), Truncate::Left).unwrap(),
            [1, 12, 13, 14]
        );
        // Without a leading BOS (or with room for one token only) only the end is kept.
        assert_eq!(
            fit(ids.clone(), 4, Some(2), Truncate::Left).unwrap(),
            [11, 12, 13, 14]
        );
        assert_eq!(
            fit(ids.clone(), 4, None, Truncate::Left).unwrap(),
            [11, 12, 13, 14]
        );
        assert_eq!(fit(ids, 1, Some(1), Truncate::Left).unwrap(), [14]);
    }

    #[test]
    fn error_names_the_length_and_the_room() {
        let err = fit(vec![1; 6], 4, Some(1), Truncate::Error).unwrap_err();
        assert!(
            matches!(err, ModelError::TooLong { len: 6, max: 4 }),
            "{err}"
        );
        let err = fit(vec![1; 6], 0, Some(1), Truncate::Left).unwrap_err();
        assert!(
            matches!(err, ModelError::TooLong { len: 6, max: 0 }),
            "{err}"
        );
    }
}
