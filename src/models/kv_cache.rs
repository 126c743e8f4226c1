//! The key/value cache every causal LM here decodes with, and the attention over it that the
//! architectures share.
//!
//! # Invariants
//!
//! * **Left padding.** Rows are left-padded to a common length, so every row's newest token
//!   sits in the last key column and a decode step is one column for the whole batch.
//!   `key_valid` says which columns hold real tokens; position ids count real tokens only, so
//!   a padded row computes exactly what it would alone.
//! * **Heads.** A layer caches its key/value heads (`num_key_value_heads` under grouped-query
//!   attention): `[B, H_kv, capacity, D]`. Query heads find their group's head in place.
//! * **Windows.** A sliding window (Mistral) is a mask over real-token positions: key `j` is
//!   visible to query `i` iff `j <= i` and `i - j < window`; nothing is evicted.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::attention::{attend, attention_bias, merge_heads, split_heads};
use super::error::ModelError;
use super::kernels::{
    self,
    attention::{CacheShape, Visibility},
};

/// Keys and values of one layer, `[B, H, capacity, D]`, of which the first `KvCache::len()`
/// key positions are filled.
///
/// Why spare capacity: appending with `Tensor::cat` copies the whole cache every decode step
/// (for gpt2 at batch 8 and a 300-token context, ~3 ms of a 43 ms step); writing the step's
/// keys into room already there is done in place while the buffer has a single owner.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    k: Tensor<4>,
    v: Tensor<4>,
}

impl LayerCache {
    /// Room is added this many key positions at a time: the copy a growth costs is paid once
    /// per `GROWTH` decode steps, and at most `GROWTH - 1` positions sit unused.
    const GROWTH: usize = 16;

    /// Empty `[B, H, _, D]` buffers with room for `needed` positions.
    fn with_room([b, h, d]: [usize; 3], needed: usize, device: &Device) -> Self {
        let shape = [b, h, needed.next_multiple_of(Self::GROWTH), d];
        Self {
            k: Tensor::zeros(shape, device),
            v: Tensor::zeros(shape, device),
        }
    }

    fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    /// Writes `k` and `v` (`[B, H, T, D]`) at key positions `len..len + T`.
    fn append(self, len: usize, k: Tensor<4>, v: Tensor<4>) -> Self {
        let t = k.dims()[2];
        self.reserve(len, len + t).write(len, (k, v))
    }

    /// The cache with room for `needed` positions, its first `len` kept.
    fn reserve(self, len: usize, needed: usize) -> Self {
        if needed <= self.capacity() {
            return self;
        }
        let [b, h, _, d] = self.k.dims();
        Self::with_room([b, h, d], needed, &self.k.device()).write(0, self.filled(len))
    }

    fn write(self, at: usize, (k, v): (Tensor<4>, Tensor<4>)) -> Self {
        let [b, h, t, d] = k.dims();
        if t == 0 {
            return self;
        }
        let range = [0..b, 0..h, at..at + t, 0..d];
        Self {
            k: self.k.slice_assign(range.clone(), k),
            v: self.v.slice_assign(range, v),
        }
    }

    /// Views of the first `len` key positions.
    fn filled(&self, len: usize) -> (Tensor<4>, Tensor<4>) {
        let [b, h, _, d] = self.k.dims();
        let range = [0..b, 0..h, 0..len, 0..d];
        (
            self.k.clone().slice(range.clone()),
            self.v.clone().slice(range),
        )
    }
}

/// The state a batch carries between decode steps.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    /// Per row, per key position: whether it holds a real token (false = left padding).
    key_valid: Vec<Vec<bool>>,
    /// Per row: the position id the row's next real token gets.
    next_position: Vec<usize>,
}

impl KvCache {
    pub(crate) fn new(n_layer: usize, batch: usize) -> Self {
        Self {
            layers: vec![None; n_layer],
            key_valid: vec![Vec::new(); batch],
            next_position: vec![0; batch],
        }
    }

    pub fn batch_size(&self) -> usize {
        self.key_valid.len()
    }

    /// Key positions held so far (padding included), the same for every row.
    pub fn len(&self) -> usize {
        self.key_valid.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows of `self` followed by the rows of `other`: how a sequence joins a running
    /// batch. The shorter side is left-padded with masked keys, so no row sees a change.
    pub fn concat(self, other: KvCache) -> KvCache {
        let len = self.len().max(other.len());
        let (a, b) = (self.left_pad_to(len), other.left_pad_to(len));
        let layers = a
            .layers
            .into_iter()
            .zip(b.layers)
            .map(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => {
                    let ((xk, xv), (yk, yv)) = (x.filled(len), y.filled(len));
                    Some(LayerCache {
                        k: Tensor::cat(vec![xk, yk], 0),
                        v: Tensor::cat(vec![xv, yv], 0),
                    })
                }
                (x, None) => x,
                (None, y) => y,
            })
            .collect();
        KvCache {
            layers,
            key_valid: a.key_valid.into_iter().chain(b.key_valid).collect(),
            next_position: a.next_position.into_iter().chain(b.next_position).collect(),
        }
    }

