//! A step's attention for a whole batch on the host (the CPU backend's path): a decode
//! step's one query per row, or a prompt's every query.
//!
//! Why: in burn a decode step's attention is about fifteen ops per layer (the q/k/v views,
//! two `slice_assign`s into the cache, one-row matmuls per head over a strided cache, a
//! softmax in several passes with a libm `exp` per score, the heads' merge copy), each with
//! its allocation and pass over memory, for a few thousand multiply-adds per head. A prompt's
//! attention in burn scores every key for every query, masked ones included, and holds the
//! `[B, H, T, S]` scores several times over: at 2,000 tokens Qwen2.5-0.5B spent most of its
//! prefill there. Here a decode step's `(row, head)` is one pass over the keys it may see and
//! one over their values, and a prompt's queries go in blocks (`Step`), each block's scores
//! stopping at its last query's key. An encoder's layer ([`bidirectional_attention`]) runs
//! the same blocks with every query seeing its row's every key: at 512 tokens burn's path
//! took about 40 % of a BERT forward.
//!
//! # Invariants
//!
//! * **Layout.** `qkv` is `[B, T, (Hq + 2·H)·D]`, each row `q | k | v` with the heads
//!   contiguous inside each (GPT-2's fused `c_attn` output; a Llama-family model's projections
//!   side by side). The caches hold the `H` key/value heads, `[B, H, capacity, D]` row-major;
//!   the step's keys and values are written at positions `past..past + T`, and query `i` sees
//!   keys `first_visible[b][i]..=past + i` (an encoder's: its row's first `lengths[b]`).
//!   `out` is `[B, T, Hq·D]`, the heads merged, ready for the output projection.
//! * **Grouped-query attention.** `Hq` is a multiple of `H`: query head `h` reads key/value
//!   head `h / (Hq / H)` where it lies in the cache, never a per-head copy.
//! * **Masking.** A key with `key_valid[b][s] == false` (left padding) gets no weight, exactly
//!   as the `f32::MIN` bias of the burn path gives it (`exp` of it underflows to 0). A query
//!   that sees no key (a left-padding position of a prompt) gets zeros, as does an encoder's
//!   padding query (not computed); their outputs are never read, and zeros keep the keys and
//!   values finite in the cache.
//! * **Threads.** Queries and heads are split over rayon's current pool (a block of queries
//!   per key/value head is a job of its own, so a short prompt's one block still spreads over
//!   the threads); each writes its own outputs. Results do not depend on the number of
//!   threads.
//! * **SIMD.** A decode step's loops are compiled with AVX2 where detected, else portable;
//!   no fused multiply-adds, so both agree bit for bit. A prompt's two products per block
//!   and key/value head run in `gemm`, which picks its kernels as it does under burn's matmuls;
//!   its softmax runs in 16 lanes where AVX-512 is detected, 8 elsewhere (the sums' order, and
//!   so their last bits, differ between the two).

use rayon::prelude::*;

use super::activation::exp;

/// The shape of one layer's key/value caches.
#[derive(Clone, Copy, Debug)]
pub struct CacheShape {
    pub batch: usize,
    /// Query heads: `heads` times the group size (equal to `heads` without grouping).
    pub query_heads: usize,
    /// Key/value heads, as the cache holds them.
    pub heads: usize,
    /// Key positions each `(row, head)` has room for.
    pub capacity: usize,
    pub head_dim: usize,
}

impl CacheShape {
    /// Width of the step's keys (and of its values).
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of the step's queries, and of the output.
    fn query_width(&self) -> usize {
        self.query_heads * self.head_dim
    }

    /// Width of one row of the step's `q | k | v`.
    fn row_width(&self) -> usize {
        self.query_width() + 2 * self.width()
    }

    /// Where key position `s` of `(row, head)` starts in a cache.
    fn at(&self, row: usize, head: usize, s: usize) -> usize {
        ((row * self.heads + head) * self.capacity + s) * self.head_dim
    }
}

