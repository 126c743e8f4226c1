//! The ggml tensor types a GGUF file may hold, and their dequantization to f32.
//!
//! Each quantized type stores a row as whole blocks: 32 weights (Q4_0, Q4_1, Q8_0) or a
//! super-block of 256 (the K-quants Q4_K, Q5_K, Q6_K). A block's values are computed exactly
//! as ggml's reference `dequantize_row_*` computes them (the same f32 operations in the same
//! order), so a dequantized tensor is bit-identical to what llama.cpp and `gguf-py` produce.

use half::{bf16, f16};

/// A ggml tensor type (`ggml_type` ids as GGUF stores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Bf16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    /// The type of ggml id `id`, or `None` for one we do not read (the caller names it).
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::Bf16,
            _ => return None,
        })
    }

    /// ggml's name for the type, as llama.cpp's tools print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Bf16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// Weights per block.
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::Bf16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes of `elements` weights laid out in rows of `row_len`, or `None` when a row is not
    /// a whole number of blocks.
    pub fn bytes_of(self, row_len: usize, elements: usize) -> Option<usize> {
        let block = self.block_len();
        row_len
            .is_multiple_of(block)
            .then(|| elements / block * self.block_bytes())
    }

    /// The names of every type we read, for error messages.
    pub fn supported() -> &'static str {
        "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K"
    }
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Dequantizes `raw` (whole blocks of `ty`) into `out` (one f32 per weight).
pub fn dequantize(ty: GgmlType, raw: &[u8], out: &mut [f32]) {
    debug_assert_eq!(
        raw.len() / ty.block_bytes() * ty.block_len(),
        out.len(),
        "raw must be whole blocks covering out"
    );
    let blocks = raw
        .chunks_exact(ty.block_bytes())
        .zip(out.chunks_exact_mut(ty.block_len()));
    match ty {
        GgmlType::F32 => {
            for (b, y) in blocks {
                y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (b, y) in blocks {
                y[0] = half(b, 0);
            }
        }
        GgmlType::Bf16 => {
            for (b, y) in blocks {
                y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => {
            for (b, y) in blocks {
                let d = half(b, 0);
                for (j, &q) in b[2..18].iter().enumerate() {
                    y[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
                    y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (b, y) in blocks {
                let (d, m) = (half(b, 0), half(b, 2));
                for (j, &q) in b[4..20].iter().enumerate() {
                    y[j] = (q & 0x0f) as f32 * d + m;
                    y[j + 16] = (q >> 4) as f32 * d + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (b, y) in blocks {
                let d = half(b, 0);
                for (v, &q) in y.iter_mut().zip(&b[2..34]) {
                    *v = q as i8 as f32 * d;
                }
            }
        }
        GgmlType::Q4K => {
            for (b, y) in blocks {
                let (d, min) = (half(b, 0), half(b, 2));
                let (scales, qs) = (&b[4..16], &b[16..144]);
                for (j, (y, q)) in y.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
                    let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
                    for l in 0..32 {
                        y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
                        y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                    }
                }
            }
        }
        GgmlType::Q5K => {
            for (b, y) in blocks {
                let (d, min) = (half(b, 0), half(b, 2));
                let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
                for (j, (y, ql)) in y.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
                    let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
                    let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
                    for l in 0..32 {
                        let high1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                        let high2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                        y[l] = d1 * ((ql[l] & 0x0f) + high1) as f32 - m1;
                        y[l + 32] = d2 * ((ql[l] >> 4) + high2) as f32 - m2;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (b, y) in blocks {
                let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
                let d = half(b, 208);
                for n in 0..2 {
                    let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
                    let sc = |i: usize| scales[8 * n + i] as i8 as f32;
                    let y = &mut y[128 * n..];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0x0f) | (qh[l] & 3) << 4) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) as i32 - 32;
                        y[l] = d * sc(is) * q1 as f32;
                        y[l + 32] = d * sc(is + 2) * q2 as f32;
                        y[l + 64] = d * sc(is + 4) * q3 as f32;
                        y[l + 96] = d * sc(is + 6) * q4 as f32;
                    }
                }
            }
        }
    }
}

/// Q4_K super-blocks as Q4_1 blocks (20 bytes per 32 weights): each sub-block of 32 keeps its
/// 4-bit codes, its scale `d·sc` becomes Q4_1's `d` and its minimum `−dmin·m` Q4_1's `m`,
/// both rounded to f16 (relative error ≤ 2⁻¹²; the codes are untouched). So a Q4_K file is
/// served in `q4` at its own grid, not re-quantized.
pub fn q4_k_as_q4_1(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 144 * 8 * 20);
    for b in raw.chunks_exact(144) {
        let (d, min) = (half(b, 0), half(b, 2));
        let (scales, qs) = (&b[4..16], &b[16..144]);
        for (j, q) in qs.chunks_exact(32).enumerate() {
            for (sub, nibble) in [(2 * j, 0u8), (2 * j + 1, 4u8)] {
                let (sc, m) = scale_min_k4(sub, scales);
                out.extend_from_slice(&f16::from_f32(d * sc as f32).to_le_bytes());
                out.extend_from_slice(&f16::from_f32(-(min * m as f32)).to_le_bytes());
                let code = |l: usize| (q[l] >> nibble) & 0x0f;
                out.extend((0..16).map(|l| code(l) | code(l + 16) << 4));
            }
        }
    }
    out
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K/Q5_K super-block, packed
/// into its 12 scale bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_follows_the_smollm2_worked_example() {
        // The first block of SmolLM2-135M-Instruct's blk.0.attn_q.weight (fixture README).
        let hex = "0f30d8b9458765406f65164b677664502267655a";
        let bytes: Vec<u8> = hex
            .as_bytes()
            .chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect();
        let mut out = [0f32; 32];
        dequantize(GgmlType::Q4_1, &bytes, &mut out);
        assert_eq!(out[0], -0.096_313_48);
        assert_eq!(out[16], -0.223_144_53);
        assert_eq!(out[1], 0.157_348_63);
    }

    #[test]
    fn q4_k_as_q4_1_keeps_every_code_and_rounds_only_the_scales() {
        let mut block = vec![0u8; 144];
        block[0..2].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
        block[2..4].copy_from_slice(&f16::from_f32(0.02).to_le_bytes());
        for (i, byte) in block[4..].iter_mut().enumerate() {
            *byte = (i * 37 % 251) as u8;
        }
        let mut exact = [0f32; 256];
        dequantize(GgmlType::Q4K, &block, &mut exact);
        let converted = q4_k_as_q4_1(&block);
        assert_eq!(converted.len(), 8 * 20);
        let mut via_q4_1 = [0f32; 256];
        dequantize(GgmlType::Q4_1, &converted, &mut via_q4_1);
        let range = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in exact.iter().zip(via_q4_1) {
            assert!((a - b).abs() <= range * 5e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn q6_k_reads_signed_scales_and_six_bit_codes() {
        let mut block = vec![0u8; 210];
        block[0] = 0x0f; // ql[0] low nibble: code 15 of weight 0
        block[128] = 0b11; // qh[0] bits 0-1: +48 → code 63 − 32 = 31
        block[192] = 0xfe; // scale of weights 0..16: −2
        block[208..210].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        let mut out = [0f32; 256];
        dequantize(GgmlType::Q6K, &block, &mut out);
        assert_eq!(out[0], 0.5 * -2.0 * 31.0);
        assert_eq!(out[1], 0.5 * -2.0 * -32.0);
    }
}
