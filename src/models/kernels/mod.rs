//! The CPU backend's matmul kernels for every dense layer, whatever its dtype.
//!
//! [`PackedLinear`] holds a weight matrix `W` (`k` inputs × `n` outputs) in one of five storage
//! formats ([`Dtype`]) and computes `out[m, n] = x[m, k] · W (+ bias)`. With f32, f16, bf16 and
//! int8 the activations stay `f32` and **the sums are `f32`**: only the weights are low
//! precision. `W8a8` alone also quantizes the activations (per row, asymmetric, at each call) and sums
//! exactly in `i32`.
//!
//! # Invariants
//!
//! * **Packed layout.** Columns are grouped in tiles of 8 output columns, k-major inside a tile:
//!   `data[t][kk][c] = W[kk][8t + c]`. `n` is padded up to a multiple of 8 with zero columns, so a
//!   tile is always `8·k` elements. The buffer is 64-byte aligned. The source layout
//!   ([`SourceLayout::InOut`] `[k, n]` or [`SourceLayout::OutIn`] `[n, k]`) only matters while
//!   packing. `Int8` stores `q = round(W / s_j)` in `[-127, 127]` with a symmetric per-output-channel
//!   scale `s_j = max_kk |W[kk][j]| / 127` (0 for an all-zero column); the scale is applied once
//!   per output, at the store. `W8a8` stores the same `q`, with `k` padded to a multiple of 4
//!   by zero weights and each tile as `[kk / 4][c][kk % 4]` ([`TileLayout`]), plus each
//!   column's `Σ q` for taking out the activations' zero point.
//! * **Threads.** [`PackedLinear::matmul`] splits the output-column tiles into about
//!   4 contiguous chunks per thread of rayon's *current* pool (so the caller's
//!   `ThreadPool::install` decides), each chunk writing disjoint output columns; [`matmul_many`]
//!   runs the chunks of several matrices over one `x` in one parallel pass (`Split`, shared
//!   with `q4`). Packing also uses the current pool. Nothing is allocated per call apart from
//!   rayon's job bookkeeping.
//! * **Weight traffic.** For `m` up to the block size (6 rows, 8 with the AVX-512 kernels) the
//!   weights are read once per call, in one block of `m` rows. Past it, `m` is processed in
//!   blocks *inside* each group of 4–8 tiles (6–12 with AVX-512; ~256 KiB), so the re-reads of
//!   a group hit L2.
//! * **SIMD path.** On x86-64 with `avx2`, `fma` and `f16c` detected at run time (checked once,
//!   cached) a register-blocked AVX2 kernel is used for every dtype: rows 1–2 × 4 tiles,
//!   3–6 × 2 tiles (1 row uses two accumulator sets, even/odd `k`), with one software prefetch
//!   per weight stream per cache line (256 B ahead for 1–2 rows, 8 KiB for 3–6). For `m > 1`
//!   it first copies `x` into a per-thread buffer interleaved as `[kk][row]` per row block
//!   (`m·k` floats, reused across calls). Where `avx512f` is detected too, blocks of 3 rows and
//!   more run the AVX-512 kernels instead (`avx512.rs`: two tiles a 512-bit register, up to
//!   8 rows × 3 tile pairs), summing each lane in the same order as the AVX2 multi-row kernel
//!   ([`KernelPath::Avx2`] keeps the AVX2 ones). Otherwise (or with
//!   [`KernelPath::Portable`]) a scalar kernel over the same tiles is used; it sums over `k`
//!   sequentially per column, so results differ from the SIMD path only by rounding (FMA,
//!   even/odd split). Results do not depend on the number of threads. See [`simd_path`].
//! * bf16 → f32 is a 16-bit left shift; f16 → f32 uses F16C; int8 → f32 is `cvtepi8` + `cvtdq2ps`.
//! * **`W8a8`** runs on AVX-512 VNNI where detected (`vnni.rs`: rows 1–6 × 4 tiles), else on a
//!   portable integer kernel; from 9 rows (a prompt, a classifier's text) on Intel AMX where
//!   the CPU has it and the OS grants it (`amx.rs`: 32 rows × 2 tiles a call, each row block
//!   running over its chunk's whole stretch of weights, whose activations stay in cache). All
//!   give the same bits (exact sums, the same epilogue).

use half::{bf16, f16};

pub use super::dtype::Dtype;
use rayon::prelude::*;
use std::cell::Cell;
use std::sync::OnceLock;
use storage::WeightBuffer;

pub mod activation;
#[cfg(target_arch = "x86_64")]
mod amx;
pub mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod q4;
mod storage;
#[cfg(target_arch = "x86_64")]
mod vnni;

/// Why a `PackedLinear` never holds a 4-bit dtype (`build` refuses one).
const FOUR_BIT: &str = "4-bit weights are kernels::q4's, not PackedLinear's";

/// Row-major layout of the source matrix handed to the `pack_*` constructors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceLayout {
    /// `[k_in, n_out]` row-major: element `(kk, j)` is at `kk * n + j` (GPT-2 `Conv1D`).
    InOut,
    /// `[n_out, k_in]` row-major: element `(kk, j)` is at `j * k + kk` (`nn.Linear`, tied LM head).
    OutIn,
}

/// Where a weight sits inside its tile of 8 output columns.
#[derive(Clone, Copy, Debug)]
struct TileLayout {
    /// k steps a tile holds: `k`, or `k` rounded up to 4 for `W8a8` (zero weights pad it).
    depth: usize,
    /// `W8a8`: groups of 4 consecutive k per column, `[kk / 4][c][kk % 4]`, the operand order
    /// of the dot-product instructions (4 bytes into each i32 lane). Otherwise `[kk][c]`.
    quads: bool,
}

impl TileLayout {
    fn of(dtype: Dtype, k: usize) -> Self {
        let quads = dtype == Dtype::W8a8;
        Self {
            depth: if quads { k.next_multiple_of(4) } else { k },
            quads,
        }
    }

    /// The index of weight `(kk, column c of the tile)` inside the tile.
    fn at(&self, kk: usize, c: usize) -> usize {
        if self.quads {
            (kk / 4) * 32 + c * 4 + kk % 4
        } else {
            kk * 8 + c
        }
    }
}

