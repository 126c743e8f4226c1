//! `W8a8` kernels on Intel AMX for products of many rows (prompts, BERT's texts): `tdpbusd`
//! multiplies a tile of 16 rows × 64 unsigned activation bytes by a tile of 64 × 8 signed
//! weights (16 groups of 4 k, the packed layout's `[kk / 4][c][kk % 4]`, so a tile of 8
//! output columns loads as it lies) into 16 × 8 i32 sums, exactly: 8,192 multiply-adds an
//! instruction, against 32 for the 256-bit `vpdpbusd` of `vnni.rs`.
//!
//! A call covers up to 32 rows (two activation tiles) × 2 output tiles (two weight tiles):
//! four sum tiles, each activation and weight tile loaded once per 64 k and used twice. The
//! last `depth mod 64` k (a layer whose `k` is no multiple of 64) are added to the stored sums
//! with `vpdpbusd`; the sums are exact either way, then [`Epilogue`] gives the portable bits.
//!
//! The tile registers are no Rust operands: every `asm!` names them, and nothing between two
//! of them calls a function (the tile state is the caller's to save). Each call loads the
//! tile configuration and releases it at the end, so a thread between calls holds no tile
//! state for the kernel to save on a context switch. Rows past the product's last one are
//! read from the padding of the quantized activations (whole blocks of 16 rows), and their
//! sums are never stored.

use super::vnni::Epilogue;
use super::{Job, AMX_TILE_ROWS as TILE_ROWS};
use std::arch::asm;
use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::OnceLock;

/// Rows a call covers (two activation tiles).
pub(super) const BLOCK_ROWS: usize = 32;
/// Output tiles of 8 columns a call covers.
pub(super) const STEP: usize = 2;
/// Bytes of k one `tdpbusd` consumes per row.
const K_BYTES: usize = 64;
/// How many 64-k steps ahead the weights are prefetched.
const PREFETCH_CHUNKS: usize = 2;

/// Whether this CPU has AMX tiles with int8 products, and the OS lets this process use them:
/// Linux hands out the 8 KiB of tile state only on request (`arch_prctl`). Asked once.
pub(super) fn available() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| {
        // A CPU without leaf 7 (all older than AMX) answers with another leaf's bits; the
        // OS's grant below, which needs the tile state in XSAVE, is the guard either way.
        let leaf7 = __cpuid_count(7, 0);
        let (tile, int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
        tile && int8 && permitted()
    })
}

