//! The Llama family of decoders (`LlamaForCausalLM`, `MistralForCausalLM`,
//! `Qwen2ForCausalLM`, `Qwen3ForCausalLM`): one model, with the families' differences as
//! flags read from `config.json` (`LlamaFlags`).
//!
//! Module and field names mirror Hugging Face's (`model.layers.0.self_attn.q_proj`), so
//! weight keys map one to one. A layer is
//! `x += o(attention(rope(q(rms(x))), rope(k(rms(x))), v(rms(x))))`, then
//! `x += down(silu(gate(rms(x))) · up(rms(x)))`.
//!
//! # Invariants
//!
//! * **Config shapes.** `config.json` as transformers 4.x writes it (top-level `rope_theta`,
//!   `rope_scaling`) and as 5.x does (`rope_parameters`) read to the same `LlamaConfig`.
//! * **Heads.** `head_dim` is the config's when it gives one (Qwen3, Mistral NeMo), else
//!   `hidden_size / num_attention_heads`; keys and values have `num_key_value_heads` heads,
//!   cached once each (see `kv_cache`).
//! * **Head.** With `tie_word_embeddings` the LM head is `embed_tokens` (a `lm_head.weight`
//!   saved anyway is skipped); without, `lm_head.weight` must be there.
//! * **Steps on the host.** On flex every step (a prompt, or a decode step's one token a
//!   row) runs each layer on host buffers, a row per token: the dense layers' kernels, the
//!   norms, rotary, SwiGLU and the residual adds as plain loops, the attention on the cache
//!   in place. The same operations as the burn path (wgpu's), whose per-op overhead was
//!   about a fifth of a small model's batch-1 step, and whose prompt attention scored every
//!   masked key.

use std::path::Path;

use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::attention::{side_by_side, RealRows};
use super::causal_lm::{CausalLm, LmDescription};
use super::dense::Dense;
use super::error::ModelError;
use super::kernels::activation::silu_mul;
use super::kv_cache::{
    cached_attention, cached_attention_on_host, runs_on_host, Heads, KvCache, LayerCache, StepMask,
};
use super::norm::RmsNorm;
use super::rotary::{HostRotation, RopeScaling, Rotary, RotaryTables};
use super::weights::WeightFile;

/// The fields of a Llama-family `config.json` that shape the computation.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Absent: one key/value head per query head (no grouping).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Absent: `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub max_position_embeddings: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// transformers 4.x: the base, beside `rope_scaling`.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// transformers 5.x: base and scaling together.
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama and Qwen3: biases on q/k/v/o.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    /// Mistral's window; Qwen2/Qwen3 carry one that applies only with `use_sliding_window`.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
}

/// `rope_scaling` (4.x) or `rope_parameters` (5.x).
#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    /// 4.x configs also spell it `type`.
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<f64>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_hidden_act() -> String {
    "silu".to_string()
}

/// What sets the families apart, derived from `model_type` and the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlamaFlags {
    /// Qwen2 always; Llama and Qwen3 with `attention_bias`.
    pub qkv_bias: bool,
    /// Llama and Qwen3 with `attention_bias`; never Qwen2 or Mistral.
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Qwen3: RMSNorm over each head of q and k, before the rotation.
    pub qk_norm: bool,
    /// Mistral: each query sees itself and the `window - 1` tokens before it.
    pub sliding_window: Option<usize>,
}