/// Kernel selection for [`PackedLinear::matmul_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// The best path found by run-time detection (what [`PackedLinear::matmul`] uses).
    Auto,
    /// No AVX-512 even where it was detected (so that tests cover the AVX2 kernels on any
    /// machine): the AVX2 kernels, `W8a8`'s portable one compiled for AVX2, the portable
    /// kernels where AVX2 is missing.
    Avx2,
    /// The portable scalar kernel, whatever the CPU supports.
    Portable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Simd {
    Avx2,
    Portable,
}

fn detected() -> Simd {
    static SIMD: OnceLock<Simd> = OnceLock::new();
    *SIMD.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                return Simd::Avx2;
            }
        }
        Simd::Portable
    })
}

/// Whether the dense dtypes' kernels for 3 rows and more run on AVX-512 (`avx512.rs`: 16
/// columns an FMA) rather than AVX2. Checked once, cached.
fn wide_kernels() -> bool {
    static WIDE: OnceLock<bool> = OnceLock::new();
    *WIDE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            detected() == Simd::Avx2 && is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Whether `W8a8`'s integer dot products run on AVX-512 VNNI here (`vpdpbusd` on 256-bit
/// registers, which needs AVX-512 VL too); else on a portable kernel, exact too, but slower
/// than `Int8`'s. Checked once, cached.
pub fn integer_dot_products() -> bool {
    static VNNI: OnceLock<bool> = OnceLock::new();
    *VNNI.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            detected() == Simd::Avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Whether `W8a8` products of [`TILE_ROWS_FROM`] rows and more run on AMX tiles here
/// (`amx.rs`; needs the VNNI kernels' features too, and the OS's leave). Checked once, cached.
fn tile_dot_products() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        integer_dot_products() && amx::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Rows from which `W8a8` runs on AMX where it can: more than a batched decode step's 8, whose
/// weights the VNNI kernels read once anyway (the bits are the same either way).
const TILE_ROWS_FROM: usize = 9;

/// Rows of an AMX activation tile, whole numbers of which the AMX kernels read.
const AMX_TILE_ROWS: usize = 16;

/// Name of the kernels that run-time detection picked: `"avx2+fma+f16c"` (with `"+avx512f"`
/// for 3 rows and more, `"+avx512vnni"` for w8a8, and `"+amx-int8"` for w8a8's prompts, where
/// present) or `"portable"`.
pub fn simd_path() -> &'static str {
    match (detected(), wide_kernels(), integer_dot_products()) {
        (Simd::Avx2, true, true) if tile_dot_products() => {
            "avx2+fma+f16c+avx512f+avx512vnni+amx-int8"
        }
        (Simd::Avx2, true, true) => "avx2+fma+f16c+avx512f+avx512vnni",
        (Simd::Avx2, true, false) => "avx2+fma+f16c+avx512f",
        (Simd::Avx2, false, _) => "avx2+fma+f16c",
        (Simd::Portable, ..) => "portable",
    }
}

/// Software prefetch distance in bytes ahead of each weight stream: `[rows 1-2, rows 3-6]`.
/// Tuned on a 2-vCPU EPYC VM: the hardware prefetcher nearly suffices at 1–2 rows; software
/// prefetch pays off at 3 rows and more (f32/f16 at 8 rows about 25 % faster than without).
const PREFETCH: [usize; 2] = [256, 8192];

/// The first `len` values of a reusable buffer, grown to hold them but never cleared: for
/// buffers whose every value the caller writes, so that refilling one costs no memset (~2 % of
/// a BERT forward).
pub(crate) fn reused<T: Copy + Default>(buffer: &mut Vec<T>, len: usize) -> &mut [T] {
    if buffer.len() < len {
        buffer.resize(len, T::default());
    }
    &mut buffer[..len]
}

/// Activations of at least this many values are quantized (and activation functions mapped)
/// across the current pool's threads: below it a rayon dispatch costs more than the work
/// (~1 ns a value), above it the other threads would otherwise spin through a serial pass
/// between two matmuls (a BERT forward at 60 tokens spent ~12 % of its time there).
pub(crate) const PARALLEL_ELEMENTS: usize = 16_384;

/// Rows per block from 6 rows on (batch-6–8 decode steps, prefill, BERT) in the AVX2 and
/// VNNI kernels. 6 rows × 2 tiles is 12 accumulators fed by 2 weight loads and 6 broadcasts
/// per k step. The 8 rows × 1 tile it replaced needed 9 loads for 8 FMAs: it took 1.1–1.6×
/// the time at 6 rows and up to 1.3× at 8 (A/B in one process, every dtype), and 1.1–1.4×
/// for a 128-token GPT-2 prefill.
const BLOCK_ROWS: usize = 6;

/// Rows per block in the AVX-512 kernels: their 32 registers hold 8 rows × 3 tile pairs, so a
/// batch-8 decode step reads its weights in one pass.
const WIDE_BLOCK_ROWS: usize = 8;

/// A weight matrix packed for [`PackedLinear::matmul`] (layout described in the crate docs).
#[derive(Clone, PartialEq)]
pub struct PackedLinear {
    data: WeightBuffer,
    /// Per-output-column scales, `Int8` and `W8a8` only (length `n` padded to a multiple of 8,
    /// pad = 0).
    scales: Vec<f32>,
    /// `W8a8` only: `Σ_kk q[kk][j]` per output column (padded like `scales`), which takes out
    /// each row's zero point (the activations are unsigned for the dot-product instructions).
    col_sums: Vec<i32>,
    k: usize,
    n: usize,
    dtype: Dtype,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedLinear")
            .field("k", &self.k)
            .field("n", &self.n)
            .field("dtype", &self.dtype)
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// Element types that may be stored in the packed buffer (alignment ≤ 64, any bit pattern valid).
trait Elem: Copy + Send + Sync {}
impl Elem for f32 {}
impl Elem for u16 {}
impl Elem for i8 {}

/// Writes `f(W[kk][j], j)` into the packed tiles of `dst` (padding columns are left untouched).
///
/// Reads follow the source's rows: an `OutIn` column is contiguous, so each tile reads its 8
/// columns front to back; an `InOut` row is contiguous, so a group of 64 tiles (512 columns)
/// reads each row's stretch at once. (Tile by tile, an `InOut` source is read a whole row
/// apart for every 8 weights, a new cache line and a new page each time: loading was bound by
/// those reads, 2–3× slower.)
/// Inside each tile, weights go where `tiles` says.
fn pack_into<T: Copy + Sync, U: Elem>(
    w: &[T],
    k: usize,
    n: usize,
    layout: SourceLayout,
    (dst, tiles): (&mut [U], TileLayout),
    f: impl Fn(T, usize) -> U + Sync,
) {
    const GROUP: usize = 64;
    let (tile, at) = (8 * tiles.depth, |kk, c| tiles.at(kk, c));
    dst.par_chunks_mut(GROUP * tile)
        .enumerate()
        .for_each(|(g, tiles)| {
            let t0 = g * GROUP;
            let cols = (n - 8 * t0).min(8 * GROUP);
            match layout {
                SourceLayout::InOut => {
                    for kk in 0..k {
                        for (i, &v) in w[kk * n + 8 * t0..][..cols].iter().enumerate() {
                            tiles[(i / 8) * tile + at(kk, i % 8)] = f(v, 8 * t0 + i);
                        }
                    }
                }
                SourceLayout::OutIn => {
                    for i in 0..cols {
                        let j = 8 * t0 + i;
                        for (kk, &v) in w[j * k..][..k].iter().enumerate() {
                            tiles[(i / 8) * tile + at(kk, i % 8)] = f(v, j);
                        }
                    }
                }
            }
        });
}

/// `x.round() as i32` (halves away from zero) for `|x| < 2²³`, without the libm call that
/// `f32::round` compiles to on baseline x86-64 (once per weight: 10 % of an int8 load's profile).
fn round_half_away(x: f32) -> i32 {
    let t = x as i32; // truncates toward zero
    let frac = x - t as f32; // exact: t and x are within 1 of each other
    t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)
}

/// `max_kk |W[kk][j]|` for every output column `j`.
fn col_absmax<T: Copy + Sync>(
    w: &[T],
    k: usize,
    n: usize,
    layout: SourceLayout,
    to_f32: impl Fn(T) -> f32 + Sync,
) -> Vec<f32> {
    match layout {
        SourceLayout::InOut => {
            let mut mx = vec![0f32; n];
            for row in w.chunks_exact(n) {
                for (m, &v) in mx.iter_mut().zip(row) {
                    *m = m.max(to_f32(v).abs());
                }
            }
            mx
        }
        SourceLayout::OutIn => w
            .par_chunks(k)
            .map(|col| col.iter().fold(0f32, |a, &v| a.max(to_f32(v).abs())))
            .collect(),
    }
}

/// Kind of half-precision source bits, for the pure re-layout shortcut.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    F32,
    F16,
    Bf16,
}

