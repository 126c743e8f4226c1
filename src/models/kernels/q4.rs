//! 4-bit weights (GGUF Q4_0 / Q4_1, or quantized at load) and their matmul kernels.
//!
//! [`Q4Linear`] holds a weight matrix `W` (`k` inputs × `n` outputs) as blocks of 32 consecutive
//! inputs of one output column: 32 codes `q ∈ 0..=15` and an f16 scale `d`, with either an f16
//! offset `m` stored beside it (GGUF's Q4_1 and K-quant blocks, [`Scales::Offset`], `w = d·q +
//! m`: 5 bits a weight) or none (GGUF's Q4_0 and blocks quantized at load,
//! [`Scales::Symmetric`], `w = d·(q − 8)`: 4.5 bits a weight; the `F32` kernels run it as
//! `m = −8·d`, exact in f32, the `Int8` ones fold the `−8` into their integer sums). It
//! computes `out[m, n] = x[m, k] · W (+ bias)` with f32 activations ([`Activations::F32`], the
//! correctness path) or activations quantized to int8 per block of 32 ([`Activations::Int8`],
//! the speed path).
//!
//! # Invariants
//!
//! * **Layout.** Output columns are grouped in tiles of 16 (`TILE`); `n` is padded up with
//!   zero columns (`d = m = 0`, codes 0) and `k` up to a multiple of 32 (padding codes 0; the
//!   activations are zero-padded, so a padded input contributes exactly 0 whatever its weight).
//!   Tile `t`'s `kb = ⌈k/32⌉` blocks lie in one stretch of whole cache lines of a 64-byte-aligned
//!   buffer ([`Geometry`]). A block's codes are four lines, in which byte `64·L + 4·c + i`
//!   (column `16t + c`, `L < 4`, `i < 4`) holds input `32b + 4L + i` in its low nibble and input
//!   `32b + 16 + 4L + i` in its high nibble: one 64-byte load gives, after a mask and a shift,
//!   two registers of `[column][4 consecutive inputs]` bytes, the unsigned operand of
//!   `vpdpbusd`. Its scales are the 16 columns' `d` (f16, 32 bytes), then with `Offset` their `m`
//!   (32 bytes more).
//!   - `Offset`: block `b` is a cell of five lines at `320·b` in the tile, its scales line last.
//!   - `Symmetric`: blocks `2g` and `2g + 1` are a group of nine lines at `576·g`: their codes,
//!     then one line of both blocks' `d` (an odd `kb` leaves the last group half empty).
//! * **Results.** [`Q4Linear::weight`] is exactly `f32(d)·q + f32(m)` (`d·q` is exact in f32).
//!   `F32` sums `x·w` in f32 with these weights; the SIMD and portable kernels differ only by
//!   rounding (summing order, FMA). `Int8` quantizes each row of `x` per block of 32 inputs to
//!   `q_x = round(x / d_x)` with `d_x = max |x| / 127` (round half to even), keeps `Σq_x` and
//!   `s_x = d_x·Σq_x`, and sums each block exactly in i32: `Σ q·q_x` with `Offset` blocks,
//!   `Σ (q − 8)·q_x = Σ q·q_x − 8·Σq_x` with `Symmetric` ones (|sum| < 2¹⁶, exact as an f32).
//!   It accumulates, block by block, `acc = fma(d, f32(sum)·d_x, acc)`, with `Offset` blocks
//!   then `acc = fma(m, s_x, acc)`, then adds the bias. The VNNI and portable kernels perform
//!   exactly these operations in this order: same bits.
//! * **Threads.** The output tiles are split into about 4 contiguous chunks per thread of
//!   rayon's *current* pool (so the caller's `ThreadPool::install` decides); every output is
//!   computed by the same operations whatever the chunking, so results do not depend on the
//!   number of threads. [`matmul_many`] numbers the chunks of several matrices one after
//!   another and runs them in one parallel pass, with the same per-output operations. Nothing
//!   is allocated per call apart from rayon's job bookkeeping and, the first time on a thread,
//!   its reusable activation buffers.
//! * **Weight traffic.** One block of up to 8 (`Int8`), 4 (`F32`; 3 on AVX2) rows reads the
//!   weights once; more rows run block after block inside groups of tiles of about 256 KiB, so
//!   that the re-reads hit L2. From [`BAND_ROWS`] rows (a prompt), the SIMD `F32` paths
//!   instead dequantize each band of about 256 KiB of f32 weights once and run every row over
//!   it with an f32 kernel (a call covers 8 rows × 48 columns on AVX-512, 6 rows × 16 on
//!   AVX2; each column summed over k in order, so the two give the same bits): the block
//!   kernels would dequantize each weight again for every 3 or 4 rows, and spend two loads an
//!   FMA on doing so. A block kernel call covers one tile (16 columns; four at one
//!   or two rows on VNNI, so that four streams of weights are in flight) and a row block, the
//!   whole depth, with software prefetches per cache line of its stream, `PREFETCH` bytes
//!   ahead into L2 and `PREFETCH_L1` into L1: near a tile's end, into the start of the tile
//!   that stream reads next.
//! * **SIMD paths**, detected at run time (checked once, cached, see [`simd_path`]): `F32` on
//!   AVX-512 F where present, else on AVX2 + FMA + F16C (the two give the same bits); `Int8` on
//!   AVX-512 F + VL + VNNI (512-bit `vpdpbusd`: twice the multiply-adds per cycle of the 256-bit
//!   form here). Otherwise, or with [`KernelPath::Portable`], scalar kernels over the same
//!   cells; the portable `Int8` kernel is compiled for AVX2 + FMA where those are detected (an
//!   `f32::mul_add` is then one instruction, else a correctly rounded libm call: same bits
//!   either way). The SIMD `F32` kernels read `x` from a per-thread copy padded to whole blocks
//!   with each group of 4 inputs repeated 2 (AVX2) or 4 (AVX-512) times.

use super::storage::WeightBuffer;
use super::{run_chunks, KernelPath, SourceLayout, Split};
use half::f16;
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
#[path = "q4_avx2.rs"]
mod avx2;
#[cfg(target_arch = "x86_64")]
#[path = "q4_avx512.rs"]
mod avx512;
#[cfg(target_arch = "x86_64")]
#[path = "q4_vnni.rs"]
mod vnni;

/// Output columns per tile.
const TILE: usize = 16;
/// Inputs per quantization block.
const QK: usize = 32;
/// Bytes of one block's codes (four lines).
const CODES: usize = 256;
/// Bytes of a block's 16 `d` values (the `m` values, where stored, follow).
const SCALES: usize = 32;
/// Rows per block: `Int8` (8 rows × 16 columns of i32 and f32 sums plus the 8 code registers
/// fit AVX-512's 32 registers), `F32` on AVX-512 or portable (4 rows × 16 columns of 4 partial
/// sums) and on AVX2 (3 rows × 8 columns of 4 partial sums, in 16 registers).
const BLOCK_ROWS_INT8: usize = 8;
const BLOCK_ROWS_F32: usize = 4;
const BLOCK_ROWS_F32_AVX2: usize = 3;
/// Rows from which a SIMD `F32` product runs in dequantized bands (module docs): more than a
/// batched decode step's 8, so that decode steps keep the block kernels.
const BAND_ROWS: usize = 9;
/// Bytes of f32 weights a band holds at most: it stays in L2 while every row runs over it.
const BAND_BYTES: usize = 262_144;
/// Software prefetch distance ahead of each tile's stream, in bytes (0 = off): the far
/// prefetches fill L2 (`T1`), and a near one, `PREFETCH_L1` ahead, moves the codes on into L1.
/// With one far prefetch into L1 instead, one thread read ~11–14 GB/s (AMD Zen 4), where
/// w8a8's kernel reads ~19; with both it reads ~22–25.
const PREFETCH: usize = 2560;
const PREFETCH_L1: usize = 576;

/// Floats one tile of a band takes: `[kk][16 columns]` for every input of its blocks.
#[cfg(target_arch = "x86_64")]
fn band_tile_floats(job: &Job) -> usize {
    job.kb * QK * TILE
}

/// How the activations enter the matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activations {
    /// f32 activations: the result is the f32 dot product of `x` with the dequantized weights,
    /// summed in an order that differs from a naive loop only by rounding.
    F32,
    /// Activations quantized to int8 per row and block of 32 inputs (as llama.cpp's Q8_1),
    /// exact integer dot products per block, an f32 epilogue per block (see the module docs).
    /// The same bits on every path.
    Int8,
}

/// How a matrix stores its blocks' scales (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scales {
    /// `d` and an offset `m` per block: GGUF's Q4_1, and the K-quants' blocks.
    Offset,
    /// `d` alone, `w = d·(q − 8)`: GGUF's Q4_0, and what [`Q4Linear::quantize`] makes.
    Symmetric,
}

