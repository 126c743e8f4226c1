//! Sentence embeddings from an encoder without a head, as sentence-transformers computes them:
//! the last hidden state, pooled (the mean over the input's tokens, or the first token), then
//! L2-normalised when the folder says so.
//!
//! A folder describes itself in `modules.json` (Transformer → Pooling → optional Normalize),
//! `1_Pooling/config.json` and `sentence_bert_config.json` (`max_seq_length`, the truncation
//! sentence-transformers applies whatever tokenizer.json says). A plain encoder folder has
//! none of these; `config.toml` then names the pooling. Padding never enters a mean: a batch
//! is right-padded and each row pooled over its own tokens only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::encoder::{Encoder, EncoderInput, Rows};
use super::error::ModelError;
use super::tokenizer::TextTokenizer;

/// The file that makes a folder a sentence-transformers model.
pub const MODULES: &str = "modules.json";

/// How the token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over the input's tokens (special tokens included, padding not).
    Mean,
    /// The first token's vector (`[CLS]` / `<s>`).
    Cls,
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Cls => "cls",
        }
    }
}

/// What a sentence-transformers folder's module files say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceTransformer {
    pub pooling: Pooling,
    pub normalize: bool,
    /// `sentence_bert_config.json`'s `max_seq_length`, when the folder has one.
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl SentenceTransformer {
    /// Reads `dir`'s module files; `pooling`, when given (from `config.toml`), overrides the
    /// folder's and is required where the folder has no `modules.json`.
    pub fn read(dir: &Path, pooling: Option<Pooling>) -> Result<Self, ModelError> {
        let modules_path = dir.join(MODULES);
        let max_seq_length = {
            let path = dir.join("sentence_bert_config.json");
            if path.is_file() {
                read_json::<SentenceBertConfig>(&path)?.max_seq_length
            } else {
                None
            }
        };
        if !modules_path.is_file() {
            let pooling = pooling.ok_or_else(|| ModelError::MissingFile {
                path: modules_path.clone(),
                what: "a sentence-transformers folder's module list; for a plain encoder \
                       folder, name the pooling in config.toml (pooling = \"mean\" or \"cls\")",
            })?;
            return Ok(Self {
                pooling,
                normalize: false,
                max_seq_length,
            });
        }
        let modules: Vec<Module> = read_json(&modules_path)?;
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: modules_path.clone(),
            reason,
        };
        let mut folder_pooling = None;
        let mut normalize = false;
        for module in &modules {
            let kind = module
                .kind
                .strip_prefix("sentence_transformers.models.")
                .unwrap_or(&module.kind);
            match kind {
                "Transformer" if module.path.is_empty() => {}
                "Transformer" => {
                    return Err(invalid(format!(
                        "the Transformer module is in the subfolder {:?}; only folders with the \
                         model's files at the top are supported",
                        module.path
                    )))
                }
                "Pooling" => {
                    let path = dir.join(&module.path).join("config.json");
                    folder_pooling = Some(pooling_of(&path, &read_json(&path)?)?);
                }
                "Normalize" => normalize = true,
                other => {
                    return Err(invalid(format!(
                        "module {other:?} is not supported (Transformer, Pooling, Normalize)"
                    )))
                }
            }
        }
        let pooling = pooling
            .or(folder_pooling)
            .ok_or_else(|| invalid("no Pooling module".into()))?;
        Ok(Self {
            pooling,
            normalize,
            max_seq_length,
        })
    }
}

fn pooling_of(path: &Path, config: &PoolingConfig) -> Result<Pooling, ModelError> {
    let unsupported = [
        (config.pooling_mode_max_tokens, "max"),
        (config.pooling_mode_mean_sqrt_len_tokens, "mean_sqrt_len"),
        (config.pooling_mode_weightedmean_tokens, "weightedmean"),
        (config.pooling_mode_lasttoken, "lasttoken"),
    ];
    let invalid = |reason: String| ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason,
    };
    if let Some((_, name)) = unsupported.iter().find(|(on, _)| *on) {
        return Err(invalid(format!(
            "pooling mode {name:?} is not supported (mean, cls)"
        )));
    }
    match (
        config.pooling_mode_mean_tokens,
        config.pooling_mode_cls_token,
    ) {
        (true, false) => Ok(Pooling::Mean),
        (false, true) => Ok(Pooling::Cls),
        _ => Err(invalid(
            "exactly one of pooling_mode_mean_tokens and pooling_mode_cls_token must be true"
                .into(),
        )),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// One embedded text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embedding {
    /// The tokens the model read (after truncation).
    pub input_ids: Vec<u32>,
    pub truncated: bool,
    pub embedding: Vec<f32>,
}