impl PackedLinear {
    /// Packs an `f32` matrix (`k` inputs × `n` outputs, in `layout`) into `dtype`.
    ///
    /// Extra memory while packing is the packed size (plus `4·n` bytes for int8 scales).
    /// Panics if `k == 0`, `n == 0` or `w.len() != k * n`.
    pub fn pack_f32(w: &[f32], k: usize, n: usize, layout: SourceLayout, dtype: Dtype) -> Self {
        Self::build(
            w,
            k,
            n,
            layout,
            dtype,
            Src::F32,
            |v| v,
            |v| v.to_bits() as u16,
        )
    }

    /// Packs a matrix given as IEEE f16 bit patterns into `dtype`, converting element by element
    /// (no full `f32` copy). With `dtype == F16` this is a pure re-layout of the bits.
    pub fn pack_f16_bits(
        w: &[u16],
        k: usize,
        n: usize,
        layout: SourceLayout,
        dtype: Dtype,
    ) -> Self {
        Self::build(
            w,
            k,
            n,
            layout,
            dtype,
            Src::F16,
            |b| f16::from_bits(b).to_f32(),
            |b| b,
        )
    }

    /// Packs a matrix given as bfloat16 bit patterns into `dtype`, converting element by element
    /// (no full `f32` copy). With `dtype == Bf16` this is a pure re-layout of the bits.
    pub fn pack_bf16_bits(
        w: &[u16],
        k: usize,
        n: usize,
        layout: SourceLayout,
        dtype: Dtype,
    ) -> Self {
        Self::build(
            w,
            k,
            n,
            layout,
            dtype,
            Src::Bf16,
            |b| bf16::from_bits(b).to_f32(),
            |b| b,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build<T: Copy + Sync>(
        w: &[T],
        k: usize,
        n: usize,
        layout: SourceLayout,
        dtype: Dtype,
        src: Src,
        to_f32: impl Fn(T) -> f32 + Sync + Copy,
        bits: impl Fn(T) -> u16 + Sync + Copy,
    ) -> Self {
        assert_eq!(w.len(), k * n, "weight length must be k * n");
        let mut p = Self::zeroed(k, n, dtype);
        p.pack_columns(0, w, n, layout, src, to_f32, bits);
        p
    }

    /// Packs `w`, the weights of output columns `j0..j0 + n` (`k` inputs × `n` outputs in
    /// `layout`), into their tiles (`j0` a multiple of 8), scales and column sums.
    #[allow(clippy::too_many_arguments)]
    fn pack_columns<T: Copy + Sync>(
        &mut self,
        j0: usize,
        w: &[T],
        n: usize,
        layout: SourceLayout,
        src: Src,
        to_f32: impl Fn(T) -> f32 + Sync + Copy,
        bits: impl Fn(T) -> u16 + Sync + Copy,
    ) {
        let (k, dtype) = (self.k, self.dtype);
        let tiles = TileLayout::of(dtype, k);
        let span = j0 * tiles.depth..(j0 + n.next_multiple_of(8)) * tiles.depth;
        match dtype {
            Dtype::F32 => {
                let dst = &mut self.elems_mut()[span];
                pack_into(w, k, n, layout, (dst, tiles), |v, _| to_f32(v))
            }
            Dtype::F16 if src == Src::F16 => {
                let dst = &mut self.elems_mut()[span];
                pack_into(w, k, n, layout, (dst, tiles), |v, _| bits(v))
            }
            Dtype::F16 => {
                let dst = &mut self.elems_mut()[span];
                pack_into(w, k, n, layout, (dst, tiles), |v, _| {
                    f16::from_f32(to_f32(v)).to_bits()
                })
            }
            Dtype::Bf16 if src == Src::Bf16 => {
                let dst = &mut self.elems_mut()[span];
                pack_into(w, k, n, layout, (dst, tiles), |v, _| bits(v))
            }
            Dtype::Bf16 => {
                let dst = &mut self.elems_mut()[span];
                pack_into(w, k, n, layout, (dst, tiles), |v, _| {
                    bf16::from_f32(to_f32(v)).to_bits()
                })
            }
            Dtype::Int8 | Dtype::W8a8 => {
                let mut scales = col_absmax(w, k, n, layout, to_f32);
                scales.iter_mut().for_each(|s| *s /= 127.0);
                let sc = &scales;
                let dst = &mut self.elems_mut::<i8>()[span.clone()];
                pack_into(w, k, n, layout, (dst, tiles), |v, j| {
                    let s = sc[j];
                    if s > 0.0 {
                        round_half_away(to_f32(v) / s).clamp(-127, 127) as i8
                    } else {
                        0
                    }
                });
                self.scales[j0..][..n].copy_from_slice(&scales);
                if dtype == Dtype::W8a8 {
                    let sums = self.elems_ref::<i8>()[span]
                        .par_chunks(8 * tiles.depth)
                        .flat_map_iter(|t| {
                            let sums = t.chunks_exact(32).fold([0i32; 8], |mut sums, group| {
                                for (sum, c) in sums.iter_mut().zip(group.chunks_exact(4)) {
                                    *sum += c.iter().map(|&q| i32::from(q)).sum::<i32>();
                                }
                                sums
                            });
                            sums.into_iter()
                        })
                        .collect::<Vec<_>>();
                    self.col_sums[j0..][..sums.len()].copy_from_slice(&sums);
                }
            }
            Dtype::Q4 | Dtype::W4a8 => unreachable!("{FOUR_BIT}"),
        }
    }

    /// Number of packed elements (the tiles' depth × `n` padded to a multiple of 8).
    fn elems(&self) -> usize {
        TileLayout::of(self.dtype, self.k).depth * self.n.next_multiple_of(8)
    }

    fn elems_ref<T: Elem>(&self) -> &[T] {
        debug_assert_eq!(std::mem::size_of::<T>(), self.dtype.elem_bytes());
        // SAFETY: `data` holds at least `elems() * size_of::<T>()` bytes, is 64-byte aligned and
        // every bit pattern is a valid `T` (f32, u16, i8).
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<T>(), self.elems()) }
    }