/// Where a tile's blocks lie (module docs): every kernel addresses the buffer through this,
/// so both [`Scales`] run on the same kernels. Blocks come in groups, each group's codes then
/// its scales, so that a tile is one stream of cache lines.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    /// log2 of the blocks in a group: 0 (`Offset`: codes and `d`, `m` fill five lines) or 1
    /// (`Symmetric`: two blocks' codes and their `d` fill nine lines).
    group_shift: u32,
    /// Bytes of a group.
    group_bytes: usize,
    /// Bytes of a tile, whole groups.
    tile_bytes: usize,
    /// Whether `m` is stored (after `d`); otherwise it is `−8·d`.
    offsets: bool,
}

impl Geometry {
    fn of(scales: Scales, kb: usize) -> Self {
        let (group_shift, offsets) = match scales {
            Scales::Offset => (0, true),
            Scales::Symmetric => (1, false),
        };
        let group = 1 << group_shift;
        let group_bytes = group * CODES + if offsets { 2 * SCALES } else { group * SCALES };
        Geometry {
            group_shift,
            group_bytes,
            tile_bytes: kb.div_ceil(group) * group_bytes,
            offsets,
        }
    }

    /// Offset of block `b`'s group in its tile, and `b`'s place in the group.
    fn group(&self, b: usize) -> (usize, usize) {
        let place = b & ((1 << self.group_shift) - 1);
        ((b >> self.group_shift) * self.group_bytes, place)
    }

    /// Offset of block `b`'s codes in its tile.
    fn codes(&self, b: usize) -> usize {
        let (group, place) = self.group(b);
        group + place * CODES
    }

    /// Offset of block `b`'s `d` values in its tile: after all the group's codes.
    fn scales(&self, b: usize) -> usize {
        let (group, place) = self.group(b);
        group + (CODES << self.group_shift) + place * SCALES
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Simd {
    /// AVX2 + FMA + F16C: the `F32` kernel.
    avx2: bool,
    /// AVX-512 F on top: the wider `F32` kernel.
    avx512: bool,
    /// AVX-512 F + VL + VNNI on top: the `Int8` kernel.
    vnni: bool,
}

fn detected() -> Simd {
    static SIMD: OnceLock<Simd> = OnceLock::new();
    *SIMD.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            let avx512 = avx2 && is_x86_feature_detected!("avx512f");
            let vnni = avx512
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni");
            Simd { avx2, avx512, vnni }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Simd {
            avx2: false,
            avx512: false,
            vnni: false,
        }
    })
}

/// Name of the kernels run-time detection picked: `"avx512f+avx512vnni"` (`F32` on AVX-512,
/// `Int8` on VNNI), `"avx512f"` or `"avx2+fma+f16c"` (`Int8` portable), or `"portable"`.
pub fn simd_path() -> &'static str {
    match detected() {
        Simd { vnni: true, .. } => "avx512f+avx512vnni",
        Simd { avx512: true, .. } => "avx512f",
        Simd { avx2: true, .. } => "avx2+fma+f16c",
        _ => "portable",
    }
}

/// The kernel an `F32` call runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum F32Kernel {
    Portable,
    Avx2,
    Avx512,
}

impl F32Kernel {
    fn of(path: KernelPath) -> Self {
        match (path, detected()) {
            (KernelPath::Auto, Simd { avx512: true, .. }) => F32Kernel::Avx512,
            (KernelPath::Auto | KernelPath::Avx2, Simd { avx2: true, .. }) => F32Kernel::Avx2,
            _ => F32Kernel::Portable,
        }
    }
}

/// A 4-bit weight matrix (layout in the module docs).
#[derive(Clone, PartialEq)]
pub struct Q4Linear {
    data: WeightBuffer,
    k: usize,
    n: usize,
    /// Whether the blocks store an offset; decides the layout ([`Geometry`]).
    scales: Scales,
}

impl std::fmt::Debug for Q4Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Q4Linear")
            .field("k", &self.k)
            .field("n", &self.n)
            .field("scales", &self.scales)
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// One tile's block before it is written into the buffer: codes per column, `d` and `m` as f16
/// bits (with `Symmetric` scales `m` is `−8·d` and not stored).
struct Block {
    q: [[u8; QK]; TILE],
    d: [u16; TILE],
    m: [u16; TILE],
}

impl Block {
    const ZERO: Block = Block {
        q: [[0; QK]; TILE],
        d: [0; TILE],
        m: [0; TILE],
    };

    /// Writes block `b` into `tile`.
    fn write(&self, tile: &mut [u8], geometry: &Geometry, b: usize) {
        let (codes, scales) = (geometry.codes(b), geometry.scales(b));
        for c in 0..TILE {
            for kin in 0..QK / 2 {
                let byte = codes + 64 * (kin / 4) + 4 * c + kin % 4;
                tile[byte] = self.q[c][kin] | (self.q[c][kin + QK / 2] << 4);
            }
            tile[scales + 2 * c..][..2].copy_from_slice(&self.d[c].to_le_bytes());
            if geometry.offsets {
                tile[scales + SCALES + 2 * c..][..2].copy_from_slice(&self.m[c].to_le_bytes());
            }
        }
    }
}

/// Code of input `kin` (< 32) of column `c` in a block's `codes`.
fn code(codes: &[u8], kin: usize, c: usize) -> u8 {
    let byte = codes[64 * ((kin % 16) / 4) + 4 * c + kin % 4];
    if kin < 16 {
        byte & 15
    } else {
        byte >> 4
    }
}

/// All of a block's `codes` as `[column][input]`.
fn unpack(codes: &[u8]) -> [[u8; QK]; TILE] {
    let mut q = [[0; QK]; TILE];
    for (l, line) in codes[..CODES].chunks_exact(64).enumerate() {
        for (q, quad) in q.iter_mut().zip(line.chunks_exact(4)) {
            for (i, &byte) in quad.iter().enumerate() {
                q[4 * l + i] = byte & 15;
                q[16 + 4 * l + i] = byte >> 4;
            }
        }
    }
    q
}

/// `d` and `m` of column `c` of block `b` in `tile`, as f32.
fn scale_offset(tile: &[u8], geometry: &Geometry, b: usize, c: usize) -> (f32, f32) {
    let h = |at: usize| f16::from_bits(u16::from_le_bytes([tile[at], tile[at + 1]])).to_f32();
    let at = geometry.scales(b) + 2 * c;
    let d = h(at);
    (
        d,
        if geometry.offsets {
            h(at + SCALES)
        } else {
            -8.0 * d
        },
    )
}

/// Quantizes up to 32 values Q4_0-style into `(codes, d bits)`, `w ≈ d·(q − 8)`.
///
/// It starts as llama.cpp's `quantize_row_q4_0_ref`: the value of largest magnitude, `v_max`,
/// takes level −8, `d = v_max / −8` (rounded to f16 *before* the codes are chosen), so every
/// value is within `|d|/2` of a level or, on the far side, at most `|d|` past the last one.
/// Then `d` is refitted to those codes by least squares and the codes chosen again, up to
/// [`REFITS`] times, each fit kept only while it lowers the block's squared error (measured
/// with the f16 scale stored): the largest value is usually a lone one, and spending the 16
/// levels on the bulk of the block instead cuts its RMS error.
fn quantize_block(vals: &[f32]) -> ([u8; QK], u16) {
    // The first value of the largest magnitude (its sign decides `d`'s), found without a
    // chain of dependent selects.
    let magnitude = vals.iter().fold(0f32, |m, &v| m.max(v.abs()));
    let largest = vals
        .iter()
        .copied()
        .find(|v| magnitude > 0.0 && v.abs() == magnitude)
        .unwrap_or(0.0);
    let mut best = Fit::of(vals, f16::from_f32(largest / -8.0));
    for _ in 0..REFITS {
        let Some(d) = least_squares(vals, &best.q) else {
            break;
        };
        let refit = Fit::of(vals, f16::from_f32(d));
        if refit.error >= best.error {
            break;
        }
        best = refit;
    }
    (best.q, best.d.to_bits())
}

/// Independent partial sums in a block's loops (one 256-bit register of f32).
const LANES: usize = 8;

/// Least-squares refits of a block's `d` to its codes ([`quantize_block`]): on random
/// Gaussian blocks two take the RMS error 3 % under the start's.
const REFITS: usize = 2;

/// One choice of a block's `d`, its codes and their squared error.
struct Fit {
    q: [u8; QK],
    d: f16,
    error: f32,
}

