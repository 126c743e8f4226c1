//! The CPU kernels alone: `PackedLinear::matmul` per dtype and row count, as GMAC/s and as
//! a share of this machine's FMA peak, measured in the same run.
//!
//! Run with `cargo bench --bench kernels` (`-- --quick` for fewer repetitions, `-- --dtype
//! f32,int8` for a subset, `-- --kernels avx2` for the AVX2 kernels where AVX-512 ones would
//! run, as on a CPU without AVX-512). Rows 1 and 8 are decode steps (bound by reading the weights),
//! 40 and 128 are a BERT forward and a prefill (bound by arithmetic): the peak says how much
//! of the machine the many-row products use.
//!
//! Each product is timed twice: "warm", one layer called over and over (its weights then sit
//! in the last-level cache), and "cold", cycling through copies of the layer that together
//! exceed any cache here, as a model's weights do in a decode step.

use std::time::{Duration, Instant};

use infergraph::engine::pool::run_in_own_pool;
use infergraph::models::kernels::{self, KernelPath, PackedLinear, SourceLayout};

mod common;

use common::median;

/// GPT-2's and BERT's dense shapes at 768 wide (`k` inputs → `n` outputs).
const SHAPES: [(&str, usize, usize); 3] = [
    ("768→2304 (c_attn)", 768, 2304),
    ("768→3072 (c_fc)", 768, 3072),
    ("3072→768 (c_proj)", 3072, 768),
];

const ROWS: [usize; 4] = [1, 8, 40, 128];

/// The cold copies of a layer add up to at least this: more than the last-level cache of the
/// machines here (32 MiB) several times over.
const COLD_BYTES: usize = 160 << 20;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dtypes = common::dtypes_or(&[
        kernels::Dtype::F32,
        kernels::Dtype::F16,
        kernels::Dtype::Bf16,
        kernels::Dtype::Int8,
        kernels::Dtype::W8a8,
    ]);
    let repeats = if quick { 7 } else { 25 };
    let path = match common::value_of("--kernels").as_deref() {
        None | Some("auto") => KernelPath::Auto,
        Some("avx2") => KernelPath::Avx2,
        Some(other) => panic!("--kernels: auto or avx2, not {other}"),
    };
    run_in_own_pool("bench", || {
        let (peak, lanes) = fma_peak_gmacs();
        println!(
            "CPU kernels: {} ({path:?}); {} threads; FMA peak {peak:.1} GMAC/s (independent {lanes}-lane FMAs on every thread); {repeats} repeats, median",
            kernels::simd_path(),
            rayon::current_num_threads(),
        );
        println!("| shape | dtype | rows | warm: median | GMAC/s | of peak | cold: median | GMAC/s | of peak |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (name, k, n) in SHAPES {
            // Values in a realistic range; their exact values do not change the timing.
            let w: Vec<f32> = (0..k * n)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
                .collect();
            for &dtype in &dtypes {
                let packed = PackedLinear::pack_f32(&w, k, n, SourceLayout::InOut, dtype);
                let copies: Vec<PackedLinear> = (0..COLD_BYTES.div_ceil(packed.bytes()))
                    .map(|_| packed.clone())
                    .collect();
                for m in ROWS {
                    let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
                    let mut out = vec![0f32; m * n];
                    let warm = median(repeats, || packed.matmul_with(path, &x, m, None, &mut out));
                    let mut next = 0;
                    let cold = median(repeats.max(copies.len()), || {
                        copies[next % copies.len()].matmul_with(path, &x, m, None, &mut out);
                        next += 1;
                    });
                    let rate = |t: Duration| (m * k * n) as f64 / t.as_secs_f64() / 1e9;
                    println!(
                        "| {name} | {dtype} | {m} | {:.3} ms | {:.1} | {:.0} % | {:.3} ms | {:.1} | {:.0} % |",
                        warm.as_secs_f64() * 1e3,
                        rate(warm),
                        100.0 * rate(warm) / peak,
                        cold.as_secs_f64() * 1e3,
                        rate(cold),
                        100.0 * rate(cold) / peak,
                    );
                }
            }
        }
    });
}

/// Multiply-adds per second the current pool's threads reach together with nothing but
/// independent FMAs of the widest vectors here in registers, and those vectors' lanes: the
/// ceiling a compute-bound kernel is measured against.
fn fma_peak_gmacs() -> (f64, usize) {
    let threads = rayon::current_num_threads();
    let per_thread = 400_000_000usize;
    let start = Instant::now();
    let spent: Vec<(Duration, usize)> = rayon::broadcast(|_| {
        let t = Instant::now();
        let lanes = std::hint::black_box(fma_chains(per_thread)).1;
        (t.elapsed(), lanes)
    });
    let lanes = spent.first().map_or(1, |s| s.1);
    let elapsed = spent
        .into_iter()
        .map(|s| s.0)
        .max()
        .unwrap_or(start.elapsed());
    (
        (threads * per_thread) as f64 / elapsed.as_secs_f64() / 1e9,
        lanes,
    )
}

/// Runs about `macs` f32 multiply-adds as 10 independent chains (enough to cover the FMA
/// latency on both pipes) of the widest vectors here; returns a value that depends on all of
/// them, and the lanes a vector has.
fn fma_chains(macs: usize) -> (f32, usize) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: avx512f was just detected.
        return (unsafe { fma_chains_avx512(macs) }, 16);
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: avx2 and fma were just detected.
        return (unsafe { fma_chains_avx2(macs) }, 8);
    }
    let mut acc = [1f32; 10];
    for _ in 0..macs / 10 {
        for a in &mut acc {
            *a = a.mul_add(1.000_000_1, 1e-7);
        }
    }
    (acc.iter().sum(), 1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_avx512(macs: usize) -> f32 {
    use std::arch::x86_64::*;
    let (x, y) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 10];
    for _ in 0..macs / 160 {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for a in acc {
        sum = _mm512_add_ps(sum, a);
    }
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(macs: usize) -> f32 {
    use std::arch::x86_64::*;
    let (x, y) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 10];
    for _ in 0..macs / 80 {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for a in acc {
        sum = _mm256_add_ps(sum, a);
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}