impl LlamaConfig {
    /// Reads `config.json` (already parsed), with the defaults that depend on the family.
    pub fn from_json(json: &serde_json::Value, path: &Path) -> Result<Self, ModelError> {
        let mut config: Self =
            serde_json::from_value(json.clone()).map_err(|e| ModelError::InvalidConfig {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        // transformers' MistralConfig defaults the window to 4096: absent is not null.
        if config.model_type == "mistral" && json.get("sliding_window").is_none() {
            config.sliding_window = Some(4096);
        }
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        let (heads, kv_heads) = (self.num_attention_heads, self.key_value_heads());
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(invalid(format!(
                "num_attention_heads ({heads}) must be a positive multiple of num_key_value_heads ({kv_heads})"
            )));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(heads) {
            return Err(invalid(format!(
                "hidden_size ({}) must be a multiple of num_attention_heads ({heads}) when head_dim is not given",
                self.hidden_size
            )));
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() == 0 {
            return Err(invalid(format!(
                "head_dim ({}) must be even for rotary embeddings",
                self.head_dim()
            )));
        }
        if [
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.max_position_embeddings,
        ]
        .contains(&0)
        {
            return Err(invalid(
                "vocab_size, hidden_size, intermediate_size, num_hidden_layers and max_position_embeddings must be positive".into(),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(invalid(format!(
                "hidden_act {:?} is not supported (silu)",
                self.hidden_act
            )));
        }
        if self.use_sliding_window && self.model_type != "mistral" {
            return Err(invalid(
                "use_sliding_window = true is not supported for this model_type (per-layer windows)"
                    .into(),
            ));
        }
        self.rope().map_err(invalid)?;
        Ok(())
    }

    pub fn key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    pub fn flags(&self) -> LlamaFlags {
        let family = self.model_type.as_str();
        LlamaFlags {
            qkv_bias: family == "qwen2" || (self.attention_bias && family != "mistral"),
            o_bias: self.attention_bias && matches!(family, "llama" | "qwen3"),
            mlp_bias: self.mlp_bias && family == "llama",
            qk_norm: family == "qwen3",
            sliding_window: if family == "mistral" {
                self.sliding_window
            } else {
                None
            },
        }
    }

    /// The rotation's base and scaling, from whichever shape the config has.
    pub fn rope(&self) -> Result<(f64, RopeScaling), String> {
        let parameters = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let theta = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0);
        let scaling = match parameters.and_then(|p| p.rope_type.as_deref()) {
            None | Some("default") => RopeScaling::Default,
            Some("llama3") => {
                let p = parameters.expect("a rope_type comes with its parameters");
                let need = |value: Option<f64>, name: &str| {
                    value.ok_or_else(|| format!("llama3 rope scaling needs {name}"))
                };
                RopeScaling::Llama3 {
                    factor: need(p.factor, "factor")?,
                    low_freq_factor: need(p.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(p.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: need(
                        p.original_max_position_embeddings,
                        "original_max_position_embeddings",
                    )?,
                }
            }
            Some(other) => {
                return Err(format!(
                    "rope type {other:?} is not supported (default, llama3)"
                ))
            }
        };
        Ok((theta, scaling))
    }

    /// Parameters of the model as loaded (a tied head counted once).
    pub fn parameter_count(&self) -> usize {
        let flags = self.flags();
        let (c, i, d) = (self.hidden_size, self.intermediate_size, self.head_dim());
        let (q, kv) = (self.num_attention_heads * d, self.key_value_heads() * d);
        let attention = c * q
            + 2 * c * kv
            + q * c
            + usize::from(flags.qkv_bias) * (q + 2 * kv)
            + usize::from(flags.o_bias) * c
            + usize::from(flags.qk_norm) * 2 * d;
        let mlp = 3 * c * i + usize::from(flags.mlp_bias) * (2 * i + c);
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * c
        };
        self.vocab_size * c + self.num_hidden_layers * (2 * c + attention + mlp) + c + head
    }
}

#[derive(Debug)]
struct Attention {
    q_proj: Dense,
    k_proj: Dense,
    v_proj: Dense,
    o_proj: Dense,
    /// Qwen3's per-head norms.
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    heads: Heads,
    scale: f64,
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Dense,
    up_proj: Dense,
    down_proj: Dense,
}

#[derive(Debug)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// A Llama-family decoder with its LM head.
#[derive(Debug)]
pub struct LlamaForCausalLm {
    config: LlamaConfig,
    description: LmDescription,
    /// `[vocab, hidden]`, looked up by row, and the LM head when tied.
    embed_tokens: Dense,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `[vocab, hidden]` head when the checkpoint does not tie it to `embed_tokens`.
    lm_head: Option<Dense>,
    rotary: Rotary,
    sliding_window: Option<usize>,
    device: Device,
}

impl LlamaForCausalLm {
    /// Builds the model from `weights` (opened with the `model.` prefix), taking every
    /// tensor by its HF name.
    pub fn load(
        config: LlamaConfig,
        mut weights: WeightFile,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let flags = config.flags();
        let (c, i, d) = (
            config.hidden_size,
            config.intermediate_size,
            config.head_dim(),
        );
        let heads = Heads {
            query: config.num_attention_heads,
            key_value: config.key_value_heads(),
            dim: d,
        };
        let eps = config.rms_norm_eps;
        let (q_width, kv_width) = (heads.query * d, heads.key_value * d);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer in 0..config.num_hidden_layers {
            let p = format!("layers.{layer}");
            let qk_norm = |weights: &mut WeightFile, name: &str| {
                flags
                    .qk_norm
                    .then(|| rms_norm(weights, &format!("{p}.self_attn.{name}"), d, eps))
                    .transpose()
            };
            layers.push(DecoderLayer {
                input_layernorm: rms_norm(&mut weights, &format!("{p}.input_layernorm"), c, eps)?,
                self_attn: Attention {
                    q_proj: weights.linear_with(
                        &format!("{p}.self_attn.q_proj"),
                        c,
                        q_width,
                        flags.qkv_bias,
                    )?,
                    k_proj: weights.linear_with(
                        &format!("{p}.self_attn.k_proj"),
                        c,
                        kv_width,
                        flags.qkv_bias,
                    )?,
                    v_proj: weights.linear_with(
                        &format!("{p}.self_attn.v_proj"),
                        c,
                        kv_width,
                        flags.qkv_bias,
                    )?,
                    o_proj: weights.linear_with(
                        &format!("{p}.self_attn.o_proj"),
                        q_width,
                        c,
                        flags.o_bias,
                    )?,
                    q_norm: qk_norm(&mut weights, "q_norm")?,
                    k_norm: qk_norm(&mut weights, "k_norm")?,
                    heads,
                    scale: 1.0 / (d as f64).sqrt(),
                },
                post_attention_layernorm: rms_norm(
                    &mut weights,
                    &format!("{p}.post_attention_layernorm"),
                    c,
                    eps,
                )?,
                mlp: Mlp {
                    gate_proj: weights.linear_with(
                        &format!("{p}.mlp.gate_proj"),
                        c,
                        i,
                        flags.mlp_bias,
                    )?,
                    up_proj: weights.linear_with(
                        &format!("{p}.mlp.up_proj"),
                        c,
                        i,
                        flags.mlp_bias,
                    )?,
                    down_proj: weights.linear_with(
                        &format!("{p}.mlp.down_proj"),
                        i,
                        c,
                        flags.mlp_bias,
                    )?,
                },
            });
        }
        let embed_tokens = weights.tied_embedding("embed_tokens.weight", config.vocab_size, c)?;
        let norm = rms_norm(&mut weights, "norm", c, eps)?;
        let tied = config.tie_word_embeddings;
        let lm_head = if tied {
            None
        } else {
            Some(weights.tied_embedding("lm_head.weight", config.vocab_size, c)?)
        };
        // A GGUF of a Llama 3.1+ model carries its rope scaling as per-frequency divisors.
        let rope_factors = weights
            .contains("rope_freqs.weight")
            .then(|| weights.values("rope_freqs.weight", &[d / 2]))
            .transpose()?;
        weights.finish(|name| {
            // Rotary buffers older checkpoints saved, and a tied head saved anyway.
            name.ends_with(".rotary_emb.inv_freq") || (tied && name == "lm_head.weight")
        })?;
        let (theta, scaling) = config.rope().expect("validated");
        let description = LmDescription {
            architecture: match config.model_type.as_str() {
                "mistral" => "mistral",
                "qwen2" => "qwen2",
                "qwen3" => "qwen3",
                _ => "llama",
            },
            layers: config.num_hidden_layers,
            hidden_size: c,
            heads: heads.query,
            key_value_heads: heads.key_value,
            vocab_size: config.vocab_size,
            context_length: config.max_position_embeddings,
            context_key: "max_position_embeddings",
            parameters: config.parameter_count(),
        };
        Ok(Self {
            description,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: match rope_factors {
                Some(factors) => Rotary::new(d, theta, &scaling).with_factors(&factors),
                None => Rotary::new(d, theta, &scaling),
            },
            sliding_window: flags.sliding_window,
            device: device.clone(),
            config,
        })
    }
}

fn rms_norm(
    weights: &mut WeightFile,
    prefix: &str,
    d: usize,
    eps: f64,
) -> Result<RmsNorm, ModelError> {
    Ok(RmsNorm::new(
        weights.tensor(&format!("{prefix}.weight"), [d])?,
        eps,
    ))
}

impl CausalLm for LlamaForCausalLm {
    fn description(&self) -> &LmDescription {
        &self.description
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn new_cache(&self, batch: usize) -> KvCache {
        KvCache::new(self.layers.len(), batch)
    }

    fn forward(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        cache: &mut KvCache,
    ) -> Result<Tensor<3>, ModelError> {
        let (b, t) = (ids.len(), ids[0].len());
        let positions = cache.begin_step(valid, self.config.max_position_embeddings)?;
        let (mask, layers) = cache.step(t, self.sliding_window, &self.device);
        let flat_ids: Vec<u32> = ids.iter().flatten().copied().collect();
        let c = self.config.hidden_size;
        if runs_on_host(&self.device) {
            let rotation = self.rotary.host_tables(&positions);
            let real = RealRows::new(valid.iter().flatten().copied().collect());
            let mut x = self.embed_tokens.rows_on_host(&real.gather(flat_ids, 1));
            for (layer, layer_cache) in self.layers.iter().zip(layers) {
                layer.forward_on_host(&mut x, &real, &rotation, &mask, layer_cache);
            }
            self.norm.normalize_rows(&mut x);
            return Ok(Tensor::from_data(
                TensorData::new(real.scatter(x, c), [b, t, c]),
                &self.device,
            ));
        }
        let rotation = self.rotary.tables(&positions, [b, t], &self.device);
        let mut x = self.embed_tokens.rows(&flat_ids).reshape([b, t, c]);
        for (layer, layer_cache) in self.layers.iter().zip(layers) {
            x = layer.forward(x, &rotation, &mask, layer_cache);
        }
        Ok(self.norm.forward(x))
    }

    fn embeddings(&self) -> &Dense {
        &self.embed_tokens
    }

    fn untied_lm_head(&self) -> Option<&Dense> {
        self.lm_head.as_ref()
    }

    fn block_dense_layers(&self) -> Vec<&Dense> {
        self.layers
            .iter()
            .flat_map(|l| {
                let (a, m) = (&l.self_attn, &l.mlp);
                [
                    &a.q_proj,
                    &a.k_proj,
                    &a.v_proj,
                    &a.o_proj,
                    &m.gate_proj,
                    &m.up_proj,
                    &m.down_proj,
                ]
            })
            .collect()
    }
}

impl DecoderLayer {
    fn forward(
        &self,
        x: Tensor<3>,
        rotation: &RotaryTables,
        mask: &StepMask,
        cache: &mut Option<LayerCache>,
    ) -> Tensor<3> {
        let attended = self.self_attn.forward(
            self.input_layernorm.forward(x.clone()),
            rotation,
            mask,
            cache,
        );
        let x = x + attended;
        let mlp = self
            .mlp
            .forward(self.post_attention_layernorm.forward(x.clone()));
        x + mlp
    }

    /// `forward` on the host (module docs): `x` is `[rows, hidden]`, a row per token.
    fn forward_on_host(
        &self,
        x: &mut [f32],
        real: &RealRows,
        rotation: &HostRotation,
        mask: &StepMask,
        cache: &mut Option<LayerCache>,
    ) {
        let rows = real.count();
        let mut h = x.to_vec();
        self.input_layernorm.normalize_rows(&mut h);
        let attended = self
            .self_attn
            .forward_on_host(&h, real, rotation, mask, cache);
        x.iter_mut().zip(&attended).for_each(|(x, a)| *x += a);
        h.copy_from_slice(x);
        self.post_attention_layernorm.normalize_rows(&mut h);
        let mlp = &self.mlp;
        let [mut gate, up] = Dense::forward_rows_fused([&mlp.gate_proj, &mlp.up_proj], &h, rows);
        silu_mul(&mut gate, &up);
        let down = mlp.down_proj.forward_rows(&gate, rows);
        x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
    }
}

impl Attention {
    /// `forward` on the host: `h` is `[real.count(), hidden]`, the step's real tokens,
    /// normalised.
    fn forward_on_host(
        &self,
        h: &[f32],
        real: &RealRows,
        rotation: &HostRotation,
        mask: &StepMask,
        cache: &mut Option<LayerCache>,
    ) -> Vec<f32> {
        let Heads {
            query,
            key_value,
            dim,
        } = self.heads;
        let [mut q, mut k, v] =
            Dense::forward_rows_fused([&self.q_proj, &self.k_proj, &self.v_proj], h, real.count());
        if let (Some(q_norm), Some(k_norm)) = (&self.q_norm, &self.k_norm) {
            q_norm.normalize_rows(&mut q);
            k_norm.normalize_rows(&mut k);
        }
        // Back in the step's rows: the rotation and the attention read them by position.
        let [mut q, mut k, v] = [(q, query), (k, key_value), (v, key_value)]
            .map(|(part, heads)| real.scatter(part, heads * dim));
        rotation.apply(&mut q, query);
        rotation.apply(&mut k, key_value);
        let qkv = side_by_side(
            [&q, &k, &v],
            [query * dim, key_value * dim, key_value * dim],
        );
        let attended = cached_attention_on_host(&qkv, self.heads, self.scale, cache, mask);
        self.o_proj
            .forward_rows(&real.gather(attended, query * dim), real.count())
    }

    fn forward(
        &self,
        x: Tensor<3>,
        rotation: &RotaryTables,
        mask: &StepMask,
        cache: &mut Option<LayerCache>,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let Heads {
            query,
            key_value,
            dim,
        } = self.heads;
        let mut q = self.q_proj.forward(x.clone()).reshape([b, t, query, dim]);
        let mut k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, t, key_value, dim]);
        let v = self.v_proj.forward(x);
        if let (Some(q_norm), Some(k_norm)) = (&self.q_norm, &self.k_norm) {
            q = q_norm.forward(q);
            k = k_norm.forward(k);
        }
        let q = rotation.apply(q).reshape([b, t, query * dim]);
        let k = rotation.apply(k).reshape([b, t, key_value * dim]);
        let qkv = Tensor::cat(vec![q, k, v], 2);
        self.o_proj
            .forward(cached_attention(qkv, self.heads, self.scale, cache, mask))
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