impl Fit {
    /// The nearest codes to `vals` for the f16 scale `d` (all 8, the level 0, when `d` is 0).
    fn of(vals: &[f32], d: f16) -> Self {
        // Adding and subtracting 1.5·2²³ rounds to nearest without `f32::round`'s libm call:
        // with it, three fits a block took loading gpt2-medium in 4 bits from 3.2 s to 8.4 s.
        const ROUND: f32 = 12_582_912.0;
        let df = d.to_f32();
        let inverse = if df != 0.0 { 1.0 / df } else { 0.0 };
        let mut q = [0u8; QK];
        // Squared errors summed in LANES independent sums, so that the loop vectorises.
        let mut errors = [0f32; LANES];
        for (qs, vs) in q.chunks_mut(LANES).zip(vals.chunks(LANES)) {
            for ((q, &v), error) in qs.iter_mut().zip(vs).zip(&mut errors) {
                // `max` and `min` return the number when the other side is NaN (`clamp` would
                // keep the NaN): `code` is an integer in 0..=15 whatever `v` is.
                #[allow(clippy::manual_clamp)]
                let code = ((v * inverse + ROUND) - ROUND + 8.0).max(0.0).min(15.0);
                // SAFETY: see above; a plain `as` adds a saturation check that keeps the loop
                // scalar.
                *q = unsafe { code.to_int_unchecked::<u8>() };
                let e = df * (code - 8.0) - v;
                *error += e * e;
            }
        }
        Self {
            q,
            d,
            error: errors.iter().sum(),
        }
    }
}

/// The `d` minimising `Σ (d·(q − 8) − v)²` over the block's codes, or `None` when the codes are
/// all 8 or the fit is not a finite scale whose `−8·d` stays in f16 range.
fn least_squares(vals: &[f32], q: &[u8; QK]) -> Option<f32> {
    // Σ(q − 8)² is a small integer, exact in f32; Σ(q − 8)·v is widened for the division.
    let (mut sqqs, mut sqvs) = ([0f32; LANES], [0f32; LANES]);
    for (vs, qs) in vals.chunks(LANES).zip(q.chunks(LANES)) {
        for (((&v, &q), sqq), sqv) in vs.iter().zip(qs).zip(&mut sqqs).zip(&mut sqvs) {
            let q = f32::from(q) - 8.0;
            *sqq += q * q;
            *sqv += q * v;
        }
    }
    let (sqq, sqv): (f32, f32) = (sqqs.iter().sum(), sqvs.iter().sum());
    if sqq == 0.0 {
        return None;
    }
    let d = f64::from(sqv) / f64::from(sqq);
    (d.is_finite() && 8.0 * d.abs() < f64::from(f16::MAX)).then_some(d as f32)
}

/// A GGUF 4-bit block format.
#[derive(Clone, Copy)]
enum Gguf {
    /// 18 bytes: f16 `d`, 16 bytes of codes; `w = d·(q − 8)`.
    Q4_0,
    /// 20 bytes: f16 `d`, f16 `m`, 16 bytes of codes; `w = d·q + m`.
    Q4_1,
}

impl Q4Linear {
    /// From a GGUF Q4_0 tensor's bytes: `n` rows (outputs) of `k/32` blocks of 18 bytes (f16 `d`
    /// little-endian, then 16 bytes of codes; element `j < 16` of a block is the low nibble of
    /// byte `j`, element `j + 16` its high nibble). Stored column `i` takes GGUF row
    /// `row_order[i]` (a permutation of `0..n`; the identity when `None`).
    ///
    /// Panics if `k` is not a positive multiple of 32, `n == 0`, the byte count is not
    /// `n·(k/32)·18`, or `row_order` is not a permutation of `0..n`.
    pub fn from_q4_0(bytes: &[u8], k: usize, n: usize, row_order: Option<&[usize]>) -> Self {
        Self::from_gguf(Gguf::Q4_0, bytes, k, n, row_order)
    }

    /// The same for Q4_1: blocks of 20 bytes (f16 `d`, f16 `m`, 16 bytes of codes),
    /// `w = d·q + m`.
    pub fn from_q4_1(bytes: &[u8], k: usize, n: usize, row_order: Option<&[usize]>) -> Self {
        Self::from_gguf(Gguf::Q4_1, bytes, k, n, row_order)
    }

    fn from_gguf(
        format: Gguf,
        bytes: &[u8],
        k: usize,
        n: usize,
        row_order: Option<&[usize]>,
    ) -> Self {
        assert!(
            k > 0 && k.is_multiple_of(QK) && n > 0,
            "GGUF 4-bit tensors have k a positive multiple of 32"
        );
        let block_bytes = match format {
            Gguf::Q4_0 => 18,
            Gguf::Q4_1 => 20,
        };
        let kb = k / QK;
        assert_eq!(
            bytes.len(),
            n * kb * block_bytes,
            "tensor must be n·(k/32) blocks"
        );
        if let Some(order) = row_order {
            assert_eq!(order.len(), n, "row_order must have n entries");
            let mut seen = vec![false; n];
            for &r in order {
                assert!(r < n && !seen[r], "row_order must be a permutation of 0..n");
                seen[r] = true;
            }
        }
        let scales = match format {
            Gguf::Q4_0 => Scales::Symmetric,
            Gguf::Q4_1 => Scales::Offset,
        };
        Self::build(k, n, scales, |t, b, block| {
            for c in 0..(n - TILE * t).min(TILE) {
                let j = TILE * t + c;
                let row = row_order.map_or(j, |o| o[j]);
                let src = &bytes[(row * kb + b) * block_bytes..][..block_bytes];
                let d = u16::from_le_bytes([src[0], src[1]]);
                let (m, qs) = match format {
                    Gguf::Q4_0 => (0, &src[2..]),
                    Gguf::Q4_1 => (u16::from_le_bytes([src[2], src[3]]), &src[4..]),
                };
                for (i, &byte) in qs.iter().enumerate() {
                    block.q[c][i] = byte & 15;
                    block.q[c][i + QK / 2] = byte >> 4;
                }
                block.d[c] = d;
                block.m[c] = m;
            }
        })
    }

    /// Quantizes an f32 matrix (`k` inputs × `n` outputs, in `layout`) per block of 32 inputs of
    /// one column into `Symmetric` blocks (4.5 bits a weight): from llama.cpp's
    /// `quantize_row_q4_0_ref`, then refitted by least squares while that lowers the block's
    /// squared error (see `quantize_block`). A last block shorter than 32 (k not a multiple of
    /// 32) takes its fit from its real inputs; its padding contributes exactly 0.
    /// Weights must be finite and within f16 range.
    ///
    /// Panics if `k == 0`, `n == 0` or `w.len() != k * n`.
    pub fn quantize(w: &[f32], k: usize, n: usize, layout: SourceLayout) -> Self {
        assert!(k > 0 && n > 0, "empty weight matrix");
        assert_eq!(w.len(), k * n, "weight length must be k * n");
        let mut p = Self::zeroed(k, n);
        p.quantize_columns(0, w, n, layout);
        p
    }

    /// Quantizes `w`, the weights of output columns `j0..j0 + n` (`k` inputs × `n` outputs in
    /// `layout`; `j0` a multiple of 16), into their tiles.
    fn quantize_columns(&mut self, j0: usize, w: &[f32], n: usize, layout: SourceLayout) {
        let k = self.k;
        self.fill_tiles(j0 / TILE, n.div_ceil(TILE), |t, b, block| {
            let (c0, cols) = (TILE * t, (n - TILE * t).min(TILE));
            let (k0, len) = (QK * b, (k - QK * b).min(QK));
            // Gathered column by column; an `InOut` row gives 16 columns in one stretch.
            let mut vals = [[0f32; QK]; TILE];
            match layout {
                SourceLayout::InOut => {
                    for i in 0..len {
                        for (c, &v) in w[(k0 + i) * n + c0..][..cols].iter().enumerate() {
                            vals[c][i] = v;
                        }
                    }
                }
                SourceLayout::OutIn => {
                    for (c, col) in vals.iter_mut().enumerate().take(cols) {
                        col[..len].copy_from_slice(&w[(c0 + c) * k + k0..][..len]);
                    }
                }
            }
            for (c, col) in vals.iter().enumerate().take(cols) {
                (block.q[c], block.d[c]) = quantize_block(&col[..len]);
            }
        });
    }

    /// Allocates the tiles and fills them one by one in the current pool (`fill_tiles`).
    fn build(
        k: usize,
        n: usize,
        scales: Scales,
        fill: impl Fn(usize, usize, &mut Block) + Sync,
    ) -> Self {
        let mut p = Self::empty(k, n, scales);
        p.fill_tiles(0, n.div_ceil(TILE), fill);
        p
    }

    /// Fills `count` tiles from tile `t0` in the current pool: `fill(tile - t0, block, &mut
    /// Block)` sets the real columns of a zeroed [`Block`].
    fn fill_tiles(
        &mut self,
        t0: usize,
        count: usize,
        fill: impl Fn(usize, usize, &mut Block) + Sync,
    ) {
        let (geometry, kb) = (self.geometry(), self.k.div_ceil(QK));
        let tile_bytes = geometry.tile_bytes;
        self.bytes_mut()[t0 * tile_bytes..][..count * tile_bytes]
            .par_chunks_mut(tile_bytes)
            .enumerate()
            .for_each(|(t, tile)| {
                for b in 0..kb {
                    let mut block = Block::ZERO;
                    fill(t, b, &mut block);
                    block.write(tile, &geometry, b);
                }
            });
    }

    fn bytes_ref(&self) -> &[u8] {
        self.data.as_bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.data.as_bytes_mut()
    }

