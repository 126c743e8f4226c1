//! GPT-2 language model (`GPT2LMHeadModel`), for any GPT-2 `config.json`.
//!
//! Module and field names mirror Hugging Face's (`h.0.attn.c_attn`), so weight keys map
//! one to one. Two ways in:
//! - `logits_all`: one full forward over a sequence, logits at every position;
//! - `prefill` + `decode`: a batch of prompts, left-padded, then one token per row per step
//!   with a KV cache, each step computing logits for the last position only.
//!
//! Left padding keeps every row's newest token in the last column, so a decode step is one
//! column for the whole batch; padded keys are masked out and position ids count real
//! tokens only, so a padded row computes exactly what it would alone.

use std::path::Path;

use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use super::activation::{gelu_erf, gelu_tanh};
use super::attention::{attend, attention_bias, merge_heads, split_heads};
use super::dense::Dense;
use super::error::ModelError;
use super::kernels::{self, attention::CacheShape};
use super::weights::WeightFile;

/// The fields of a Hugging Face GPT-2 `config.json` that shape the computation.
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Width of the MLP; `null` means 4 × n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_layer_norm_epsilon() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".to_string()
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(invalid(format!(
                "n_embd ({}) must be a multiple of n_head ({})",
                self.n_embd, self.n_head
            )));
        }
        if [self.vocab_size, self.n_positions, self.n_layer].contains(&0) {
            return Err(invalid(
                "vocab_size, n_positions and n_layer must be positive".into(),
            ));
        }
        Activation::parse(&self.activation_function).map_err(invalid)?;
        Ok(())
    }

    /// Parameters of the model as loaded (a tied head counted once).
    pub fn parameter_count(&self) -> usize {
        let (c, i) = (self.n_embd, self.inner_dim());
        let block = 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + 2 * c + (c * i + i) + (i * c + c);
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * c
        };
        self.vocab_size * c + self.n_positions * c + self.n_layer * block + 2 * c + head
    }

    fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation GPT-2 was trained with.
    GeluTanh,
    /// `gelu`: the exact, erf-based GELU.
    GeluErf,
}

impl Activation {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "gelu" => Ok(Self::GeluErf),
            other => Err(format!(
                "activation_function {other:?} is not supported (gelu_new, gelu_pytorch_tanh, gelu)"
            )),
        }
    }

    fn forward(self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Self::GeluTanh => gelu_tanh(x),
            Self::GeluErf => gelu_erf(x),
        }
    }
}

#[derive(Debug)]
struct Attention {
    /// Fused Q|K|V projection, `[n_embd, 3 · n_embd]`.
    c_attn: Dense,
    c_proj: Dense,
    n_head: usize,
    scale: f64,
}

#[derive(Debug)]
struct Mlp {
    c_fc: Dense,
    c_proj: Dense,
    act: Activation,
}

#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

/// Keys and values of one layer, `[B, H, capacity, D]`, of which the first `KvCache::len()`
/// key positions are filled.
///
/// Why spare capacity: appending with `Tensor::cat` copies the whole cache every decode step
/// (for gpt2 at batch 8 and a 300-token context, ~3 ms of a 43 ms step); writing the step's
/// keys into room already there is done in place while the buffer has a single owner.
#[derive(Debug, Clone)]
struct LayerCache {
    k: Tensor<4>,
    v: Tensor<4>,
}

impl LayerCache {
    /// Room is added this many key positions at a time: the copy a growth costs is paid once
    /// per `GROWTH` decode steps, and at most `GROWTH - 1` positions sit unused.
    const GROWTH: usize = 16;

