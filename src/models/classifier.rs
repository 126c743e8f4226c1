//! Sequence classification with an encoder (BERT, RoBERTa, XLM-RoBERTa, DistilBERT): text (or
//! a text pair) in, label and score out, as transformers' text-classification pipeline gives them.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::encoder::{EncoderForSequenceClassification, EncoderInput};
use super::error::ModelError;
use super::sampling::argmax;
use super::tokenizer::TextTokenizer;

/// One classified input, shaped as `infergraph classify --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub input_ids: Vec<u32>,
    pub logits: Vec<f32>,
    /// Softmax of `logits`; a sigmoid per label for one label (a reranker) or a multi-label
    /// classifier.
    pub scores: Vec<f32>,
    /// The top class's name.
    pub label: String,
    /// The top class's score, as HF's text-classification pipeline reports it.
    pub score: f32,
}

/// An encoder classifier with its tokenizer (truncating to the model's maximum length).
#[derive(Debug)]
pub struct Classifier {
    dir: PathBuf,
    model: EncoderForSequenceClassification,
    tokenizer: TextTokenizer,
}

impl Classifier {
    pub fn new(
        dir: PathBuf,
        model: EncoderForSequenceClassification,
        tokenizer: TextTokenizer,
    ) -> Self {
        Self {
            dir,
            model,
            tokenizer,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model(&self) -> &EncoderForSequenceClassification {
        &self.model
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn classify(&self, text: &str, pair: Option<&str>) -> Result<Classification, ModelError> {
        Ok(self
            .classify_batch(&[(text, pair)])?
            .pop()
            .expect("one result per input"))
    }

    /// Classifies several inputs in one forward.
    pub fn classify_batch(
        &self,
        items: &[(&str, Option<&str>)],
    ) -> Result<Vec<Classification>, ModelError> {
        let inputs = items
            .iter()
            .map(|(text, pair)| {
                let encoded = self.tokenizer.encode(text, *pair)?;
                Ok(EncoderInput {
                    input_ids: encoded.ids,
                    token_type_ids: encoded.type_ids,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let logits = self.model.logits(&inputs)?;
        let n = self.model.labels().len();
        let scores = self.model.scores(logits.clone());
        let logits = logits
            .into_data()
            .try_into_vec::<f32>()
            .expect("logits are f32");
        let scores = scores
            .into_data()
            .try_into_vec::<f32>()
            .expect("scores are f32");
        Ok(inputs
            .into_iter()
            .zip(logits.chunks_exact(n).zip(scores.chunks_exact(n)))
            .map(|(input, (logits, scores))| {
                let top = argmax(scores) as usize;
                Classification {
                    input_ids: input.input_ids,
                    logits: logits.to_vec(),
                    scores: scores.to_vec(),
                    label: self.model.labels()[top].clone(),
                    score: scores[top],
                }
            })
            .collect())
    }
}
