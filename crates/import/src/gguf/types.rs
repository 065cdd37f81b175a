//! The ggml tensor types a GGUF file can name, with the block layout of each (how many weights
//! one block holds and how many bytes it takes), so that tensor sizes can be checked even for
//! types the importer does not convert.

use std::fmt;

/// A ggml tensor type, as numbered in the GGUF tensor infos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half float.
    F16,
    /// 4-bit, 32 weights per block: f16 scale, `w = d·(q − 8)`.
    Q4_0,
    /// 4-bit, 32 weights per block: f16 scale and f16 minimum, `w = d·q + m`.
    Q4_1,
    /// 5-bit, 32 weights per block, symmetric.
    Q5_0,
    /// 5-bit, 32 weights per block, with minimum.
    Q5_1,
    /// 8-bit, 32 weights per block: f16 scale, `w = d·q`.
    Q8_0,
    /// 8-bit, 32 weights per block, with sum (an activation format).
    Q8_1,
    /// 2-bit K-quant (256-weight super-blocks).
    Q2K,
    /// 3-bit K-quant.
    Q3K,
    /// 4-bit K-quant: 8 sub-blocks of 32 with 6-bit scales and minimums.
    Q4K,
    /// 5-bit K-quant.
    Q5K,
    /// 6-bit K-quant: 16 sub-blocks of 16 with 8-bit scales.
    Q6K,
    /// 8-bit K-quant (an activation format).
    Q8K,
    /// 4-bit non-linear, 32 weights per block.
    Iq4Nl,
    /// 4-bit non-linear, 256-weight super-blocks.
    Iq4Xs,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 64-bit float.
    F64,
    /// bfloat16.
    BF16,
    /// Any other type number (IQ2/IQ3/IQ1, ternary, FP4 …); its layout is not known here.
    Other(u32),
}

impl GgmlType {
    /// The type with GGUF number `id`.
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            20 => Self::Iq4Nl,
            23 => Self::Iq4Xs,
            24 => Self::I8,
            25 => Self::I16,
            26 => Self::I32,
            27 => Self::I64,
            28 => Self::F64,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// The GGUF type number.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::Iq4Nl => 20,
            Self::Iq4Xs => 23,
            Self::I8 => 24,
            Self::I16 => 25,
            Self::I32 => 26,
            Self::I64 => 27,
            Self::F64 => 28,
            Self::BF16 => 30,
            Self::Other(id) => id,
        }
    }

    /// `(weights per block, bytes per block)`, where the layout is known.
    pub fn block_layout(self) -> Option<(u64, u64)> {
        Some(match self {
            Self::F32 | Self::I32 => (1, 4),
            Self::F16 | Self::BF16 | Self::I16 => (1, 2),
            Self::I8 => (1, 1),
            Self::I64 | Self::F64 => (1, 8),
            Self::Q4_0 | Self::Iq4Nl => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q8_1 => (32, 36),
            Self::Q2K => (256, 84),
            Self::Q3K => (256, 110),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
            Self::Q8K => (256, 292),
            Self::Iq4Xs => (256, 136),
            Self::Other(_) => return None,
        })
    }

    /// Whether [`super::GgufFile::read_f32`] converts tensors of this type.
    pub fn dequantizes(self) -> bool {
        matches!(
            self,
            Self::F32
                | Self::F16
                | Self::BF16
                | Self::Q8_0
                | Self::Q4_0
                | Self::Q4_1
                | Self::Q4K
                | Self::Q6K
        )
    }

    /// The type's name as ggml spells it (`Q4_K`, `BF16`, `type 19` for unknown numbers).
    pub fn name(self) -> String {
        let name = match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q8_1 => "Q8_1",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q8K => "Q8_K",
            Self::Iq4Nl => "IQ4_NL",
            Self::Iq4Xs => "IQ4_XS",
            Self::I8 => "I8",
            Self::I16 => "I16",
            Self::I32 => "I32",
            Self::I64 => "I64",
            Self::F64 => "F64",
            Self::BF16 => "BF16",
            Self::Other(id) => return format!("type {id}"),
        };
        name.to_owned()
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}
