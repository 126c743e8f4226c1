//! AVX-512 micro-kernels for f32, f16, bf16 and int8 weights from 3 rows on (batched decode
//! steps, prefill, encoders). Every function here requires avx2, fma, f16c and avx512f at run
//! time.
//!
//! A 512-bit register holds one k step of two adjacent tiles (16 output columns), so each FMA
//! does 16 multiply-adds where the AVX2 kernels' do 8: on the machines here independent
//! 512-bit FMAs gave 92 GMAC/s a thread against 36 for 256-bit ones. `MR` (≤ 8) rows × 3
//! tile pairs is at most 24 accumulators, 3 weight vectors and a broadcast: 28 of the 32
//! registers.
//!
//! Each lane sums its column over k in order with one FMA per step, as the AVX2 multi-row
//! kernel does, so both give the same bits; only the number of columns per instruction differs.

// Index loops over the small const-sized register arrays read better than zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::avx2::elem_bytes;
use super::{Dtype, Job};
use std::arch::x86_64::*;

/// Tile pairs a kernel call covers (the remainder runs in smaller calls).
const NP: usize = 3;

/// Computes rows `row0..row0+mr` (`mr` in 3..=8) for tiles `ta..tb`. One or two rows stay
/// with the AVX2 kernels, whose two accumulator sets for one row hide the FMA latency.
///
/// # Safety
/// The CPU must support avx2, fma, f16c and avx512f; `job` must describe valid buffers (`x`
/// interleaved as `[kk][mr]` for this row block) and no other thread may write the output
/// columns of these tiles.
pub(super) unsafe fn block(job: &Job, dtype: Dtype, mr: usize, ta: usize, tb: usize, row0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match dtype {
            Dtype::F32 => rows::<0>(job, mr, ta, tb, row0),
            Dtype::F16 => rows::<1>(job, mr, ta, tb, row0),
            Dtype::Bf16 => rows::<2>(job, mr, ta, tb, row0),
            Dtype::Int8 => rows::<3>(job, mr, ta, tb, row0),
            Dtype::W8a8 => unreachable!("w8a8 runs in the vnni kernels"),
            Dtype::Q4 | Dtype::W4a8 => unreachable!("4-bit weights run in kernels::q4"),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn rows<const D: u8>(job: &Job, mr: usize, ta: usize, tb: usize, row0: usize) {
    // SAFETY: forwarded from `block`.
    unsafe {
        match mr {
            0..=2 => unreachable!("one or two rows run in the AVX2 kernels"),
            3 => tiles::<D, 3>(job, ta, tb, row0),
            4 => tiles::<D, 4>(job, ta, tb, row0),
            5 => tiles::<D, 5>(job, ta, tb, row0),
            6 => tiles::<D, 6>(job, ta, tb, row0),
            7 => tiles::<D, 7>(job, ta, tb, row0),
            _ => tiles::<D, 8>(job, ta, tb, row0),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn tiles<const D: u8, const MR: usize>(job: &Job, ta: usize, tb: usize, row0: usize) {
    let pf = job.pf[usize::from(MR > 2)];
    let mut t = ta;
    // SAFETY: forwarded from `block`; every kernel call stays inside tiles ta..tb.
    unsafe {
        while t + 2 * NP <= tb {
            kernel::<D, MR, NP, true>(job, t, row0, pf);
            t += 2 * NP;
        }
        if t + 4 <= tb {
            kernel::<D, MR, 2, true>(job, t, row0, pf);
            t += 4;
        }
        if t + 2 <= tb {
            kernel::<D, MR, 1, true>(job, t, row0, pf);
            t += 2;
        }
        if t < tb {
            kernel::<D, MR, 1, false>(job, t, row0, pf);
        }
    }
}

/// Loads 8 packed weights at `p0` (lanes 0–7) and, with `PAIR`, 8 at `p1` (lanes 8–15, else
/// zero), widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn load16<const D: u8, const PAIR: bool>(p0: *const u8, p1: *const u8) -> __m512 {
    // SAFETY: the caller guarantees 8 packed elements at `p0` (and at `p1` with `PAIR`).
    unsafe {
        let halves = |lo: __m128i, hi: *const u8| {
            if PAIR {
                _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), _mm_loadu_si128(hi.cast()))
            } else {
                _mm256_zextsi128_si256(lo)
            }
        };
        match D {
            0 => {
                let lo = _mm512_zextps256_ps512(_mm256_loadu_ps(p0.cast()));
                if PAIR {
                    let hi = _mm256_castps_pd(_mm256_loadu_ps(p1.cast()));
                    _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), hi))
                } else {
                    lo
                }
            }
            1 => _mm512_cvtph_ps(halves(_mm_loadu_si128(p0.cast()), p1)),
            2 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(halves(
                _mm_loadu_si128(p0.cast()),
                p1,
            )))),
            _ => {
                let lo = _mm_loadl_epi64(p0.cast());
                let bytes = if PAIR {
                    _mm_unpacklo_epi64(lo, _mm_loadl_epi64(p1.cast()))
                } else {
                    lo
                };
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes))
            }
        }
    }
}