    fn elems_mut<T: Elem>(&mut self) -> &mut [T] {
        debug_assert_eq!(std::mem::size_of::<T>(), self.dtype.elem_bytes());
        let len = self.elems();
        // SAFETY: as in `elems_ref`, and we hold `&mut self`.
        unsafe {
            std::slice::from_raw_parts_mut(self.data.as_bytes_mut().as_mut_ptr().cast::<T>(), len)
        }
    }

    /// An all-zero `k × n` matrix in `dtype`, to be packed a run of output columns at a time by
    /// [`fill_columns`](Self::fill_columns): how a large weight (a vocabulary's embedding) is
    /// packed without ever holding it whole in f32, nor its runs beside the result.
    pub fn zeroed(k: usize, n: usize, dtype: Dtype) -> Self {
        assert!(k > 0 && n > 0, "empty weight matrix");
        assert!(dtype.four_bit_activations().is_none(), "{FOUR_BIT}");
        let tiles = TileLayout::of(dtype, k);
        let elems = n.next_multiple_of(8) * tiles.depth;
        let quantized = matches!(dtype, Dtype::Int8 | Dtype::W8a8);
        Self {
            data: WeightBuffer::zeroed(elems * dtype.elem_bytes()),
            scales: if quantized {
                vec![0.0; n.next_multiple_of(8)]
            } else {
                Vec::new()
            },
            col_sums: if dtype == Dtype::W8a8 {
                vec![0; n.next_multiple_of(8)]
            } else {
                Vec::new()
            },
            k,
            n,
            dtype,
        }
    }

    /// Packs output columns `j0..j0 + cols` from `values`, their `[cols, k]` weights (an
    /// `OutIn` run), exactly as [`pack_f32`](Self::pack_f32) of the whole matrix would (every
    /// column's scale is its own), straight into place. Panics unless `j0` is a multiple of 8
    /// and the run fits.
    pub fn fill_columns(&mut self, j0: usize, values: &[f32]) {
        let cols = values.len() / self.k;
        assert!(
            j0.is_multiple_of(8) && j0 + cols <= self.n && values.len() == cols * self.k,
            "a run of whole tiles inside the matrix"
        );
        self.pack_columns(
            j0,
            values,
            cols,
            SourceLayout::OutIn,
            Src::F32,
            |v| v,
            |v| v.to_bits() as u16,
        );
    }

    /// Number of inputs (rows of `W`, columns of `x`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of outputs (columns of `W` and of `out`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Storage format.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Bytes of weight storage: packed elements (including the padding) plus int8 scales and
    /// w8a8 column sums.
    pub fn bytes(&self) -> usize {
        self.elems() * self.dtype.elem_bytes() + (self.scales.len() + self.col_sums.len()) * 4
    }

    /// Stored weight `(kk, j)` as the kernel sees it (dequantized / widened to `f32`).
    pub fn weight(&self, kk: usize, j: usize) -> f32 {
        assert!(kk < self.k && j < self.n);
        let tiles = TileLayout::of(self.dtype, self.k);
        let i = (j / 8) * 8 * tiles.depth + tiles.at(kk, j % 8);
        match self.dtype {
            Dtype::F32 => self.elems_ref::<f32>()[i],
            Dtype::F16 => f16::from_bits(self.elems_ref::<u16>()[i]).to_f32(),
            Dtype::Bf16 => bf16::from_bits(self.elems_ref::<u16>()[i]).to_f32(),
            Dtype::Int8 | Dtype::W8a8 => self.elems_ref::<i8>()[i] as f32 * self.scales[j],
            Dtype::Q4 | Dtype::W4a8 => unreachable!("{FOUR_BIT}"),
        }
    }

