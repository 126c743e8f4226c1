//! `W8a8` micro-kernels on AVX-512 VNNI: `vpdpbusd` on 256-bit registers multiplies 4
//! unsigned activation bytes by 4 signed weight bytes in each of 8 i32 lanes and adds the
//! four products to the lane, exactly: 32 multiply-adds an instruction, against 8 for an f32
//! FMA. Every function here requires avx512f, avx512vl and avx512vnni at run time.
//!
//! `MR` rows × 4 tiles: 24 accumulators, 4 weight vectors and a broadcast fit the 32 vector
//! registers AVX-512 gives 256-bit code.

#![allow(clippy::needless_range_loop)]

use super::avx2::{load_first, store_first};
use super::Job;
use std::arch::x86_64::*;

/// Tiles a kernel call covers (a remainder runs one tile at a time).
const NT: usize = 4;

/// Computes rows `row0..row0+mr` (`mr` in 1..=6) for tiles `ta..tb`.
///
/// # Safety
/// The CPU must support avx512f, avx512vl and avx512vnni; `job` must describe valid `W8a8`
/// buffers and no other thread may write the output columns of these tiles.
pub(super) unsafe fn block(job: &Job, mr: usize, ta: usize, tb: usize, row0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match mr {
            1 => tiles::<1>(job, ta, tb, row0),
            2 => tiles::<2>(job, ta, tb, row0),
            3 => tiles::<3>(job, ta, tb, row0),
            4 => tiles::<4>(job, ta, tb, row0),
            5 => tiles::<5>(job, ta, tb, row0),
            _ => tiles::<6>(job, ta, tb, row0),
        }
    }
}

#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn tiles<const MR: usize>(job: &Job, ta: usize, tb: usize, row0: usize) {
    let pf = job.pf[usize::from(MR > 2)];
    let mut t = ta;
    // SAFETY: forwarded from `block`; every kernel call stays inside tiles ta..tb.
    unsafe {
        while t + NT <= tb {
            kernel::<MR, NT>(job, t, row0, pf);
            t += NT;
        }
        while t < tb {
            kernel::<MR, 1>(job, t, row0, pf);
            t += 1;
        }
    }
}

/// `MR` rows × `T` tiles from tile `tile0` and row `row0`, the full depth.
#[inline(never)]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn kernel<const MR: usize, const T: usize>(job: &Job, tile0: usize, row0: usize, pf: usize) {
    let depth = job.depth;
    let tile_bytes = 8 * depth;
    let mut acc = [[_mm256_setzero_si256(); T]; MR];
    // SAFETY: tiles tile0..tile0+T and rows row0..row0+MR exist (guaranteed by the caller);
    // prefetches use wrapping arithmetic and never fault.
    unsafe {
        let w0 = job.w.add(tile0 * tile_bytes);
        let x0 = job.xq.add(row0 * depth);
        // 32 bytes of a tile per group of 4 k: a cache line every two groups.
        for g in 0..depth / 4 {
            let wg = w0.add(32 * g);
            if pf != 0 && g % 2 == 0 {
                for t in 0..T {
                    _mm_prefetch::<_MM_HINT_T0>(wg.wrapping_add(t * tile_bytes + pf).cast());
                }
            }
            let mut wv = [_mm256_setzero_si256(); T];
            for t in 0..T {
                wv[t] = _mm256_loadu_si256(wg.add(t * tile_bytes).cast());
            }
            for r in 0..MR {
                let quad = x0.add(r * depth + 4 * g).cast::<i32>().read_unaligned();
                let xb = _mm256_set1_epi32(quad);
                for t in 0..T {
                    acc[r][t] = _mm256_dpbusd_epi32(acc[r][t], xb, wv[t]);
                }
            }
        }
        for t in 0..T {
            let epilogue = Epilogue::of(job, tile0 + t);
            for r in 0..MR {
                epilogue.store(job, row0 + r, acc[r][t]);
            }
        }
    }
}

/// What a tile's outputs need besides their sums: `w8a8_output`'s operations, in its order,
/// on 8 columns at once. Shared with the AMX kernels, so both give the portable bits.
pub(super) struct Epilogue {
    /// The tile's first column.
    c0: usize,
    /// Its columns that exist (the last tile's others are padding).
    valid: usize,
    /// The columns' `Σ q`, which take each row's zero point out of its sums.
    col_sums: __m256i,
    /// The columns' weight scales, multiplied by each row's scale.
    scales: __m256,
    /// The columns' bias, where the layer has one.
    bias: Option<__m256>,
}

impl Epilogue {
    /// # Safety
    /// The CPU must support avx2; `t` must be a tile of `job`'s `W8a8` weights.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn of(job: &Job, t: usize) -> Self {
        let c0 = t * 8;
        let valid = (job.n - c0).min(8);
        // SAFETY: the scales and column sums are padded to whole tiles; the bias is read for
        // the valid columns only.
        unsafe {
            Self {
                c0,
                valid,
                // Padding columns have scale 0, column sum 0 and (below) bias 0.
                col_sums: _mm256_loadu_si256(job.col_sums.add(c0).cast()),
                scales: _mm256_loadu_ps(job.scales.add(c0)),
                bias: (!job.bias.is_null()).then(|| load_first(job.bias.add(c0), valid)),
            }
        }
    }

    /// Stores row `r`'s outputs of the tile from their exact sums `acc`.
    ///
    /// # Safety
    /// The CPU must support avx2; `r` must be a row of `job`, whose tile's columns no other
    /// thread writes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn store(&self, job: &Job, r: usize, acc: __m256i) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let zero = _mm256_set1_epi32(*job.row_zeros.add(r));
            let offset = _mm256_mullo_epi32(self.col_sums, zero);
            let exact = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc, offset));
            let scale = _mm256_mul_ps(_mm256_set1_ps(*job.row_scales.add(r)), self.scales);
            let mut v = _mm256_mul_ps(exact, scale);
            if let Some(bias) = self.bias {
                v = _mm256_add_ps(v, bias);
            }
            store_first(job.out.add(r * job.n + self.c0), v, self.valid);
        }
    }
}
