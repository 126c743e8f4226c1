//! Correctness tests. Tolerances:
//! * against an f64 reference computed from the *stored* (rounded / dequantized) weights:
//!   `|y - ref| <= 1e-5 · Σ_k |x·w|` per element, for every dtype (only f32 summation error);
//! * against the f32 reference of the original weights, relative RMS error
//!   `‖y − ref‖₂ / ‖ref‖₂`: f32 2e-6, f16 1e-3, bf16 1e-2, int8 2e-2, w8a8 3e-2;
//! * SIMD vs portable path: `|a − b| <= 1e-5 · Σ_k |x·w|` per element; for w8a8 (integer
//!   sums) bit for bit. Where AVX-512 is detected, the AVX2 kernels (`KernelPath::Avx2`) are
//!   checked against the reference too.
//!
//! w8a8's stored-weight reference also takes the activations as the kernel quantizes them
//! (per row, asymmetric: 256 steps over the row's range widened to hold 0).

use half::{bf16, f16};
use infergraph::models::kernels::{
    matmul_many_with, Dtype, KernelPath, PackedLinear, SourceLayout,
};

/// The dtypes `PackedLinear` holds (the 4-bit ones are `kernels::q4`'s, tested in `q4_kernels`).
const DTYPES: [Dtype; 5] = [
    Dtype::F32,
    Dtype::F16,
    Dtype::Bf16,
    Dtype::Int8,
    Dtype::W8a8,
];
const LAYOUTS: [SourceLayout; 2] = [SourceLayout::InOut, SourceLayout::OutIn];
const MS: [usize; 7] = [1, 2, 3, 5, 8, 9, 17];

/// Deterministic pseudo-random normals (splitmix64 + Box-Muller).
struct Rng(u64);
impl Rng {
    fn u(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + 1e-300
    }
    fn normal(&mut self, sd: f64) -> f32 {
        ((-2.0 * self.u().ln()).sqrt() * (std::f64::consts::TAU * self.u()).cos() * sd) as f32
    }
    fn vec(&mut self, len: usize, sd: f64) -> Vec<f32> {
        (0..len).map(|_| self.normal(sd)).collect()
    }
}

/// `W` as `[k, n]` in the requested source layout.
fn to_layout(w: &[f32], k: usize, n: usize, layout: SourceLayout) -> Vec<f32> {
    match layout {
        SourceLayout::InOut => w.to_vec(),
        SourceLayout::OutIn => (0..n * k).map(|i| w[(i % k) * n + i / k]).collect(),
    }
}

/// Returns (y, Σ|x·w|) in f64 for `x[m,k] · w[k,n] + bias`.
fn reference(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let (mut y, mut a) = (vec![0f64; m * n], vec![0f64; m * n]);
    for r in 0..m {
        for kk in 0..k {
            let xv = x[r * k + kk] as f64;
            for j in 0..n {
                let p = xv * w[kk * n + j] as f64;
                y[r * n + j] += p;
                a[r * n + j] += p.abs();
            }
        }
        if let Some(b) = bias {
            for j in 0..n {
                y[r * n + j] += b[j] as f64;
                a[r * n + j] += (b[j] as f64).abs();
            }
        }
    }
    (y, a)
}

fn assert_close(what: &str, y: &[f32], r: &[f64], abs: &[f64], rel: f64) {
    for i in 0..y.len() {
        let err = (y[i] as f64 - r[i]).abs();
        assert!(
            err <= rel * abs[i] + 1e-30,
            "{what}: element {i}: {} vs {} (err {err:e}, scale {:e})",
            y[i],
            r[i],
            abs[i]
        );
    }
}

fn rel_rms(y: &[f32], r: &[f64]) -> f64 {
    let num: f64 = y.iter().zip(r).map(|(&a, &b)| (a as f64 - b).powi(2)).sum();
    let den: f64 = r.iter().map(|b| b * b).sum();
    (num / den.max(1e-300)).sqrt()
}