#[cfg(target_os = "linux")]
fn permitted() -> bool {
    /// `ARCH_REQ_XCOMP_PERM` and the tile data's XSAVE feature number.
    const REQUEST_STATE: libc::c_long = 0x1023;
    const TILE_DATA: libc::c_long = 18;
    // SAFETY: a request for permission; it changes nothing else in the process.
    unsafe { libc::syscall(libc::SYS_arch_prctl, REQUEST_STATE, TILE_DATA) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn permitted() -> bool {
    false
}

/// The tile configuration (palette 1): tmm0–3 sums (16 rows × 8 i32), tmm4–5 activations
/// (16 rows × 64 bytes), tmm6–7 weights (16 groups × 8 columns × 4 bytes).
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new() -> Self {
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        let shapes = [(16u8, 32u16); 4]
            .into_iter()
            .chain([(16, 64); 2])
            .chain([(16, 32); 2]);
        for (t, (rows, colsb)) in shapes.enumerate() {
            bytes[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
            bytes[48 + t] = rows;
        }
        Config(bytes)
    }
}

/// Computes rows `row0..row0 + mr` (`mr` ≤ [`BLOCK_ROWS`]) for tiles `tiles`.
///
/// # Safety
/// [`available`] must be true (and with it avx512f, avx512vl, avx512vnni detected); `job`
/// must describe valid `W8a8` buffers whose activations hold whole blocks of
/// [`TILE_ROWS`] rows; no other thread may write the output columns of these tiles.
pub(super) unsafe fn block(job: &Job, mr: usize, tiles: Range<usize>, row0: usize) {
    let config = Config::new();
    // SAFETY: forwarded from the caller; the configuration matches every tile use below.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        let mut t = tiles.start;
        while t < tiles.end {
            let nt = (tiles.end - t).min(STEP);
            match (mr > TILE_ROWS, nt == STEP) {
                (false, false) => kernel::<1, 1>(job, mr, t, row0),
                (false, true) => kernel::<1, 2>(job, mr, t, row0),
                (true, false) => kernel::<2, 1>(job, mr, t, row0),
                (true, true) => kernel::<2, 2>(job, mr, t, row0),
            }
            t += nt;
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// `mr` rows (in `A` activation tiles) × `T` output tiles from tile `t0` and row `row0`.
#[inline(never)]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn kernel<const A: usize, const T: usize>(job: &Job, mr: usize, t0: usize, row0: usize) {
    let depth = job.depth;
    let tile_bytes = 8 * depth;
    let full = depth / K_BYTES;
    // Sums of row r, output tile u: sums[r][8u..8u + 8].
    let mut sums = [[0i32; 16]; BLOCK_ROWS];
    // SAFETY: rows row0..row0 + 16·A lie in the activations (padded to whole tiles of rows),
    // tiles t0..t0 + T exist, and c < full keeps every load inside a row and a tile.
    unsafe {
        let x = job.xq.add(row0 * depth);
        let w = job.w.add(t0 * tile_bytes);
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        for c in 0..full {
            let (xc, wc) = (x.add(K_BYTES * c), w.add(16 * 32 * c));
            // The weights stream from L2 (each row block runs over a chunk's whole stretch):
            // ask for the lines PREFETCH_CHUNKS steps ahead into L1 before a load waits on them.
            for u in 0..T {
                let ahead = wc.wrapping_add(u * tile_bytes + PREFETCH_CHUNKS * 512);
                for line in 0..8 {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast());
                }
            }
            asm!("tileloadd tmm4, [{x} + {stride}*1]", "tileloadd tmm6, [{w} + {w_stride}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                x = in(reg) xc, stride = in(reg) depth, w = in(reg) wc, w_stride = in(reg) 32usize,
                options(nostack, readonly));
            if T == 2 {
                asm!("tileloadd tmm7, [{w} + {w_stride}*1]", "tdpbusd tmm1, tmm4, tmm7",
                    w = in(reg) wc.add(tile_bytes), w_stride = in(reg) 32usize,
                    options(nostack, readonly));
            }
            if A == 2 {
                asm!("tileloadd tmm5, [{x} + {stride}*1]", "tdpbusd tmm2, tmm5, tmm6",
                    x = in(reg) xc.add(TILE_ROWS * depth), stride = in(reg) depth,
                    options(nostack, readonly));
                if T == 2 {
                    asm!("tdpbusd tmm3, tmm5, tmm7", options(nostack, nomem));
                }
            }
        }
        let out = sums.as_mut_ptr().cast::<i32>();
        asm!("tilestored [{o} + {stride}*1], tmm0", "tilestored [{o2} + {stride}*1], tmm1",
            o = in(reg) out, o2 = in(reg) out.add(8), stride = in(reg) 64usize, options(nostack));
        if A == 2 {
            let lower = out.add(16 * TILE_ROWS);
            asm!("tilestored [{o} + {stride}*1], tmm2", "tilestored [{o2} + {stride}*1], tmm3",
                o = in(reg) lower, o2 = in(reg) lower.add(8), stride = in(reg) 64usize,
                options(nostack));
        }
        for u in 0..T {
            let epilogue = Epilogue::of(job, t0 + u);
            let tile = w.add(u * tile_bytes);
            for (r, row_sums) in sums.iter().enumerate().take(mr) {
                let mut acc = _mm256_loadu_si256(row_sums[8 * u..].as_ptr().cast());
                // The k past the last whole 64: 4 at a time, as `vnni.rs` sums them.
                for g in full * 16..depth / 4 {
                    let quad = x.add(r * depth + 4 * g).cast::<i32>().read_unaligned();
                    let wg = _mm256_loadu_si256(tile.add(32 * g).cast());
                    acc = _mm256_dpbusd_epi32(acc, _mm256_set1_epi32(quad), wg);
                }
                epilogue.store(job, row0 + r, acc);
            }
        }
    }
}
