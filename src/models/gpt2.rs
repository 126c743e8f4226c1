//! GPT-2 language model (`GPT2LMHeadModel`), for any GPT-2 `config.json`.
//!
//! Module and field names mirror Hugging Face's (`h.0.attn.c_attn`), so weight keys map
//! one to one. It is driven as every causal LM is (`causal_lm::CausalLm`: `logits_all`,
//! `prefill`, `decode`), over the shared cache and attention of `kv_cache`. On the CPU every
//! step runs on host buffers (`Block::forward_on_host`), as the Llama family's does.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::activation::{gelu_erf, gelu_tanh};
use super::attention::RealRows;
use super::causal_lm::{CausalLm, LmDescription};
use super::dense::Dense;
use super::error::ModelError;
use super::kernels::activation as host_activation;
use super::kv_cache::{
    cached_attention, cached_attention_on_host, runs_on_host, Heads, KvCache, LayerCache, StepMask,
};
use super::norm::HostedLayerNorm;
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

    fn apply_on_host(self, x: &mut [f32]) {
        match self {
            Self::GeluTanh => host_activation::gelu_tanh(x),
            Self::GeluErf => host_activation::gelu_erf(x),
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
    ln_1: HostedLayerNorm,
    attn: Attention,
    ln_2: HostedLayerNorm,
    mlp: Mlp,
}

/// A GPT-2 transformer with its (usually tied) language-model head.
#[derive(Debug)]
pub struct Gpt2LmHeadModel {
    config: Gpt2Config,
    description: LmDescription,
    /// Token embeddings `[vocab, n_embd]`, looked up by row, and the LM head when tied.
    wte: Dense,
    /// Position embeddings `[n_positions, n_embd]`, on the host: a step gathers its rows
    /// there (and uploads them, on wgpu), a few kB.
    wpe: Vec<f32>,
    h: Vec<Block>,
    ln_f: HostedLayerNorm,
    /// `[vocab, n_embd]` head when the checkpoint does not tie it to `wte`.
    lm_head: Option<Dense>,
    device: Device,
}

impl Gpt2LmHeadModel {
    /// Builds the model from `weights`, taking every tensor by its HF name; `config` is
    /// validated (`folder` checks it against config.json before any weights).
    pub fn load(
        config: Gpt2Config,
        mut weights: WeightFile,
        device: &Device,
    ) -> Result<Self, ModelError> {
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
                ln_1: HostedLayerNorm::new(weights.layer_norm(&format!("{p}.ln_1"), c, eps)?, eps),
                attn: Attention {
                    c_attn: weights.conv1d(&format!("{p}.attn.c_attn"), c, 3 * c)?,
                    c_proj: weights.conv1d(&format!("{p}.attn.c_proj"), c, c)?,
                    n_head: config.n_head,
                    scale,
                },
                ln_2: HostedLayerNorm::new(weights.layer_norm(&format!("{p}.ln_2"), c, eps)?, eps),
                mlp: Mlp {
                    c_fc: weights.conv1d(&format!("{p}.mlp.c_fc"), c, config.inner_dim())?,
                    c_proj: weights.conv1d(&format!("{p}.mlp.c_proj"), config.inner_dim(), c)?,
                    act,
                },
            });
        }
        let wte = weights.tied_embedding("wte.weight", config.vocab_size, c)?;
        let wpe = weights.values("wpe.weight", &[config.n_positions, c])?;
        let ln_f = HostedLayerNorm::new(weights.layer_norm("ln_f", c, eps)?, eps);
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
        let description = LmDescription {
            architecture: "gpt2",
            layers: config.n_layer,
            hidden_size: config.n_embd,
            heads: config.n_head,
            key_value_heads: config.n_head,
            vocab_size: config.vocab_size,
            context_length: config.n_positions,
            context_key: "n_positions",
            parameters: config.parameter_count(),
        };
        Ok(Self {
            config,
            description,
            wte,
            wpe,
            h,
            ln_f,
            lm_head,
            device: device.clone(),
        })
    }
}

