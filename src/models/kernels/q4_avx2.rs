//! `F32` micro-kernels on AVX2 + FMA + F16C. Every function here requires those features at
//! run time.
//!
//! A cell's codes are `[column][4 consecutive inputs]` bytes, so a register holds 2 columns ×
//! 4 inputs, multiplied by those 4 inputs twice over (the activations are stored that way)
//! into 4 partial sums per column, added pairwise at the end. A half tile (8 columns) is 4
//! such accumulators per row: 1 row takes a whole tile (8 accumulators), 2–3 rows a half tile
//! at a time (up to 12), within AVX2's 16 registers.
//!
//! A prompt's rows instead run over bands of weights dequantized once ([`dequantize`], the
//! AVX-512 bands' layout and values), 6 rows × one tile a call ([`band_block`]).

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

/// Writes tiles `tiles` of `job`'s weights, dequantized, to `band` in the layout of the
/// AVX-512 bands (`[tile][kk][16 columns]` f32, [`super::band_tile_floats`] a tile), each weight
/// exactly `d·q + m` as there.
///
/// # Safety
/// The CPU must support avx2, fma and f16c; `tiles` must be tiles of `job`'s weights and
/// `band` must hold `tiles.len()` band tiles.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dequantize(job: &Job, tiles: Range<usize>, band: *mut f32) {
    let tile_floats = super::band_tile_floats(job);
    // A quarter line is `[column][input]` for 4 columns × 4 inputs; this makes it
    // `[input][column]`, so that 32-bit lane i holds input i of the 4 columns.
    let by_input = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let nibble = _mm_set1_epi8(15);
    // SAFETY: forwarded from the caller: every cell read is one of the tiles' blocks, every
    // store inside the band.
    unsafe {
        for (i, t) in tiles.enumerate() {
            for b in 0..job.kb {
                let (cell, scales) = job.block(t, b, false, 1);
                let d = [0, 8].map(|c| _mm256_cvtph_ps(_mm_loadu_si128(scales.add(2 * c).cast())));
                let m = if job.geometry.offsets {
                    [0, 8].map(|c| {
                        _mm256_cvtph_ps(_mm_loadu_si128(scales.add(SCALES + 2 * c).cast()))
                    })
                } else {
                    d.map(|d| _mm256_mul_ps(d, _mm256_set1_ps(-8.0)))
                };
                let dst = band.add(i * tile_floats + b * QK * TILE);
                for line in 0..4 {
                    let q = [0, 1, 2, 3].map(|q| {
                        let v = _mm_loadu_si128(cell.add(64 * line + 16 * q).cast());
                        _mm_shuffle_epi8(v, by_input)
                    });
                    // A 4 × 4 transpose of 32-bit lanes: register i holds input i's bytes for
                    // the 16 columns in order.
                    let low_pairs = [(0, 1), (2, 3)].map(|(x, y)| _mm_unpacklo_epi32(q[x], q[y]));
                    let high_pairs = [(0, 1), (2, 3)].map(|(x, y)| _mm_unpackhi_epi32(q[x], q[y]));
                    let inputs = [
                        _mm_unpacklo_epi64(low_pairs[0], low_pairs[1]),
                        _mm_unpackhi_epi64(low_pairs[0], low_pairs[1]),
                        _mm_unpacklo_epi64(high_pairs[0], high_pairs[1]),
                        _mm_unpackhi_epi64(high_pairs[0], high_pairs[1]),
                    ];
                    for (input, bytes) in inputs.into_iter().enumerate() {
                        // Low nibbles are input 4·line + input of the block, high ones 16 more.
                        let low = _mm_and_si128(bytes, nibble);
                        let high = _mm_and_si128(_mm_srli_epi16::<4>(bytes), nibble);
                        let nibbles = [(low, 4 * line + input), (high, 16 + 4 * line + input)];
                        for (codes, kk) in nibbles {
                            for half in 0..2 {
                                let q8 = _mm256_cvtepu8_epi32(if half == 0 {
                                    codes
                                } else {
                                    _mm_srli_si128::<8>(codes)
                                });
                                // d·q is exact, so the FMA gives exactly d·q + m.
                                let w = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8), d[half], m[half]);
                                _mm256_storeu_ps(dst.add(kk * TILE + 8 * half), w);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Rows a band kernel covers at most: 6 rows × one tile (two registers of 8 columns) is 12
/// accumulators, 2 weight vectors and a broadcast, 15 of the 16 registers.
pub(super) const BAND_BLOCK_ROWS: usize = 6;

/// Rows `row0..row0+mr` (`mr` in 1..=6) of `job`'s product for `tiles`, from a band of those
/// tiles [`dequantize`]d at `band`, with `x` row-major: each output sums its column over k in
/// order, one FMA a step, then adds the bias, as the AVX-512 band kernel does (the same bits).
///
/// # Safety
/// The CPU must support avx2, fma and f16c; `band` must hold `tiles` dequantized, `job.x` the
/// call's rows of `k` floats, and no other thread may write these tiles' columns.
pub(super) unsafe fn band_block(
    job: &Job,
    band: *const f32,
    mr: usize,
    tiles: Range<usize>,
    row0: usize,
) {
    let tile_floats = super::band_tile_floats(job);
    // SAFETY: forwarded from the caller; each call is one of the band's tiles.
    unsafe {
        for t in tiles.clone() {
            let w = band.add((t - tiles.start) * tile_floats);
            match mr {
                1 => band_kernel::<1>(job, w, t, row0),
                2 => band_kernel::<2>(job, w, t, row0),
                3 => band_kernel::<3>(job, w, t, row0),
                4 => band_kernel::<4>(job, w, t, row0),
                5 => band_kernel::<5>(job, w, t, row0),
                _ => band_kernel::<6>(job, w, t, row0),
            }
        }
    }
}

/// `MR` rows × tile `t`, whose band starts at `w`.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn band_kernel<const MR: usize>(job: &Job, w: *const f32, t: usize, row0: usize) {
    let k = job.k;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    // SAFETY: forwarded from `band_block`: rows row0..row0+MR of x and the band's tile are in
    // bounds; the stores keep to the real columns.
    unsafe {
        let x = job.x.add(row0 * k);
        for kk in 0..k {
            let wv = [0, 8].map(|c| _mm256_loadu_ps(w.add(kk * TILE + c)));
            for r in 0..MR {
                let xb = _mm256_set1_ps(*x.add(r * k + kk));
                for h in 0..2 {
                    acc[r][h] = _mm256_fmadd_ps(wv[h], xb, acc[r][h]);
                }
            }
        }
        let n = job.n;
        for h in 0..2 {
            let c0 = TILE * t + 8 * h;
            if c0 >= n {
                break;
            }
            let valid = (n - c0).min(8);
            let bias = (!job.bias.is_null()).then(|| load_first(job.bias.add(c0), valid));
            for r in 0..MR {
                let mut v = acc[r][h];
                if let Some(bias) = bias {
                    v = _mm256_add_ps(v, bias);
                }
                store_first(job.out.add((row0 + r) * n + c0), v, valid);
            }
        }
    }
}