    /// An all-zero `k × n` matrix, to be quantized a run of output columns at a time by
    /// [`fill_columns`](Self::fill_columns) (as `PackedLinear::zeroed`: a large weight never
    /// whole in f32, nor its runs beside the result).
    pub fn zeroed(k: usize, n: usize) -> Self {
        Self::empty(k, n, Scales::Symmetric)
    }

    fn empty(k: usize, n: usize, scales: Scales) -> Self {
        assert!(k > 0 && n > 0, "empty weight matrix");
        let geometry = Geometry::of(scales, k.div_ceil(QK));
        Q4Linear {
            data: WeightBuffer::zeroed(n.div_ceil(TILE) * geometry.tile_bytes),
            k,
            n,
            scales,
        }
    }

    fn geometry(&self) -> Geometry {
        Geometry::of(self.scales, self.k.div_ceil(QK))
    }

    /// Quantizes output columns `j0..j0 + cols` from `values`, their `[cols, k]` weights (an
    /// `OutIn` run), exactly as [`quantize`](Self::quantize) of the whole matrix would.
    /// Panics unless `j0` is a multiple of 16 and the run fits.
    pub fn fill_columns(&mut self, j0: usize, values: &[f32]) {
        let cols = values.len() / self.k;
        assert!(
            j0.is_multiple_of(TILE) && j0 + cols <= self.n && values.len() == cols * self.k,
            "a run of whole tiles inside the matrix"
        );
        self.quantize_columns(j0, values, cols, SourceLayout::OutIn);
    }

    /// Number of inputs (rows of `W`, columns of `x`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of outputs (columns of `W` and of `out`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of storage: codes, scales and offsets, including the padding of `n` to 16
    /// columns, of `k` to 32 inputs and of each tile to whole cache lines.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// How the blocks store their scales.
    pub fn scales(&self) -> Scales {
        self.scales
    }

    /// Stored weight `(kk, j)` dequantized to f32: exactly `f32(d)·q + f32(m)` (`m = −8·d`
    /// for `Symmetric` blocks).
    pub fn weight(&self, kk: usize, j: usize) -> f32 {
        assert!(kk < self.k && j < self.n);
        let geometry = self.geometry();
        let tile = &self.bytes_ref()[(j / TILE) * geometry.tile_bytes..][..geometry.tile_bytes];
        let (d, m) = scale_offset(tile, &geometry, kk / QK, j % TILE);
        d * f32::from(code(&tile[geometry.codes(kk / QK)..], kk % QK, j % TILE)) + m
    }

    /// `out[m, n] = x[m, k] · W (+ bias)` with the kernels chosen by run-time detection.
    ///
    /// `x` is row-major `[m, k]`, `out` row-major `[m, n]` (overwritten), `bias` has length `n`.
    pub fn matmul(
        &self,
        activations: Activations,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        self.matmul_with(KernelPath::Auto, activations, x, m, bias, out)
    }

    /// [`matmul`](Self::matmul) with an explicit kernel choice (used to test the portable path).
    pub fn matmul_with(
        &self,
        path: KernelPath,
        activations: Activations,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let (k, n) = (self.k, self.n);
        if !super::check_matmul([k, n], x, m, bias, out) {
            return;
        }
        match activations {
            Activations::F32 => self.matmul_f32_any(F32Kernel::of(path), x, m, bias, out),
            Activations::Int8 => self.matmul_int8(path, x, m, bias, out),
        }
    }

    /// The `F32` product: in bands from [`BAND_ROWS`] rows on AVX2 or AVX-512, else in blocks.
    fn matmul_f32_any(
        &self,
        kernel: F32Kernel,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if kernel != F32Kernel::Portable && m >= BAND_ROWS {
            return self.matmul_f32_bands(kernel, x, m, bias, out);
        }
        self.matmul_f32(kernel, x, m, bias, out)
    }

    /// The `F32` product in bands of tiles, each dequantized once into a per-thread buffer
    /// and run over every row; the bands are split over the current pool's threads. The
    /// AVX2 and AVX-512 band kernels give the same bits.
    #[cfg(target_arch = "x86_64")]
    fn matmul_f32_bands(
        &self,
        kernel: F32Kernel,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let job = Job {
            x: x.as_ptr(),
            ..self.job(bias, out)
        };
        let tile_floats = band_tile_floats(&job);
        // The two paths share the bands' layout and values; only their kernels differ.
        type Dequantize = unsafe fn(&Job, Range<usize>, *mut f32);
        type BandBlock = unsafe fn(&Job, *const f32, usize, Range<usize>, usize);
        let (dequantize, band_block, block_rows): (Dequantize, BandBlock, usize) =
            if kernel == F32Kernel::Avx512 {
                (
                    avx512::dequantize,
                    avx512::band_block,
                    avx512::BAND_BLOCK_ROWS,
                )
            } else {
                (avx2::dequantize, avx2::band_block, avx2::BAND_BLOCK_ROWS)
            };
        let band_tiles = (BAND_BYTES / (4 * tile_floats)).max(1);
        let tiles = self.n.div_ceil(TILE);
        run_chunks([tiles.div_ceil(band_tiles)], |_, band_index| {
            let first = band_index * band_tiles;
            let band_range = first..(first + band_tiles).min(tiles);
            let mut buffer = BAND.with(Cell::take);
            // Whole cache lines: a tile's step is one 64-byte load.
            let floats = band_range.len() * tile_floats;
            buffer.resize(floats + 16, 0.0);
            let start = buffer.as_ptr().align_offset(64);
            let band = buffer[start..start + floats].as_mut_ptr();
            // SAFETY: avx2, fma and f16c were detected, and avx512f for `F32Kernel::Avx512`;
            // the band holds these tiles, `x` is `[m, k]` (checked in `matmul_with`), and each
            // band writes its own columns.
            unsafe {
                dequantize(&job, band_range.clone(), band);
                for row0 in (0..m).step_by(block_rows) {
                    let mr = (m - row0).min(block_rows);
                    band_block(&job, band, mr, band_range.clone(), row0);
                }
            }
            BAND.with(|c| c.set(buffer));
        });
    }

    fn matmul_f32(
        &self,
        kernel: F32Kernel,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        // The SIMD kernels multiply a register of `[column][4 inputs]` weights by the 4 inputs
        // repeated: each group of 4 inputs is stored that many times (a memory operand of the
        // FMA), and the rows are zero-padded to whole blocks.
        let (copies, block_rows) = match kernel {
            F32Kernel::Portable => (0, BLOCK_ROWS_F32),
            F32Kernel::Avx2 => (2, BLOCK_ROWS_F32_AVX2),
            F32Kernel::Avx512 => (4, BLOCK_ROWS_F32),
        };
        let mut job = self.job(bias, out);
        let mut xd = Vec::new();
        if copies > 0 {
            let row_floats = copies * job.kb * QK;
            xd = XD.with(Cell::take);
            xd.clear();
            xd.resize(m * row_floats, 0.0);
            for (row, dst) in x.chunks_exact(self.k).zip(xd.chunks_exact_mut(row_floats)) {
                for (quad, d) in row.chunks(4).zip(dst.chunks_exact_mut(4 * copies)) {
                    for copy in d.chunks_exact_mut(4) {
                        copy[..quad.len()].copy_from_slice(quad);
                    }
                }
            }
            job.x = xd.as_ptr();
        }
        let job = job;
        self.for_each_block(m, block_rows, |mr, tiles, row0| match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: avx2, fma and f16c were detected; `job` describes valid buffers of the
            // sizes asserted in `matmul_with`, and blocks write disjoint columns.
            F32Kernel::Avx2 => unsafe { avx2::block(&job, mr, tiles, row0) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, with avx512f detected too.
            F32Kernel::Avx512 => unsafe { avx512::block(&job, mr, tiles, row0) },
            _ => portable_f32(&job, self.bytes_ref(), x, mr, tiles, row0),
        });
        if copies > 0 {
            XD.with(|c| c.set(xd));
        }
    }

    fn matmul_int8(
        &self,
        path: KernelPath,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        matmul_many_int8(path, x, m, self.k, [(self, bias, out)]);
    }

    /// The fields of a call's [`Job`] that come from the weight (activations unset).
    fn job(&self, bias: Option<&[f32]>, out: &mut [f32]) -> Job {
        let geometry = self.geometry();
        Job {
            w: self.data.as_ptr().cast(),
            geometry,
            k: self.k,
            kb: self.k.div_ceil(QK),
            n: self.n,
            out: out.as_mut_ptr(),
            bias: bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            x: std::ptr::null(),
            xq: std::ptr::null(),
            dx: std::ptr::null(),
            sx: std::ptr::null(),
            qs: std::ptr::null(),
            pf: PREFETCH,
        }
    }

    /// Calls `block(mr, tiles, row0)` for every block of up to `block_rows` rows and every run
    /// of tiles, with the tiles split in about 4 chunks per thread of the current pool.
    fn for_each_block(
        &self,
        m: usize,
        block_rows: usize,
        block: impl Fn(usize, Range<usize>, usize) + Sync,
    ) {
        let split = self.split(m, block_rows);
        run_chunks([split.chunks], |_, ci| split.run(ci, &block));
    }