    /// Empty buffers shaped like `k` (`[B, H, _, D]`) with room for `needed` positions.
    fn with_room(k: &Tensor<4>, needed: usize) -> Self {
        let [b, h, _, d] = k.dims();
        let shape = [b, h, needed.next_multiple_of(Self::GROWTH), d];
        Self {
            k: Tensor::zeros(shape, &k.device()),
            v: Tensor::zeros(shape, &k.device()),
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
        Self::with_room(&self.k, needed).write(0, self.filled(len))
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
    fn new(n_layer: usize, batch: usize) -> Self {
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

/// A GPT-2 transformer with its (usually tied) language-model head.
#[derive(Debug)]
pub struct Gpt2LmHeadModel {
    config: Gpt2Config,
    /// Token embeddings `[vocab, n_embd]`, looked up by row, and the LM head when tied.
    wte: Dense,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
    /// `[vocab, n_embd]` head when the checkpoint does not tie it to `wte`.
    lm_head: Option<Dense>,
    device: Device,
}

impl Gpt2LmHeadModel {
    /// Builds the model from `weights`, taking every tensor by its HF name.
    pub fn load(
        config: Gpt2Config,
        mut weights: WeightFile,
        device: &Device,
    ) -> Result<Self, ModelError> {
        config.validate(weights.path())?;
        let c = config.n_embd;
        let eps = config.layer_norm_epsilon;
        let act = Activation::parse(&config.activation_function).expect("validated");
        let head_dim = c / config.n_head;
        let mut h = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("h.{i}");
            let mut scale = if config.scale_attn_weights {
                1.0 / (head_dim as f64).sqrt()
            } else {
                1.0
            };
            if config.scale_attn_by_inverse_layer_idx {
                scale /= (i + 1) as f64;
            }
            h.push(Block {
                ln_1: weights.layer_norm(&format!("{p}.ln_1"), c, eps)?,
                attn: Attention {
                    c_attn: weights.conv1d(&format!("{p}.attn.c_attn"), c, 3 * c)?,
                    c_proj: weights.conv1d(&format!("{p}.attn.c_proj"), c, c)?,
                    n_head: config.n_head,
                    scale,
                },
                ln_2: weights.layer_norm(&format!("{p}.ln_2"), c, eps)?,
                mlp: Mlp {
                    c_fc: weights.conv1d(&format!("{p}.mlp.c_fc"), c, config.inner_dim())?,
                    c_proj: weights.conv1d(&format!("{p}.mlp.c_proj"), config.inner_dim(), c)?,
                    act,
                },
            });
        }
        let wte = weights.tied_embedding("wte.weight", config.vocab_size, c)?;
        let wpe = weights.embedding("wpe", config.n_positions, c)?;
        let ln_f = weights.layer_norm("ln_f", c, eps)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(weights.tied_embedding("lm_head.weight", config.vocab_size, c)?)
        };
        let tied = config.tie_word_embeddings;
        weights.finish(|name| {
            // Causal-mask buffers older checkpoints saved, and a tied head saved anyway.
            name.ends_with(".attn.bias")
                || name.ends_with(".attn.masked_bias")
                || (tied && name == "lm_head.weight")
        })?;
        Ok(Self {
            config,
            wte,
            wpe,
            h,
            ln_f,
            lm_head,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits at every position of `ids`, `[T, vocab]`, in one forward without a cache.
    pub fn logits_all(&self, ids: &[u32]) -> Result<Tensor<2>, ModelError> {
        let mut cache = KvCache::new(self.config.n_layer, 1);
        let hidden = self.forward(&[ids.to_vec()], &[vec![true; ids.len()]], &mut cache)?;
        let [_, t, c] = hidden.dims();
        Ok(self.lm_logits(hidden.reshape([t, c])))
    }

    /// Runs a batch of prompts (left-padded to a common length) and returns the logits of
    /// each row's last token, `[B, vocab]`, with the cache to continue from.
    pub fn prefill(&self, prompts: &[Vec<u32>]) -> Result<(Tensor<2>, KvCache), ModelError> {
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(ModelError::InvalidInput(
                "every prompt needs at least one token".into(),
            ));
        }
        let pad = self.config.eos_token_id.unwrap_or(0);
        let (ids, valid): (Vec<Vec<u32>>, Vec<Vec<bool>>) = prompts
            .iter()
            .map(|p| {
                let padding = longest - p.len();
                let mut ids = vec![pad; padding];
                ids.extend_from_slice(p);
                let mut valid = vec![false; padding];
                valid.extend(std::iter::repeat_n(true, p.len()));
                (ids, valid)
            })
            .unzip();
        let mut cache = KvCache::new(self.config.n_layer, prompts.len());
        let hidden = self.forward(&ids, &valid, &mut cache)?;
        Ok((self.last_logits(hidden), cache))
    }

    /// Feeds one token per row and returns each row's next-token logits, `[B, vocab]`.
    pub fn decode(&self, next: &[u32], cache: &mut KvCache) -> Result<Tensor<2>, ModelError> {
        if next.len() != cache.batch_size() {
            return Err(ModelError::InvalidInput(format!(
                "decode got {} tokens for a batch of {}",
                next.len(),
                cache.batch_size()
            )));
        }
        let ids: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
        let valid = vec![vec![true]; next.len()];
        let hidden = self.forward(&ids, &valid, cache)?;
        Ok(self.last_logits(hidden))
    }

    /// The transformer body: `ids` and `valid` are `[B][T]`, appended to `cache`.
    /// Returns the final hidden states `[B, T, n_embd]` (after `ln_f`).
    fn forward(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        cache: &mut KvCache,
    ) -> Result<Tensor<3>, ModelError> {
        let b = ids.len();
        let t = ids[0].len();
        // Validate before touching the cache, so a rejected step leaves it usable.
        if let Some(&id) = ids
            .iter()
            .flatten()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(ModelError::TokenOutOfVocabulary {
                id,
                vocab_size: self.config.vocab_size,
            });
        }
        for (row, row_valid) in valid.iter().enumerate() {
            let total = cache.next_position[row] + row_valid.iter().filter(|v| **v).count();
            if total > self.config.n_positions {
                return Err(ModelError::InvalidInput(format!(
                    "sequence of {total} tokens exceeds the model's n_positions ({})",
                    self.config.n_positions
                )));
            }
        }
        let mut positions = Vec::with_capacity(b * t);
        for (row, row_valid) in valid.iter().enumerate() {
            for &is_real in row_valid {
                if is_real {
                    positions.push(cache.next_position[row] as i64);
                    cache.next_position[row] += 1;
                } else {
                    positions.push(0);
                }
            }
            cache.key_valid[row].extend_from_slice(row_valid);
        }
        let s = cache.len();
        let past = s - t;
        // The host's decode attention reads `key_valid` itself: no bias tensor for it.
        let needs_mask = !decodes_on_host(&self.device, t, past)
            && (t > 1 || cache.key_valid.iter().flatten().any(|v| !v));
        let bias = needs_mask.then(|| {
            attention_bias(
                [b, t, s],
                |row, query, key| key <= past + query && cache.key_valid[row][key],
                &self.device,
            )
        });

        let flat_ids: Vec<u32> = ids.iter().flatten().copied().collect();
        let positions =
            Tensor::<2, Int>::from_data(TensorData::new(positions, [b, t]), &self.device);
        let c = self.config.n_embd;
        let mut x = self.wte.rows(&flat_ids).reshape([b, t, c]) + self.wpe.forward(positions);
        let mask = Mask {
            bias: bias.as_ref(),
            key_valid: &cache.key_valid,
        };
        for (block, layer_cache) in self.h.iter().zip(cache.layers.iter_mut()) {
            x = block.forward(x, &mask, layer_cache, past);
        }
        Ok(self.ln_f.forward(x))
    }

    fn last_logits(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, t, c] = hidden.dims();
        self.lm_logits(hidden.slice([0..b, t - 1..t, 0..c]).reshape([b, c]))
    }

    /// `[N, n_embd]` → `[N, vocab]` through the (tied) head.
    fn lm_logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.lm_head().forward(hidden)
    }

    /// The dense layers' weight dtype (`f32`, `f16`, `bf16` or `int8`).
    pub fn dtype(&self) -> &'static str {
        self.wte.dtype()
    }

