//! AVX2 + FMA + F16C micro-kernels. Every function here requires those features at run time.
//!
//! The dtype is a const parameter `D` (0 = f32, 1 = f16, 2 = bf16, 3 = int8), so each
//! (dtype, rows, tiles) combination is a separate fully unrolled kernel whose accumulators live
//! in registers: `MR × NT` accumulators + `NT` weight vectors + 1 broadcast ≤ 16 ymm registers.

// Index loops over the small const-sized register arrays read better than zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::{Dtype, Job};
use std::arch::x86_64::*;

/// Bytes a packed weight takes for dtype code `D` (also the AVX-512 kernels' codes).
pub(super) const fn elem_bytes(d: u8) -> usize {
    match d {
        0 => 4,
        1 | 2 => 2,
        _ => 1,
    }
}

/// Computes rows `row0..row0+mr` (`mr` in 1..=6) for tiles `ta..tb`.
///
/// # Safety
/// The CPU must support avx2, fma and f16c; `job` must describe valid buffers and no other
/// thread may write the output columns of these tiles.
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows<const D: u8>(job: &Job, mr: usize, ta: usize, tb: usize, row0: usize) {
    // SAFETY: forwarded from `block`.
    unsafe {
        match mr {
            1 => tiles::<D, 1, 4>(job, ta, tb, row0),
            2 => tiles::<D, 2, 4>(job, ta, tb, row0),
            3 => tiles::<D, 3, 2>(job, ta, tb, row0),
            4 => tiles::<D, 4, 2>(job, ta, tb, row0),
            5 => tiles::<D, 5, 2>(job, ta, tb, row0),
            _ => tiles::<D, 6, 2>(job, ta, tb, row0),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles<const D: u8, const MR: usize, const NT: usize>(
    job: &Job,
    ta: usize,
    tb: usize,
    row0: usize,
) {
    let pf = job.pf[usize::from(MR > 2)];
    let mut t = ta;
    // SAFETY: forwarded from `block`; every kernel call stays inside tiles ta..tb.
    unsafe {
        while t + NT <= tb {
            kernel::<D, MR, NT>(job, t, row0, pf);
            t += NT;
        }
        while t < tb {
            kernel::<D, MR, 1>(job, t, row0, pf);
            t += 1;
        }
    }
}

/// Loads 8 packed weights at `p` and widens them to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8<const D: u8>(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees `p` points at 8 packed elements.
    unsafe {
        match D {
            0 => _mm256_loadu_ps(p.cast()),
            1 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
            2 => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                _mm_loadu_si128(p.cast()),
            ))),
            _ => _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))),
        }
    }
}

/// One k step: `acc[r][t] += x[r][kk] * w[t][kk][..]` for all rows and tiles.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn step<const D: u8, const MR: usize, const NT: usize>(
    acc: &mut [[__m256; NT]; MR],
    w: *const u8,
    tile_bytes: usize,
    x: *const f32,
) {
    // SAFETY: the caller guarantees `w + t * tile_bytes` (t < NT) and `x + r` (r < MR) are in
    // bounds.
    unsafe {
        let mut wv = [_mm256_setzero_ps(); NT];
        for t in 0..NT {
            wv[t] = load8::<D>(w.add(t * tile_bytes));
        }
        for r in 0..MR {
            let xb = _mm256_set1_ps(*x.add(r));
            for t in 0..NT {
                acc[r][t] = _mm256_fmadd_ps(wv[t], xb, acc[r][t]);
            }
        }
    }
}

/// `MR` rows × `NT` tiles starting at tile `tile0` and row `row0`, full depth `k`.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const D: u8, const MR: usize, const NT: usize>(
    job: &Job,
    tile0: usize,
    row0: usize,
    pf: usize,
) {
    let k = job.k;
    let stride = 8 * elem_bytes(D); // bytes per k step inside a tile
    let per_line = 64 / stride; // k steps per cache line
    let tile_bytes = k * stride;
    let mut acc = [[_mm256_setzero_ps(); NT]; MR];
    // SAFETY: tiles tile0..tile0+NT and rows row0..row0+MR exist (guaranteed by the caller);
    // prefetches use wrapping arithmetic and never fault.
    unsafe {
        let w0 = job.w.add(tile0 * tile_bytes);
        let x0 = job.x.add(row0 * k);
        // With a single row, a second accumulator set (odd k) hides the FMA latency.
        let two = MR == 1;
        let mut acc2 = [[_mm256_setzero_ps(); NT]; MR];
        let inc = if two { 2 } else { 1 };
        // An opaque trip count keeps LLVM from fully unrolling the per-line loop, which made it
        // alternate between two register sets and spill accumulators.
        let opaque_line = std::hint::black_box(per_line);
        let lines = k / per_line;
        for line in 0..lines {
            let wl = w0.add(line * 64);
            if pf != 0 {
                for t in 0..NT {
                    _mm_prefetch::<_MM_HINT_T0>(wl.wrapping_add(t * tile_bytes + pf).cast());
                }
            }
            let xl = x0.add(line * per_line * MR);
            let mut u = 0;
            while u < opaque_line {
                step::<D, MR, NT>(&mut acc, wl.add(u * stride), tile_bytes, xl.add(u * MR));
                if two {
                    step::<D, MR, NT>(
                        &mut acc2,
                        wl.add((u + 1) * stride),
                        tile_bytes,
                        xl.add((u + 1) * MR),
                    );
                }
                u += inc;
            }
        }
        for kk in lines * per_line..k {
            step::<D, MR, NT>(&mut acc, w0.add(kk * stride), tile_bytes, x0.add(kk * MR));
        }
        if two {
            for t in 0..NT {
                acc[0][t] = _mm256_add_ps(acc[0][t], acc2[0][t]);
            }
        }
        let n = job.n;
        for t in 0..NT {
            let c0 = (tile0 + t) * 8;
            let valid = (n - c0).min(8);
            let scale = if D == 3 {
                _mm256_loadu_ps(job.scales.add(c0))
            } else {
                _mm256_set1_ps(1.0)
            };
            let bias = if job.bias.is_null() {
                _mm256_setzero_ps()
            } else {
                load_first(job.bias.add(c0), valid)
            };
            for r in 0..MR {
                let v = if D == 3 {
                    _mm256_mul_ps(acc[r][t], scale)
                } else {
                    acc[r][t]
                };
                let v = if job.bias.is_null() {
                    v
                } else {
                    _mm256_add_ps(v, bias)
                };
                store_first(job.out.add((row0 + r) * n + c0), v, valid);
            }
        }
    }
}

/// Loads the first `valid` (1..=8) floats at `p`, the other lanes 0.
///
/// # Safety
/// `p..p + valid` must be readable; the CPU must support avx2.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn load_first(p: *const f32, valid: usize) -> __m256 {
    // SAFETY: forwarded from the caller.
    unsafe {
        if valid == 8 {
            return _mm256_loadu_ps(p);
        }
        let mut tmp = [0f32; 8];
        std::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), valid);
        _mm256_loadu_ps(tmp.as_ptr())
    }
}

/// Stores the first `valid` (1..=8) lanes of `v` at `o`: a tile's last columns may be padding
/// that `out` has no room for.
///
/// # Safety
/// `o..o + valid` must be writable; the CPU must support avx2.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn store_first(o: *mut f32, v: __m256, valid: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if valid == 8 {
            _mm256_storeu_ps(o, v);
        } else {
            let mut tmp = [0f32; 8];
            _mm256_storeu_ps(tmp.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), o, valid);
        }
    }
}
