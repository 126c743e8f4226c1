//! `F32` micro-kernels on AVX2 + FMA + F16C. Every function here requires those features at
//! run time.
//!
//! A cell's codes are `[column][4 consecutive inputs]` bytes, so a register holds 2 columns ×
//! 4 inputs, multiplied by those 4 inputs twice over (the activations are stored that way)
//! into 4 partial sums per column, added pairwise at the end. A half tile (8 columns) is 4
//! such accumulators per row: 1 row takes a whole tile (8 accumulators), 2–3 rows a half tile
//! at a time (up to 12), within AVX2's 16 registers.

// Index loops over the small const-sized register arrays read better than zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::super::avx2::{load_first, store_first};
use super::{Job, QK, SCALES, TILE};
use std::arch::x86_64::*;
use std::ops::Range;

/// Computes rows `row0..row0+mr` (`mr` in 1..=3) for `tiles`.
///
/// # Safety
/// The CPU must support avx2, fma and f16c; `job` must describe valid buffers (with `x` the
/// quad-doubled activations) and no other thread may write the output columns of these tiles.
pub(super) unsafe fn block(job: &Job, mr: usize, tiles: Range<usize>, row0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match mr {
            1 => run::<1, 2>(job, tiles, row0),
            2 => run::<2, 1>(job, tiles, row0),
            _ => run::<3, 1>(job, tiles, row0),
        }
    }
}

/// `H` half tiles (1 or 2) per kernel call.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run<const MR: usize, const H: usize>(job: &Job, tiles: Range<usize>, row0: usize) {
    for t in tiles {
        for h0 in (0..2).step_by(H) {
            // SAFETY: forwarded from `block`; t is one of its tiles.
            unsafe { kernel::<MR, H>(job, t, h0, row0) };
        }
    }
}

/// `MR` rows × half tiles `h0..h0+H` of tile `t`, the full depth.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const MR: usize, const H: usize>(job: &Job, t: usize, h0: usize, row0: usize) {
    let (kb, geometry) = (job.kb, &job.geometry);
    let row_floats = 2 * QK * kb;
    let mut acc = [[_mm256_setzero_ps(); 8]; MR];
    // Even columns to the low half, odd ones to the high half: then an in-lane broadcast of
    // element p gives pair p's lanes their columns 2p (×4) and 2p + 1 (×4).
    let evens_odds = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let nibble = _mm256_set1_epi32(15);
    // SAFETY: tile t and rows row0..row0+MR exist (guaranteed by the caller), so every cell and
    // activation read is in bounds; prefetches never fault.
    unsafe {
        let x0 = job.x.add(row0 * row_floats);
        for b in 0..kb {
            // One prefetch a block: the call of the tile's first half asks for it.
            let (cell, scales) = job.block(t, b, h0 == 0, 1);
            let xb = x0.add(2 * QK * b);
            for i in 0..H {
                let h = h0 + i;
                let d8 = _mm256_cvtph_ps(_mm_loadu_si128(scales.add(16 * h).cast()));
                let d8 = _mm256_permutevar8x32_ps(d8, evens_odds);
                // A `Symmetric` block's `m` is −8·d, exact.
                let m8 = if geometry.offsets {
                    let m8 = _mm256_cvtph_ps(_mm_loadu_si128(scales.add(SCALES + 16 * h).cast()));
                    _mm256_permutevar8x32_ps(m8, evens_odds)
                } else {
                    _mm256_mul_ps(d8, _mm256_set1_ps(-8.0))
                };
                for p in 0..4 {
                    let (d, m) = match p {
                        0 => (_mm256_permute_ps::<0x00>(d8), _mm256_permute_ps::<0x00>(m8)),
                        1 => (_mm256_permute_ps::<0x55>(d8), _mm256_permute_ps::<0x55>(m8)),
                        2 => (_mm256_permute_ps::<0xaa>(d8), _mm256_permute_ps::<0xaa>(m8)),
                        _ => (_mm256_permute_ps::<0xff>(d8), _mm256_permute_ps::<0xff>(m8)),
                    };
                    let a = 4 * i + p;
                    for line in 0..4 {
                        let codes = cell.add(64 * line + 32 * h + 8 * p);
                        let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(codes.cast()));
                        // d·q is exact, so the FMA gives exactly the stored weight d·q + m.
                        let lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, nibble));
                        let lo = _mm256_fmadd_ps(lo, d, m);
                        let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(v));
                        let hi = _mm256_fmadd_ps(hi, d, m);
                        for r in 0..MR {
                            let xr = xb.add(r * row_floats);
                            let xlo = _mm256_loadu_ps(xr.add(8 * line));
                            let xhi = _mm256_loadu_ps(xr.add(8 * (4 + line)));
                            acc[r][a] = _mm256_fmadd_ps(lo, xlo, acc[r][a]);
                            acc[r][a] = _mm256_fmadd_ps(hi, xhi, acc[r][a]);
                        }
                    }
                }
            }
        }
        let n = job.n;
        // hadd twice leaves the columns in the order 0 2 4 6 1 3 5 7.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for i in 0..H {
            let c0 = TILE * t + 8 * (h0 + i);
            if c0 >= n {
                break;
            }
            let valid = (n - c0).min(8);
            let bias = if job.bias.is_null() {
                None
            } else {
                Some(load_first(job.bias.add(c0), valid))
            };
            for r in 0..MR {
                let a = &acc[r][4 * i..];
                let v = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
                let mut v = _mm256_permutevar8x32_ps(v, order);
                if let Some(bias) = bias {
                    v = _mm256_add_ps(v, bias);
                }
                store_first(job.out.add((row0 + r) * n + c0), v, valid);
            }
        }
    }
}
