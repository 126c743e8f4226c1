//! The precision a model's weights are kept and read in (`dtype` in `config.toml`).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::kernels::q4::Activations;

/// What the dense layers' weights are stored as. Activations, layer norms, biases and sums
/// stay f32 whatever the dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 4 bytes a weight; matches transformers to float tolerance.
    #[default]
    F32,
    /// 2 bytes a weight, IEEE half precision.
    F16,
    /// 2 bytes a weight, bfloat16 (f32's range, 8 bits of mantissa).
    Bf16,
    /// 1 byte a weight: symmetric int8 with one f32 scale per output channel.
    Int8,
    /// int8 weights as `Int8`, and the activations quantized to int8 too, per row at each
    /// call, so the products run on integer dot-product instructions (AVX-512 VNNI); the
    /// sums stay exact in i32. Costs more quality than `Int8` (docs/benchmarks.md).
    W8a8,
    /// About 5 bits a weight: blocks of 32 weights of one output in 4-bit codes with an f16
    /// scale and offset (GGUF's Q4_1; Q4_0 files load as they are, bit for bit), f32
    /// activations. A GGUF's Q8_0 tensors (its embedding) stay 8-bit, as int8.
    Q4,
    /// `Q4`'s weights with the activations quantized to int8 per block of 32 (llama.cpp's
    /// Q8_1), summed exactly on integer dot products (AVX-512 VNNI). The fastest dtype, and
    /// the lossiest (docs/benchmarks.md).
    W4a8,
}

impl Dtype {
    pub const ALL: [Dtype; 7] = [
        Dtype::F32,
        Dtype::F16,
        Dtype::Bf16,
        Dtype::Int8,
        Dtype::W8a8,
        Dtype::Q4,
        Dtype::W4a8,
    ];

    /// Bytes a weight takes in `kernels::PackedLinear` (int8's per-channel scales aside);
    /// the 4-bit dtypes live in `kernels::q4` instead.
    pub const fn elem_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::Int8 | Self::W8a8 => 1,
            Self::Q4 | Self::W4a8 => panic!("4-bit weights are kernels::q4's, not PackedLinear's"),
        }
    }

    /// For the 4-bit dtypes, the precision their activations are multiplied in.
    pub fn four_bit_activations(self) -> Option<Activations> {
        match self {
            Self::Q4 => Some(Activations::F32),
            Self::W4a8 => Some(Activations::Int8),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
            Self::W8a8 => "w8a8",
            Self::Q4 => "q4",
            Self::W4a8 => "w4a8",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown dtype {s:?} (f32, f16, bf16, int8, w8a8, q4, w4a8)"))
    }
}