/// Which keys a step's queries see: `key_valid[b]` for each key position (`past + T` of
/// them; false = left padding), and `first_visible[b][i]`, the first key position query `i`
/// sees (a sliding window's start; 0 without one). Query `i` never sees past `past + i`.
pub struct Visibility<'a> {
    pub key_valid: &'a [Vec<bool>],
    pub first_visible: &'a [Vec<usize>],
}

/// Writes the step's `T` keys and values (from `qkv`) at positions `past..past + T` of `keys`
/// and `values`, then `out = softmax(q·kᵀ·scale)·v` per row, query and head over the keys
/// each query sees.
#[allow(clippy::too_many_arguments)]
pub fn cached_attention(
    qkv: &[f32],
    keys: &mut [f32],
    values: &mut [f32],
    shape: CacheShape,
    past: usize,
    visibility: &Visibility,
    scale: f32,
    out: &mut [f32],
) {
    let (d, qc, w) = (shape.head_dim, shape.query_width(), shape.row_width());
    assert!(shape.heads > 0 && shape.query_heads.is_multiple_of(shape.heads));
    assert!(shape.batch > 0 && qkv.len().is_multiple_of(shape.batch * w));
    let t = qkv.len() / (shape.batch * w);
    assert!(
        past + t <= shape.capacity,
        "no room for key positions {past}..{}",
        past + t
    );
    assert_eq!(keys.len(), shape.batch * shape.heads * shape.capacity * d);
    assert_eq!(values.len(), keys.len());
    assert_eq!(out.len(), shape.batch * t * qc);
    let Visibility {
        key_valid,
        first_visible,
    } = *visibility;
    assert!(key_valid.iter().all(|row| row.len() >= past + t));
    assert!(first_visible.iter().all(|row| row.len() == t));
    store_keys_values(qkv, keys, values, shape, past, t);
    let (keys, values) = (&*keys, &*values);
    if t > 1 {
        let step = Step {
            qkv,
            keys,
            values,
            shape,
            past,
            t,
            queries: t,
            reach: Reach::Causal,
            visibility,
            scale,
        };
        return step.attend_in_blocks(out);
    }
    let group = shape.query_heads / shape.heads;
    // A decode step's head is a few thousand multiply-adds: hand them out a few at a time.
    out.par_chunks_mut(d)
        .enumerate()
        .with_min_len(4)
        .for_each_init(Vec::new, |scores, (index, out)| {
            let (step, head) = (index / shape.query_heads, index % shape.query_heads);
            let (row, i) = (step / t, step % t);
            let q = &qkv[step * w + head * d..][..d];
            let (first, last) = (first_visible[row][i], past + i);
            let start = shape.at(row, head / group, first);
            let span = start..start + (last + 1 - first) * d;
            let head = Head {
                q,
                keys: &keys[span.clone()],
                values: &values[span],
                valid: &key_valid[row][first..=last],
                scale,
            };
            head.attend(scores, out);
        });
}

/// An encoder layer's attention, nothing cached: row `b`'s first `queries` positions (all
/// `T`, or the first alone where only it is read) over its first `lengths[b]` keys (the row's
/// real tokens; right padding follows them). A padding query is not computed: its output is
/// zeros. `qkv` is laid out as for [`cached_attention`], `shape.capacity` being `T`; `out` is
/// `[B, queries, Hq·D]`.
pub fn bidirectional_attention(
    qkv: &[f32],
    shape: CacheShape,
    lengths: &[usize],
    queries: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (t, w) = (shape.capacity, shape.row_width());
    assert!(shape.heads > 0 && shape.query_heads.is_multiple_of(shape.heads));
    assert_eq!(qkv.len(), shape.batch * t * w);
    assert!(lengths.len() == shape.batch && lengths.iter().all(|l| (1..=t).contains(l)));
    assert!((1..=t).contains(&queries));
    assert_eq!(out.len(), shape.batch * queries * shape.query_width());
    // The blocks read keys and values per head, as a cache holds them.
    let mut keys = vec![0.0f32; shape.batch * shape.heads * t * shape.head_dim];
    let mut values = keys.clone();
    store_keys_values(qkv, &mut keys, &mut values, shape, 0, t);
    // Every key a query reaches is a real token's.
    let key_valid = vec![vec![true; t]; shape.batch];
    let first_visible = vec![vec![0; queries]; shape.batch];
    let visibility = Visibility {
        key_valid: &key_valid,
        first_visible: &first_visible,
    };
    out.fill(0.0);
    Step {
        qkv,
        keys: &keys,
        values: &values,
        shape,
        past: 0,
        t,
        queries,
        reach: Reach::Lengths(lengths),
        visibility: &visibility,
        scale,
    }
    .attend_in_blocks(out);
}