/// An encoder with its pooling and tokenizer.
#[derive(Debug)]
pub struct Embedder {
    dir: PathBuf,
    architecture: &'static str,
    encoder: Encoder,
    tokenizer: TextTokenizer,
    modules: SentenceTransformer,
}

impl Embedder {
    pub fn new(
        dir: PathBuf,
        architecture: &'static str,
        encoder: Encoder,
        tokenizer: TextTokenizer,
        modules: SentenceTransformer,
    ) -> Self {
        Self {
            dir,
            architecture,
            encoder,
            tokenizer,
            modules,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `model_type` it was loaded as.
    pub fn architecture(&self) -> &'static str {
        self.architecture
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn pooling(&self) -> Pooling {
        self.modules.pooling
    }

    pub fn normalize(&self) -> bool {
        self.modules.normalize
    }

    /// The length of an embedding.
    pub fn dimension(&self) -> usize {
        self.encoder.shape().hidden_size
    }

    pub fn embed(&self, text: &str) -> Result<Embedding, ModelError> {
        Ok(self
            .embed_batch(&[text])?
            .pop()
            .expect("one result per input"))
    }

    /// Embeds several texts in one forward.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Embedding>, ModelError> {
        let mut truncated = Vec::with_capacity(texts.len());
        let inputs = texts
            .iter()
            .map(|text| {
                let encoded = self.tokenizer.encode(text, None)?;
                truncated.push(encoded.truncated);
                Ok(EncoderInput {
                    input_ids: encoded.ids,
                    token_type_ids: encoded.type_ids,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let rows = match self.modules.pooling {
            Pooling::Mean => Rows::All,
            Pooling::Cls => Rows::First,
        };
        let hidden = self.encoder.forward(&inputs, rows)?;
        let [_, t, d] = hidden.dims();
        let hidden = hidden
            .into_data()
            .try_into_vec::<f32>()
            .expect("hidden states are f32");
        Ok(inputs
            .iter()
            .zip(hidden.chunks_exact(t * d))
            .zip(truncated)
            .map(|((input, states), truncated)| {
                let n = input.input_ids.len();
                let mut vector = match self.modules.pooling {
                    Pooling::Cls => states[..d].to_vec(),
                    Pooling::Mean => mean_of_rows(&states[..n * d], d),
                };
                if self.modules.normalize {
                    l2_normalise(&mut vector);
                }
                Embedding {
                    input_ids: input.input_ids.clone(),
                    truncated,
                    embedding: vector,
                }
            })
            .collect())
    }
}

/// The mean of the `d`-wide rows of `rows`, summed in f64 (a long input's sum of hundreds of
/// rows would otherwise lose digits the goldens keep).
fn mean_of_rows(rows: &[f32], d: usize) -> Vec<f32> {
    let n = rows.len() / d;
    let mut sum = vec![0f64; d];
    for row in rows.chunks_exact(d) {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += v as f64;
        }
    }
    sum.into_iter().map(|s| (s / n as f64) as f32).collect()
}

/// `v / max(‖v‖, 1e-12)`, as torch's `F.normalize` (sentence-transformers' `Normalize`).
fn l2_normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    let scale = 1.0 / norm.max(1e-12);
    for x in v {
        *x = (*x as f64 * scale) as f32;
    }
}

/// The cosine similarity of two vectors (their dot product when both are normalised).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        dot += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    (dot / (aa.sqrt() * bb.sqrt()).max(1e-12)) as f32
}