/// One k step: `acc[r][p] += x[r][kk] * w[pair p][kk][..]` for all rows and tile pairs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn step<const D: u8, const MR: usize, const P: usize, const PAIR: bool>(
    acc: &mut [[__m512; P]; MR],
    w: *const u8,
    tile_bytes: usize,
    x: *const f32,
) {
    // SAFETY: the caller guarantees the tiles `w + t * tile_bytes` (t < 2P, or t = 0 without
    // `PAIR`) and `x + r` (r < MR) are in bounds.
    unsafe {
        let mut wv = [_mm512_setzero_ps(); P];
        for p in 0..P {
            let first = w.add(2 * p * tile_bytes);
            wv[p] = load16::<D, PAIR>(first, first.wrapping_add(tile_bytes));
        }
        for r in 0..MR {
            let xb = _mm512_set1_ps(*x.add(r));
            for p in 0..P {
                acc[r][p] = _mm512_fmadd_ps(wv[p], xb, acc[r][p]);
            }
        }
    }
}

/// `MR` rows × `P` tile pairs (one lone tile without `PAIR`) starting at tile `tile0` and row
/// `row0`, full depth `k`.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn kernel<const D: u8, const MR: usize, const P: usize, const PAIR: bool>(
    job: &Job,
    tile0: usize,
    row0: usize,
    pf: usize,
) {
    let k = job.k;
    let stride = 8 * elem_bytes(D); // bytes per k step inside a tile
    let per_line = 64 / stride; // k steps per cache line
    let tile_bytes = k * stride;
    let streams = if PAIR { 2 * P } else { 1 };
    let mut acc = [[_mm512_setzero_ps(); P]; MR];
    // SAFETY: the tiles from tile0 and rows row0..row0+MR exist (guaranteed by the caller);
    // prefetches use wrapping arithmetic and never fault.
    unsafe {
        let w0 = job.w.add(tile0 * tile_bytes);
        let x0 = job.x.add(row0 * k);
        // An opaque trip count keeps LLVM from fully unrolling the per-line loop (see avx2.rs).
        let opaque_line = std::hint::black_box(per_line);
        let lines = k / per_line;
        for line in 0..lines {
            let wl = w0.add(line * 64);
            if pf != 0 {
                for t in 0..streams {
                    _mm_prefetch::<_MM_HINT_T0>(wl.wrapping_add(t * tile_bytes + pf).cast());
                }
            }
            let xl = x0.add(line * per_line * MR);
            for u in 0..opaque_line {
                step::<D, MR, P, PAIR>(&mut acc, wl.add(u * stride), tile_bytes, xl.add(u * MR));
            }
        }
        for kk in lines * per_line..k {
            step::<D, MR, P, PAIR>(&mut acc, w0.add(kk * stride), tile_bytes, x0.add(kk * MR));
        }
        let n = job.n;
        for p in 0..P {
            let c0 = (tile0 + 2 * p) * 8;
            let valid = (n - c0).min(if PAIR { 16 } else { 8 });
            let mask = ((1u32 << valid) - 1) as __mmask16;
            // Masked loads never touch the lanes they leave out.
            let scale = (D == 3).then(|| _mm512_maskz_loadu_ps(mask, job.scales.add(c0)));
            let bias = (!job.bias.is_null()).then(|| _mm512_maskz_loadu_ps(mask, job.bias.add(c0)));
            for r in 0..MR {
                let mut v = acc[r][p];
                if let Some(scale) = scale {
                    v = _mm512_mul_ps(v, scale);
                }
                if let Some(bias) = bias {
                    v = _mm512_add_ps(v, bias);
                }
                _mm512_mask_storeu_ps(job.out.add((row0 + r) * n + c0), mask, v);
            }
        }
    }
}
