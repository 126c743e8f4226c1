//! One decode step's attention for a whole batch, on the host (the CPU backend's path).
//!
//! Why: in burn a decode step's attention is about fifteen ops per layer (the q/k/v views,
//! two `slice_assign`s into the cache, one-row matmuls per head over a strided cache, a
//! softmax in several passes with a libm `exp` per score, the heads' merge copy), each with
//! its allocation and pass over memory, for a few thousand multiply-adds per head.
//! Here each head is one pass over its cached keys and one over its values.
//!
//! # Invariants
//!
//! * **Layout.** `qkv` is `[B, (Hq + 2·H)·D]`, each row `q | k | v` with the heads contiguous
//!   inside each (GPT-2's fused `c_attn` output; a Llama-family model's projections side by
//!   side). The caches hold the `H` key/value heads, `[B, H, capacity, D]` row-major; the
//!   step's keys and values are written at position `at`, and keys `0..=at` are attended.
//!   `out` is `[B, Hq·D]`, the heads merged, ready for the output projection.
//! * **Grouped-query attention.** `Hq` is a multiple of `H`: query head `h` reads key/value
//!   head `h / (Hq / H)` where it lies in the cache, never a per-head copy.
//! * **Masking.** A key with `key_valid[b][s] == false` (left padding) gets no weight, exactly
//!   as the `f32::MIN` bias of the burn path gives it (`exp` of it underflows to 0). The step's
//!   own key is always valid, so no row is left without keys.
//! * **Threads.** Heads are split over rayon's current pool; each writes its own `D` outputs.
//!   Results do not depend on the number of threads.
//! * **SIMD.** The same loops compiled with AVX2 where detected, else portable; no fused
//!   multiply-adds, so both paths agree bit for bit.

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

/// Writes the step's keys and values (from `qkv`) at position `at` of `keys` and `values`,
/// then `out = softmax(q·kᵀ·scale)·v` per row and head over keys `0..=at`.
#[allow(clippy::too_many_arguments)]
pub fn decode_attention(
    qkv: &[f32],
    keys: &mut [f32],
    values: &mut [f32],
    shape: CacheShape,
    at: usize,
    key_valid: &[Vec<bool>],
    scale: f32,
    out: &mut [f32],
) {
    let (d, c, qc, w) = (
        shape.head_dim,
        shape.width(),
        shape.query_width(),
        shape.row_width(),
    );
    assert!(at < shape.capacity, "no room at key position {at}");
    assert!(shape.heads > 0 && shape.query_heads.is_multiple_of(shape.heads));
    assert_eq!(qkv.len(), shape.batch * w);
    assert_eq!(keys.len(), shape.batch * shape.heads * shape.capacity * d);
    assert_eq!(values.len(), keys.len());
    assert_eq!(out.len(), shape.batch * qc);
    assert!(key_valid.iter().all(|row| row.len() > at && row[at]));
    for (row, qkv_row) in qkv.chunks_exact(w).enumerate() {
        for head in 0..shape.heads {
            let to = shape.at(row, head, at);
            let from = qc + head * d;
            keys[to..to + d].copy_from_slice(&qkv_row[from..from + d]);
            values[to..to + d].copy_from_slice(&qkv_row[c + from..c + from + d]);
        }
    }
    let (keys, values) = (&*keys, &*values);
    let group = shape.query_heads / shape.heads;
    // A head's work is a few thousand multiply-adds: hand them out a few at a time.
    out.par_chunks_mut(d)
        .enumerate()
        .with_min_len(4)
        .for_each_init(Vec::new, |scores, (i, out)| {
            let (row, head) = (i / shape.query_heads, i % shape.query_heads);
            let q = &qkv[row * w + head * d..][..d];
            let first = shape.at(row, head / group, 0);
            let span = first..first + (at + 1) * d;
            let head = Head {
                q,
                keys: &keys[span.clone()],
                values: &values[span],
                valid: &key_valid[row][..=at],
                scale,
            };
            head.attend(scores, out);
        });
}