/// Copies each row's `t` keys and values from `qkv` to positions `past..past + t` of the
/// caches.
fn store_keys_values(
    qkv: &[f32],
    keys: &mut [f32],
    values: &mut [f32],
    shape: CacheShape,
    past: usize,
    t: usize,
) {
    let (d, c, qc) = (shape.head_dim, shape.width(), shape.query_width());
    for (step, qkv_row) in qkv.chunks_exact(shape.row_width()).enumerate() {
        let (row, i) = (step / t, step % t);
        for head in 0..shape.heads {
            let to = shape.at(row, head, past + i);
            let from = qc + head * d;
            keys[to..to + d].copy_from_slice(&qkv_row[from..from + d]);
            values[to..to + d].copy_from_slice(&qkv_row[c + from..c + from + d]);
        }
    }
}

/// Rows of queries one product scores: a block's queries times its group's query heads (a
/// group shares its keys, so they are scored as one product). 64 score rows of a 4,096-key
/// context are 1 MiB, about a core's L2.
const SCORED_ROWS: usize = 64;

/// A step of several queries per row, once its keys and values are in the caches.
struct Step<'a> {
    qkv: &'a [f32],
    keys: &'a [f32],
    values: &'a [f32],
    shape: CacheShape,
    past: usize,
    /// Positions of each row in `qkv`.
    t: usize,
    /// Queries per row: its first positions (`t`, or fewer for an encoder's last layer).
    queries: usize,
    reach: Reach<'a>,
    visibility: &'a Visibility<'a>,
    scale: f32,
}

/// How far a step's queries see, past their window's start.
#[derive(Clone, Copy)]
enum Reach<'a> {
    /// Query `i` sees up to key `past + i` (a decoder's step).
    Causal,
    /// Row `b`'s queries see its first `lengths[b]` keys, and only those are computed (an
    /// encoder's right-padded input).
    Lengths(&'a [usize]),
}

impl Reach<'_> {
    /// Queries of `row` to compute, of the step's `queries`.
    fn queries(self, row: usize, queries: usize) -> usize {
        match self {
            Self::Causal => queries,
            Self::Lengths(lengths) => queries.min(lengths[row]),
        }
    }
}

/// One thread's buffers for a block: its group's queries, their scores, their outputs.
#[derive(Default)]
struct BlockBuffers {
    queries: Vec<f32>,
    scores: Vec<f32>,
    attended: Vec<f32>,
}

/// The step's output, written by the blocks' jobs in parallel: each job writes only its own
/// queries' columns of its own heads, so no two jobs write the same element.
struct SharedOut(*mut f32);

// SAFETY: the jobs write disjoint elements (above), and `attend_in_blocks` holds the only
// reference to the buffer until they have all finished.
unsafe impl Sync for SharedOut {}