impl CausalLm for Gpt2LmHeadModel {
    fn description(&self) -> &LmDescription {
        &self.description
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn new_cache(&self, batch: usize) -> KvCache {
        KvCache::new(self.config.n_layer, batch)
    }

    fn forward(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        cache: &mut KvCache,
    ) -> Result<Tensor<3>, ModelError> {
        let (b, t) = (ids.len(), ids[0].len());
        let positions = cache.begin_step(valid, self.config.n_positions)?;
        let (mask, layers) = cache.step(t, None, &self.device);
        let flat_ids: Vec<u32> = ids.iter().flatten().copied().collect();
        let c = self.config.n_embd;
        let position_rows: Vec<f32> = positions
            .iter()
            .flat_map(|&p| &self.wpe[p as usize * c..][..c])
            .copied()
            .collect();
        if runs_on_host(&self.device) {
            let real = RealRows::new(valid.iter().flatten().copied().collect());
            let mut x = self.wte.rows_on_host(&real.gather(flat_ids, 1));
            let position_rows = real.gather(position_rows, c);
            x.iter_mut().zip(&position_rows).for_each(|(x, p)| *x += p);
            for (block, layer_cache) in self.h.iter().zip(layers) {
                block.forward_on_host(&mut x, &real, &mask, layer_cache);
            }
            self.ln_f.host.normalize_rows(&mut x);
            return Ok(Tensor::from_data(
                TensorData::new(real.scatter(x, c), [b, t, c]),
                &self.device,
            ));
        }
        let position_rows =
            Tensor::<3>::from_data(TensorData::new(position_rows, [b, t, c]), &self.device);
        let mut x = self.wte.rows(&flat_ids).reshape([b, t, c]) + position_rows;
        for (block, layer_cache) in self.h.iter().zip(layers) {
            x = block.forward(x, &mask, layer_cache);
        }
        Ok(self.ln_f.tensor.forward(x))
    }

    fn embeddings(&self) -> &Dense {
        &self.wte
    }

    fn untied_lm_head(&self) -> Option<&Dense> {
        self.lm_head.as_ref()
    }

    fn block_dense_layers(&self) -> Vec<&Dense> {
        self.h
            .iter()
            .flat_map(|b| [&b.attn.c_attn, &b.attn.c_proj, &b.mlp.c_fc, &b.mlp.c_proj])
            .collect()
    }
}

impl Block {
    fn forward(&self, x: Tensor<3>, mask: &StepMask, cache: &mut Option<LayerCache>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.tensor.forward(x), mask, cache);
        x.clone() + self.mlp.forward(self.ln_2.tensor.forward(x))
    }

    /// `forward` on the host (`kv_cache::runs_on_host`): `x` is `[real.count(), n_embd]`, a
    /// row per real token of the step. The same operations in the same order, without burn's
    /// per-op cost, which a one-token step of a small model is mostly made of.
    fn forward_on_host(
        &self,
        x: &mut [f32],
        real: &RealRows,
        mask: &StepMask,
        cache: &mut Option<LayerCache>,
    ) {
        let rows = real.count();
        let mut h = x.to_vec();
        self.ln_1.host.normalize_rows(&mut h);
        let attn = &self.attn;
        let qkv = attn.c_attn.forward_rows(&h, rows);
        let qkv = real.scatter(qkv, attn.c_attn.out_features());
        let attended = cached_attention_on_host(&qkv, attn.heads(), attn.scale, cache, mask);
        let attended = real.gather(attended, attn.c_proj.in_features());
        let projected = attn.c_proj.forward_rows(&attended, rows);
        x.iter_mut().zip(&projected).for_each(|(x, a)| *x += a);
        h.copy_from_slice(x);
        self.ln_2.host.normalize_rows(&mut h);
        let mut inner = self.mlp.c_fc.forward_rows(&h, rows);
        self.mlp.act.apply_on_host(&mut inner);
        let down = self.mlp.c_proj.forward_rows(&inner, rows);
        x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
    }
}

impl Attention {
    /// Every head attends with its own keys and values (no grouped-query attention).
    fn heads(&self) -> Heads {
        Heads {
            query: self.n_head,
            key_value: self.n_head,
            dim: self.c_proj.in_features() / self.n_head,
        }
    }

    fn forward(&self, x: Tensor<3>, mask: &StepMask, cache: &mut Option<LayerCache>) -> Tensor<3> {
        let qkv = self.c_attn.forward(x);
        self.c_proj
            .forward(cached_attention(qkv, self.heads(), self.scale, cache, mask))
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.c_proj.forward(self.act.forward(self.c_fc.forward(x)))
    }
}