    /// How a product of `m` rows splits over the output tiles (module docs, "Threads" and
    /// "Weight traffic"): several row blocks run over groups of about 256 KiB of tiles.
    fn split(&self, m: usize, block_rows: usize) -> Split {
        let group = (262_144 / self.geometry().tile_bytes).clamp(2, 32);
        Split::new(self.n.div_ceil(TILE), m, block_rows, 1, group)
    }
}

/// One matrix of a fused product: the weight, its bias and its output (`[m, n]`, overwritten).
pub type Product<'a> = (&'a Q4Linear, Option<&'a [f32]>, &'a mut [f32]);

/// `out_i = x · W_i (+ bias_i)` for `N` matrices of the same depth `k` (a layer's q, k and v
/// projections, or its gate and up), each `out_i` row-major `[m, n_i]`, with the kernels chosen
/// by run-time detection. With `Int8` activations `x` is quantized once and every matrix's
/// chunks share one parallel pass: separate calls would each quantize `x` again and wait for
/// the pool twice (a dispatch and a join), which on small matrices (SmolLM2's are 576 wide)
/// is a fair share of a batch-1 step. `F32` activations run one [`Q4Linear::matmul`] each.
/// Either way each output gets the same bits as from its own call.
///
/// Panics if the matrices' `k` differ, or on the shapes [`Q4Linear::matmul`] rejects.
pub fn matmul_many<const N: usize>(
    activations: Activations,
    x: &[f32],
    m: usize,
    parts: [Product<'_>; N],
) {
    matmul_many_with(KernelPath::Auto, activations, x, m, parts)
}

/// [`matmul_many`] with an explicit kernel choice (used to test the portable path).
pub fn matmul_many_with<const N: usize>(
    path: KernelPath,
    activations: Activations,
    x: &[f32],
    m: usize,
    parts: [Product<'_>; N],
) {
    let Some(k) = parts.first().map(|(w, ..)| w.k) else {
        return;
    };
    for (w, bias, out) in &parts {
        assert_eq!(w.k, k, "fused matrices must share k");
        if !super::check_matmul([w.k, w.n], x, m, *bias, out) {
            return;
        }
    }
    match activations {
        Activations::F32 => {
            for (w, bias, out) in parts {
                w.matmul_f32_any(F32Kernel::of(path), x, m, bias, out);
            }
        }
        Activations::Int8 => matmul_many_int8(path, x, m, k, parts),
    }
}

/// The `Int8` product of [`matmul_many_with`], shapes checked (every matrix `k` deep): one
/// quantization of `x`, then every matrix's chunks in one parallel pass.
fn matmul_many_int8<const N: usize>(
    path: KernelPath,
    x: &[f32],
    m: usize,
    k: usize,
    parts: [Product<'_>; N],
) {
    let mut rows = XQ.with(Cell::take);
    rows.quantize(x, k);
    let calls = parts.map(|(w, bias, out)| {
        let job = Job {
            xq: rows.xq.as_ptr(),
            dx: rows.dx.as_ptr(),
            sx: rows.sx.as_ptr(),
            qs: rows.qs.as_ptr(),
            ..w.job(bias, out)
        };
        (w, job, w.split(m, BLOCK_ROWS_INT8))
    });
    let vnni = path == KernelPath::Auto && detected().vnni;
    run_chunks(calls.each_ref().map(|(.., split)| split.chunks), |i, ci| {
        let (w, job, split) = &calls[i];
        split.run(ci, |mr, tiles, row0| {
            #[cfg(target_arch = "x86_64")]
            if vnni {
                // SAFETY: avx512f, avx512vl and avx512vnni were detected; `job` describes
                // valid buffers, and blocks write disjoint columns.
                unsafe { vnni::block(job, mr, tiles, row0) };
                return;
            }
            portable_int8(job, w.bytes_ref(), mr, tiles, row0);
        });
    });
    XQ.with(|c| c.set(rows));
}

thread_local! {
    /// Reusable buffer for the AVX2 `F32` kernel's padded, quad-doubled activations.
    static XD: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Reusable buffer for a band of dequantized weights.
    static BAND: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Reusable buffers for `Int8`'s quantized activations.
    static XQ: Cell<QuantizedRows> = const { Cell::new(QuantizedRows::EMPTY) };
}

/// `Int8`'s activations, quantized per row and block of 32 inputs (module docs).
#[derive(Default)]
struct QuantizedRows {
    /// The codes `q_x`, `32·kb` a row.
    xq: Vec<i8>,
    /// Each block's scale `d_x`.
    dx: Vec<f32>,
    /// Each block's `s_x = d_x·Σq_x`, for `Offset` blocks' `m`: kept, not derived, so that
    /// the kernels spend no multiply on it.
    sx: Vec<f32>,
    /// Each block's `Σq_x`, for `Symmetric` blocks' `−8`.
    qs: Vec<i32>,
}

impl QuantizedRows {
    const EMPTY: Self = QuantizedRows {
        xq: Vec::new(),
        dx: Vec::new(),
        sx: Vec::new(),
        qs: Vec::new(),
    };

    /// Quantizes the rows of `x` (`k` inputs, `kb = ⌈k/32⌉` blocks each), reusing the buffers:
    /// every value of the first `rows·kb` blocks is written (padding codes as 0), whatever was
    /// there.
    fn quantize(&mut self, x: &[f32], k: usize) {
        let kb = k.div_ceil(QK);
        let blocks = x.len() / k * kb;
        let xq = super::reused(&mut self.xq, blocks * QK);
        let (dx, sx) = (
            super::reused(&mut self.dx, blocks),
            super::reused(&mut self.sx, blocks),
        );
        let qs = super::reused(&mut self.qs, blocks);
        if x.len() < super::PARALLEL_ELEMENTS {
            let rows = x.chunks_exact(k).zip(xq.chunks_exact_mut(kb * QK));
            let sums = dx.chunks_exact_mut(kb).zip(sx.chunks_exact_mut(kb));
            rows.zip(sums.zip(qs.chunks_exact_mut(kb)))
                .for_each(|((row, xq), ((dx, sx), qs))| quantize_row(row, xq, dx, sx, qs));
        } else {
            let rows = x.par_chunks_exact(k).zip(xq.par_chunks_exact_mut(kb * QK));
            let sums = dx.par_chunks_exact_mut(kb).zip(sx.par_chunks_exact_mut(kb));
            rows.zip(sums.zip(qs.par_chunks_exact_mut(kb)))
                .for_each(|((row, xq), ((dx, sx), qs))| quantize_row(row, xq, dx, sx, qs));
        }
    }
}

/// Quantizes one row of activations per block of 32 (the last block zero-padded): codes into
/// `xq`, the block scales `d_x = max |x| / 127` into `dx`, `s_x = d_x·Σq_x` into `sx` and
/// `Σq_x` into `qs`.
fn quantize_row(row: &[f32], xq: &mut [i8], dx: &mut [f32], sx: &mut [f32], qs: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if detected().avx2 {
        // SAFETY: avx2 was detected.
        return unsafe { quantize_row_avx2(row, xq, dx, sx, qs) };
    }
    quantize_row_each(row, xq, dx, sx, qs)
}

/// The same loop compiled for AVX2: the same IEEE operations, so the same bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2(
    row: &[f32],
    xq: &mut [i8],
    dx: &mut [f32],
    sx: &mut [f32],
    qs: &mut [i32],
) {
    quantize_row_each(row, xq, dx, sx, qs)
}

#[inline(always)]
fn quantize_row_each(row: &[f32], xq: &mut [i8], dx: &mut [f32], sx: &mut [f32], qs: &mut [i32]) {
    // Adding and subtracting 1.5·2²³ rounds to nearest (even) without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let blocks = row.chunks(QK).zip(xq.chunks_exact_mut(QK));
    let sums = dx.iter_mut().zip(sx.iter_mut()).zip(qs.iter_mut());
    for ((src, dst), ((d, s), q_sum)) in blocks.zip(sums) {
        // The largest |x| by its bits: for |x| they order as the values do, infinities and NaNs
        // above every finite value, and an integer max vectorises where a float fold would not.
        let max_bits = src
            .iter()
            .fold(0u32, |m, &v| m.max(v.to_bits() & 0x7fff_ffff));
        let max = f32::from_bits(max_bits);
        dst.fill(0);
        *q_sum = 0;
        if max_bits >= f32::INFINITY.to_bits() {
            // No scale: NaN makes the outputs NaN, as f32 products would.
            (*d, *s) = (f32::NAN, f32::NAN);
            continue;
        }
        if max == 0.0 {
            (*d, *s) = (0.0, 0.0);
            continue;
        }
        let inverse = 127.0 / max;
        let mut sum = 0i32;
        for (q, &v) in dst.iter_mut().zip(src) {
            let r = ((v * inverse + ROUND) - ROUND).clamp(-127.0, 127.0);
            // SAFETY: r is finite (the block is) and within i32 after the clamp; a plain `as`
            // would add a NaN/saturation check that keeps the loop from vectorising.
            let i = unsafe { r.to_int_unchecked::<i32>() };
            sum += i;
            *q = i as i8;
        }
        *d = max / 127.0;
        *s = *d * sum as f32;
        *q_sum = sum;
    }
}

/// Raw description of one matmul call shared by all chunks.
#[derive(Clone, Copy)]
struct Job {
    /// The tiles (layout in the module docs).
    w: *const u8,
    /// Where each tile's blocks lie in `w`.
    geometry: Geometry,
    k: usize,
    /// Blocks per column, `⌈k/32⌉`.
    kb: usize,
    n: usize,
    out: *mut f32,
    /// Null when there is no bias.
    bias: *const f32,
    /// `F32`: on AVX2 and AVX-512 rows of `copies·32·kb` floats, each group of 4 inputs
    /// repeated; for the bands, `x` itself (rows of `k`).
    x: *const f32,
    /// `Int8` only: quantized rows of `32·kb` codes, and per row `kb` block scales, scaled sums
    /// (for `Offset` blocks' `m`) and integer sums (for `Symmetric` blocks' `−8`).
    xq: *const i8,
    dx: *const f32,
    sx: *const f32,
    qs: *const i32,
    /// Software prefetch distance in bytes (0 = off).
    pf: usize,
}

// SAFETY: the pointers are only read, except `out`, to which every chunk writes a disjoint set of
// columns; the referenced buffers outlive the parallel section.
unsafe impl Sync for Job {}

impl Job {
    /// Where block `b` of tile `t` keeps its codes and its `d` values; with `prefetch`, the
    /// block `pf` bytes further on in the stream (four lines of codes and its scales) is asked
    /// for into L2 first, and the codes `PREFETCH_L1` bytes on into L1. A stream that reads
    /// every `stride`-th tile (a call covering `stride` tiles) goes on past the tile's end at
    /// the start of tile `t + stride`, not `t + 1`, which another stream of the call is
    /// reading already.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn block(&self, t: usize, b: usize, prefetch: bool, stride: usize) -> (*const u8, *const u8) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        let tile_bytes = self.geometry.tile_bytes;
        let tile = self.w.wrapping_add(t * tile_bytes);
        let codes_offset = self.geometry.codes(b);
        let codes = tile.wrapping_add(codes_offset);
        let scales = tile.wrapping_add(self.geometry.scales(b));
        if prefetch && self.pf != 0 {
            let ahead = |distance: usize| {
                if codes_offset + distance >= tile_bytes {
                    distance + (stride - 1) * tile_bytes
                } else {
                    distance
                }
            };
            let (far, near) = (ahead(self.pf), ahead(PREFETCH_L1));
            // SAFETY: SSE is part of x86-64, and a prefetch never faults, whatever the address.
            unsafe {
                for line in 0..4 {
                    _mm_prefetch::<_MM_HINT_T1>(codes.wrapping_add(far + 64 * line).cast());
                }
                _mm_prefetch::<_MM_HINT_T1>(scales.wrapping_add(far).cast());
                for line in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(codes.wrapping_add(near + 64 * line).cast());
                }
            }
        }
        (codes, scales)
    }

    /// Writes `acc + bias` for row `r` and the valid columns of tile `t`.
    ///
    /// # Safety
    /// `r` must be a row of the call and no other thread may write this tile's columns.
    unsafe fn store(&self, r: usize, t: usize, acc: &[f32; TILE]) {
        let c0 = TILE * t;
        for (c, &v) in acc.iter().enumerate().take((self.n - c0).min(TILE)) {
            let j = c0 + c;
            // SAFETY: j < n and r < m (caller), inside `out` and `bias`.
            unsafe {
                let v = if self.bias.is_null() {
                    v
                } else {
                    v + *self.bias.add(j)
                };
                *self.out.add(r * self.n + j) = v;
            }
        }
    }
}

