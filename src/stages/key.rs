//! Stage keys: the blake3 of a stage's kind, format version, serialized configuration and
//! upstream keys, in canonical JSON. Equal keys mean equal outputs, so any run (or sweep cell)
//! reuses a stage another run already computed; the configuration holds everything `run` reads
//! (templates, prompt-set and model checksums, seeds), so nothing else can change the output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stage::StageKind;
use crate::model::Truncate;

/// Version of the key derivation and of the plan format; bumping it invalidates every cached
/// artifact.
pub const FORMAT_VERSION: u32 = 2;

/// Hex digits of a stage key.
pub const KEY_LEN: usize = 32;

/// Canonical JSON: object keys sorted, no whitespace, numbers as serde_json prints them.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn go(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<&String, &serde_json::Value> = m.iter().collect();
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    go(v, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    go(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    go(v, &mut out);
    out
}

/// The field of a stage configuration left out of its key (an [`Unkeyed`]).
pub const UNKEYED: &str = "unkeyed";

/// Settings a stage reads that never change an output it produces: two configurations that
/// differ only here give the same output whenever the stage succeeds, so changing them re-runs
/// nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unkeyed {
    /// Over-long prompts (the recipe's `truncate`). A prompt that fits gets the same tokens
    /// under both modes; where `left` would cut one, `error` fails, and preflight refuses that
    /// recipe before any stage runs, so an output cut under `left` is never reused under
    /// `error`.
    pub truncate: Truncate,
}

/// The key of a stage of `kind` at `version` with `config` (less its [`UNKEYED`] field)
/// whose inputs have `upstream` keys (id → key).
pub fn stage_key(
    kind: StageKind,
    version: u32,
    config: &serde_json::Value,
    upstream: &BTreeMap<String, String>,
) -> String {
    let mut config = config.clone();
    if let Some(fields) = config.as_object_mut() {
        fields.remove(UNKEYED);
    }
    let input = serde_json::json!({
        "format": FORMAT_VERSION,
        "kind": kind.name(),
        "version": version,
        "config": config,
        "upstream": upstream,
    });
    let hash = blake3::hash(canonical_json(&input).as_bytes());
    hash.to_hex()[..KEY_LEN].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({ "z": {"b": 2, "a": 1}, "a": [3, {"y": null, "x": true}] });
        assert_eq!(
            canonical_json(&v),
            r#"{"a":[3,{"x":true,"y":null}],"z":{"a":1,"b":2}}"#
        );
    }

    #[test]
    fn keys_cover_kind_version_config_and_upstream() {
        let config = serde_json::json!({ "a": 1 });
        let up = BTreeMap::from([("x/y".to_string(), "k1".to_string())]);
        let base = stage_key(StageKind::Simulate, 1, &config, &up);
        assert_eq!(base.len(), KEY_LEN);
        assert_eq!(base, stage_key(StageKind::Simulate, 1, &config, &up));
        assert_ne!(base, stage_key(StageKind::Reward, 1, &config, &up));
        assert_ne!(base, stage_key(StageKind::Simulate, 2, &config, &up));
        let other = serde_json::json!({ "a": 2 });
        assert_ne!(base, stage_key(StageKind::Simulate, 1, &other, &up));
        let up2 = BTreeMap::from([("x/y".to_string(), "k2".to_string())]);
        assert_ne!(base, stage_key(StageKind::Simulate, 1, &config, &up2));
    }

    #[test]
    fn unkeyed_settings_leave_the_key() {
        let up = BTreeMap::new();
        let bare = serde_json::json!({ "a": 1 });
        for truncate in [Truncate::Left, Truncate::Error] {
            let config = serde_json::json!({ "a": 1, UNKEYED: Unkeyed { truncate } });
            assert_eq!(
                stage_key(StageKind::Generate, 1, &config, &up),
                stage_key(StageKind::Generate, 1, &bare, &up)
            );
        }
    }
}
