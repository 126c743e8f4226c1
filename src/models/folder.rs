//! Loading a Hugging Face model folder: `config.json`, `model.safetensors`, `tokenizer.json`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::de::DeserializeOwned;

use super::bert::{self, BertConfig};
use super::classifier::Classifier;
use super::distilbert::{self, DistilBertConfig};
use super::dtype::Dtype;
use super::embedder::{self, Embedder, Pooling};
use super::encoder::{Encoder, EncoderForSequenceClassification};
use super::error::ModelError;
use super::generator::Generator;
use super::gpt2::{Gpt2Config, Gpt2LmHeadModel};
use super::roberta::{self, RobertaConfig};
use super::tokenizer::TextTokenizer;
use super::weights::WeightFile;

/// The architectures infergraph runs, by `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Gpt2,
    Bert,
    Roberta,
    XlmRoberta,
    Camembert,
    DistilBert,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::Bert => "bert",
            Self::Roberta => "roberta",
            Self::XlmRoberta => "xlm-roberta",
            Self::Camembert => "camembert",
            Self::DistilBert => "distilbert",
        }
    }

    /// Whether it is an encoder (a classifier or an embedder), as opposed to a generator.
    pub fn is_encoder(self) -> bool {
        self != Self::Gpt2
    }
}

/// A model read from a folder: a generator, a classifier or an embedder (boxed: all are large).
#[derive(Debug)]
pub enum LoadedModel {
    Generator(Box<Generator>),
    Classifier(Box<Classifier>),
    Embedder(Box<Embedder>),
}

/// Paths of the files a model folder must hold.
struct FolderFiles {
    config: PathBuf,
    weights: PathBuf,
    tokenizer: PathBuf,
    tokenizer_config: PathBuf,
}

impl FolderFiles {
    fn of(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::MissingFile {
                path: dir.to_path_buf(),
                what: "the model folder",
            });
        }
        let files = Self {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
            tokenizer: dir.join("tokenizer.json"),
            tokenizer_config: dir.join("tokenizer_config.json"),
        };
        for (path, what) in [
            (&files.config, "the model's config.json"),
            (
                &files.weights,
                "the model's weights; only model.safetensors is read",
            ),
            (&files.tokenizer, "the model's tokenizer.json"),
        ] {
            if !path.is_file() {
                return Err(ModelError::MissingFile {
                    path: path.clone(),
                    what,
                });
            }
        }
        Ok(files)
    }
}

/// Reads `config.json` in `dir` and tells which architecture it describes.
pub fn architecture(dir: &Path) -> Result<Architecture, ModelError> {
    let files = FolderFiles::of(dir)?;
    let config: serde_json::Value = read_json(&files.config)?;
    match config.get("model_type").and_then(|v| v.as_str()) {
        Some("gpt2") => Ok(Architecture::Gpt2),
        Some("bert") => Ok(Architecture::Bert),
        Some("roberta") => Ok(Architecture::Roberta),
        Some("xlm-roberta") => Ok(Architecture::XlmRoberta),
        Some("camembert") => Ok(Architecture::Camembert),
        Some("distilbert") => Ok(Architecture::DistilBert),
        Some(other) => Err(ModelError::UnknownArchitecture {
            path: files.config,
            model_type: other.to_string(),
        }),
        None => Err(ModelError::InvalidConfig {
            path: files.config,
            reason: "no \"model_type\" field".into(),
        }),
    }
}

/// Loads the model in `dir` onto `device`, whichever architecture it is: an encoder in a
/// sentence-transformers folder (`modules.json`) is an embedder, any other a classifier.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    Ok(match architecture(dir)? {
        Architecture::Gpt2 => LoadedModel::Generator(Box::new(load_generator(dir, device)?)),
        _ if dir.join(embedder::MODULES).is_file() => {
            LoadedModel::Embedder(Box::new(load_embedder_in(dir, device, Dtype::F32, None)?))
        }
        _ => LoadedModel::Classifier(Box::new(load_classifier(dir, device)?)),
    })
}

/// The GPT-2 in `dir`, in f32.
pub fn load_generator(dir: &Path, device: &Device) -> Result<Generator, ModelError> {
    load_generator_in(dir, device, Dtype::F32)
}

/// The encoder classifier in `dir`, in f32.
pub fn load_classifier(dir: &Path, device: &Device) -> Result<Classifier, ModelError> {
    load_classifier_in(dir, device, Dtype::F32)
}

/// The GPT-2 in `dir`, its dense layers in `dtype`.
pub fn load_generator_in(
    dir: &Path,
    device: &Device,
    dtype: Dtype,
) -> Result<Generator, ModelError> {
    let files = expect_architecture(dir, Architecture::Gpt2)?;
    let config: Gpt2Config = read_json(&files.config)?;
    config.validate(&files.config)?;
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
    let weights = WeightFile::open(&files.weights, "transformer.", device)?.with_dtype(dtype)?;
    let model = Gpt2LmHeadModel::load(config, weights, device)?;
    Ok(Generator::new(dir.to_path_buf(), model, tokenizer))
}

