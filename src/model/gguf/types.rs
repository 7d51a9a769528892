//! ggml's tensor types: the [`GgmlType`] table of ids, block sizes and byte sizes, and the
//! error for type ids this crate does not decode.

use std::fmt;

use super::GgufError;

/// The ggml tensor types this crate decodes.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit `q`; value = (q − 8)·d.
    Q4_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit `q`; value = q·d + m.
    Q4_1,
    /// Blocks of 32: f16 `d`, 32 high bits, 16 bytes of low nibbles; value = (q − 16)·d.
    Q5_0,
    /// Blocks of 32: f16 `d`, 32 × i8 `q`; value = q·d.
    Q8_0,
    /// Super-blocks of 256: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales and mins, 128 bytes of
    /// nibbles; eight sub-blocks of 32 with value = d·scale·q − dmin·min.
    Q4_K,
    /// Super-blocks of 256: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 i8 scales, f16
    /// `d`; sixteen sub-blocks of 16 with value = d·scale·(q − 32).
    Q6_K,
}

impl GgmlType {
    /// Every supported type.
    pub const ALL: [GgmlType; 9] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];

    /// The type for a ggml type id, if supported.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's numeric id of the type (`enum ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// Values per block.
    pub const fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 => 32,
            GgmlType::Q4_K | GgmlType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub const fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_K => 144,
            GgmlType::Q6_K => 210,
        }
    }

    /// ggml's name of the type (`Q4_K`, `F16` …).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// Bytes that `n_elements` values take, or `None` when `n_elements` is not a whole number
    /// of blocks (or the size overflows).
    pub fn byte_size(self, n_elements: usize) -> Option<usize> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// "F32 (0), F16 (1), …" for error messages.
fn supported_types() -> String {
    GgmlType::ALL
        .iter()
        .map(|t| format!("{} ({})", t.name(), t.id()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ggml's name for type ids this module does not decode, for error messages.
fn unsupported_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        4 | 5 => "a removed Q4_2/Q4_3 type",
        7 => "Q5_1",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        13 => "Q5_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

/// The error for type id `id`, which is not one of [`GgmlType::ALL`]; `context` prefixes the
/// message.
pub(super) fn unsupported_type(context: String, id: u32) -> GgufError {
    GgufError::UnsupportedType {
        context,
        id,
        supported: supported_types(),
        known: unsupported_type_name(id)
            .map(|n| format!(", and id {id} is ggml's {n}"))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gguf::TensorInfo;

    #[test]
    fn type_table_is_consistent() {
        for ty in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
            assert_eq!(ty.to_string(), ty.name());
        }
        assert_eq!(GgmlType::from_id(13), None);
        assert_eq!(GgmlType::Q6_K.byte_size(512), Some(420));
        assert_eq!(GgmlType::Q4_K.byte_size(300), None);
        let t = TensorInfo {
            name: "w".into(),
            dims: vec![64, 3],
            ggml_type: 8,
            offset: 0,
        };
        assert_eq!(
            (t.shape(), t.n_elements(), t.byte_size()),
            (vec![3, 64], 192, Some(204))
        );
    }
}
