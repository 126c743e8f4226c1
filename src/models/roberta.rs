//! RoBERTa (`model_type = "roberta"`), and XLM-RoBERTa and CamemBERT, which are the same
//! model with another vocabulary: `RobertaForSequenceClassification` (so also bge-style
//! cross-encoder rerankers, one label) and the headless `RobertaModel`, on the shared
//! `encoder` with BERT's key names under `roberta.`.
//!
//! What differs from BERT: positions count from `pad_token_id + 1` (so
//! `max_position_embeddings` 514 holds 512 tokens), every token gets token type 0 (the
//! tokenizers return no type ids), and the head is `RobertaClassificationHead`:
//! `out_proj(tanh(dense(h[<s>])))` under `classifier.`, with no pooler.

use serde::Deserialize;

use super::bert::{
    check_act_and_positions, default_hidden_act, default_layer_norm_eps,
    default_position_embedding_type, is_buffer, KEYS,
};
use super::encoder::{
    require_head, ClassificationHead, Encoder, EncoderForSequenceClassification, EncoderShape,
    HeadActivation, LabelConfig, Positions, TokenTypes,
};
use super::error::ModelError;
use super::weights::WeightFile;

/// The key prefix of a `RobertaFor...` / `XLMRobertaFor...` checkpoint.
pub const PREFIX: &str = "roberta.";

/// The fields of a RoBERTa-family `config.json` that shape the computation.
#[derive(Debug, Clone, Deserialize)]
pub struct RobertaConfig {
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
    /// Also the padding index of the position table: positions start one past it.
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: u32,
    #[serde(flatten)]
    pub labels: LabelConfig,
}

fn default_type_vocab_size() -> usize {
    1
}
fn default_pad_token_id() -> u32 {
    1
}

impl RobertaConfig {
    pub fn validate(&self, path: &std::path::Path) -> Result<(), ModelError> {
        check_act_and_positions(path, &self.hidden_act, &self.position_embedding_type)?;
        if self.type_vocab_size == 0 {
            return Err(ModelError::InvalidConfig {
                path: path.to_path_buf(),
                reason: "type_vocab_size must be at least 1 (every token gets type 0)".into(),
            });
        }
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
            positions: Positions::AfterPadding {
                padding_idx: self.pad_token_id,
            },
        }
    }
}

/// A `RobertaForSequenceClassification` (or XLM-R's, CamemBERT's) from `w` (opened with
/// `PREFIX`), reported as `architecture`, its `model_type`; `config` is validated.
pub fn load_classifier(
    config: &RobertaConfig,
    mut w: WeightFile,
    architecture: &'static str,
) -> Result<EncoderForSequenceClassification, ModelError> {
    let labels = config.labels.labels(w.path())?;
    require_head(&w, "classifier.out_proj.weight", "RoBERTa")?;
    let device = w.device().clone();
    let d = config.hidden_size;
    let encoder = Encoder::load(config.shape(), TokenTypes::Zero, &KEYS, &mut w, &device)?;
    let head = ClassificationHead {
        dense: w.linear("classifier.dense", d, d)?,
        activation: HeadActivation::Tanh,
        out: w.linear("classifier.out_proj", d, labels.len())?,
    };
    // `pooler.*` is in checkpoints converted from a `RobertaModel`; the head never reads it.
    w.finish(|name| is_buffer(name) || name.starts_with("pooler."))?;
    let score_function = config.labels.score_function(labels.len());
    Ok(EncoderForSequenceClassification::new(
        architecture,
        encoder,
        head,
        labels,
        score_function,
    ))
}

/// A headless `RobertaModel` from `w`: a pooler's or a head's tensors are left unread.
pub fn load_model(config: &RobertaConfig, mut w: WeightFile) -> Result<Encoder, ModelError> {
    let device = w.device().clone();
    let encoder = Encoder::load(config.shape(), TokenTypes::Zero, &KEYS, &mut w, &device)?;
    w.finish(|name| {
        is_buffer(name)
            || name.starts_with("pooler.")
            || name.starts_with("lm_head.")
            || name.starts_with("classifier.")
    })?;
    Ok(encoder)
}