/// The encoder classifier (BERT, RoBERTa, XLM-RoBERTa, DistilBERT) in `dir`, its dense
/// layers in `dtype`.
pub fn load_classifier_in(
    dir: &Path,
    device: &Device,
    dtype: Dtype,
) -> Result<Classifier, ModelError> {
    let (files, found) = encoder_files(dir, "classifier")?;
    let open = |prefix: &str| WeightFile::open(&files.weights, prefix, device)?.with_dtype(dtype);
    let model: EncoderForSequenceClassification = match found {
        Architecture::Bert => {
            let config: BertConfig = read_json(&files.config)?;
            config.validate(&files.config)?;
            bert::load_classifier(&config, open(bert::PREFIX)?)?
        }
        Architecture::Roberta | Architecture::XlmRoberta | Architecture::Camembert => {
            let config: RobertaConfig = read_json(&files.config)?;
            config.validate(&files.config)?;
            roberta::load_classifier(&config, open(roberta::PREFIX)?, found.as_str())?
        }
        Architecture::DistilBert => {
            let config: DistilBertConfig = read_json(&files.config)?;
            config.validate(&files.config)?;
            distilbert::load_classifier(&config, open(distilbert::PREFIX)?)?
        }
        Architecture::Gpt2 => unreachable!("encoder_files refuses generators"),
    };
    let max_tokens = model_max_length(&files, model.shape().max_tokens())?;
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?.truncate_to(max_tokens)?;
    Ok(Classifier::new(dir.to_path_buf(), model, tokenizer))
}

/// The sentence embedder in `dir`, its dense layers in `dtype`: a sentence-transformers folder
/// (`modules.json`: Transformer, Pooling, optionally Normalize), or a plain encoder folder
/// with `pooling` given (which then overrides the folder's).
pub fn load_embedder_in(
    dir: &Path,
    device: &Device,
    dtype: Dtype,
    pooling: Option<Pooling>,
) -> Result<Embedder, ModelError> {
    let (files, found) = encoder_files(dir, "embedder")?;
    let modules = embedder::SentenceTransformer::read(dir, pooling)?;
    let open = |prefix: &str| WeightFile::open(&files.weights, prefix, device)?.with_dtype(dtype);
    // A headless checkpoint has no prefix; one saved from a `...For...` class has it.
    let encoder: Encoder = match found {
        Architecture::Bert => {
            let config: BertConfig = read_json(&files.config)?;
            config.validate(&files.config)?;
            bert::load_model(&config, open(bert::PREFIX)?)?
        }
        Architecture::Roberta | Architecture::XlmRoberta | Architecture::Camembert => {
            let config: RobertaConfig = read_json(&files.config)?;
            config.validate(&files.config)?;
            roberta::load_model(&config, open(roberta::PREFIX)?)?
        }
        Architecture::DistilBert => {
            let config: DistilBertConfig = read_json(&files.config)?;
            config.validate(&files.config)?;
            distilbert::load_model(&config, open(distilbert::PREFIX)?)?
        }
        Architecture::Gpt2 => unreachable!("encoder_files refuses generators"),
    };
    // sentence-transformers truncates at `max_seq_length`, whatever tokenizer.json says.
    let max_tokens = match modules.max_seq_length {
        Some(limit) => limit.min(encoder.shape().max_tokens()),
        None => model_max_length(&files, encoder.shape().max_tokens())?,
    };
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?.truncate_exactly(max_tokens)?;
    Ok(Embedder::new(
        dir.to_path_buf(),
        found.as_str(),
        encoder,
        tokenizer,
        modules,
    ))
}

/// The folder's files, when it holds an encoder (the roles `classifier` and `embedder`).
fn encoder_files(dir: &Path, role: &str) -> Result<(FolderFiles, Architecture), ModelError> {
    let found = architecture(dir)?;
    let files = FolderFiles::of(dir)?;
    if !found.is_encoder() {
        return Err(ModelError::InvalidConfig {
            path: files.config,
            reason: format!(
                "model_type is {:?}, but a {role} needs an encoder (\"bert\", \"roberta\", \
                 \"xlm-roberta\", \"camembert\" or \"distilbert\")",
                found.as_str()
            ),
        });
    }
    Ok((files, found))
}

/// `limit`, or less where `tokenizer_config.json`'s `model_max_length` says so.
fn model_max_length(files: &FolderFiles, limit: usize) -> Result<usize, ModelError> {
    if !files.tokenizer_config.is_file() {
        return Ok(limit);
    }
    let tokenizer_config: serde_json::Value = read_json(&files.tokenizer_config)?;
    Ok(tokenizer_config
        .get("model_max_length")
        .and_then(|v| v.as_u64())
        .map_or(limit, |max| limit.min(max as usize)))
}

fn expect_architecture(dir: &Path, wanted: Architecture) -> Result<FolderFiles, ModelError> {
    let found = architecture(dir)?;
    let files = FolderFiles::of(dir)?;
    if found != wanted {
        return Err(ModelError::InvalidConfig {
            path: files.config,
            reason: format!(
                "model_type is {:?}, but this role needs {:?}",
                found.as_str(),
                wanted.as_str()
            ),
        });
    }
    Ok(files)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
