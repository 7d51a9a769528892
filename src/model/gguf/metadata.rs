//! GGUF metadata values: the typed [`MetaValue`], its accessors, and the value-type ids of the
//! file format.

use std::fmt;

/// GGUF metadata value type ids.
pub(super) mod tag {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// One GGUF metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// `u8` (type 0).
    U8(u8),
    /// `i8` (type 1).
    I8(i8),
    /// `u16` (type 2).
    U16(u16),
    /// `i16` (type 3).
    I16(i16),
    /// `u32` (type 4).
    U32(u32),
    /// `i32` (type 5).
    I32(i32),
    /// `u64` (type 10).
    U64(u64),
    /// `i64` (type 11).
    I64(i64),
    /// `f32` (type 6).
    F32(f32),
    /// `f64` (type 12).
    F64(f64),
    /// A boolean stored as one byte (type 7).
    Bool(bool),
    /// A UTF-8 string (type 8).
    String(String),
    /// Elements all of one type (arrays of arrays may differ inside) (type 9).
    Array(Vec<MetaValue>),
}
impl MetaValue {
    /// Any unsigned integer, or a non-negative signed one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(u64::from(v)),
            MetaValue::U16(v) => Some(u64::from(v)),
            MetaValue::U32(v) => Some(u64::from(v)),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(i64::from(v)),
            MetaValue::I16(v) => Some(i64::from(v)),
            MetaValue::I32(v) => Some(i64::from(v)),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Any number (floats, and integers converted to `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(f64::from(v)),
            MetaValue::F64(v) => Some(v),
            MetaValue::U64(v) => Some(v as f64),
            MetaValue::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array's elements.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The GGUF name of the value's type (`u32`, `string`, `array` …).
    pub fn type_name(&self) -> &'static str {
        tag_name(self.tag())
    }

    /// The GGUF value type id of the value.
    pub(super) fn tag(&self) -> u32 {
        match self {
            MetaValue::U8(_) => tag::U8,
            MetaValue::I8(_) => tag::I8,
            MetaValue::U16(_) => tag::U16,
            MetaValue::I16(_) => tag::I16,
            MetaValue::U32(_) => tag::U32,
            MetaValue::I32(_) => tag::I32,
            MetaValue::U64(_) => tag::U64,
            MetaValue::I64(_) => tag::I64,
            MetaValue::F32(_) => tag::F32,
            MetaValue::F64(_) => tag::F64,
            MetaValue::Bool(_) => tag::BOOL,
            MetaValue::String(_) => tag::STRING,
            MetaValue::Array(_) => tag::ARRAY,
        }
    }

    /// A short description for error messages: the type and a preview of the value.
    pub(super) fn describe(&self) -> String {
        match self {
            MetaValue::String(s) => {
                let preview: String = s.chars().take(40).collect();
                let more = if preview.len() < s.len() { "…" } else { "" };
                format!("a string \"{preview}{more}\"")
            }
            MetaValue::Array(items) => {
                let elem = items.first().map(MetaValue::type_name).unwrap_or("u8");
                format!("an array of {} {elem} values", items.len())
            }
            other => format!("{} {other}", other.type_name()),
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::String(s) => write!(f, "{s:?}"),
            MetaValue::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().take(8).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() > 8 {
                    write!(f, ", … ({} in all)", items.len())?;
                }
                write!(f, "]")
            }
        }
    }
}

/// The GGUF name of value type `t` (`u32`, `string` …), or `unknown`.
pub(super) fn tag_name(t: u32) -> &'static str {
    match t {
        tag::U8 => "u8",
        tag::I8 => "i8",
        tag::U16 => "u16",
        tag::I16 => "i16",
        tag::U32 => "u32",
        tag::I32 => "i32",
        tag::F32 => "f32",
        tag::BOOL => "bool",
        tag::STRING => "string",
        tag::ARRAY => "array",
        tag::U64 => "u64",
        tag::I64 => "i64",
        tag::F64 => "f64",
        _ => "unknown",
    }
}

/// Fewest bytes one value of type `t` takes in a file, or `None` for an unknown type.
pub(super) fn min_value_size(t: u32) -> Option<usize> {
    match t {
        tag::U8 | tag::I8 | tag::BOOL => Some(1),
        tag::U16 | tag::I16 => Some(2),
        tag::U32 | tag::I32 | tag::F32 => Some(4),
        tag::U64 | tag::I64 | tag::F64 | tag::STRING => Some(8),
        tag::ARRAY => Some(12),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_value_accessors() {
        assert_eq!(MetaValue::I32(-1).as_u64(), None);
        assert_eq!(MetaValue::I64(5).as_u64(), Some(5));
        assert_eq!(MetaValue::U8(3).as_f64(), Some(3.0));
        assert_eq!(MetaValue::F32(0.5).as_f64(), Some(0.5));
        assert_eq!(MetaValue::F32(0.5).as_u64(), None);
        assert_eq!(MetaValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(MetaValue::String("x".into()).as_str(), Some("x"));
        assert_eq!(MetaValue::Bool(true).as_u64(), None);
        let arr = MetaValue::Array(vec![MetaValue::U8(1)]);
        assert_eq!(arr.as_array().map(<[MetaValue]>::len), Some(1));
        assert_eq!(arr.as_str(), None);
    }
}
