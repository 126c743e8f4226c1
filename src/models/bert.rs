//! BERT for sequence classification (`BertForSequenceClassification`).
//!
//! Field names mirror Hugging Face's (`encoder.layer.0.attention.self.query`; `self` is a
//! Rust keyword, so that module is `self_attn` here while its weight keys stay HF's).
//! A batch is right-padded and masked, so each row scores exactly as it would alone.

use std::collections::BTreeMap;
use std::path::Path;

use burn::nn::{Embedding, LayerNorm};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use super::activation::gelu_erf;
use super::attention::{attend, attention_bias, merge_heads, split_heads};
use super::dense::Dense;
use super::error::ModelError;
use super::weights::WeightFile;

/// The fields of a Hugging Face BERT `config.json` that shape the computation.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// Label names by class index; transformers writes it as a map with string keys.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Used only when `id2label` is absent.
    #[serde(default, alias = "_num_labels")]
    pub num_labels: Option<usize>,
}

fn default_hidden_act() -> String {
    "gelu".to_string()
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_position_embedding_type() -> String {
    "absolute".to_string()
}

impl BertConfig {
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(invalid(format!(
                "hidden_size ({}) must be a multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.hidden_act != "gelu" {
            return Err(invalid(format!(
                "hidden_act {:?} is not supported (gelu)",
                self.hidden_act
            )));
        }
        if self.position_embedding_type != "absolute" {
            return Err(invalid(format!(
                "position_embedding_type {:?} is not supported (absolute)",
                self.position_embedding_type
            )));
        }
        self.labels(path).map(|_| ())
    }

    /// Parameters of the model as loaded, with a `num_labels`-way head.
    pub fn parameter_count(&self, num_labels: usize) -> usize {
        let (d, f) = (self.hidden_size, self.intermediate_size);
        let embeddings =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * d + 2 * d;
        let layer = 4 * (d * d + d) + 2 * d + (d * f + f) + (f * d + d) + 2 * d;
        embeddings + self.num_hidden_layers * layer + (d * d + d) + (d * num_labels + num_labels)
    }

    /// Label names in class order: `id2label` when given, else `LABEL_0..` as transformers does.
    pub fn labels(&self, path: &Path) -> Result<Vec<String>, ModelError> {
        let Some(map) = &self.id2label else {
            let n = self.num_labels.unwrap_or(2);
            return Ok((0..n).map(|i| format!("LABEL_{i}")).collect());
        };
        let mut labels = vec![None; map.len()];
        for (key, name) in map {
            let index = key
                .parse::<usize>()
                .ok()
                .filter(|&i| i < map.len())
                .ok_or_else(|| ModelError::InvalidConfig {
                    path: path.to_path_buf(),
                    reason: format!(
                        "id2label key {key:?} is not a class index below {}",
                        map.len()
                    ),
                })?;
            labels[index] = Some(name.clone());
        }
        Ok(labels
            .into_iter()
            .map(|l| l.expect("keys are distinct indices"))
            .collect())
    }
}

/// One tokenised input: ids, segment ids (0 = first text, 1 = second of a pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BertInput {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

#[derive(Debug)]
struct Embeddings {
    /// `[vocab, hidden]`, looked up by row, in the model's dtype (the largest matrix).
    word_embeddings: Dense,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
}

#[derive(Debug)]
struct SelfAttention {
    query: Dense,
    key: Dense,
    value: Dense,
    n_head: usize,
}

/// `dense` then `LayerNorm` over the residual sum, as in `BertSelfOutput` / `BertOutput`.
#[derive(Debug)]
struct Output {
    dense: Dense,
    layer_norm: LayerNorm,
}

#[derive(Debug)]
struct Layer {
    self_attn: SelfAttention,
    attention_output: Output,
    intermediate: Dense,
    output: Output,
}

/// A BERT encoder with pooler and classification head.
#[derive(Debug)]
pub struct BertForSequenceClassification {
    config: BertConfig,
    labels: Vec<String>,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    pooler: Dense,
    classifier: Dense,
    device: Device,
}

impl BertForSequenceClassification {
    pub fn load(
        config: BertConfig,
        mut w: WeightFile,
        device: &Device,
    ) -> Result<Self, ModelError> {
        config.validate(w.path())?;
        let labels = config.labels(w.path())?;
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        if !w.contains("classifier.weight") {
            return Err(ModelError::MissingTensor {
                path: w.path().to_path_buf(),
                tensor: "classifier.weight".into(),
                hint: ": this checkpoint has no sequence-classification head (a plain or \
                       pre-training BERT); use a fine-tuned BertForSequenceClassification folder"
                    .into(),
            });
        }
        let embeddings = Embeddings {
            word_embeddings: w.tied_embedding(
                "embeddings.word_embeddings.weight",
                config.vocab_size,
                d,
            )?,
            position_embeddings: w.embedding(
                "embeddings.position_embeddings",
                config.max_position_embeddings,
                d,
            )?,
            token_type_embeddings: w.embedding(
                "embeddings.token_type_embeddings",
                config.type_vocab_size,
                d,
            )?,
            layer_norm: w.layer_norm("embeddings.LayerNorm", d, eps)?,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                self_attn: SelfAttention {
                    query: w.linear(&format!("{p}.attention.self.query"), d, d)?,
                    key: w.linear(&format!("{p}.attention.self.key"), d, d)?,
                    value: w.linear(&format!("{p}.attention.self.value"), d, d)?,
                    n_head: config.num_attention_heads,
                },
                attention_output: Output {
                    dense: w.linear(&format!("{p}.attention.output.dense"), d, d)?,
                    layer_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"), d, eps)?,
                },
                intermediate: w.linear(
                    &format!("{p}.intermediate.dense"),
                    d,
                    config.intermediate_size,
                )?,
                output: Output {
                    dense: w.linear(&format!("{p}.output.dense"), config.intermediate_size, d)?,
                    layer_norm: w.layer_norm(&format!("{p}.output.LayerNorm"), d, eps)?,
                },
            });
        }
        let pooler = w.linear("pooler.dense", d, d)?;
        let classifier = w.linear("classifier", d, labels.len())?;
        // `position_ids` is a buffer some exports save; `cls.*` is a pre-training head.
        w.finish(|name| name.ends_with("position_ids") || name.starts_with("cls."))?;
        Ok(Self {
            config,
            labels,
            embeddings,
            layers,
            pooler,
            classifier,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The dense layers' weight dtype (`f32`, `f16`, `bf16` or `int8`).
    pub fn dtype(&self) -> &'static str {
        self.classifier.dtype()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Class logits for each input, `[B, num_labels]`. Inputs may differ in length.
    pub fn logits(&self, inputs: &[BertInput]) -> Result<Tensor<2>, ModelError> {
        let longest = inputs.iter().map(|i| i.input_ids.len()).max().unwrap_or(0);
        if inputs.is_empty() || longest == 0 {
            return Err(ModelError::InvalidInput("nothing to classify".into()));
        }
        if longest > self.config.max_position_embeddings {
            return Err(ModelError::InvalidInput(format!(
                "{longest} tokens exceed the model's max_position_embeddings ({})",
                self.config.max_position_embeddings
            )));
        }
        for input in inputs {
            if input.token_type_ids.len() != input.input_ids.len() {
                return Err(ModelError::InvalidInput(
                    "token_type_ids and input_ids differ in length".into(),
                ));
            }
            if let Some(&id) = input
                .input_ids
                .iter()
                .find(|&&i| i as usize >= self.config.vocab_size)
            {
                return Err(ModelError::TokenOutOfVocabulary {
                    id,
                    vocab_size: self.config.vocab_size,
                });
            }
            if let Some(bad) = input
                .token_type_ids
                .iter()
                .find(|&&i| i as usize >= self.config.type_vocab_size)
            {
                return Err(ModelError::InvalidInput(format!(
                    "token type {bad} is outside type_vocab_size ({})",
                    self.config.type_vocab_size
                )));
            }
        }
        let b = inputs.len();
        let padded = |f: fn(&BertInput) -> &Vec<u32>| -> Tensor<2, Int> {
            let values: Vec<i64> = inputs
                .iter()
                .flat_map(|i| {
                    let row = f(i);
                    row.iter()
                        .map(|&v| v as i64)
                        .chain(std::iter::repeat_n(0, longest - row.len()))
                })
                .collect();
            Tensor::from_data(TensorData::new(values, [b, longest]), &self.device)
        };
        let ids: Vec<u32> = inputs
            .iter()
            .flat_map(|i| {
                let row = &i.input_ids;
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, longest - row.len()))
            })
            .collect();
        let token_types = padded(|i| &i.token_type_ids);
        let positions: Vec<i64> = (0..b).flat_map(|_| 0..longest as i64).collect();
        let positions =
            Tensor::<2, Int>::from_data(TensorData::new(positions, [b, longest]), &self.device);
        let lengths: Vec<usize> = inputs.iter().map(|i| i.input_ids.len()).collect();
        let bias = lengths.iter().any(|&l| l < longest).then(|| {
            attention_bias(
                [b, 1, longest],
                |row, _, key| key < lengths[row],
                &self.device,
            )
        });

        let e = &self.embeddings;
        let mut x = e.layer_norm.forward(
            e.word_embeddings
                .rows(&ids)
                .reshape([b, longest, self.config.hidden_size])
                + e.position_embeddings.forward(positions)
                + e.token_type_embeddings.forward(token_types),
        );
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, bias.as_ref(), i == last);
        }
        let d = self.config.hidden_size;
        let cls = x.slice([0..b, 0..1, 0..d]).reshape([b, d]);
        let pooled = self.pooler.forward(cls).tanh();
        Ok(self.classifier.forward(pooled))
    }

    /// Softmax over `logits`.
    pub fn scores(logits: Tensor<2>) -> Tensor<2> {
        softmax(logits, 1)
    }
}

impl Layer {
    /// With `cls_only` (the last layer: the pooler reads nothing else), only the first
    /// position is computed past the keys and values: its output is the same, and the layer
    /// costs about a fifth of a full one.
    fn forward(&self, x: Tensor<3>, bias: Option<&Tensor<4>>, cls_only: bool) -> Tensor<3> {
        let a = &self.self_attn;
        let [b, _, d] = x.dims();
        let scale = 1.0 / ((d / a.n_head) as f64).sqrt();
        let queries = if cls_only {
            x.clone().slice([0..b, 0..1, 0..d])
        } else {
            x.clone()
        };
        let q = split_heads(a.query.forward(queries.clone()), a.n_head);
        let k = split_heads(a.key.forward(x.clone()), a.n_head);
        let v = split_heads(a.value.forward(x), a.n_head);
        let context = merge_heads(attend(q, k, v, scale, bias));
        let x = self.attention_output.forward(context, queries);
        let hidden = gelu_erf(self.intermediate.forward(x.clone()));
        self.output.forward(hidden, x)
    }
}

impl Output {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}