    /// Keeps `rows` (in that order): how finished or cancelled sequences leave a batch.
    /// Key columns that are padding in every remaining row are dropped too.
    pub fn retain(self, rows: &[usize]) -> KvCache {
        let key_valid: Vec<Vec<bool>> = rows.iter().map(|&r| self.key_valid[r].clone()).collect();
        let next_position = rows.iter().map(|&r| self.next_position[r]).collect();
        let len = self.len();
        let skip = key_valid
            .iter()
            .map(|row| row.iter().position(|&v| v).unwrap_or(row.len()))
            .min()
            .unwrap_or(0);
        let layers = self
            .layers
            .into_iter()
            .map(|layer| {
                layer.filter(|_| !rows.is_empty()).map(|l| {
                    let device = l.k.device();
                    let index = Tensor::<1, Int>::from_data(
                        TensorData::new(
                            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                            [rows.len()],
                        ),
                        &device,
                    );
                    let [_, h, _, d] = l.k.dims();
                    let keep = [0..rows.len(), 0..h, skip..len, 0..d];
                    LayerCache {
                        k: l.k.select(0, index.clone()).slice(keep.clone()),
                        v: l.v.select(0, index).slice(keep),
                    }
                })
            })
            .collect();
        KvCache {
            layers,
            key_valid: key_valid
                .into_iter()
                .map(|row| row[skip..].to_vec())
                .collect(),
            next_position,
        }
    }

    fn left_pad_to(mut self, len: usize) -> KvCache {
        let pad = len - self.len();
        if pad == 0 {
            return self;
        }
        let filled = self.len();
        for layer in self.layers.iter_mut().flatten() {
            let [b, h, _, d] = layer.k.dims();
            let zeros = Tensor::<4>::zeros([b, h, pad, d], &layer.k.device());
            let (k, v) = layer.filled(filled);
            layer.k = Tensor::cat(vec![zeros.clone(), k], 2);
            layer.v = Tensor::cat(vec![zeros, v], 2);
        }
        for row in &mut self.key_valid {
            row.splice(0..0, std::iter::repeat_n(false, pad));
        }
        self
    }
}

impl KvCache {
    /// Records a step's tokens (`valid`: `[B][T]`, false for left padding) and returns each
    /// token's position id, `[B, T]` row-major (0 for padding). Checked before anything
    /// changes, so a refused step leaves the cache usable.
    pub(crate) fn begin_step(
        &mut self,
        valid: &[Vec<bool>],
        context_length: usize,
    ) -> Result<Vec<i64>, ModelError> {
        for (row, row_valid) in valid.iter().enumerate() {
            let total = self.next_position[row] + row_valid.iter().filter(|v| **v).count();
            if total > context_length {
                return Err(ModelError::InvalidInput(format!(
                    "sequence of {total} tokens exceeds the model's context length ({context_length})"
                )));
            }
        }
        let mut positions = Vec::with_capacity(valid.len() * valid.first().map_or(0, Vec::len));
        for (row, row_valid) in valid.iter().enumerate() {
            for &is_real in row_valid {
                if is_real {
                    positions.push(self.next_position[row] as i64);
                    self.next_position[row] += 1;
                } else {
                    positions.push(0);
                }
            }
            self.key_valid[row].extend_from_slice(row_valid);
        }
        Ok(positions)
    }

    /// Which keys each of the step's `t` queries may see (call after `begin_step`), in the
    /// form the step's attention path reads (a bias for burn, per-key flags for the host),
    /// beside the layers' caches the step writes: split so the host's flags borrow the
    /// cache's own, instead of a copy per step.
    pub(crate) fn step(
        &mut self,
        t: usize,
        window: Option<usize>,
        device: &Device,
    ) -> (StepMask<'_>, &mut [Option<LayerCache>]) {
        let Self {
            layers, key_valid, ..
        } = self;
        (step_mask(key_valid, t, window, device), layers)
    }
}