/// The portable `F32` kernel: rows `row0..row0+mr` of `x`, sequential f32 sums per output.
fn portable_f32(job: &Job, w: &[u8], x: &[f32], mr: usize, tiles: Range<usize>, row0: usize) {
    let (k, kb, geometry) = (job.k, job.kb, &job.geometry);
    for t in tiles {
        let tile = &w[t * geometry.tile_bytes..][..geometry.tile_bytes];
        let mut acc = [[0f32; TILE]; BLOCK_ROWS_F32];
        for b in 0..kb {
            let q = unpack(&tile[geometry.codes(b)..]);
            let dm: [(f32, f32); TILE] =
                std::array::from_fn(|c| scale_offset(tile, geometry, b, c));
            let wb: [[f32; TILE]; QK] = std::array::from_fn(|kin| {
                std::array::from_fn(|c| dm[c].0 * f32::from(q[c][kin]) + dm[c].1)
            });
            let (k0, len) = (QK * b, (k - QK * b).min(QK));
            for (r, a) in acc[..mr].iter_mut().enumerate() {
                for (&xv, wk) in x[(row0 + r) * k + k0..][..len].iter().zip(&wb) {
                    for (a, &w) in a.iter_mut().zip(wk) {
                        *a += xv * w;
                    }
                }
            }
        }
        for (r, a) in acc[..mr].iter().enumerate() {
            // SAFETY: row0 + r < m; this tile's columns belong to this block.
            unsafe { job.store(row0 + r, t, a) };
        }
    }
}