fn tol(d: Dtype) -> f64 {
    match d {
        Dtype::F32 => 2e-6,
        Dtype::F16 => 1e-3,
        Dtype::Bf16 => 1e-2,
        Dtype::Int8 => 2e-2,
        Dtype::W8a8 => 3e-2,
        Dtype::Q4 | Dtype::W4a8 => unreachable!("not a PackedLinear dtype"),
    }
}

/// `x` as w8a8 sees it: each row rounded to multiples of `s = (max(hi, 0) − min(lo, 0)) / 255`
/// counted from its zero point `round(−min(lo, 0) / s)`, clamped to the 256 codes.
fn quantized_rows(x: &[f32], k: usize) -> Vec<f32> {
    x.chunks_exact(k)
        .flat_map(|row| {
            let lo = row.iter().fold(0f32, |m, &v| m.min(v));
            let hi = row.iter().fold(0f32, |m, &v| m.max(v));
            let (inverse, scale) = if hi > lo {
                (255.0 / (hi - lo), (hi - lo) / 255.0)
            } else {
                (0.0, 0.0)
            };
            let zero = (-lo * inverse).round_ties_even();
            row.iter().map(move |&v| {
                (((v * inverse).round_ties_even() + zero).clamp(0.0, 255.0) - zero) * scale
            })
        })
        .collect()
}

