//! A bounds-checked little-endian cursor over a GGUF file's bytes: fixed-size fields, strings
//! and metadata value payloads, each failure naming the field and its offset.

use super::GgufError;
use super::metadata::{MetaValue, min_value_size, tag, tag_name};

/// Deepest nesting of metadata arrays accepted (real files use one level).
pub(super) const MAX_ARRAY_DEPTH: usize = 8;

/// A bounds-checked little-endian cursor over the file bytes.
pub(super) struct Cursor<'a> {
    /// The whole file.
    pub(super) bytes: &'a [u8],
    /// Offset of the next byte to read.
    pub(super) pos: usize,
    /// The file's label, for error messages.
    pub(super) file: &'a str,
}

impl<'a> Cursor<'a> {
    /// Bytes left after the cursor.
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The error for `what`, which needs `needed` bytes at the cursor.
    pub(super) fn truncated(&self, what: String, needed: u64) -> GgufError {
        GgufError::Truncated {
            file: self.file.to_string(),
            what,
            offset: self.pos as u64,
            needed,
            len: self.bytes.len() as u64,
        }
    }

    /// The next `n` bytes; `what` names the field when they run past the end.
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.truncated(what(), n as u64));
        }
        let bytes: &'a [u8] = self.bytes;
        let out = &bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub(super) fn array<const N: usize>(
        &mut self,
        what: &dyn Fn() -> String,
    ) -> Result<[u8; N], GgufError> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// A little-endian `u32`.
    pub(super) fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u64`.
    pub(super) fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: a `u64` byte length, then UTF-8 bytes.
    pub(super) fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > self.remaining() as u64 {
            return Err(self.truncated(what(), len));
        }
        let raw = self.take(len as usize, what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(GgufError::Corrupt {
                file: self.file.to_string(),
                detail: format!(
                    "{} (at byte {}) is not valid UTF-8 ({e})",
                    what(),
                    self.pos - raw.len()
                ),
            }),
        }
    }

    /// The error for an impossible value, described by `detail`.
    pub(super) fn corrupt(&self, detail: String) -> GgufError {
        GgufError::Corrupt {
            file: self.file.to_string(),
            detail,
        }
    }

    /// Reads the payload of a value of type `t` for metadata key `key`.
    pub(super) fn value(
        &mut self,
        t: u32,
        key: &str,
        depth: usize,
    ) -> Result<MetaValue, GgufError> {
        let what = || format!("value of metadata '{key}'");
        Ok(match t {
            tag::U8 => MetaValue::U8(u8::from_le_bytes(self.array(&what)?)),
            tag::I8 => MetaValue::I8(i8::from_le_bytes(self.array(&what)?)),
            tag::U16 => MetaValue::U16(u16::from_le_bytes(self.array(&what)?)),
            tag::I16 => MetaValue::I16(i16::from_le_bytes(self.array(&what)?)),
            tag::U32 => MetaValue::U32(u32::from_le_bytes(self.array(&what)?)),
            tag::I32 => MetaValue::I32(i32::from_le_bytes(self.array(&what)?)),
            tag::U64 => MetaValue::U64(u64::from_le_bytes(self.array(&what)?)),
            tag::I64 => MetaValue::I64(i64::from_le_bytes(self.array(&what)?)),
            tag::F32 => MetaValue::F32(f32::from_le_bytes(self.array(&what)?)),
            tag::F64 => MetaValue::F64(f64::from_le_bytes(self.array(&what)?)),
            tag::BOOL => match self.array::<1>(&what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(self.corrupt(format!(
                        "metadata '{key}' holds bool byte {b} at offset {} (must be 0 or 1)",
                        self.pos - 1
                    )));
                }
            },
            tag::STRING => MetaValue::String(self.string(&what)?),
            tag::ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.corrupt(format!(
                        "metadata '{key}' nests arrays deeper than {MAX_ARRAY_DEPTH} levels"
                    )));
                }
                let elem = self.u32(&|| format!("element type of metadata '{key}'"))?;
                let Some(min) = min_value_size(elem) else {
                    return Err(self.corrupt(format!(
                        "metadata '{key}' is an array of unknown value type {elem} (offset {})",
                        self.pos - 4
                    )));
                };
                let len = self.u64(&|| format!("length of metadata array '{key}'"))?;
                if len > (self.remaining() / min) as u64 {
                    return Err(self.truncated(
                        format!("metadata array '{key}' of {len} {} values", tag_name(elem)),
                        len.saturating_mul(min as u64),
                    ));
                }
                // Grow as elements actually parse rather than trusting the declared length.
                let mut items = Vec::with_capacity((len as usize).min(1 << 16));
                for _ in 0..len {
                    let item = if elem == tag::ARRAY {
                        self.value(tag::ARRAY, key, depth + 1)?
                    } else {
                        self.value(elem, key, depth)?
                    };
                    items.push(item);
                }
                MetaValue::Array(items)
            }
            other => {
                return Err(self.corrupt(format!(
                    "metadata '{key}' has unknown value type {other} (offset {}; known types are 0..=12)",
                    self.pos.saturating_sub(4)
                )));
            }
        })
    }
}