    /// `out[m, n] = x[m, k] · W (+ bias)` with the kernel chosen by run-time detection.
    ///
    /// `x` is row-major `[m, k]`, `out` row-major `[m, n]` (overwritten), `bias` has length `n`.
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, out: &mut [f32]) {
        self.matmul_with(KernelPath::Auto, x, m, bias, out)
    }

    /// [`matmul`](Self::matmul) with an explicit kernel choice (used to test the portable path).
    pub fn matmul_with(
        &self,
        path: KernelPath,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        matmul_many_with(path, x, m, [(self, bias, out)]);
    }

    /// The fields of a call's [`Job`] that come from the weight (activations unset).
    fn job(&self, bias: Option<&[f32]>, out: &mut [f32]) -> Job {
        Job {
            w: self.data.as_ptr().cast(),
            x: std::ptr::null(),
            out: out.as_mut_ptr(),
            scales: self.scales.as_ptr(),
            bias: bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            k: self.k,
            n: self.n,
            pf: PREFETCH,
            xq: std::ptr::null(),
            row_scales: std::ptr::null(),
            row_zeros: std::ptr::null(),
            col_sums: std::ptr::null(),
            depth: 0,
        }
    }

    /// How a product of `m` rows splits over the output-column tiles (of 8): chunks and
    /// groups are whole multiples of `step`, the tiles a kernel call covers, where they can
    /// be; several row blocks run over a group of 1-2 steps of tiles (about 256 KiB) while it
    /// is in L2.
    fn split(&self, m: usize, block_rows: usize, step: usize) -> Split {
        let tile_bytes = 8 * TileLayout::of(self.dtype, self.k).depth * self.dtype.elem_bytes();
        let group = (262_144 / tile_bytes).clamp(step, 2 * step) / step * step;
        Split::new(self.n.div_ceil(8), m, block_rows, step, group)
    }

    fn portable_block(&self, job: &Job, x: &[f32], mr: usize, ta: usize, tb: usize, row0: usize) {
        match self.dtype {
            Dtype::F32 => portable(job, x, self.elems_ref::<f32>(), |v| v, mr, ta..tb, row0),
            Dtype::F16 => portable(
                job,
                x,
                self.elems_ref::<u16>(),
                |b| f16::from_bits(b).to_f32(),
                mr,
                ta..tb,
                row0,
            ),
            Dtype::Bf16 => portable(
                job,
                x,
                self.elems_ref::<u16>(),
                |b| f32::from_bits((b as u32) << 16),
                mr,
                ta..tb,
                row0,
            ),
            Dtype::Int8 => portable(
                job,
                x,
                self.elems_ref::<i8>(),
                |q| q as f32,
                mr,
                ta..tb,
                row0,
            ),
            Dtype::W8a8 => unreachable!("w8a8 runs in matmul_w8a8"),
            Dtype::Q4 | Dtype::W4a8 => unreachable!("{FOUR_BIT}"),
        }
    }
}

/// One matrix of a fused product: the weight, its bias and its output (`[m, n]`, overwritten).
pub type Product<'a> = (&'a PackedLinear, Option<&'a [f32]>, &'a mut [f32]);