/// The portable `Int8` kernel, compiled for AVX2 + FMA where detected (the same bits).
fn portable_int8(job: &Job, w: &[u8], mr: usize, tiles: Range<usize>, row0: usize) {
    #[cfg(target_arch = "x86_64")]
    if detected().avx2 {
        // SAFETY: avx2 and fma were detected.
        unsafe { portable_int8_avx2(job, w, mr, tiles, row0) };
        return;
    }
    portable_int8_each(job, w, mr, tiles, row0);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn portable_int8_avx2(job: &Job, w: &[u8], mr: usize, tiles: Range<usize>, row0: usize) {
    portable_int8_each(job, w, mr, tiles, row0);
}

#[inline(always)]
fn portable_int8_each(job: &Job, w: &[u8], mr: usize, tiles: Range<usize>, row0: usize) {
    let kb = job.kb;
    // SAFETY: `xq` holds `m` rows of `32·kb` values, `dx`, `sx` and `qs` of `kb`, and rows
    // row0..row0+mr exist.
    let (xq, dx, sx, qs) = unsafe {
        (
            std::slice::from_raw_parts(job.xq.add(row0 * kb * QK), mr * kb * QK),
            std::slice::from_raw_parts(job.dx.add(row0 * kb), mr * kb),
            std::slice::from_raw_parts(job.sx.add(row0 * kb), mr * kb),
            std::slice::from_raw_parts(job.qs.add(row0 * kb), mr * kb),
        )
    };
    let geometry = &job.geometry;
    for t in tiles {
        let tile = &w[t * geometry.tile_bytes..][..geometry.tile_bytes];
        let mut acc = [[0f32; TILE]; BLOCK_ROWS_INT8];
        for b in 0..kb {
            let q = unpack(&tile[geometry.codes(b)..]);
            let dm: [(f32, f32); TILE] =
                std::array::from_fn(|c| scale_offset(tile, geometry, b, c));
            for (r, a) in acc[..mr].iter_mut().enumerate() {
                let at = r * kb + b;
                let x = &xq[at * QK..][..QK];
                // `Σ (q − 8)·q_x`: the `Symmetric` offset folded into the exact sum.
                let start = if geometry.offsets { 0 } else { -8 * qs[at] };
                for ((a, q), &(d, m)) in a.iter_mut().zip(&q).zip(&dm) {
                    let sum = q
                        .iter()
                        .zip(x)
                        .fold(start, |s, (&q, &x)| s + i32::from(q) * i32::from(x));
                    *a = d.mul_add(sum as f32 * dx[at], *a);
                    if geometry.offsets {
                        *a = m.mul_add(sx[at], *a);
                    }
                }
            }
        }
        for (r, a) in acc[..mr].iter().enumerate() {
            // SAFETY: row0 + r < m; this tile's columns belong to this block.
            unsafe { job.store(row0 + r, t, a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift values in `[-1, 1)`, and raw bytes.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn f32(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }

        fn vec(&mut self, len: usize) -> Vec<f32> {
            (0..len).map(|_| self.f32()).collect()
        }

        fn permutation(&mut self, n: usize) -> Vec<usize> {
            let mut p: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                p.swap(i, self.next() as usize % (i + 1));
            }
            p
        }
    }

    /// A GGUF tensor of `n` rows × `k/32` blocks with random codes and small scales.
    fn gguf_bytes(rng: &mut Rng, q4_1: bool, k: usize, n: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..n * k / QK {
            let d = f16::from_f32(0.01 + 0.05 * rng.f32().abs());
            bytes.extend(d.to_bits().to_le_bytes());
            if q4_1 {
                bytes.extend(
                    f16::from_f32(-0.3 * rng.f32().abs())
                        .to_bits()
                        .to_le_bytes(),
                );
            }
            bytes.extend((0..16).map(|_| rng.next() as u8));
        }
        bytes
    }

    /// GGUF dequantization of element `kk` of row `row`, straight from the spec.
    fn gguf_weight(bytes: &[u8], q4_1: bool, k: usize, row: usize, kk: usize) -> f32 {
        let size = if q4_1 { 20 } else { 18 };
        let block = &bytes[(row * (k / QK) + kk / QK) * size..][..size];
        let half = |i: usize| f16::from_bits(u16::from_le_bytes([block[i], block[i + 1]]));
        let qs = &block[size - 16..];
        let j = kk % QK;
        let q = if j < 16 { qs[j] & 15 } else { qs[j - 16] >> 4 };
        if q4_1 {
            half(0).to_f32() * f32::from(q) + half(2).to_f32()
        } else {
            half(0).to_f32() * (f32::from(q) - 8.0)
        }
    }

    /// `x · W (+ bias)` in f64 over the stored weights, and each output's `Σ |x·w|`.
    fn reference(w: &Q4Linear, x: &[f32], m: usize, bias: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
        let (k, n) = (w.k(), w.n());
        let mut out = vec![0f64; m * n];
        let mut mag = vec![0f64; m * n];
        for r in 0..m {
            for j in 0..n {
                for kk in 0..k {
                    let p = f64::from(x[r * k + kk]) * f64::from(w.weight(kk, j));
                    out[r * n + j] += p;
                    mag[r * n + j] += p.abs();
                }
                out[r * n + j] += bias.map_or(0.0, |b| f64::from(b[j]));
            }
        }
        (out, mag)
    }

    fn run(
        w: &Q4Linear,
        path: KernelPath,
        act: Activations,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut out = vec![f32::NAN; m * w.n()];
        w.matmul_with(path, act, x, m, bias, &mut out);
        out
    }

    /// The outputs' bit patterns, for comparisons that must be exact.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn gguf_round_trip() {
        let mut rng = Rng(1);
        let (k, n) = (96, 37);
        for q4_1 in [false, true] {
            let bytes = gguf_bytes(&mut rng, q4_1, k, n);
            let order = rng.permutation(n);
            for row_order in [None, Some(order.as_slice())] {
                let w = if q4_1 {
                    Q4Linear::from_q4_1(&bytes, k, n, row_order)
                } else {
                    Q4Linear::from_q4_0(&bytes, k, n, row_order)
                };
                // 5 bits a weight for Q4_1; 4.5 for Q4_0, in pairs of blocks (k = 96 has 3
                // blocks a column, the last pair half empty).
                let (scales, tile_bytes) = if q4_1 {
                    (Scales::Offset, 3 * 320)
                } else {
                    (Scales::Symmetric, 2 * 576)
                };
                assert_eq!(w.scales(), scales);
                assert_eq!(w.bytes(), n.div_ceil(TILE) * tile_bytes);
                for j in 0..n {
                    let row = row_order.map_or(j, |o| o[j]);
                    for kk in 0..k {
                        let want = gguf_weight(&bytes, q4_1, k, row, kk);
                        assert_eq!(w.weight(kk, j).to_bits(), want.to_bits(), "({kk}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn quantize_error_and_padding() {
        let mut rng = Rng(2);
        let (k, n) = (70, 21);
        // Columns of different magnitudes and signs, one constant block.
        let mut w_in = vec![0f32; k * n];
        for kk in 0..k {
            for j in 0..n {
                w_in[kk * n + j] = if j == 3 && kk < 32 {
                    0.7
                } else {
                    rng.f32() * (j + 1) as f32 + j as f32 * 0.1
                };
            }
        }
        let mut w_out = vec![0f32; k * n];
        for kk in 0..k {
            for j in 0..n {
                w_out[j * k + kk] = w_in[kk * n + j];
            }
        }
        let a = Q4Linear::quantize(&w_in, k, n, SourceLayout::InOut);
        let b = Q4Linear::quantize(&w_out, k, n, SourceLayout::OutIn);
        assert!(a == b, "the source layout must not matter");
        assert_eq!(a.scales(), Scales::Symmetric);
        let (kb, geometry) = (k.div_ceil(QK), a.geometry());
        let bytes = a.bytes_ref();
        for j in 0..n.next_multiple_of(TILE) {
            let tile = &bytes[(j / TILE) * geometry.tile_bytes..][..geometry.tile_bytes];
            for blk in 0..kb {
                let (d, m) = scale_offset(tile, &geometry, blk, j % TILE);
                assert_eq!(m, -8.0 * d);
                let codes = &tile[geometry.codes(blk)..];
                let real: Vec<f32> = (blk * QK..k.min(blk * QK + QK))
                    .filter(|_| j < n)
                    .map(|kk| w_in[kk * n + j])
                    .collect();
                for kin in real.len()..QK {
                    // Padding: codes 0 (for a padding column, d = 0 too).
                    assert_eq!(code(codes, kin, j % TILE), 0);
                    if j >= n {
                        assert_eq!(d, 0.0);
                    }
                }
                if real.is_empty() {
                    continue;
                }
                // The start (the largest magnitude at level −8, d rounded to f16) keeps each
                // weight within |d|/2 of a level, or on the far side at most |d| past level 7;
                // the refits only ever lower the block's squared error below that.
                let largest = real.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d0 = largest / 8.0 * (1.0 + 1.0 / 1024.0);
                let allowed: f32 = real
                    .iter()
                    .map(|v| {
                        (d0 / 2.0)
                            .max(v.abs() - 7.0 * d0 / (1.0 + 1.0 / 512.0))
                            .powi(2)
                    })
                    .sum();
                let error: f32 = real
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (a.weight(blk * QK + i, j) - v).powi(2))
                    .sum();
                assert!(
                    error <= allowed * 1.001,
                    "block {blk} of {j}: {error} > {allowed} (d {d})"
                );
            }
        }
        // The padding contributes exactly 0: the portable kernel sums sequentially, so it
        // matches a naive f32 loop over the k real inputs bit for bit.
        let m = 3;
        let x = rng.vec(m * k);
        let out = run(&a, KernelPath::Portable, Activations::F32, &x, m, None);
        for r in 0..m {
            for j in 0..n {
                let naive = (0..k).fold(0f32, |s, kk| s + x[r * k + kk] * a.weight(kk, j));
                assert_eq!(out[r * n + j].to_bits(), naive.to_bits());
            }
        }
    }

    #[test]
    fn f32_matches_reference() {
        let mut rng = Rng(3);
        // (2048, 70): bands of two tiles, so three bands; from 9 rows AVX2/AVX-512 run in bands,
        // 17 and 24 rows in several row blocks.
        for (k, n) in [(96, 37), (70, 45), (32, 16), (2048, 70)] {
            let w = Q4Linear::quantize(&rng.vec(k * n), k, n, SourceLayout::OutIn);
            let offset = (k % QK == 0)
                .then(|| Q4Linear::from_q4_1(&gguf_bytes(&mut rng, true, k, n), k, n, None));
            let bias = rng.vec(n);
            for (w, m) in [&w]
                .into_iter()
                .chain(&offset)
                .flat_map(|w| (1..=13).chain([17, 24]).map(move |m| (w, m)))
            {
                let x = rng.vec(m * k);
                for bias in [None, Some(bias.as_slice())] {
                    let (want, mag) = reference(w, &x, m, bias);
                    let auto = run(w, KernelPath::Auto, Activations::F32, &x, m, bias);
                    let portable = run(w, KernelPath::Portable, Activations::F32, &x, m, bias);
                    for i in 0..m * n {
                        let tol = 1e-5 * mag[i] + 1e-6;
                        for got in [auto[i], portable[i]] {
                            let err = (f64::from(got) - want[i]).abs();
                            assert!(err <= tol, "k {k} n {n} m {m} [{i}]: {got} vs {}", want[i]);
                        }
                        assert!(f64::from((auto[i] - portable[i]).abs()) <= 2.0 * tol);
                    }
                }
            }
        }
    }

    #[test]
    fn f32_simd_kernels_agree() {
        // The AVX2 and AVX-512 block kernels sum each column's 4 partial sums the same way, and
        // from `BAND_ROWS` rows both band kernels sum each column over k in order: same bits,
        // for row counts that leave every remainder of their row blocks (6 and 8).
        if !detected().avx512 {
            return;
        }
        let mut rng = Rng(7);
        let n = 70;
        let symmetric = Q4Linear::quantize(&rng.vec(200 * n), 200, n, SourceLayout::OutIn);
        let offset = Q4Linear::from_q4_1(&gguf_bytes(&mut rng, true, 224, n), 224, n, None);
        let bias = rng.vec(n);
        for w in [symmetric, offset] {
            for m in (1..=17).chain([24, 31]) {
                let x = rng.vec(m * w.k());
                let on = |kernel| {
                    let mut out = vec![f32::NAN; m * n];
                    w.matmul_f32_any(kernel, &x, m, Some(&bias), &mut out);
                    bits(&out)
                };
                assert_eq!(
                    on(F32Kernel::Avx2),
                    on(F32Kernel::Avx512),
                    "m {m} {:?}",
                    w.scales()
                );
            }
        }
    }

    #[test]
    fn int8_paths_agree_and_error_is_bounded() {
        let mut rng = Rng(4);
        for (k, n) in [(96, 37), (70, 45), (160, 300)] {
            let w = Q4Linear::quantize(&rng.vec(k * n), k, n, SourceLayout::InOut);
            let offset = (k % QK == 0)
                .then(|| Q4Linear::from_q4_1(&gguf_bytes(&mut rng, true, k, n), k, n, None));
            for w in std::iter::once(w).chain(offset) {
                let bias = rng.vec(n);
                for m in 1..=13 {
                    let mut x = rng.vec(m * k);
                    // An all-zero block and a large outlier.
                    x[..QK.min(k)].fill(0.0);
                    x[k - 1] = 40.0;
                    for bias in [None, Some(bias.as_slice())] {
                        let auto = run(&w, KernelPath::Auto, Activations::Int8, &x, m, bias);
                        let portable =
                            run(&w, KernelPath::Portable, Activations::Int8, &x, m, bias);
                        assert_eq!(bits(&auto), bits(&portable), "k {k} n {n} m {m}");
                        // |x − d_x·q_x| ≤ d_x/2 = max|x_block| / 254 for each input, so the error is
                        // at most Σ_blocks (max|x_block| / 254)·Σ_block |w|, plus f32 rounding.
                        let (want, mag) = reference(&w, &x, m, bias);
                        for r in 0..m {
                            for j in 0..n {
                                let mut bound = 0f64;
                                for blk in x[r * k..(r + 1) * k].chunks(QK).enumerate() {
                                    let amax = blk.1.iter().fold(0f32, |a, v| a.max(v.abs()));
                                    let sw: f64 = (0..blk.1.len())
                                        .map(|i| f64::from(w.weight(blk.0 * QK + i, j).abs()))
                                        .sum();
                                    bound += f64::from(amax) / 254.0 * sw;
                                }
                                let i = r * n + j;
                                let err = (f64::from(auto[i]) - want[i]).abs();
                                assert!(
                                    err <= bound * 1.001 + 1e-5 * mag[i] + 1e-6,
                                    "[{r}, {j}] {err} > {bound}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn calls_of_every_tile_width_give_the_portable_bits() {
        // One thread runs all 13 tiles as one chunk: at one or two rows three calls of four
        // tiles, then one of one; at three rows thirteen of one.
        let mut rng = Rng(9);
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for k in [96, 128] {
            let n = 12 * TILE + 13;
            let symmetric = Q4Linear::quantize(&rng.vec(k * n), k, n, SourceLayout::OutIn);
            let offset = Q4Linear::from_q4_1(&gguf_bytes(&mut rng, true, k, n), k, n, None);
            let bias = rng.vec(n);
            for w in [symmetric, offset] {
                for m in 1..=3 {
                    let x = rng.vec(m * k);
                    let on = |path| {
                        let out = one_thread
                            .install(|| run(&w, path, Activations::Int8, &x, m, Some(&bias)));
                        bits(&out)
                    };
                    assert_eq!(
                        on(KernelPath::Auto),
                        on(KernelPath::Portable),
                        "k {k} m {m} {:?}",
                        w.scales()
                    );
                }
            }
        }
    }

    #[test]
    fn symmetric_blocks_run_as_offset_blocks_with_m_minus_8_d() {
        // The same Q4_0 weights stored with m = −8·d as Q4_1 blocks (exact in f16), for k with
        // an odd number of blocks too: `F32` gives the same bits from both layouts on every
        // path; `Int8` folds the `−8` into the integer sums, which rounds once where `m·s_x`
        // rounds twice, so the two agree to rounding.
        let mut rng = Rng(8);
        for (k, n) in [(96, 37), (128, 300)] {
            let q4_0 = gguf_bytes(&mut rng, false, k, n);
            let mut q4_1 = Vec::new();
            for block in q4_0.chunks_exact(18) {
                let d = f16::from_bits(u16::from_le_bytes([block[0], block[1]]));
                q4_1.extend(&block[..2]);
                q4_1.extend(f16::from_f32(-8.0 * d.to_f32()).to_bits().to_le_bytes());
                q4_1.extend(&block[2..]);
            }
            let symmetric = Q4Linear::from_q4_0(&q4_0, k, n, None);
            let offset = Q4Linear::from_q4_1(&q4_1, k, n, None);
            // Pairs of blocks: 4.5 bits a weight where a column's blocks pair up.
            if (k / QK).is_multiple_of(2) {
                assert!(symmetric.bytes() < offset.bytes());
            }
            let bias = rng.vec(n);
            for m in [1, 2, 3, 4, 5, 8, 9] {
                let x = rng.vec(m * k);
                for path in [KernelPath::Auto, KernelPath::Avx2, KernelPath::Portable] {
                    let on = |w: &Q4Linear, act| run(w, path, act, &x, m, Some(&bias));
                    let f32s = [&symmetric, &offset].map(|w| bits(&on(w, Activations::F32)));
                    assert_eq!(f32s[0], f32s[1], "F32 {path:?} m {m}");
                    let (folded, unfolded) = (
                        on(&symmetric, Activations::Int8),
                        on(&offset, Activations::Int8),
                    );
                    let largest = unfolded.iter().fold(0f32, |a, v| a.max(v.abs()));
                    for (a, b) in folded.iter().zip(&unfolded) {
                        assert!(
                            (a - b).abs() <= 1e-5 * largest,
                            "Int8 {path:?} m {m}: {a} {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_threads() {
        let mut rng = Rng(5);
        let (k, n) = (192, 1000);
        let bytes = gguf_bytes(&mut rng, true, k, n);
        let w = Q4Linear::from_q4_1(&bytes, k, n, None);
        let bias = rng.vec(n);
        // 90 rows are quantized across the pool's threads (`Int8`), fewer on the calling one.
        for m in [1, 2, 5, 8, 13, 90] {
            let x = rng.vec(m * k);
            for act in [Activations::F32, Activations::Int8] {
                for path in [KernelPath::Auto, KernelPath::Portable] {
                    let outs: Vec<Vec<u32>> = [1, 2, 3]
                        .iter()
                        .map(|&threads| {
                            let pool = rayon::ThreadPoolBuilder::new()
                                .num_threads(threads)
                                .build()
                                .unwrap();
                            let out = pool.install(|| run(&w, path, act, &x, m, Some(&bias)));
                            bits(&out)
                        })
                        .collect();
                    assert_eq!(outs[0], outs[1], "{act:?} {path:?} m {m}");
                    assert_eq!(outs[0], outs[2], "{act:?} {path:?} m {m}");
                }
            }
        }
    }

    #[test]
    fn fused_products_give_each_matrix_the_bits_of_its_own_call() {
        let mut rng = Rng(8);
        let k = 160;
        let ws = [
            Q4Linear::from_q4_0(&gguf_bytes(&mut rng, false, k, 40), k, 40, None),
            Q4Linear::from_q4_1(&gguf_bytes(&mut rng, true, k, 72), k, 72, None),
            Q4Linear::quantize(&rng.vec(k * 200), k, 200, SourceLayout::OutIn),
        ];
        let bias = rng.vec(72);
        // 8 and 11 rows run in row blocks over groups of tiles; 120 rows quantize in parallel.
        for m in [1, 2, 8, 11, 120] {
            let x = rng.vec(m * k);
            for act in [Activations::F32, Activations::Int8] {
                for path in [KernelPath::Auto, KernelPath::Portable] {
                    let own = [
                        run(&ws[0], path, act, &x, m, None),
                        run(&ws[1], path, act, &x, m, Some(&bias)),
                        run(&ws[2], path, act, &x, m, None),
                    ];
                    let mut fused = ws.each_ref().map(|w| vec![f32::NAN; m * w.n()]);
                    let [a, b, c] = &mut fused;
                    matmul_many_with(
                        path,
                        act,
                        &x,
                        m,
                        [
                            (&ws[0], None, a),
                            (&ws[1], Some(&bias), b),
                            (&ws[2], None, c),
                        ],
                    );
                    for (i, (own, fused)) in own.iter().zip(&fused).enumerate() {
                        assert_eq!(bits(own), bits(fused), "matrix {i} {act:?} {path:?} m {m}");
                    }
                }
            }
        }
    }

    #[test]
    fn non_finite_activations_give_nan() {
        let w = Q4Linear::quantize(&Rng(6).vec(64 * 20), 64, 20, SourceLayout::OutIn);
        let mut x = vec![0.5f32; 64];
        x[40] = f32::INFINITY;
        for path in [KernelPath::Auto, KernelPath::Portable] {
            let out = run(&w, path, Activations::Int8, &x, 1, None);
            assert!(out.iter().all(|v| v.is_nan()));
        }
    }
}
