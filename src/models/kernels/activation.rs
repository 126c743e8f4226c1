//! Element-wise activations for the CPU backend, in place over f32 slices.
//!
//! Why: burn 0.22's flex computes `exp` (behind `sigmoid`) and `erf` with one libm call per
//! element; GPT-2's GELU was then 3–5 % of a batch-8 decode step, BERT's ~3 % of a forward.
//! These loops have no calls and no branches, so LLVM vectorises them (16 lanes where AVX-512
//! is detected at run time, 8 where AVX2 is, else SSE2).
//! Every path runs the same operations without fused multiply-adds, so they agree bit for bit.
//! Each value's result depends on that value alone, so splitting a large slice across threads
//! changes no bit.

use super::PARALLEL_ELEMENTS;
use rayon::prelude::*;

/// Values per parallel piece: a few microseconds of work, a multiple of every vector width.
const CHUNK: usize = 4096;

/// `x · σ(2·√(2/π)·(x + 0.044715·x³))`, which is transformers' `gelu_new`
/// (`0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, since `0.5·(1 + tanh(u)) = σ(2u)`).
pub fn gelu_tanh(values: &mut [f32]) {
    map_in_place(values, gelu_tanh_one);
}

/// `gate = silu(gate) · up` (SwiGLU's product), `silu(x) = x·σ(x)`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    if gate.len() >= PARALLEL_ELEMENTS {
        gate.par_chunks_mut(CHUNK)
            .zip(up.par_chunks(CHUNK))
            .for_each(|(g, u)| silu_mul(g, u));
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::wide_kernels() {
        // SAFETY: avx2 and avx512f were detected.
        unsafe { silu_mul_avx512(gate, up) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::detected() == super::Simd::Avx2 {
        // SAFETY: avx2 was detected.
        unsafe { silu_mul_avx2(gate, up) };
        return;
    }
    silu_mul_each(gate, up);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn silu_mul_avx512(gate: &mut [f32], up: &[f32]) {
    silu_mul_each(gate, up);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn silu_mul_avx2(gate: &mut [f32], up: &[f32]) {
    silu_mul_each(gate, up);
}

#[inline(always)]
fn silu_mul_each(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// `0.5·x·(1 + erf(x/√2))`, the exact GELU, with erf to 1.5e-7 (Abramowitz & Stegun 7.1.26).
pub fn gelu_erf(values: &mut [f32]) {
    map_in_place(values, gelu_erf_one);
}

#[inline(always)]
fn gelu_tanh_one(x: f32) -> f32 {
    const C: f32 = 2.0 * 0.797_884_6;
    let two_u = x * (C + C * 0.044715 * x * x);
    x / (1.0 + exp(-two_u))
}

#[inline(always)]
fn gelu_erf_one(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `v = f(v)` for every value, compiled for AVX-512 or AVX2 where detected (`f` is inlined
/// into each loop, so each vectorises); a large slice in chunks across the current pool.
fn map_in_place(values: &mut [f32], f: impl Fn(f32) -> f32 + Copy + Send + Sync) {
    if values.len() >= PARALLEL_ELEMENTS {
        values
            .par_chunks_mut(CHUNK)
            .for_each(|chunk| map_in_place(chunk, f));
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::wide_kernels() {
        // SAFETY: avx2 and avx512f were detected.
        unsafe { map_avx512(values, f) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::detected() == super::Simd::Avx2 {
        // SAFETY: avx2 was detected.
        unsafe { map_avx2(values, f) };
        return;
    }
    map_each(values, f);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn map_avx512(values: &mut [f32], f: impl Fn(f32) -> f32) {
    map_each(values, f);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn map_avx2(values: &mut [f32], f: impl Fn(f32) -> f32) {
    map_each(values, f);
}

#[inline(always)]
fn map_each(values: &mut [f32], f: impl Fn(f32) -> f32) {
    for v in values {
        *v = f(*v);
    }
}

/// erf(z) = 1 − (a₁t + … + a₅t⁵)·e^(−z²) with t = 1/(1 + p·|z|), odd in z; absolute error
/// ≤ 1.5e-7 in exact arithmetic.
#[inline(always)]
fn erf(z: f32) -> f32 {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4;
    p = p * t - 1.453_152;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let e = 1.0 - p * t * exp(-a * a);
    e.copysign(z)
}

/// `e^x` to about 1 ulp for `x` in `[-87, 88]` (clamped outside; `e^-87` is 1.6e-38, and
/// `x / (1 + e^88)` is already 0 for any activation), without a libm call: Cephes' `expf`,
/// with the rounding done by adding and subtracting 1.5·2²³.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // `2^n`, its exponent taken from `shifted`'s low bits, which hold `n` (the bits above
    // shift out): an integer add and shift, where `n as i32` is a saturating conversion that
    // kept the loops that call this scalar.
    e_r * f32::from_bits(shifted.to_bits().wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gelu_new_f64(x: f64) -> f64 {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64_over_the_clamped_range() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!(
                (got - want).abs() <= 2.5e-7 * want,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
    }

    #[test]
    fn gelu_tanh_matches_gelu_new_in_f64_to_float_tolerance() {
        // Steps of 0.005 over [-20, 20], and values far outside where the clamp decides.
        let xs: Vec<f32> = (-4000..=4000)
            .map(|i| i as f32 * 0.005)
            .chain([-1e30, -100.0, 100.0, 1e30])
            .collect();
        let mut got = xs.clone();
        gelu_tanh(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = gelu_new_f64(x as f64);
            assert!(
                (g as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "gelu({x}) = {g}, want {want}"
            );
        }
    }

    /// erf in f64: its Taylor series up to |z| = 3 (terms below e⁹, so rounding stays near
    /// 1e-12), beyond that 1 − erfc(|z|) from erfc's asymptotic series (three terms: relative
    /// error under 3e-3 of an erfc below 2.3e-5, so under 7e-8).
    fn erf_f64(z: f64) -> f64 {
        if z.abs() > 3.0 {
            let a = z.abs();
            let series = 1.0 - 1.0 / (2.0 * a * a) + 3.0 / (4.0 * a.powi(4));
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series;
            return (1.0 - erfc).copysign(z);
        }
        let (mut term, mut sum) = (z, z);
        for n in 1..200 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gelu_erf_matches_the_exact_gelu_in_f64_to_float_tolerance() {
        let xs: Vec<f32> = (-4000..=4000)
            .map(|i| i as f32 * 0.005)
            .chain([-1e30, -100.0, 100.0, 1e30])
            .collect();
        let mut got = xs.clone();
        gelu_erf(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            let x64 = x as f64;
            let want = 0.5 * x64 * (1.0 + erf_f64(x64 / 2f64.sqrt()));
            assert!(
                (g as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "gelu({x}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn the_vectorised_parallel_and_portable_loops_agree_bit_for_bit() {
        // The second length is split across a pool of three threads.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for len in [1031, 3 * PARALLEL_ELEMENTS + 7] {
            let xs: Vec<f32> = (0..len).map(|i| (i as f32 - 515.0) * 0.0123).collect();
            let (mut a, mut b) = (xs.clone(), xs.clone());
            pool.install(|| gelu_tanh(&mut a));
            map_each(&mut b, gelu_tanh_one);
            assert_eq!(a, b, "{len}");
            let (mut a, mut b) = (xs.clone(), xs.clone());
            pool.install(|| gelu_erf(&mut a));
            map_each(&mut b, gelu_erf_one);
            assert_eq!(a, b, "{len}");
            // The 8-lane loop, which machines without AVX-512 run.
            #[cfg(target_arch = "x86_64")]
            if super::super::detected() == super::super::Simd::Avx2 {
                let mut c = xs.clone();
                // SAFETY: avx2 was detected.
                unsafe { map_avx2(&mut c, gelu_erf_one) };
                assert_eq!(c, b, "{len}");
            }
            let up: Vec<f32> = xs.iter().map(|x| 1.0 - x).collect();
            let (mut a, mut b) = (xs.clone(), xs);
            pool.install(|| silu_mul(&mut a, &up));
            silu_mul_each(&mut b, &up);
            assert_eq!(a, b, "{len}");
        }
    }
}