/// One `(row, head)`: its query and its slice of the caches.
struct Head<'a> {
    q: &'a [f32],
    /// Keys `0..=at`, `D` floats each.
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

    /// The reference: the step's key and value appended, then softmax over the valid keys in
    /// f64.
    fn reference(
        qkv: &[f32],
        keys: &[f32],
        values: &[f32],
        shape: CacheShape,
        at: usize,
        key_valid: &[Vec<bool>],
        scale: f32,
    ) -> Vec<f64> {
        let (d, c, qc, w) = (
            shape.head_dim,
            shape.width(),
            shape.query_width(),
            shape.row_width(),
        );
        let group = shape.query_heads / shape.heads;
        let mut out = vec![0.0f64; shape.batch * qc];
        for row in 0..shape.batch {
            let r = &qkv[row * w..(row + 1) * w];
            for query_head in 0..shape.query_heads {
                let head = query_head / group;
                let q = &r[query_head * d..(query_head + 1) * d];
                let key = |s: usize| -> &[f32] {
                    if s == at {
                        &r[qc + head * d..qc + (head + 1) * d]
                    } else {
                        &keys[shape.at(row, head, s)..][..d]
                    }
                };
                let value = |s: usize| -> &[f32] {
                    if s == at {
                        &r[qc + c + head * d..qc + c + (head + 1) * d]
                    } else {
                        &values[shape.at(row, head, s)..][..d]
                    }
                };
                let valid: Vec<usize> = (0..=at).filter(|&s| key_valid[row][s]).collect();
                let scores: Vec<f64> = valid
                    .iter()
                    .map(|&s| {
                        let k = key(s);
                        q.iter()
                            .zip(k)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for (&s, w) in valid.iter().zip(&weights) {
                    for (j, &v) in value(s).iter().enumerate() {
                        out[row * qc + query_head * d + j] += w / sum * v as f64;
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

    fn case(shape: CacheShape, at: usize, key_valid: &[Vec<bool>]) -> (Vec<f32>, Vec<f64>) {
        let qkv = values(shape.batch * shape.row_width(), 7);
        let cache = shape.batch * shape.heads * shape.capacity * shape.head_dim;
        let (mut keys, mut vals) = (values(cache, 11), values(cache, 13));
        let scale = 1.0 / (shape.head_dim as f32).sqrt();
        let want = reference(&qkv, &keys, &vals, shape, at, key_valid, scale);
        let mut out = vec![f32::NAN; shape.batch * shape.query_width()];
        decode_attention(
            &qkv, &mut keys, &mut vals, shape, at, key_valid, scale, &mut out,
        );
        (out, want)
    }

    #[test]
    fn matches_softmax_attention_in_f64_with_left_padding_masked() {
        // Row 0 has two padding keys, row 1 none; head_dim 12 exercises the tail of `dot`.
        let shape = CacheShape {
            batch: 2,
            query_heads: 3,
            heads: 3,
            capacity: 9,
            head_dim: 12,
        };
        assert_matches_reference(shape);
    }

    #[test]
    fn grouped_query_heads_read_their_groups_key_value_head() {
        // Six query heads over two key/value heads (groups of three), as Llama 3's GQA.
        let shape = CacheShape {
            batch: 2,
            query_heads: 6,
            heads: 2,
            capacity: 9,
            head_dim: 12,
        };
        assert_matches_reference(shape);
    }

    fn assert_matches_reference(shape: CacheShape) {
        let at = 6;
        let key_valid = vec![
            [false, false, true, true, true, true, true, false, false].to_vec(),
            vec![true; 9],
        ];
        let (got, want) = case(shape, at, &key_valid);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{i}: {g} vs {w}"
            );
        }
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
        let mut out = vec![0.0; shape.batch * c];
        let key_valid = vec![vec![true; 4]; 2];
        decode_attention(
            &qkv, &mut keys, &mut vals, shape, 2, &key_valid, 1.0, &mut out,
        );
        for row in 0..2 {
            for head in 0..2 {
                let at = shape.at(row, head, 2);
                let q = row * 3 * c + head * d;
                assert_eq!(keys[at..at + d], qkv[q + c..q + c + d]);
                assert_eq!(vals[at..at + d], qkv[q + 2 * c..q + 2 * c + d]);
            }
        }
        // With only the step's key valid, a head's output is exactly its value.
        let only_last = vec![[false, false, true, false].to_vec(); 2];
        decode_attention(
            &qkv, &mut keys, &mut vals, shape, 2, &only_last, 1.0, &mut out,
        );
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
