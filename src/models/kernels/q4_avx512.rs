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
        // After the pairwise sums, lane 4j + g holds column 4g + j.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let pair = |x: __m512, y: __m512| {
            _mm512_add_ps(
                _mm512_shuffle_ps::<0x88>(x, y),
                _mm512_shuffle_ps::<0xdd>(x, y),
            )
        };
        let sums =
            acc.map(|a| _mm512_permutexvar_ps(order, pair(pair(a[0], a[1]), pair(a[2], a[3]))));
        store_tile(job, t, row0, sums);
    }
}

/// Writes tiles `tiles` of `job`'s weights, dequantized, to `band` as `[tile][kk][16 columns]`
/// f32 ([`super::band_tile_floats`] a tile): each weight exactly `d·q + m`, the value
/// `Q4Linear::weight` gives (the padding past `k` holds `m`, never read).
///
/// # Safety
/// The CPU must support avx512f, avx2, fma and f16c; `tiles` must be tiles of `job`'s
/// weights and `band` must hold `tiles.len()` band tiles.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn dequantize(job: &Job, tiles: Range<usize>, band: *mut f32) {
    let nibble = _mm512_set1_epi32(15);
    // Lanes [column][input] → [input][column]: 128-bit lane i gets input i of the 4 columns.
    let by_input = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let tile_floats = super::band_tile_floats(job);
    // SAFETY: forwarded from the caller: every cell read is one of the tiles' blocks, every
    // store inside the band.
    unsafe {
        for (i, t) in tiles.enumerate() {
            for b in 0..job.kb {
                let (cell, scales) = job.block(t, b, false, 1);
                let (d, m) = scales_offsets(scales, job.geometry.offsets);
                let dst = band.add(i * tile_floats + b * QK * TILE);
                for line in 0..4 {
                    // Quarter q of the line: columns 4q..4q+4, 4 inputs each; after the
                    // permute, lane i holds input i of those columns.
                    let mut low = [_mm512_setzero_si512(); 4];
                    let mut high = [_mm512_setzero_si512(); 4];
                    for q in 0..4 {
                        let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                            cell.add(64 * line + 16 * q).cast(),
                        ));
                        low[q] = _mm512_permutexvar_epi32(by_input, _mm512_and_si512(v, nibble));
                        high[q] = _mm512_permutexvar_epi32(by_input, _mm512_srli_epi32::<4>(v));
                    }
                    // Low nibbles are inputs 4·line.., high ones 16 + 4·line.. of the block.
                    for (codes, first) in [(low, 4 * line), (high, 16 + 4 * line)] {
                        // Lane i of quarter q → lane q of input i: a 4 × 4 transpose of lanes.
                        let q01_low = _mm512_shuffle_i32x4::<0x44>(codes[0], codes[1]);
                        let q01_high = _mm512_shuffle_i32x4::<0xee>(codes[0], codes[1]);
                        let q23_low = _mm512_shuffle_i32x4::<0x44>(codes[2], codes[3]);
                        let q23_high = _mm512_shuffle_i32x4::<0xee>(codes[2], codes[3]);
                        let inputs = [
                            _mm512_shuffle_i32x4::<0x88>(q01_low, q23_low),
                            _mm512_shuffle_i32x4::<0xdd>(q01_low, q23_low),
                            _mm512_shuffle_i32x4::<0x88>(q01_high, q23_high),
                            _mm512_shuffle_i32x4::<0xdd>(q01_high, q23_high),
                        ];
                        for (input, codes) in inputs.into_iter().enumerate() {
                            // d·q is exact, so the FMA gives exactly d·q + m.
                            let w = _mm512_fmadd_ps(_mm512_cvtepi32_ps(codes), d, m);
                            _mm512_storeu_ps(dst.add((first + input) * TILE), w);
                        }
                    }
                }
            }
        }
    }
}