/// `out_i = x · W_i (+ bias_i)` for `N` matrices of one dtype and depth `k` (a layer's q, k
/// and v projections; its gate and up), with the kernels chosen by run-time detection. `x` is
/// prepared once (interleaved for the SIMD kernels, quantized for `W8a8`) and every matrix's
/// chunks share one parallel pass, where separate calls would each prepare it and wait for
/// the pool. Each output gets the bits of its own [`PackedLinear::matmul`].
///
/// Panics if the matrices' dtypes or `k` differ, or on the shapes `matmul` rejects.
pub fn matmul_many<const N: usize>(x: &[f32], m: usize, parts: [Product<'_>; N]) {
    matmul_many_with(KernelPath::Auto, x, m, parts)
}

/// [`matmul_many`] with an explicit kernel choice (used to test the portable path).
pub fn matmul_many_with<const N: usize>(
    path: KernelPath,
    x: &[f32],
    m: usize,
    parts: [Product<'_>; N],
) {
    let Some((first, ..)) = parts.first() else {
        return;
    };
    let (k, dtype) = (first.k, first.dtype);
    for (w, bias, out) in &parts {
        assert!(
            w.k == k && w.dtype == dtype,
            "fused matrices must share k and dtype"
        );
        if !check_matmul([w.k, w.n], x, m, *bias, out) {
            return;
        }
    }
    if dtype == Dtype::W8a8 {
        return matmul_w8a8(path, x, m, k, parts);
    }
    let simd = path != KernelPath::Portable && detected() == Simd::Avx2;
    let wide = simd && path == KernelPath::Auto && wide_kernels();
    let block_rows = m.min(if wide { WIDE_BLOCK_ROWS } else { BLOCK_ROWS });
    // The SIMD kernels read each row block of x interleaved as [kk][mr] (one pointer,
    // constant offsets). The buffer is kept per thread; a nested call simply gets a fresh one.
    let mut xt = Vec::new();
    if simd && m > 1 {
        xt = XT.with(Cell::take);
        xt.clear();
        xt.resize(m * k, 0.0);
        // Row by row, reading contiguously (a strided `step_by` over x was 2–4 % of a BERT
        // forward).
        for (block, dst) in x.chunks(block_rows * k).zip(xt.chunks_mut(block_rows * k)) {
            let mr = block.len() / k;
            for (r, row) in block.chunks_exact(k).enumerate() {
                for (kk, &v) in row.iter().enumerate() {
                    dst[kk * mr + r] = v;
                }
            }
        }
    }
    let x_read = if xt.is_empty() {
        x.as_ptr()
    } else {
        xt.as_ptr()
    };
    // The AVX-512 kernels take 6 tiles a call, the others 4 (1-2 rows) or 2.
    let step = if wide { 6 } else { 4 };
    let calls = parts.map(|(w, bias, out)| {
        let job = Job {
            x: x_read,
            ..w.job(bias, out)
        };
        (w, job, w.split(m, block_rows, step))
    });
    run_chunks(calls.each_ref().map(|(.., split)| split.chunks), |i, ci| {
        let (w, job, split) = &calls[i];
        split.run(ci, |mr, tiles, row0| {
            let (ta, tb) = (tiles.start, tiles.end);
            if simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: avx2, fma and f16c (and for `wide`, avx512f) were detected; `job`
                // describes valid buffers of the sizes asserted above, with `x` interleaved per
                // block of `block_rows`, and blocks write disjoint columns.
                unsafe {
                    if wide && mr >= 3 {
                        avx512::block(job, dtype, mr, ta, tb, row0)
                    } else {
                        avx2::block(job, dtype, mr, ta, tb, row0)
                    }
                }
            } else {
                w.portable_block(job, x, mr, ta, tb, row0);
            }
        });
    });
    if xt.capacity() > 0 {
        XT.with(|c| c.set(xt));
    }
}

/// `W8a8`'s part of [`matmul_many_with`], shapes checked: each row of `x` quantized to int8
/// with a scale of its own (once for every matrix), then integer dot products, exact in i32,
/// scaled once per output.
fn matmul_w8a8<const N: usize>(
    path: KernelPath,
    x: &[f32],
    m: usize,
    k: usize,
    parts: [Product<'_>; N],
) {
    let depth = TileLayout::of(Dtype::W8a8, k).depth;
    let tiles = path == KernelPath::Auto && m >= TILE_ROWS_FROM && tile_dot_products();
    // AMX reads activations in whole tiles of rows: the rows past `m` hold whatever an
    // earlier call left, and their sums are dropped.
    let padded_rows = if tiles {
        m.next_multiple_of(AMX_TILE_ROWS)
    } else {
        m
    };
    let (mut xq_buffer, mut scales_buffer, mut zeros_buffer) = XQ.with(Cell::take);
    // Every row's codes, scale and zero are written below; the padding's bytes meet zero
    // weights, so whatever an earlier call left there adds nothing.
    let xq = reused(&mut xq_buffer, padded_rows * depth);
    let row_scales = reused(&mut scales_buffer, m);
    let row_zeros = reused(&mut zeros_buffer, m);
    if x.len() < PARALLEL_ELEMENTS {
        let rows = x.chunks_exact(k).zip(xq.chunks_exact_mut(depth));
        let scales = row_scales.iter_mut().zip(row_zeros.iter_mut());
        rows.zip(scales)
            .for_each(|((row, dst), (scale, zero))| (*scale, *zero) = quantize_row(row, dst));
    } else {
        let rows = x.par_chunks_exact(k).zip(xq.par_chunks_exact_mut(depth));
        let scales = row_scales.par_iter_mut().zip(row_zeros.par_iter_mut());
        rows.zip(scales)
            .for_each(|((row, dst), (scale, zero))| (*scale, *zero) = quantize_row(row, dst));
    }
    let calls = parts.map(|(w, bias, out)| {
        let job = Job {
            xq: xq.as_ptr(),
            row_scales: row_scales.as_ptr(),
            row_zeros: row_zeros.as_ptr(),
            col_sums: w.col_sums.as_ptr(),
            depth,
            ..w.job(bias, out)
        };
        // AMX's products outrun the caches' reads of their operands: each row block's
        // activations (32 rows) stay in L1/L2 while it runs over the chunk's whole stretch of
        // weights, rather than every row of `x` streaming past each group of a few tiles.
        #[cfg(target_arch = "x86_64")]
        if tiles {
            let tile_count = w.n.div_ceil(8);
            let split = Split::new(tile_count, m, amx::BLOCK_ROWS, amx::STEP, tile_count);
            return (w, job, split);
        }
        (w, job, w.split(m, m.min(BLOCK_ROWS), 4))
    });
    let vnni = path == KernelPath::Auto && integer_dot_products();
    run_chunks(calls.each_ref().map(|(.., split)| split.chunks), |i, ci| {
        let (w, job, split) = &calls[i];
        split.run(ci, |mr, tile_range, row0| {
            #[cfg(target_arch = "x86_64")]
            if tiles {
                // SAFETY: AMX (with the VNNI kernels' features) was detected and permitted;
                // the activations hold whole tiles of rows; blocks write disjoint columns.
                unsafe { amx::block(job, mr, tile_range, row0) };
                return;
            }
            #[cfg(target_arch = "x86_64")]
            if vnni {
                // SAFETY: avx512f, avx512vl and avx512vnni were detected; `job` describes
                // valid buffers, and blocks write disjoint columns.
                unsafe { vnni::block(job, mr, tile_range.start, tile_range.end, row0) };
                return;
            }
            portable_w8a8(job, w.elems_ref(), mr, tile_range, row0);
        });
    });
    XQ.with(|c| c.set((xq_buffer, scales_buffer, zeros_buffer)));
}

/// How one product's output tiles split into parallel chunks (about 4 per thread of rayon's
/// current pool) and its rows into blocks, for `PackedLinear`'s kernels and `q4`'s.
struct Split {
    /// Output tiles of the product: the last chunk stops here.
    tiles: usize,
    /// Tiles per chunk.
    chunk: usize,
    /// How many chunks the tiles make: what a parallel pass iterates over.
    chunks: usize,
    /// Tiles every row block runs over before the next group: the whole chunk when one block
    /// holds all rows.
    group: usize,
    /// Rows of the product, run in blocks of `block_rows` (the last one shorter).
    m: usize,
    block_rows: usize,
}

impl Split {
    /// `tiles` split for `m` rows in blocks of up to `block_rows`, chunks rounded up to whole
    /// `step`s, and `group` tiles a group when there are several row blocks.
    fn new(tiles: usize, m: usize, block_rows: usize, step: usize, group: usize) -> Self {
        let block_rows = m.min(block_rows);
        let threads = rayon::current_num_threads();
        let chunk = if threads <= 1 {
            tiles
        } else {
            tiles.div_ceil(4 * threads).next_multiple_of(step)
        };
        Split {
            tiles,
            chunk,
            chunks: tiles.div_ceil(chunk),
            group: if block_rows == m { chunk } else { group },
            m,
            block_rows,
        }
    }

    /// Calls `block(mr, tiles, row0)` for every row block and group of tiles of chunk `ci`.
    fn run(&self, ci: usize, block: impl Fn(usize, std::ops::Range<usize>, usize)) {
        let (t0, t1) = (ci * self.chunk, ((ci + 1) * self.chunk).min(self.tiles));
        for g in (t0..t1).step_by(self.group) {
            let ge = (g + self.group).min(t1);
            for r in (0..self.m).step_by(self.block_rows) {
                block((self.m - r).min(self.block_rows), g..ge, r);
            }
        }
    }
}

/// Runs `chunk(i, ci)` for every chunk `ci < counts[i]` of every product `i`, numbered one
/// after another, in one parallel pass over the current pool (inline when there is one).
fn run_chunks<const N: usize>(counts: [usize; N], chunk: impl Fn(usize, usize) + Sync) {
    let one = |mut ci: usize| {
        for (i, &count) in counts.iter().enumerate() {
            if ci < count {
                return chunk(i, ci);
            }
            ci -= count;
        }
    };
    match counts.iter().sum() {
        1 => one(0),
        total => (0..total).into_par_iter().for_each(one),
    }
}

/// Panics unless `x` is `[m, k]`, `out` `[m, n]` and `bias` (if any) `[n]`; whether there is
/// anything to compute (`m > 0`). Both kernels' calls start here.
fn check_matmul(
    [k, n]: [usize; 2],
    x: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    out: &[f32],
) -> bool {
    assert_eq!(x.len(), m * k, "x must be [m, k]");
    assert_eq!(out.len(), m * n, "out must be [m, n]");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "bias must have length n");
    }
    m > 0
}

