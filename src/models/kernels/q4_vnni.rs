//! `Int8` micro-kernels on AVX-512 VNNI: `vpdpbusd` on 512-bit registers multiplies 4 unsigned
//! bytes (a column's 4-bit codes) by 4 signed bytes (4 quantized activations, broadcast) in
//! each of 16 i32 lanes, one lane per column of the tile, exactly. Every function here
//! requires avx512f and avx512vnni at run time.
//!
//! Per cell, the 4 code lines become 8 registers (a mask and a shift each) shared by the `MR`
//! rows; the rows' 8 `vpdpbusd` each go group of inputs by group across the rows (independent
//! chains), then each row takes the f32 epilogue of its block. 8 rows: 8 code registers, 8
//! block sums, 8 accumulators, `d` and `m` fit the 32 registers.
//!
//! At 3 to 8 rows a block waits on the units that run `vpdpbusd`, which the epilogue's
//! multiply and FMAs share (measured on AMD Zen 4, where the masks, shifts and conversions run
//! beside them; Intel's AVX-512 cores put the FMAs on the same port too): 8 `vpdpbusd` a row,
//! then its multiply and FMA, and with `Offset` blocks one FMA more. A `Symmetric` block's sums
//! start at `−8·Σq_x` instead, which costs no FMA.

// Index loops over the small const-sized register arrays read better than zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::avx512::{scales_offsets, store_tile};
use super::{Job, QK};
use std::arch::x86_64::*;
use std::ops::Range;

/// Computes rows `row0..row0+mr` (`mr` in 1..=8) for `tiles`.
///
/// # Safety
/// The CPU must support avx512f and avx512vnni; `job` must describe valid `Int8` buffers and no
/// other thread may write the output columns of these tiles.
pub(super) unsafe fn block(job: &Job, mr: usize, tiles: Range<usize>, row0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match mr {
            1 => run::<1>(job, tiles, row0),
            2 => run::<2>(job, tiles, row0),
            3 => run::<3>(job, tiles, row0),
            4 => run::<4>(job, tiles, row0),
            5 => run::<5>(job, tiles, row0),
            6 => run::<6>(job, tiles, row0),
            7 => run::<7>(job, tiles, row0),
            _ => run::<8>(job, tiles, row0),
        }
    }
}

#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn run<const MR: usize>(job: &Job, tiles: Range<usize>, row0: usize) {
    let mut t = tiles.start;
    // SAFETY: forwarded from `block`; every kernel call stays inside `tiles`.
    unsafe {
        // One or two rows leave registers for four tiles at once: four streams of weights in
        // flight instead of one, which is what a batch-1 step waits on. (Eight tiles at one
        // row spilled their sums to the stack and ran no faster.)
        if MR <= 2 {
            while t + WIDE <= tiles.end {
                layout::<MR, WIDE>(job, t, row0);
                t += WIDE;
            }
        }
        while t < tiles.end {
            layout::<MR, 1>(job, t, row0);
            t += 1;
        }
    }
}

/// Tiles one call covers at one or two rows.
const WIDE: usize = 4;

/// [`kernel`] for the matrix's layout, a constant there: its loop has no branch on it.
#[inline(always)]
unsafe fn layout<const MR: usize, const T: usize>(job: &Job, t0: usize, row0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if job.geometry.offsets {
            kernel::<MR, T, true>(job, t0, row0)
        } else {
            kernel::<MR, T, false>(job, t0, row0)
        }
    }
}

/// `MR` rows of tiles `t0..t0 + T` from row `row0`, the full depth, for a matrix whose blocks
/// store their offsets or not (`OFFSETS`). Each tile's sums take the same operations in the
/// same order whatever `T` is.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn kernel<const MR: usize, const T: usize, const OFFSETS: bool>(
    job: &Job,
    t0: usize,
    row0: usize,
) {
    // A copy in this frame, which nothing else can write: its fields stay in registers
    // across the prefetches instead of being read again for every tile and block.
    let job = *job;
    let kb = job.kb;
    let mut acc = [[_mm512_setzero_ps(); T]; MR];
    let nibble = _mm512_set1_epi8(15);
    // SAFETY: tiles t0..t0+T and rows row0..row0+MR exist (guaranteed by the caller), so
    // every cell and activation read is in bounds; prefetches never fault.
    unsafe {
        for b in 0..kb {
            for u in 0..T {
                let (cell, scales) = job.block(t0 + u, b, true, T);
                let (d, m) = scales_offsets(scales, OFFSETS);
                // q[g]: the codes of inputs 4g..4g+4 of the block, `[column][input]`.
                let mut q = [_mm512_setzero_si512(); 8];
                for line in 0..4 {
                    let v = _mm512_loadu_si512(cell.add(64 * line).cast());
                    q[line] = _mm512_and_si512(v, nibble);
                    // Shifting 32-bit lanes moves each byte's high nibble down; the mask drops
                    // what came from the byte above.
                    q[4 + line] = _mm512_and_si512(_mm512_srli_epi32::<4>(v), nibble);
                }
                // The rows' sums side by side, each group of inputs across all rows in turn:
                // `MR` independent vpdpbusd chains (two a row at one or two rows) keep the unit
                // busy where one row's chain of 8 waits on its latency. The sums are exact, so
                // neither the order nor the split changes them.
                let chains = if MR <= 2 { 2 } else { 1 };
                let mut s = [[_mm512_setzero_si512(); 2]; MR];
                if !OFFSETS {
                    for r in 0..MR {
                        s[r][0] = _mm512_set1_epi32(-8 * *job.qs.add((row0 + r) * kb + b));
                    }
                }
                for g in 0..8 {
                    for r in 0..MR {
                        let x = job.xq.add(((row0 + r) * kb + b) * QK + 4 * g);
                        let xg = _mm512_set1_epi32(x.cast::<i32>().read_unaligned());
                        s[r][g % chains] = _mm512_dpbusd_epi32(s[r][g % chains], q[g], xg);
                    }
                }
                for r in 0..MR {
                    let at = (row0 + r) * kb + b;
                    let dot = if chains == 2 {
                        _mm512_add_epi32(s[r][0], s[r][1])
                    } else {
                        s[r][0]
                    };
                    let p = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(*job.dx.add(at)));
                    acc[r][u] = _mm512_fmadd_ps(d, p, acc[r][u]);
                    if OFFSETS {
                        let s_x = _mm512_set1_ps(*job.sx.add(at));
                        acc[r][u] = _mm512_fmadd_ps(m, s_x, acc[r][u]);
                    }
                }
            }
        }
        for u in 0..T {
            store_tile(
                &job,
                t0 + u,
                row0,
                std::array::from_fn::<_, MR, _>(|r| acc[r][u]),
            );
        }
    }
}