impl Step<'_> {
    /// Each row's queries in blocks, in parallel: per block and key/value head, the scores of
    /// the keys its group's queries see as one product (`gemm`, as burn's matmuls), each
    /// query's softmax over its own keys, and the weighted values as another product. A causal
    /// block scores the keys up to its last query's, so fewer than a block's queries' scores a
    /// query are computed to be masked, against the `T - 1 - i` of a whole-prompt product.
    fn attend_in_blocks(&self, out: &mut [f32]) {
        let (d, qc) = (self.shape.head_dim, self.shape.query_width());
        let (heads, group) = (self.shape.heads, self.shape.query_heads / self.shape.heads);
        assert_eq!(out.len(), self.shape.batch * self.queries * qc);
        let block = (SCORED_ROWS / group).max(8);
        let blocks = self.queries.div_ceil(block);
        let shared = SharedOut(out.as_mut_ptr());
        let shared = &shared;
        (0..self.shape.batch * blocks * heads)
            .into_par_iter()
            .for_each_init(BlockBuffers::default, |buffers, job| {
                let (row, head) = (job / (blocks * heads), job % heads);
                let first = job / heads % blocks * block;
                let queries = self.reach.queries(row, self.queries);
                if first >= queries {
                    return;
                }
                let n = block.min(queries - first);
                self.attend_block(row, head, first, n, buffers);
                // Score row `g·n + i` is query `first + i` of the group's query head `g`.
                for (r, head_out) in buffers.attended.chunks_exact(d).enumerate() {
                    let (g, i) = (r / n, r % n);
                    let at = (row * self.queries + first + i) * qc + (head * group + g) * d;
                    // SAFETY: `at + d` ≤ `out.len()` (asserted above); no other job writes
                    // query `first + i` of row `row` in query head `head · group + g`.
                    unsafe { std::slice::from_raw_parts_mut(shared.0.add(at), d) }
                        .copy_from_slice(head_out);
                }
            });
    }

    /// Queries `first..first + n` of `row` in the query heads of key/value head `head`, into
    /// `buffers.attended` (`[group · n, D]`, score row `g·n + i` being query `first + i` of
    /// the group's query head `g`).
    fn attend_block(
        &self,
        row: usize,
        head: usize,
        first: usize,
        n: usize,
        buffers: &mut BlockBuffers,
    ) {
        let shape = self.shape;
        let (d, w) = (shape.head_dim, shape.row_width());
        let group = shape.query_heads / shape.heads;
        let m = group * n;
        let first_visible = &self.visibility.first_visible[row][first..first + n];
        // The window's start only moves forward with the query.
        let lo = first_visible[0];
        let hi = match self.reach {
            Reach::Causal => self.past + first + n - 1,
            Reach::Lengths(lengths) => self.past + lengths[row] - 1,
        };
        let keys = hi + 1 - lo;
        let at = shape.at(row, head, lo);
        let BlockBuffers {
            queries,
            scores,
            attended,
        } = buffers;
        queries.clear();
        for g in 0..group {
            let column = (head * group + g) * d;
            for i in 0..n {
                queries
                    .extend_from_slice(&self.qkv[(row * self.t + first + i) * w + column..][..d]);
            }
        }
        scores.clear();
        scores.resize(m * keys, 0.0);
        attended.clear();
        attended.resize(m * d, 0.0);
        // SAFETY: every pointer, stride and extent lies within its slice: `m` queries of `d`,
        // `keys` cache rows of `d` from `at` (`hi` < capacity), `m · keys` scores.
        unsafe {
            gemm::gemm(
                m,
                keys,
                d,
                scores.as_mut_ptr(),
                1,
                keys as isize,
                false,
                queries.as_ptr(),
                1,
                d as isize,
                self.keys[at..].as_ptr(),
                d as isize,
                1,
                0.0,
                self.scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let valid = &self.visibility.key_valid[row][lo..=hi];
        for (r, row_scores) in scores.chunks_exact_mut(keys).enumerate() {
            // Query `first + i` sees keys `first_visible[i]..`, up to `past + first + i` when
            // causal.
            let i = r % n;
            let end = match self.reach {
                Reach::Causal => keys - (n - 1 - i),
                Reach::Lengths(_) => keys,
            };
            softmax_in_place(row_scores, valid, first_visible[i] - lo..end);
        }
        // SAFETY: as above; the values' rows lie where the keys' do; `m · d` outputs.
        unsafe {
            gemm::gemm(
                m,
                d,
                keys,
                attended.as_mut_ptr(),
                1,
                d as isize,
                false,
                scores.as_ptr(),
                1,
                keys as isize,
                self.values[at..].as_ptr(),
                1,
                d as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

/// `scores` become softmax weights over the valid keys in `seen`, and 0 elsewhere (all 0
/// where no key is seen: a padding query, whose output is then zeros).
fn softmax_in_place(scores: &mut [f32], valid: &[bool], seen: std::ops::Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    if super::wide_kernels() {
        // SAFETY: avx2 and avx512f were detected.
        unsafe { softmax_avx512(scores, valid, seen) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::detected() == super::Simd::Avx2 {
        // SAFETY: avx2 was detected.
        unsafe { softmax_avx2(scores, valid, seen) };
        return;
    }
    softmax_each::<8>(scores, valid, seen);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn softmax_avx512(scores: &mut [f32], valid: &[bool], seen: std::ops::Range<usize>) {
    softmax_each::<16>(scores, valid, seen);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_avx2(scores: &mut [f32], valid: &[bool], seen: std::ops::Range<usize>) {
    softmax_each::<8>(scores, valid, seen);
}

/// The softmax in `L` lanes, a register's width of f32 (AVX2's 8, AVX-512's 16).
#[inline(always)]
fn softmax_each<const L: usize>(scores: &mut [f32], valid: &[bool], seen: std::ops::Range<usize>) {
    let (scores_seen, valid) = (&mut scores[seen.clone()], &valid[seen.clone()]);
    // One pass a step, each a plain loop over the scores, and `L` lanes for each reduction,
    // so that every loop vectorises: a single running max or sum is a chain of dependent
    // instructions, and reading the flags inside the reductions made LLVM gather.
    for (s, &v) in scores_seen.iter_mut().zip(valid) {
        *s = if v { *s } else { f32::NEG_INFINITY };
    }
    let mut maxes = [f32::NEG_INFINITY; L];
    let chunks = scores_seen.chunks_exact(L);
    for &s in chunks.remainder() {
        maxes[0] = maxes[0].max(s);
    }
    for chunk in chunks {
        for l in 0..L {
            maxes[l] = maxes[l].max(chunk[l]);
        }
    }
    let max = maxes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    // A masked key's weight is exactly 0 (`exp` clamps, so it alone would give 1.6e-38).
    let weight = |s: f32| {
        if s == f32::NEG_INFINITY {
            0.0
        } else {
            exp(s - max)
        }
    };
    let mut sums = [0.0f32; L];
    let mut chunks = scores_seen.chunks_exact_mut(L);
    for chunk in &mut chunks {
        for l in 0..L {
            chunk[l] = weight(chunk[l]);
            sums[l] += chunk[l];
        }
    }
    for s in chunks.into_remainder() {
        *s = weight(*s);
        sums[0] += *s;
    }
    let sum: f32 = sums.iter().sum();
    if sum > 0.0 {
        let inverse = 1.0 / sum;
        for s in scores_seen.iter_mut() {
            *s *= inverse;
        }
    }
    scores[..seen.start].fill(0.0);
    scores[seen.end..].fill(0.0);
}

/// One `(row, head)`: its query and its slice of the caches.
struct Head<'a> {
    q: &'a [f32],
    /// The keys the query may see, `D` floats each.
    keys: &'a [f32],
    values: &'a [f32],
    valid: &'a [bool],
    scale: f32,
}

impl Head<'_> {
    fn attend(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::detected() == super::Simd::Avx2 {
            // SAFETY: avx2 was detected.
            unsafe { self.attend_avx2(scores, out) };
            return;
        }
        self.attend_each(scores, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn attend_avx2(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        self.attend_each(scores, out);
    }

    #[inline(always)]
    fn attend_each(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        let d = self.q.len();
        // Plain loops: an iterator adapter's `fold` may stay out of line, compiled without
        // this function's AVX2 (the scores' dot products ran on SSE that way).
        scores.clear();
        scores.resize(self.valid.len(), 0.0);
        let mut max = f32::NEG_INFINITY;
        for ((s, key), &valid) in scores
            .iter_mut()
            .zip(self.keys.chunks_exact(d))
            .zip(self.valid)
        {
            *s = dot(self.q, key) * self.scale;
            if valid {
                max = max.max(*s);
            }
        }
        let mut sum = 0.0;
        for (s, &valid) in scores.iter_mut().zip(self.valid) {
            *s = if valid { exp(*s - max) } else { 0.0 };
            sum += *s;
        }
        out.fill(0.0);
        if sum == 0.0 {
            // No key to see (a padding query): zeros, where `1 / sum` would make NaNs.
            return;
        }
        for (&weight, value) in scores.iter().zip(self.values.chunks_exact(d)) {
            for (o, &v) in out.iter_mut().zip(value) {
                *o += weight * v;
            }
        }
        let inverse = 1.0 / sum;
        for o in out {
            *o *= inverse;
        }
    }
}

/// `a · b` in eight lanes (so it vectorises), then the lanes summed.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the step's keys and values appended, then each of the first `queries`
    /// queries' softmax over the keys it sees (up to its own when `causal`), in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        qkv: &[f32],
        keys: &[f32],
        values: &[f32],
        shape: CacheShape,
        past: usize,
        visibility: &Visibility,
        (queries, causal): (usize, bool),
        scale: f32,
    ) -> Vec<f64> {
        let (d, c, qc, w) = (
            shape.head_dim,
            shape.width(),
            shape.query_width(),
            shape.row_width(),
        );
        let t = qkv.len() / (shape.batch * w);
        let group = shape.query_heads / shape.heads;
        let mut out = vec![0.0f64; shape.batch * queries * qc];
        for row in 0..shape.batch {
            for i in 0..queries {
                let r = &qkv[(row * t + i) * w..][..w];
                for query_head in 0..shape.query_heads {
                    let head = query_head / group;
                    let q = &r[query_head * d..(query_head + 1) * d];
                    // Key `s` and value `s`: the cache's, or a step's row's.
                    let cached = |s: usize, offset: usize, cache: &'_ [f32]| -> Vec<f32> {
                        if s >= past {
                            let from = &qkv[(row * t + s - past) * w + offset + head * d..];
                            from[..d].to_vec()
                        } else {
                            cache[shape.at(row, head, s)..][..d].to_vec()
                        }
                    };
                    let first = visibility.first_visible[row][i];
                    let last = if causal { past + i } else { past + t - 1 };
                    let seen: Vec<usize> = (first..=last)
                        .filter(|&s| visibility.key_valid[row][s])
                        .collect();
                    let scores: Vec<f64> = seen
                        .iter()
                        .map(|&s| {
                            let k = cached(s, qc, keys);
                            q.iter()
                                .zip(&k)
                                .map(|(&a, &b)| a as f64 * b as f64)
                                .sum::<f64>()
                                * scale as f64
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = weights.iter().sum();
                    let at = (row * queries + i) * qc + query_head * d;
                    for (&s, w) in seen.iter().zip(&weights) {
                        for (j, v) in cached(s, qc + c, values).into_iter().enumerate() {
                            out[at + j] += w / sum * v as f64;
                        }
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (x as f32 / (1u32 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// Runs `t` queries after `past` cached positions and compares them with the reference.
    fn assert_matches_reference(shape: CacheShape, past: usize, visibility: &Visibility) {
        let t = visibility.first_visible[0].len();
        let qkv = values(shape.batch * t * shape.row_width(), 7);
        let cache = shape.batch * shape.heads * shape.capacity * shape.head_dim;
        let (mut keys, mut vals) = (values(cache, 11), values(cache, 13));
        let scale = 1.0 / (shape.head_dim as f32).sqrt();
        let want = reference(
            &qkv,
            &keys,
            &vals,
            shape,
            past,
            visibility,
            (t, true),
            scale,
        );
        let mut got = vec![f32::NAN; shape.batch * t * shape.query_width()];
        cached_attention(
            &qkv, &mut keys, &mut vals, shape, past, visibility, scale, &mut got,
        );
        assert_close(&got, &want);
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{i}: {g} vs {w}"
            );
        }
    }

    /// An encoder's layer over `t` positions (row 0 right-padded by three, when `t` > 3), its
    /// first `queries` positions computed; row 0's padding queries give zeros.
    fn assert_bidirectional_matches_reference(t: usize, queries: usize) {
        let shape = CacheShape {
            batch: 2,
            query_heads: 3,
            heads: 3,
            capacity: t,
            head_dim: 16,
        };
        let lengths = [if t > 3 { t - 3 } else { t }, t];
        let key_valid: Vec<Vec<bool>> = lengths
            .iter()
            .map(|&l| (0..t).map(|s| s < l).collect())
            .collect();
        let first_visible = vec![vec![0; queries]; 2];
        let visibility = Visibility {
            key_valid: &key_valid,
            first_visible: &first_visible,
        };
        let qkv = values(shape.batch * t * shape.row_width(), 17);
        let scale = 0.25;
        let want = reference(
            &qkv,
            &[],
            &[],
            shape,
            0,
            &visibility,
            (queries, false),
            scale,
        );
        let mut want = want;
        let qc = shape.query_width();
        want[lengths[0].min(queries) * qc..queries * qc].fill(0.0);
        let mut got = vec![f32::NAN; shape.batch * queries * qc];
        bidirectional_attention(&qkv, shape, &lengths, queries, scale, &mut got);
        assert_close(&got, &want);
    }

    #[test]
    fn an_encoders_queries_see_every_valid_key_of_their_row_across_blocks() {
        assert_bidirectional_matches_reference(2 * SCORED_ROWS + 5, 2 * SCORED_ROWS + 5);
        assert_bidirectional_matches_reference(1, 1);
    }

    #[test]
    fn an_encoders_first_query_alone_sees_the_whole_row() {
        assert_bidirectional_matches_reference(9, 1);
    }

    /// Row 0 has two padding keys and two keys no query sees, row 1 none.
    fn two_rows_of_nine() -> Vec<Vec<bool>> {
        vec![
            [false, false, true, true, true, true, true, false, false].to_vec(),
            vec![true; 9],
        ]
    }

    /// A decode step after six cached positions, over `two_rows_of_nine`'s keys; head_dim
    /// 12 exercises the tail of `dot`.
    fn assert_a_decode_step_matches_reference(query_heads: usize, heads: usize) {
        let shape = CacheShape {
            batch: 2,
            query_heads,
            heads,
            capacity: 9,
            head_dim: 12,
        };
        let key_valid = two_rows_of_nine();
        let visibility = Visibility {
            key_valid: &key_valid,
            first_visible: &[vec![0], vec![0]],
        };
        assert_matches_reference(shape, 6, &visibility);
    }

    #[test]
    fn a_decode_step_matches_softmax_attention_in_f64_with_left_padding_masked() {
        assert_a_decode_step_matches_reference(3, 3);
    }

    #[test]
    fn grouped_query_heads_read_their_groups_key_value_head() {
        // Six query heads over two key/value heads (groups of three), as Llama 3's GQA.
        assert_a_decode_step_matches_reference(6, 2);
    }

    #[test]
    fn a_prompts_queries_see_the_keys_up_to_their_own_and_padding_queries_get_zeros() {
        let shape = CacheShape {
            batch: 2,
            query_heads: 4,
            heads: 2,
            capacity: 7,
            head_dim: 8,
        };
        // Row 0 is a shorter prompt, left-padded by two.
        let key_valid = vec![
            [false, false, true, true, true, true, true].to_vec(),
            vec![true; 7],
        ];
        let visibility = Visibility {
            key_valid: &key_valid,
            first_visible: &[vec![0; 7], vec![0; 7]],
        };
        assert_matches_reference(shape, 0, &visibility);
        let qkv = values(2 * 7 * shape.row_width(), 5);
        let (mut keys, mut vals) = (vec![0.0; 2 * 2 * 7 * 8], vec![0.0; 2 * 2 * 7 * 8]);
        let mut out = vec![f32::NAN; 2 * 7 * 32];
        cached_attention(
            &qkv,
            &mut keys,
            &mut vals,
            shape,
            0,
            &visibility,
            1.0,
            &mut out,
        );
        assert!(out[..2 * 32].iter().all(|&x| x == 0.0));
        assert!(out.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn queries_after_a_cache_and_inside_a_window_see_only_their_window() {
        let shape = CacheShape {
            batch: 2,
            query_heads: 2,
            heads: 1,
            capacity: 9,
            head_dim: 8,
        };
        // Three queries after six cached positions (row 0's first two padding), each seeing
        // from its own first position on.
        let key_valid = vec![
            [false, false, true, true, true, true, true, true, true].to_vec(),
            vec![true; 9],
        ];
        let visibility = Visibility {
            key_valid: &key_valid,
            first_visible: &[vec![4, 4, 4], vec![3, 4, 5]],
        };
        assert_matches_reference(shape, 6, &visibility);
    }

    #[test]
    fn a_long_prompts_blocks_of_queries_match_the_reference_across_padding_and_a_window() {
        let shape = CacheShape {
            batch: 2,
            query_heads: 4,
            heads: 2,
            capacity: 2 * SCORED_ROWS + 16,
            head_dim: 16,
        };
        let t = 2 * SCORED_ROWS + 7;
        // Row 0 is left-padded by five; row 1 sees a window of 20 keys.
        let key_valid: Vec<Vec<bool>> = vec![(0..t).map(|s| s >= 5).collect(), vec![true; t]];
        let first_visible = vec![vec![0; t], (0..t).map(|i| i.saturating_sub(19)).collect()];
        let visibility = Visibility {
            key_valid: &key_valid,
            first_visible: &first_visible,
        };
        assert_matches_reference(shape, 0, &visibility);
    }

    #[test]
    fn writes_the_steps_keys_and_values_into_the_cache() {
        let shape = CacheShape {
            batch: 2,
            query_heads: 2,
            heads: 2,
            capacity: 4,
            head_dim: 8,
        };
        let (c, d) = (shape.width(), shape.head_dim);
        let qkv = values(shape.batch * 3 * c, 3);
        let (mut keys, mut vals) = (vec![0.0; 2 * 2 * 4 * 8], vec![0.0; 2 * 2 * 4 * 8]);
        let key_valid = vec![vec![true; 4]; 2];
        // The step at position 2, each query seeing keys `first..=2`.
        let step = |keys: &mut [f32], vals: &mut [f32], first: usize| {
            let first_visible = vec![vec![first]; 2];
            let visibility = Visibility {
                key_valid: &key_valid,
                first_visible: &first_visible,
            };
            let mut out = vec![0.0; shape.batch * c];
            cached_attention(&qkv, keys, vals, shape, 2, &visibility, 1.0, &mut out);
            out
        };
        step(&mut keys, &mut vals, 0);
        for row in 0..2 {
            for head in 0..2 {
                let at = shape.at(row, head, 2);
                let q = row * 3 * c + head * d;
                assert_eq!(keys[at..at + d], qkv[q + c..q + c + d]);
                assert_eq!(vals[at..at + d], qkv[q + 2 * c..q + 2 * c + d]);
            }
        }
        // With only the step's key visible, a head's output is exactly its value.
        let out = step(&mut keys, &mut vals, 2);
        for row in 0..2 {
            let v = row * 3 * c + 2 * c;
            assert_eq!(out[row * c..(row + 1) * c], qkv[v..v + c]);
        }
    }

    #[test]
    fn the_vectorised_and_portable_loops_agree_bit_for_bit() {
        let d = 64;
        let (q, keys, vals) = (values(d, 1), values(d * 37, 2), values(d * 37, 3));
        let valid: Vec<bool> = (0..37).map(|s| s % 5 != 1).collect();
        let head = Head {
            q: &q,
            keys: &keys,
            values: &vals,
            valid: &valid,
            scale: 0.125,
        };
        let (mut a, mut b) = (vec![0.0; d], vec![0.0; d]);
        head.attend(&mut Vec::new(), &mut a);
        head.attend_each(&mut Vec::new(), &mut b);
        assert_eq!(a, b);
    }
}
