//! BERT (`model_type = "bert"`): `BertForSequenceClassification` and the headless
//! `BertModel` that sentence embedders are, on the shared `encoder`.
//!
//! Keys are Hugging Face's (`encoder.layer.0.attention.self.query`), with or without the
//! `bert.` prefix (a `BertModel` checkpoint has none). The classifier's head is the pooler
//! (`pooler.dense`, tanh over `[CLS]`) and `classifier`.

use serde::Deserialize;

use super::encoder::{
    require_head, ClassificationHead, Encoder, EncoderForSequenceClassification, EncoderKeys,
    EncoderShape, HeadActivation, LabelConfig, Positions, TokenTypes,
};
use super::error::ModelError;
use super::weights::WeightFile;

/// The key prefix of a `BertFor...` checkpoint.
pub const PREFIX: &str = "bert.";

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
    #[serde(flatten)]
    pub labels: LabelConfig,
}

pub(crate) fn default_hidden_act() -> String {
    "gelu".to_string()
}
fn default_type_vocab_size() -> usize {
    2
}
pub(crate) fn default_layer_norm_eps() -> f64 {
    1e-12
}
pub(crate) fn default_position_embedding_type() -> String {
    "absolute".to_string()
}

impl BertConfig {
    pub fn validate(&self, path: &std::path::Path) -> Result<(), ModelError> {
        check_act_and_positions(path, &self.hidden_act, &self.position_embedding_type)?;
        self.shape().validate(path)
    }

    pub fn shape(&self) -> EncoderShape {
        EncoderShape {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            layer_norm_eps: self.layer_norm_eps,
            positions: Positions::Absolute,
        }
    }
}

/// BERT and RoBERTa configs share these two fields, and this implementation one value of each.
pub(crate) fn check_act_and_positions(
    path: &std::path::Path,
    hidden_act: &str,
    position_embedding_type: &str,
) -> Result<(), ModelError> {
    let invalid = |reason: String| ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason,
    };
    if hidden_act != "gelu" {
        return Err(invalid(format!(
            "hidden_act {hidden_act:?} is not supported (gelu)"
        )));
    }
    if position_embedding_type != "absolute" {
        return Err(invalid(format!(
            "position_embedding_type {position_embedding_type:?} is not supported (absolute)"
        )));
    }
    Ok(())
}

/// BERT's key names; RoBERTa's are the same.
pub(crate) const KEYS: EncoderKeys = EncoderKeys {
    word_embeddings: "embeddings.word_embeddings",
    position_embeddings: "embeddings.position_embeddings",
    token_type_embeddings: Some("embeddings.token_type_embeddings"),
    embeddings_layer_norm: "embeddings.LayerNorm",
    layer: |i| format!("encoder.layer.{i}"),
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_layer_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_layer_norm: "output.LayerNorm",
};

/// `position_ids` is a buffer some exports save (int64 in `BertModel` checkpoints).
pub(crate) fn is_buffer(name: &str) -> bool {
    name.ends_with("position_ids")
}

/// A `BertForSequenceClassification` from `w` (opened with `PREFIX`); `config` is validated
/// (`folder` checks it against config.json before any weights).
pub fn load_classifier(
    config: &BertConfig,
    mut w: WeightFile,
) -> Result<EncoderForSequenceClassification, ModelError> {
    let labels = config.labels.labels(w.path())?;
    require_head(&w, "classifier.weight", "BERT")?;
    let device = w.device().clone();
    let d = config.hidden_size;
    let encoder = Encoder::load(config.shape(), TokenTypes::Segments, &KEYS, &mut w, &device)?;
    let head = ClassificationHead {
        dense: w.linear("pooler.dense", d, d)?,
        activation: HeadActivation::Tanh,
        out: w.linear("classifier", d, labels.len())?,
    };
    // `cls.*` is a pre-training head.
    w.finish(|name| is_buffer(name) || name.starts_with("cls."))?;
    let score_function = config.labels.score_function(labels.len());
    Ok(EncoderForSequenceClassification::new(
        "bert",
        encoder,
        head,
        labels,
        score_function,
    ))
}

/// A headless `BertModel` from `w`: a classifier's or a pooler's tensors are left unread.
pub fn load_model(config: &BertConfig, mut w: WeightFile) -> Result<Encoder, ModelError> {
    let device = w.device().clone();
    let encoder = Encoder::load(config.shape(), TokenTypes::Segments, &KEYS, &mut w, &device)?;
    w.finish(|name| {
        is_buffer(name)
            || name.starts_with("pooler.")
            || name.starts_with("cls.")
            || name.starts_with("classifier.")
    })?;
    Ok(encoder)
}
