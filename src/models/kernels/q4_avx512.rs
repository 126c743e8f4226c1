//! `F32` micro-kernels on AVX-512 F (with AVX2 + FMA + F16C). Every function here requires
//! those features at run time.
//!
//! As in the AVX2 kernels a register multiplies `[column][4 consecutive inputs]` weights by
//! those 4 inputs repeated (the activations are stored 4 times over here, a memory operand of
//! the FMA), here 4 columns at once: a tile is 4 accumulators per row. Each column's 4 partial
//! sums are added as `(s0 + s1) + (s2 + s3)` at the end, as the AVX2 kernels' `hadd`s do, so
//! both give the same bits. Up to 4 rows of a tile: 16 accumulators, the tile's 8
//! expanded scales and offsets, and the weights in flight fit the 32 registers.

// Index loops over the small const-sized register arrays read better than zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::{Job, QK, SCALES, TILE};
use std::arch::x86_64::*;
use std::ops::Range;

/// Copies of each group of 4 activations the kernels expect.
pub(super) const COPIES: usize = 4;

/// Computes rows `row0..row0+mr` (`mr` in 1..=4) for `tiles`.
///
/// # Safety
/// The CPU must support avx512f, avx2, fma and f16c; `job` must describe valid buffers (with
/// `x` the activations stored [`COPIES`] times) and no other thread may write the output
/// columns of these tiles.
pub(super) unsafe fn block(job: &Job, mr: usize, tiles: Range<usize>, row0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match mr {
            1 => run::<1>(job, tiles, row0),
            2 => run::<2>(job, tiles, row0),
            3 => run::<3>(job, tiles, row0),
            _ => run::<4>(job, tiles, row0),
        }
    }
}

/// The 16 columns' `d` and `m` of a block whose `d` values start at `scales`: the stored `m`
/// with `offsets`, else `−8·d` (exact).
///
/// # Safety
/// The CPU must support avx512f; `scales` must point into a [`Job`]'s weights.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scales_offsets(scales: *const u8, offsets: bool) -> (__m512, __m512) {
    // SAFETY: forwarded from the caller; a block's `m` values follow its `d` values.
    unsafe {
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(scales.cast()));
        let m = if offsets {
            _mm512_cvtph_ps(_mm256_loadu_si256(scales.add(SCALES).cast()))
        } else {
            _mm512_mul_ps(d, _mm512_set1_ps(-8.0))
        };
        (d, m)
    }
}

#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn run<const MR: usize>(job: &Job, tiles: Range<usize>, row0: usize) {
    for t in tiles {
        // SAFETY: forwarded from `block`; t is one of its tiles.
        unsafe { kernel::<MR>(job, t, row0) };
    }
}

/// `MR` rows of tile `t` from row `row0`, the full depth.
#[inline(never)]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn kernel<const MR: usize>(job: &Job, t: usize, row0: usize) {
    let kb = job.kb;
    let row_floats = COPIES * QK * kb;
    let mut acc = [[_mm512_setzero_ps(); 4]; MR];
    // Lane j of 128-bit lane group g ← column 4j + g: then an in-lane broadcast of element j
    // gives quarter j (columns 4j..4j+4, 4 lanes each) its scales.
    let transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let nibble = _mm512_set1_epi32(15);
    // SAFETY: tile t and rows row0..row0+MR exist (guaranteed by the caller), so
    // every cell and activation read is in bounds; prefetches never fault.
    unsafe {
        for b in 0..kb {
            let xb = job.x.add(row0 * row_floats + COPIES * QK * b);
            let (cell, scales) = job.block(t, b, true, 1);
            let (d16, m16) = scales_offsets(scales, job.geometry.offsets);
            let (d16, m16) = (
                _mm512_permutexvar_ps(transpose, d16),
                _mm512_permutexvar_ps(transpose, m16),
            );
            let d = [
                _mm512_permute_ps::<0x00>(d16),
                _mm512_permute_ps::<0x55>(d16),
                _mm512_permute_ps::<0xaa>(d16),
                _mm512_permute_ps::<0xff>(d16),
            ];
            let m = [
                _mm512_permute_ps::<0x00>(m16),
                _mm512_permute_ps::<0x55>(m16),
                _mm512_permute_ps::<0xaa>(m16),
                _mm512_permute_ps::<0xff>(m16),
            ];
            for line in 0..4 {
                for q in 0..4 {
                    let codes = cell.add(64 * line + 16 * q);
                    let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(codes.cast()));
                    // d·q is exact, so the FMA gives exactly the stored weight d·q + m.
                    let lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, nibble));
                    let lo = _mm512_fmadd_ps(lo, d[q], m[q]);
                    let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32::<4>(v));
                    let hi = _mm512_fmadd_ps(hi, d[q], m[q]);
                    for r in 0..MR {
                        let xr = xb.add(r * row_floats);
                        let xlo = _mm512_loadu_ps(xr.add(16 * line));
                        let xhi = _mm512_loadu_ps(xr.add(16 * (4 + line)));
                        acc[r][q] = _mm512_fmadd_ps(lo, xlo, acc[r][q]);
                        acc[r][q] = _mm512_fmadd_ps(hi, xhi, acc[r][q]);
                    }
                }
            }
        }
        let n = job.n;
        // After the pairwise sums, lane 4j + g holds column 4g + j.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let c0 = t * TILE;
        let valid: __mmask16 = if n - c0 >= TILE {
            0xffff
        } else {
            (1 << (n - c0)) - 1
        };
        let bias = (!job.bias.is_null()).then(|| _mm512_maskz_loadu_ps(valid, job.bias.add(c0)));
        for r in 0..MR {
            let a = &acc[r];
            let pair = |x: __m512, y: __m512| {
                _mm512_add_ps(
                    _mm512_shuffle_ps::<0x88>(x, y),
                    _mm512_shuffle_ps::<0xdd>(x, y),
                )
            };
            let v = pair(pair(a[0], a[1]), pair(a[2], a[3]));
            let mut v = _mm512_permutexvar_ps(order, v);
            if let Some(bias) = bias {
                v = _mm512_add_ps(v, bias);
            }
            _mm512_mask_storeu_ps(job.out.add((row0 + r) * n + c0), valid, v);
        }
    }
}