/// Rows `row0..row0+mr` (`mr` in 1..=8) of `job`'s product for `tiles`, from a band of those
/// tiles [`dequantize`]d at `band`, with `x` row-major: each output sums its column over k in
/// order, one FMA a step, then adds the bias.
///
/// # Safety
/// The CPU must support avx512f, avx2, fma and f16c; `band` must hold `tiles` dequantized,
/// `job.x` the call's rows of `k` floats, and no other thread may write these tiles' columns.
pub(super) unsafe fn band_block(
    job: &Job,
    band: *const f32,
    mr: usize,
    tiles: Range<usize>,
    row0: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match mr {
            1 => band_rows::<1>(job, band, tiles, row0),
            2 => band_rows::<2>(job, band, tiles, row0),
            3 => band_rows::<3>(job, band, tiles, row0),
            4 => band_rows::<4>(job, band, tiles, row0),
            5 => band_rows::<5>(job, band, tiles, row0),
            6 => band_rows::<6>(job, band, tiles, row0),
            7 => band_rows::<7>(job, band, tiles, row0),
            _ => band_rows::<8>(job, band, tiles, row0),
        }
    }
}

/// Rows a band kernel covers at most: 8 rows × 3 tiles is 24 accumulators, 3 weight vectors
/// and a broadcast, 28 of the 32 registers.
pub(super) const BAND_BLOCK_ROWS: usize = 8;

#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn band_rows<const MR: usize>(
    job: &Job,
    band: *const f32,
    tiles: Range<usize>,
    row0: usize,
) {
    let tile_floats = super::band_tile_floats(job);
    let mut t = tiles.start;
    // SAFETY: forwarded from `band_block`; each call stays inside the band's tiles.
    unsafe {
        let at = |t: usize| band.add((t - tiles.start) * tile_floats);
        while t + 3 <= tiles.end {
            band_kernel::<MR, 3>(job, at(t), t, row0);
            t += 3;
        }
        match tiles.end - t {
            2 => band_kernel::<MR, 2>(job, at(t), t, row0),
            1 => band_kernel::<MR, 1>(job, at(t), t, row0),
            _ => {}
        }
    }
}

/// `MR` rows × `P` tiles from tile `tile0`, whose band starts at `w`.
#[inline(never)]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn band_kernel<const MR: usize, const P: usize>(
    job: &Job,
    w: *const f32,
    tile0: usize,
    row0: usize,
) {
    let (k, tile_floats) = (job.k, super::band_tile_floats(job));
    let mut acc = [[_mm512_setzero_ps(); P]; MR];
    // SAFETY: forwarded from `band_rows`: rows row0..row0+MR of x and the band's P tiles are in
    // bounds; the stores are masked to the real columns.
    unsafe {
        let x = job.x.add(row0 * k);
        for kk in 0..k {
            let mut wv = [_mm512_setzero_ps(); P];
            for p in 0..P {
                wv[p] = _mm512_loadu_ps(w.add(p * tile_floats + kk * TILE));
            }
            for r in 0..MR {
                let xb = _mm512_set1_ps(*x.add(r * k + kk));
                for p in 0..P {
                    acc[r][p] = _mm512_fmadd_ps(wv[p], xb, acc[r][p]);
                }
            }
        }
        for p in 0..P {
            store_tile(
                job,
                tile0 + p,
                row0,
                std::array::from_fn::<_, MR, _>(|r| acc[r][p]),
            );
        }
    }
}

/// Stores `sums` (row `row0 + r`'s 16 sums for tile `t`'s columns) plus the bias: only the
/// tile's real columns are read from `bias` and written to `out`.
///
/// # Safety
/// The CPU must support avx512f; the rows and tile must be the call's, and no other thread
/// may write the tile's columns.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn store_tile<const MR: usize>(
    job: &Job,
    t: usize,
    row0: usize,
    sums: [__m512; MR],
) {
    let (n, c0) = (job.n, t * TILE);
    let valid: __mmask16 = if n - c0 >= TILE {
        0xffff
    } else {
        (1 << (n - c0)) - 1
    };
    // SAFETY: forwarded from the caller; the masks keep every access inside `bias` and `out`.
    unsafe {
        let bias = (!job.bias.is_null()).then(|| _mm512_maskz_loadu_ps(valid, job.bias.add(c0)));
        for (r, mut v) in sums.into_iter().enumerate() {
            if let Some(bias) = bias {
                v = _mm512_add_ps(v, bias);
            }
            _mm512_mask_storeu_ps(job.out.add((row0 + r) * n + c0), valid, v);
        }
    }
}