/// The mask of a step of `t` queries over `key_valid` (see `KvCache::step`).
fn step_mask<'a>(
    key_valid: &'a [Vec<bool>],
    t: usize,
    window: Option<usize>,
    device: &Device,
) -> StepMask<'a> {
    let s = key_valid.first().map_or(0, Vec::len);
    let past = s - t;
    let batch = key_valid.len();
    // Real-token position of every key column (padding columns get the next one's).
    let key_positions = |row: usize| -> Vec<usize> {
        let mut count = 0;
        key_valid[row]
            .iter()
            .map(|&v| {
                let p = count;
                count += usize::from(v);
                p
            })
            .collect()
    };
    let host = runs_on_host(device);
    // The host reads each query's first visible key; a window's start moves with the query.
    let first_visible = if host {
        (0..batch)
            .map(|row| match window {
                None => vec![0; t],
                Some(window) => {
                    let positions = key_positions(row);
                    (past..s)
                        .map(|query| {
                            let at = positions[query];
                            positions[..=query].partition_point(|&p| at - p >= window)
                        })
                        .collect()
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let needs_bias = !host && (t > 1 || window.is_some() || key_valid.iter().flatten().any(|v| !v));
    let bias = needs_bias.then(|| {
        let positions: Vec<Vec<usize>> = (0..batch).map(key_positions).collect();
        attention_bias(
            [batch, t, s],
            |row, query, key| {
                let q = past + query;
                key <= q
                    && key_valid[row][key]
                    && window.is_none_or(|w| positions[row][q] - positions[row][key] < w)
            },
            device,
        )
    });
    StepMask {
        bias,
        key_valid,
        first_visible,
        past,
    }
}

/// Whether a step runs on host buffers: on flex every step, prompt or decode, runs its dense
/// layers on the CPU kernels and its attention in place in the cache (`cached_attention_on_host`).
/// wgpu runs in burn (`cached_attention`).
pub(crate) fn runs_on_host(device: &Device) -> bool {
    *device == Device::flex()
}

/// Which keys each query of a step may see, in the two forms the attention paths read.
pub(crate) struct StepMask<'a> {
    /// `[B, 1, T, S]`, added to the scores; `None` when every key is visible, or when the
    /// step runs on the host (`runs_on_host`).
    bias: Option<Tensor<4>>,
    /// Per row, per key position: whether it holds a real token (the host's mask).
    key_valid: &'a [Vec<bool>],
    /// Per row, per query: the first key position it sees (the host's; empty for burn).
    first_visible: Vec<Vec<usize>>,
    /// Key positions cached before this step.
    past: usize,
}

/// How a layer's queries, keys and values are laid out in its heads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub query: usize,
    /// Key/value heads; `query` is a multiple of it.
    pub key_value: usize,
    pub dim: usize,
}

/// Causal self-attention of one layer over its cache, in burn (wgpu): `qkv` is
/// `[B, T, (Hq + 2·Hkv)·D]` (queries, keys, values side by side, positions already encoded),
/// the step's keys and values are appended to `cache`; returns `[B, T, Hq·D]`, the heads
/// merged.
pub(crate) fn cached_attention(
    qkv: Tensor<3>,
    heads: Heads,
    scale: f64,
    cache: &mut Option<LayerCache>,
    mask: &StepMask,
) -> Tensor<3> {
    let [b, t, _] = qkv.dims();
    let past = mask.past;
    let (qc, c) = (heads.query * heads.dim, heads.key_value * heads.dim);
    let q = split_heads(qkv.clone().slice([0..b, 0..t, 0..qc]), heads.query);
    let k = split_heads(qkv.clone().slice([0..b, 0..t, qc..qc + c]), heads.key_value);
    let v = split_heads(qkv.slice([0..b, 0..t, qc + c..qc + 2 * c]), heads.key_value);
    let layer = cache
        .take()
        .unwrap_or_else(|| {
            LayerCache::with_room([b, heads.key_value, heads.dim], past + t, &k.device())
        })
        .append(past, k, v);
    let (k, v) = layer.filled(past + t);
    *cache = Some(layer);
    let (k, v) = (
        repeat_heads(k, heads.query / heads.key_value),
        repeat_heads(v, heads.query / heads.key_value),
    );
    merge_heads(attend(q, k, v, scale, mask.bias.as_ref()))
}

/// `[B, Hkv, S, D]` → `[B, Hkv · group, S, D]`, each head repeated for its group of queries
/// (burn's path; the host's decode step reads the cache in place instead).
fn repeat_heads(x: Tensor<4>, group: usize) -> Tensor<4> {
    if group == 1 {
        return x;
    }
    let [b, h, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, h, group, s, d])
        .reshape([b, h * group, s, d])
}

/// `cached_attention` on the host (`runs_on_host`): `qkv` is `[B·T, (Hq + 2·Hkv)·D]`, the
/// step's `T` tokens of each row in turn; returns `[B·T, Hq·D]`.
pub(crate) fn cached_attention_on_host(
    qkv: &[f32],
    heads: Heads,
    scale: f64,
    cache: &mut Option<LayerCache>,
    mask: &StepMask,
) -> Vec<f32> {
    let b = mask.key_valid.len();
    let t = mask.first_visible.first().map_or(0, Vec::len);
    let past = mask.past;
    let device = Device::flex();
    let layer = match cache.take() {
        Some(layer) => layer.reserve(past, past + t),
        None => LayerCache::with_room([b, heads.key_value, heads.dim], past + t, &device),
    };
    let [_, _, capacity, _] = layer.k.dims();
    // Zero-copy each: a cache with a single owner.
    let (mut keys, mut values) = (layer.k.into_data(), layer.v.into_data());
    let mut attended = vec![0.0f32; b * t * heads.query * heads.dim];
    kernels::attention::cached_attention(
        qkv,
        keys.as_mut_slice().expect("the cache is f32"),
        values.as_mut_slice().expect("the cache is f32"),
        CacheShape {
            batch: b,
            query_heads: heads.query,
            heads: heads.key_value,
            capacity,
            head_dim: heads.dim,
        },
        past,
        &Visibility {
            key_valid: mask.key_valid,
            first_visible: &mask.first_visible,
        },
        scale as f32,
        &mut attended,
    );
    *cache = Some(LayerCache {
        k: Tensor::from_data(keys, &device),
        v: Tensor::from_data(values, &device),
    });
    attended
}