    /// Bytes the dense layers' weights take in memory (the tied `wte` once).
    pub fn dense_weight_bytes(&self) -> usize {
        let blocks: usize = self.block_dense_layers().map(Dense::weight_bytes).sum();
        blocks + self.wte.weight_bytes() + self.lm_head.as_ref().map_or(0, Dense::weight_bytes)
    }

    /// The blocks' dense layers in the order a forward pass runs them (the benchmark times
    /// them apart from the rest of a step).
    pub fn block_dense_layers(&self) -> impl Iterator<Item = &Dense> {
        self.h
            .iter()
            .flat_map(|b| [&b.attn.c_attn, &b.attn.c_proj, &b.mlp.c_fc, &b.mlp.c_proj])
    }

    /// The LM head (the tied `wte` unless the checkpoint has its own).
    pub fn lm_head(&self) -> &Dense {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }
}

/// Whether attention runs on the host: a decode step on flex (one new token over `past > 0`
/// cached keys), in place in the cache. Prefill and wgpu attend in burn.
fn decodes_on_host(device: &Device, t: usize, past: usize) -> bool {
    t == 1 && past > 0 && *device == Device::flex()
}

/// Which keys each query may see, in the two forms the attention paths read.
struct Mask<'a> {
    /// `[B, 1, T, S]`, added to the scores; `None` when every key is visible, or when the
    /// host attends (`decodes_on_host`).
    bias: Option<&'a Tensor<4>>,
    /// Per row, per key position: whether it holds a real token (see `KvCache`).
    key_valid: &'a [Vec<bool>],
}