thread_local! {
    /// Reusable buffer for the interleaved activations of the SIMD path.
    static XT: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Reusable buffers for `W8a8`'s quantized activations and their row scales.
    static XQ: Cell<(Vec<u8>, Vec<f32>, Vec<i32>)> =
        const { Cell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Quantizes `row` into `dst` as `u = round(x / s) + z` in `[0, 255]`, over the row's own range
/// widened to hold 0: `s = (max(hi, 0) − min(lo, 0)) / 255` and the zero point
/// `z = round(−min(lo, 0) / s)`, so that 0 is exact and `x ≈ s·(u − z)`. Returns `(s, z)`
/// (`(0, 0)` for an all-zero row). Asymmetric, as ONNX Runtime's dynamic quantization is: a
/// row whose values lean to one side (SwiGLU's, a norm's with a large gain) gets up to twice
/// the resolution of a symmetric `max |x| / 127`. Unsigned, because the dot-product
/// instructions take one operand unsigned; the weights' column sums take `z` back out.
fn quantize_row(row: &[f32], dst: &mut [u8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if detected() == Simd::Avx2 {
        // SAFETY: avx2 was detected.
        return unsafe { quantize_row_avx2(row, dst) };
    }
    quantize_row_each(row, dst, extremes)
}

/// The same loop compiled for AVX2 (it was 6 % of a w8a8 graph's profile in SSE2); the same
/// IEEE operations, so the same bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2(row: &[f32], dst: &mut [u8]) -> (f32, i32) {
    // SAFETY: avx2 is enabled here.
    quantize_row_each(row, dst, |row| unsafe { extremes_avx2(row) })
}

/// A finite row's smallest and largest values, widened to hold 0: each only moves to a value
/// strictly beyond it, so no −0 enters.
fn extremes(row: &[f32]) -> (f32, f32) {
    row.iter().fold((0.0f32, 0.0f32), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}

/// [`extremes`] eight lanes at a time (one scalar chain was ~60 % of a BERT forward's
/// quantizing): `vminps(v, lo)` is `v < lo ? v : lo`, the fold's own step, and every lane
/// starts at 0, so the result is the fold's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn extremes_avx2(row: &[f32]) -> (f32, f32) {
    use std::arch::x86_64::*;
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let lanes = row.chunks_exact(8);
    let tail = lanes.remainder();
    for lane in lanes {
        // SAFETY: a lane is 8 values.
        let v = unsafe { _mm256_loadu_ps(lane.as_ptr()) };
        lo = _mm256_min_ps(v, lo);
        hi = _mm256_max_ps(v, hi);
    }
    let mut both = [0.0f32; 16];
    // SAFETY: `both` holds 16 values.
    unsafe {
        _mm256_storeu_ps(both.as_mut_ptr(), lo);
        _mm256_storeu_ps(both.as_mut_ptr().add(8), hi);
    }
    // The lanes' lows are ≤ 0 and their highs ≥ 0: one fold over all of them and the tail.
    let (lanes_lo, lanes_hi) = extremes(&both);
    let (tail_lo, tail_hi) = extremes(tail);
    (lanes_lo.min(tail_lo), lanes_hi.max(tail_hi))
}

#[inline(always)]
fn quantize_row_each(
    row: &[f32],
    dst: &mut [u8],
    extremes: impl Fn(&[f32]) -> (f32, f32),
) -> (f32, i32) {
    // Adding and subtracting 1.5·2²³ rounds to nearest (even) without a libm call.
    const ROUND: f32 = 12_582_912.0;
    // The largest |x| by its bits: for |x| they order as the values do, infinities and NaNs
    // above every finite value, and an integer max vectorises where a float fold would not.
    let max_bits = row
        .iter()
        .fold(0u32, |m, &v| m.max(v.to_bits() & 0x7fff_ffff));
    if max_bits >= f32::INFINITY.to_bits() {
        // A non-finite row has no scale: NaN makes its outputs NaN, as f32 products would.
        dst.fill(0);
        return (f32::NAN, 0);
    }
    // Finite from here, so plain comparisons order every value.
    let (lo, hi) = extremes(row);
    if hi == lo {
        dst.fill(0);
        return (0.0, 0);
    }
    let scale = (hi - lo) / 255.0;
    let inverse = 255.0 / (hi - lo);
    let zero = ((-lo * inverse + ROUND) - ROUND).clamp(0.0, 255.0);
    for (d, &v) in dst.iter_mut().zip(row) {
        let u = ((v * inverse + ROUND) - ROUND + zero).clamp(0.0, 255.0);
        // SAFETY: u is finite (the row is) and within i32 after the clamp. A plain `as` would
        // add a per-element NaN/saturation check that keeps the loop from vectorising.
        *d = unsafe { u.to_int_unchecked::<i32>() } as u8;
    }
    // SAFETY: as above.
    (scale, unsafe { zero.to_int_unchecked::<i32>() })
}

/// `W8a8`'s output `(row r, column j)` from its exact integer sum: `(Σ u·q − z·Σ q)` is
/// `Σ (u − z)·q`, scaled by the row's and the column's scales, plus the bias. The SIMD kernel
/// does the same operations in the same order, so both agree bit for bit.
#[inline(always)]
fn w8a8_output(job: &Job, r: usize, j: usize, sum: i32) -> f32 {
    // SAFETY: r < m and j < n (callers), inside the buffers `job` describes.
    unsafe {
        let exact = sum - *job.row_zeros.add(r) * *job.col_sums.add(j);
        let v = exact as f32 * (*job.row_scales.add(r) * *job.scales.add(j));
        if job.bias.is_null() {
            v
        } else {
            v + *job.bias.add(j)
        }
    }
}

/// The portable `W8a8` kernel for rows `row0..row0+mr` (at most 8) and tiles `tiles`,
/// compiled for AVX2 where detected (integer sums: both copies agree exactly).
fn portable_w8a8(job: &Job, w: &[i8], mr: usize, tiles: std::ops::Range<usize>, row0: usize) {
    #[cfg(target_arch = "x86_64")]
    if detected() == Simd::Avx2 {
        // SAFETY: avx2 was detected.
        unsafe { portable_w8a8_avx2(job, w, mr, tiles, row0) };
        return;
    }
    portable_w8a8_each(job, w, mr, tiles, row0);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn portable_w8a8_avx2(
    job: &Job,
    w: &[i8],
    mr: usize,
    tiles: std::ops::Range<usize>,
    row0: usize,
) {
    portable_w8a8_each(job, w, mr, tiles, row0);
}

#[inline(always)]
fn portable_w8a8_each(job: &Job, w: &[i8], mr: usize, tiles: std::ops::Range<usize>, row0: usize) {
    let (depth, n) = (job.depth, job.n);
    // SAFETY: `xq` holds `m * depth` bytes and rows row0..row0+mr < m.
    let xq = unsafe { std::slice::from_raw_parts(job.xq.add(row0 * depth), mr * depth) };
    for t in tiles {
        let mut acc = [[0i32; 8]; 8];
        let tile = &w[t * 8 * depth..(t + 1) * 8 * depth];
        for (g, quads) in tile.chunks_exact(32).enumerate() {
            for (a, x) in acc[..mr].iter_mut().zip(xq.chunks_exact(depth)) {
                let x = &x[4 * g..4 * g + 4];
                for (sum, q) in a.iter_mut().zip(quads.chunks_exact(4)) {
                    for (&u, &q) in x.iter().zip(q) {
                        *sum += i32::from(u) * i32::from(q);
                    }
                }
            }
        }
        let c0 = 8 * t;
        for (r, a) in acc[..mr].iter().enumerate() {
            for (c, &sum) in a.iter().enumerate().take(n.saturating_sub(c0).min(8)) {
                let j = c0 + c;
                let v = w8a8_output(job, row0 + r, j, sum);
                // SAFETY: row0 + r < m and j < n; this tile's columns belong to this block.
                unsafe { *job.out.add((row0 + r) * n + j) = v };
            }
        }
    }
}

/// Raw description of one matmul call shared by all chunks.
struct Job {
    w: *const u8,
    /// Activations. For the SIMD path the row block starting at row `r0` is stored at
    /// `x[r0 * k..]` interleaved as `[kk][mr]` (for `m == 1` that is `x` itself).
    x: *const f32,
    out: *mut f32,
    /// Int8 scales (padded to a multiple of 8), dangling/empty for other dtypes.
    scales: *const f32,
    /// Null when there is no bias.
    bias: *const f32,
    k: usize,
    n: usize,
    /// Prefetch distance in bytes for row blocks of 1–2 and of 3–6 rows (0 = off).
    pf: [usize; 2],
    /// `W8a8` only (null otherwise): the quantized activations `[m, depth]` (`u`), their
    /// per-row scales and zero points, and the weights' column sums.
    xq: *const u8,
    row_scales: *const f32,
    row_zeros: *const i32,
    col_sums: *const i32,
    /// `W8a8`: k rounded up to 4, the length of a quantized row and a tile's depth.
    depth: usize,
}

// SAFETY: the pointers are only read, except `out`, to which every chunk writes a disjoint set of
// columns; the referenced buffers outlive the parallel section.
unsafe impl Sync for Job {}

/// Portable scalar kernel for rows `row0..row0+mr` and tiles `tiles`.
fn portable<T: Copy>(
    job: &Job,
    x: &[f32],
    w: &[T],
    conv: impl Fn(T) -> f32,
    mr: usize,
    tiles: std::ops::Range<usize>,
    row0: usize,
) {
    let (k, n) = (job.k, job.n);
    for t in tiles {
        let mut acc = [[0f32; 8]; 8];
        for (kk, wk) in w[t * 8 * k..(t + 1) * 8 * k].chunks_exact(8).enumerate() {
            let wf: [f32; 8] = std::array::from_fn(|c| conv(wk[c]));
            for (r, a) in acc[..mr].iter_mut().enumerate() {
                let xv = x[(row0 + r) * k + kk];
                for (ac, wc) in a.iter_mut().zip(wf) {
                    *ac += xv * wc;
                }
            }
        }
        let c0 = 8 * t;
        for (r, a) in acc[..mr].iter().enumerate() {
            for (c, &v) in a.iter().enumerate().take(n.saturating_sub(c0).min(8)) {
                let j = c0 + c;
                // SAFETY: j < n (scales has n padded entries when non-empty; bias has n entries),
                // row0 + r < m, so the index is inside `out`; columns of this tile belong to
                // this chunk only.
                unsafe {
                    let mut v = v;
                    if !job.scales.is_null() && std::mem::size_of::<T>() == 1 {
                        v *= *job.scales.add(j);
                    }
                    if !job.bias.is_null() {
                        v += *job.bias.add(j);
                    }
                    *job.out.add((row0 + r) * n + j) = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 extremes are the scalar fold's, bit for bit: lengths around the 8 lanes, rows
    /// on one side of 0 or both, with −0 and ties.
    #[test]
    fn vector_extremes_are_the_folds() {
        #[cfg(target_arch = "x86_64")]
        if detected() == Simd::Avx2 {
            let mut state = 7u64;
            let mut next = || {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
            };
            for len in [1, 7, 8, 9, 15, 16, 17, 33, 768] {
                let mixed: Vec<f32> = (0..len).map(|_| next()).collect();
                let negative: Vec<f32> = mixed.iter().map(|v| -v.abs()).collect();
                let positive: Vec<f32> = mixed.iter().map(|v| v.abs()).collect();
                let signed_zeros: Vec<f32> = (0..len).map(|i| [0.0, -0.0, 3.0][i % 3]).collect();
                for row in [mixed, negative, positive, signed_zeros] {
                    // SAFETY: avx2 was detected.
                    let vector = unsafe { extremes_avx2(&row) };
                    let (lo, hi) = extremes(&row);
                    assert_eq!(
                        (vector.0.to_bits(), vector.1.to_bits()),
                        (lo.to_bits(), hi.to_bits()),
                        "{row:?}"
                    );
                }
            }
        }
    }
}
