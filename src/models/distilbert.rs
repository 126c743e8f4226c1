//! DistilBERT (`model_type = "distilbert"`): `DistilBertForSequenceClassification` and the
//! headless `DistilBertModel`, on the shared `encoder`.
//!
//! The same layers as BERT under DistilBERT's own names (`transformer.layer.N.attention.q_lin`
//! … `ffn.lin2`, `sa_layer_norm`, `output_layer_norm`; config `dim`, `n_heads`, `n_layers`,
//! `hidden_dim`), with or without the `distilbert.` prefix; no token types (the tokenizer's
//! type ids are not an input), LayerNorm eps fixed at 1e-12, and the head
//! `classifier(ReLU(pre_classifier(h[CLS])))`.

use serde::Deserialize;

use super::encoder::{
    require_head, ClassificationHead, Encoder, EncoderForSequenceClassification, EncoderKeys,
    EncoderShape, HeadActivation, LabelConfig, Positions, TokenTypes,
};
use super::error::ModelError;
use super::weights::WeightFile;

/// The key prefix of a `DistilBertFor...` checkpoint.
pub const PREFIX: &str = "distilbert.";

/// transformers hard-codes it in `DistilBertModel`'s LayerNorms.
const LAYER_NORM_EPS: f64 = 1e-12;

/// The fields of a DistilBERT `config.json` that shape the computation.
#[derive(Debug, Clone, Deserialize)]
pub struct DistilBertConfig {
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub hidden_dim: usize,
    #[serde(default = "default_activation")]
    pub activation: String,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
    #[serde(flatten)]
    pub labels: LabelConfig,
}

fn default_activation() -> String {
    "gelu".to_string()
}

impl DistilBertConfig {
    pub fn validate(&self, path: &std::path::Path) -> Result<(), ModelError> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        if self.activation != "gelu" {
            return Err(invalid(format!(
                "activation {:?} is not supported (gelu)",
                self.activation
            )));
        }
        // Sinusoidal checkpoints still store the (fixed) table, so this only guards against
        // a config this implementation has not been checked on.
        if self.sinusoidal_pos_embds {
            return Err(invalid(
                "sinusoidal_pos_embds = true is not supported (learned positions)".into(),
            ));
        }
        self.shape().validate(path)
    }

    pub fn shape(&self) -> EncoderShape {
        EncoderShape {
            vocab_size: self.vocab_size,
            hidden_size: self.dim,
            num_hidden_layers: self.n_layers,
            num_attention_heads: self.n_heads,
            intermediate_size: self.hidden_dim,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: 0,
            layer_norm_eps: LAYER_NORM_EPS,
            positions: Positions::Absolute,
        }
    }
}

const KEYS: EncoderKeys = EncoderKeys {
    word_embeddings: "embeddings.word_embeddings",
    position_embeddings: "embeddings.position_embeddings",
    token_type_embeddings: None,
    embeddings_layer_norm: "embeddings.LayerNorm",
    layer: |i| format!("transformer.layer.{i}"),
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attention_output: "attention.out_lin",
    attention_layer_norm: "sa_layer_norm",
    intermediate: "ffn.lin1",
    output: "ffn.lin2",
    output_layer_norm: "output_layer_norm",
};

/// `position_ids` is a buffer some exports save.
fn is_buffer(name: &str) -> bool {
    name.ends_with("position_ids")
}

/// A `DistilBertForSequenceClassification` from `w` (opened with `PREFIX`); `config` is
/// validated.
pub fn load_classifier(
    config: &DistilBertConfig,
    mut w: WeightFile,
) -> Result<EncoderForSequenceClassification, ModelError> {
    let labels = config.labels.labels(w.path())?;
    require_head(&w, "classifier.weight", "DistilBERT")?;
    let device = w.device().clone();
    let d = config.dim;
    let encoder = Encoder::load(config.shape(), TokenTypes::None, &KEYS, &mut w, &device)?;
    let head = ClassificationHead {
        dense: w.linear("pre_classifier", d, d)?,
        activation: HeadActivation::Relu,
        out: w.linear("classifier", d, labels.len())?,
    };
    w.finish(is_buffer)?;
    let score_function = config.labels.score_function(labels.len());
    Ok(EncoderForSequenceClassification::new(
        "distilbert",
        encoder,
        head,
        labels,
        score_function,
    ))
}

/// A headless `DistilBertModel` from `w`: a head's or an MLM head's tensors are left unread.
pub fn load_model(config: &DistilBertConfig, mut w: WeightFile) -> Result<Encoder, ModelError> {
    let device = w.device().clone();
    let encoder = Encoder::load(config.shape(), TokenTypes::None, &KEYS, &mut w, &device)?;
    w.finish(|name| {
        is_buffer(name)
            || name.starts_with("pre_classifier.")
            || name.starts_with("classifier.")
            || name.starts_with("vocab_")
    })?;
    Ok(encoder)
}