impl Block {
    fn forward(
        &self,
        x: Tensor<3>,
        mask: &Mask,
        cache: &mut Option<LayerCache>,
        past: usize,
    ) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), mask, cache, past);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

impl Attention {
    fn forward(
        &self,
        x: Tensor<3>,
        mask: &Mask,
        cache: &mut Option<LayerCache>,
        past: usize,
    ) -> Tensor<3> {
        let t = x.dims()[1];
        let qkv = self.c_attn.forward(x);
        if decodes_on_host(&qkv.device(), t, past) {
            let layer = cache.take().expect("a decode step has a cache");
            let (attended, layer) = self.decode_on_host(qkv, layer, past, mask.key_valid);
            *cache = Some(layer);
            return self.c_proj.forward(attended);
        }
        let mut qkv = qkv.chunk(3, 2).into_iter();
        let (q, k, v) = (
            qkv.next().unwrap(),
            qkv.next().unwrap(),
            qkv.next().unwrap(),
        );
        let q = split_heads(q, self.n_head);
        let k = split_heads(k, self.n_head);
        let v = split_heads(v, self.n_head);
        let t = k.dims()[2];
        let layer = cache
            .take()
            .unwrap_or_else(|| LayerCache::with_room(&k, past + t))
            .append(past, k, v);
        let (k, v) = layer.filled(past + t);
        *cache = Some(layer);
        self.c_proj
            .forward(merge_heads(attend(q, k, v, self.scale, mask.bias)))
    }

    /// `qkv` (`[B, 1, 3C]`) attended over `layer` plus the step's own key and value, which
    /// are written at position `past`; returns `[B, 1, C]` and the cache.
    fn decode_on_host(
        &self,
        qkv: Tensor<3>,
        layer: LayerCache,
        past: usize,
        key_valid: &[Vec<bool>],
    ) -> (Tensor<3>, LayerCache) {
        let [b, _, three_c] = qkv.dims();
        let c = three_c / 3;
        let device = qkv.device();
        let layer = layer.reserve(past, past + 1);
        let [_, heads, capacity, head_dim] = layer.k.dims();
        // Zero-copy each: fresh outputs, and a cache with a single owner.
        let qkv = qkv.into_data();
        let (mut keys, mut values) = (layer.k.into_data(), layer.v.into_data());
        let mut attended = vec![0.0f32; b * c];
        kernels::attention::decode_attention(
            qkv.as_slice().expect("activations are f32"),
            keys.as_mut_slice().expect("the cache is f32"),
            values.as_mut_slice().expect("the cache is f32"),
            CacheShape {
                batch: b,
                heads,
                capacity,
                head_dim,
            },
            past,
            key_valid,
            self.scale as f32,
            &mut attended,
        );
        let layer = LayerCache {
            k: Tensor::from_data(keys, &device),
            v: Tensor::from_data(values, &device),
        };
        let attended = Tensor::from_data(TensorData::new(attended, [b, 1, c]), &device);
        (attended, layer)
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.c_proj.forward(self.act.forward(self.c_fc.forward(x)))
    }
}