fn check_shape(k: usize, n: usize, ms: &[usize]) {
    let mut rng = Rng(k as u64 * 7919 + n as u64);
    let w = rng.vec(k * n, 0.02);
    let bias = rng.vec(n, 0.1);
    let mmax = *ms.iter().max().unwrap();
    let xall = rng.vec(mmax * k, 1.0);
    let f32_refs: Vec<_> = ms
        .iter()
        .map(|&m| reference(&xall[..m * k], &w, m, k, n, Some(&bias)))
        .collect();
    for layout in LAYOUTS {
        let src = to_layout(&w, k, n, layout);
        for dtype in DTYPES {
            let p = PackedLinear::pack_f32(&src, k, n, layout, dtype);
            assert_eq!((p.k(), p.n(), p.dtype()), (k, n, dtype));
            let tiles = n.div_ceil(8);
            let (depth, extra) = match dtype {
                Dtype::Int8 => (k, 32 * tiles),
                Dtype::W8a8 => (k.next_multiple_of(4), 64 * tiles),
                _ => (k, 0),
            };
            assert_eq!(p.bytes(), tiles * 8 * depth * dtype.elem_bytes() + extra);
            let wq: Vec<f32> = (0..k * n).map(|i| p.weight(i / n, i % n)).collect();
            for (mi, &m) in ms.iter().enumerate() {
                let x = &xall[..m * k];
                for with_bias in [false, true] {
                    let b = with_bias.then_some(&bias[..]);
                    let what = format!("k={k} n={n} m={m} {dtype:?} {layout:?} bias={with_bias}");
                    let xq = if dtype == Dtype::W8a8 {
                        quantized_rows(x, k)
                    } else {
                        x.to_vec()
                    };
                    let (rq, aq) = reference(&xq, &wq, m, k, n, b);
                    let mut y = vec![f32::NAN; m * n];
                    p.matmul(x, m, b, &mut y);
                    assert_close(
                        &format!("{what} vs stored-weight f64 ref"),
                        &y,
                        &rq,
                        &aq,
                        1e-5,
                    );
                    // The kernels of machines without AVX-512, where AVX-512 ones run by default.
                    let mut y2 = vec![f32::NAN; m * n];
                    p.matmul_with(KernelPath::Avx2, x, m, b, &mut y2);
                    assert_close(&format!("{what} AVX2 vs f64 ref"), &y2, &rq, &aq, 1e-5);
                    let mut yp = vec![f32::NAN; m * n];
                    p.matmul_with(KernelPath::Portable, x, m, b, &mut yp);
                    assert_close(&format!("{what} portable vs f64 ref"), &yp, &rq, &aq, 1e-5);
                    if dtype == Dtype::W8a8 {
                        assert_eq!(y, yp, "{what}: simd vs portable");
                    }
                    let yp64: Vec<f64> = yp.iter().map(|&v| v as f64).collect();
                    assert_close(&format!("{what} simd vs portable"), &y, &yp64, &aq, 1e-5);
                    if with_bias {
                        let e = rel_rms(&y, &f32_refs[mi].0);
                        assert!(
                            e <= tol(dtype),
                            "{what}: rel RMS vs f32 weights {e:e} > {:e}",
                            tol(dtype)
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn small_odd_shape_all_m() {
    check_shape(37, 29, &(1..=17).collect::<Vec<_>>());
}

#[test]
fn tiny_shapes() {
    check_shape(1, 1, &MS);
    check_shape(3, 8, &MS);
    check_shape(9, 17, &MS);
}

#[test]
fn medium_shape() {
    check_shape(64, 200, &MS);
}

/// Deep k: f32 tiles of 64 KiB, so m ≥ 6 runs over groups of 4 tiles.
#[test]
fn deep_k_grouped_rows() {
    check_shape(2048, 72, &[1, 6, 8, 9, 17]);
}

/// Prompts' rows: in blocks of 32 (two AMX tiles of 16 where AMX runs them) and their
/// remainders, over a depth with whole 64-byte steps and a tail of 8 k.
#[test]
fn prompt_rows_in_blocks_and_remainders() {
    check_shape(200, 40, &[9, 16, 24, 32, 33, 47, 70]);
}

#[test]
fn gpt2_qkv_shape() {
    check_shape(768, 2304, &MS);
}

#[test]
fn layouts_pack_identically() {
    let (k, n) = (45, 27);
    let w = Rng(5).vec(k * n, 1.0);
    for dtype in DTYPES {
        let a = PackedLinear::pack_f32(&w, k, n, SourceLayout::InOut, dtype);
        let b = PackedLinear::pack_f32(
            &to_layout(&w, k, n, SourceLayout::OutIn),
            k,
            n,
            SourceLayout::OutIn,
            dtype,
        );
        assert!(a == b, "{dtype:?}");
    }
}

#[test]
fn half_bits_pack_like_f32() {
    let (k, n) = (70, 35);
    let w = Rng(9).vec(k * n, 0.5);
    let h: Vec<u16> = w.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    let hf: Vec<f32> = h.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
    let b: Vec<u16> = w.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    let bf: Vec<f32> = b.iter().map(|&b| bf16::from_bits(b).to_f32()).collect();
    for layout in LAYOUTS {
        let (hl, hfl) = (
            to_layout_u16(&h, k, n, layout),
            to_layout(&hf, k, n, layout),
        );
        let (bl, bfl) = (
            to_layout_u16(&b, k, n, layout),
            to_layout(&bf, k, n, layout),
        );
        for dtype in DTYPES {
            let from_bits = PackedLinear::pack_f16_bits(&hl, k, n, layout, dtype);
            assert!(
                from_bits == PackedLinear::pack_f32(&hfl, k, n, layout, dtype),
                "f16 {dtype:?} {layout:?}"
            );
            let from_bits = PackedLinear::pack_bf16_bits(&bl, k, n, layout, dtype);
            assert!(
                from_bits == PackedLinear::pack_f32(&bfl, k, n, layout, dtype),
                "bf16 {dtype:?} {layout:?}"
            );
        }
        // Same-type packing is a pure re-layout: stored bits equal source bits.
        let p = PackedLinear::pack_f16_bits(&hl, k, n, layout, Dtype::F16);
        let q = PackedLinear::pack_bf16_bits(&bl, k, n, layout, Dtype::Bf16);
        for i in 0..k * n {
            assert_eq!(p.weight(i / n, i % n).to_bits(), hf[i].to_bits());
            assert_eq!(q.weight(i / n, i % n).to_bits(), bf[i].to_bits());
        }
    }
}

fn to_layout_u16(w: &[u16], k: usize, n: usize, layout: SourceLayout) -> Vec<u16> {
    match layout {
        SourceLayout::InOut => w.to_vec(),
        SourceLayout::OutIn => (0..n * k).map(|i| w[(i % k) * n + i / k]).collect(),
    }
}

#[test]
fn int8_scales_and_zero_columns() {
    let (k, n) = (16, 10);
    let mut w = Rng(3).vec(k * n, 1.0);
    for kk in 0..k {
        w[kk * n + 4] = 0.0; // an all-zero column must not produce NaN
    }
    let p = PackedLinear::pack_f32(&w, k, n, SourceLayout::InOut, Dtype::Int8);
    for j in 0..n {
        let mx = (0..k).map(|kk| w[kk * n + j].abs()).fold(0f32, f32::max);
        for kk in 0..k {
            let err = (p.weight(kk, j) - w[kk * n + j]).abs();
            assert!(err <= mx / 127.0 * 0.5 * 1.001, "({kk},{j}) err {err}");
        }
    }
    let mut y = vec![0f32; 3 * n];
    p.matmul(&vec![1.0; 3 * k], 3, None, &mut y);
    assert!(y.iter().all(|v| v.is_finite()) && y[4] == 0.0);
}

#[test]
fn w8a8_rows_of_zeros_give_the_bias_and_a_non_finite_row_gives_nans_alone() {
    let (k, n) = (19, 12);
    let w = Rng(4).vec(k * n, 1.0);
    let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
    let p = PackedLinear::pack_f32(&w, k, n, SourceLayout::InOut, Dtype::W8a8);
    // A decode step's few rows, and a prompt's many (AMX's tiles, where it runs).
    for m in [3, 20] {
        let mut x = Rng(6).vec(m * k, 1.0);
        x[..k].fill(0.0);
        x[k + 5] = f32::NAN;
        for path in [KernelPath::Auto, KernelPath::Portable] {
            let mut y = vec![0f32; m * n];
            p.matmul_with(path, &x, m, Some(&bias), &mut y);
            assert_eq!(y[..n], bias[..], "{m} rows, {path:?}");
            assert!(y[n..2 * n].iter().all(|v| v.is_nan()), "{m} rows, {path:?}");
            assert!(
                y[2 * n..].iter().all(|v| v.is_finite()),
                "{m} rows, {path:?}"
            );
        }
    }
}

/// Chunking depends on the pool size but the per-column summation order does not; 64 rows
/// quantize their activations across the pool's threads, 9 on the calling one.
#[test]
fn results_independent_of_thread_count() {
    let (k, n) = (300, 1000);
    let mut rng = Rng(11);
    let w = rng.vec(k * n, 0.02);
    for (dtype, m) in DTYPES.iter().flat_map(|&d| [(d, 9), (d, 64)]) {
        let x = rng.vec(m * k, 1.0);
        let p = PackedLinear::pack_f32(&w, k, n, SourceLayout::InOut, dtype);
        let outs: Vec<Vec<f32>> = [1, 2, 3]
            .iter()
            .map(|&t| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap();
                let mut y = vec![0f32; m * n];
                pool.install(|| p.matmul(&x, m, None, &mut y));
                y
            })
            .collect();
        assert_eq!(outs[0], outs[1], "{dtype:?} m {m}");
        assert_eq!(outs[0], outs[2], "{dtype:?} m {m}");
    }
}

/// A layer's q, k and v (or gate and up) run as one product: each output has the bits of its
/// own call, on every path, from one row to rows quantized in parallel.
#[test]
fn fused_products_give_each_matrix_the_bits_of_its_own_call() {
    let k = 136;
    let mut rng = Rng(12);
    let shapes = [40, 24, 200];
    let ws: Vec<Vec<f32>> = shapes.iter().map(|&n| rng.vec(k * n, 0.02)).collect();
    let bias = rng.vec(24, 0.1);
    for dtype in DTYPES {
        let [a, b, c] = [0, 1, 2]
            .map(|i| PackedLinear::pack_f32(&ws[i], k, shapes[i], SourceLayout::InOut, dtype));
        for m in [1, 2, 5, 8, 17, 130] {
            let x = rng.vec(m * k, 1.0);
            for path in [KernelPath::Auto, KernelPath::Avx2, KernelPath::Portable] {
                let own = |w: &PackedLinear, bias: Option<&[f32]>| {
                    let mut y = vec![f32::NAN; m * w.n()];
                    w.matmul_with(path, &x, m, bias, &mut y);
                    y
                };
                let want = [own(&a, None), own(&b, Some(&bias)), own(&c, None)];
                let mut got = shapes.map(|n| vec![f32::NAN; m * n]);
                let [ya, yb, yc] = &mut got;
                matmul_many_with(
                    path,
                    &x,
                    m,
                    [(&a, None, ya), (&b, Some(&bias), yb), (&c, None, yc)],
                );
                for (i, (want, got)) in want.iter().zip(&got).enumerate() {
                    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(want), bits(got), "{dtype:?} {path:?} m {m} matrix {i}");
                }
            }
        }
    }
}

#[test]
fn zero_rows_and_path_name() {
    let p = PackedLinear::pack_f32(&[1.0; 6], 2, 3, SourceLayout::InOut, Dtype::F16);
    p.matmul(&[], 0, None, &mut []);
    let paths = [
        "avx2+fma+f16c+avx512f+avx512vnni+amx-int8",
        "avx2+fma+f16c+avx512f+avx512vnni",
        "avx2+fma+f16c+avx512f",
        "avx2+fma+f16c",
        "portable",
    ];
    assert!(paths.contains(&infergraph::models::kernels::simd_path()));
    println!("simd path: {}", infergraph::models::kernels::simd_path());
}

/// Prints the measured error of each dtype for a GPT-2-sized layer (`--nocapture` to see it).
#[test]
fn accuracy_report() {
    let (k, n, m) = (768, 3072, 8);
    let mut rng = Rng(21);
    let (w, x) = (rng.vec(k * n, 0.02), rng.vec(m * k, 1.0));
    let (r, _) = reference(&x, &w, m, k, n, None);
    for dtype in DTYPES {
        let mut y = vec![0f32; m * n];
        PackedLinear::pack_f32(&w, k, n, SourceLayout::InOut, dtype).matmul(&x, m, None, &mut y);
        let e = rel_rms(&y, &r);
        let mx = y
            .iter()
            .zip(&r)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        println!(
            "{dtype:?}: rel RMS {e:.1e}, max abs {mx:.1e} (tolerance {:.0e})",
            tol(dtype)
        );
        assert!(e <= tol(dtype));
    }
}

/// A `[n, k]` (`OutIn`) weight packed in runs of output columns and joined is the weight
/// packed whole: the same weights, the same products, bit for bit (how the loader converts a
/// vocabulary's embedding without an f32 copy of it).
#[test]
fn weights_packed_a_run_of_columns_at_a_time_equal_one_packing() {
    use infergraph::models::kernels::q4::{Activations, Q4Linear};
    let (k, n, m) = (64, 37, 3);
    let mut rng = Rng(7);
    let w = rng.vec(k * n, 1.0);
    let x = rng.vec(m * k, 1.0);
    let split = 16 * k; // whole tiles of both kernels before the last run
    for dtype in DTYPES {
        let whole = PackedLinear::pack_f32(&w, k, n, SourceLayout::OutIn, dtype);
        let mut runs = PackedLinear::zeroed(k, n, dtype);
        runs.fill_columns(16, &w[split..]);
        runs.fill_columns(0, &w[..split]);
        assert!(runs == whole, "{dtype}");
    }
    let whole = Q4Linear::quantize(&w, k, n, SourceLayout::OutIn);
    let mut runs = Q4Linear::zeroed(k, n);
    runs.fill_columns(16, &w[split..]);
    runs.fill_columns(0, &w[..split]);
    assert!(runs == whole);
    for activations in [Activations::F32, Activations::Int8] {
        let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
        whole.matmul(activations, &x, m, None, &mut a);
        runs.matmul(activations, &x, m, None, &mut b);
        assert_eq!(a, b);
    }
}
