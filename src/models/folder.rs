//! Loading a Hugging Face model folder: `config.json`, `model.safetensors`, `tokenizer.json`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::de::DeserializeOwned;

use super::bert::{BertConfig, BertForSequenceClassification};
use super::classifier::Classifier;
use super::dtype::Dtype;
use super::error::ModelError;
use super::generator::Generator;
use super::gpt2::{Gpt2Config, Gpt2LmHeadModel};
use super::tokenizer::TextTokenizer;
use super::weights::WeightFile;

/// The architectures infergraph runs, by `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Gpt2,
    Bert,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::Bert => "bert",
        }
    }
}

/// A model read from a folder: a generator or a classifier (boxed: both are large).
#[derive(Debug)]
pub enum LoadedModel {
    Generator(Box<Generator>),
    Classifier(Box<Classifier>),
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

/// Loads the model in `dir` onto `device`, whichever architecture it is.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    Ok(match architecture(dir)? {
        Architecture::Gpt2 => LoadedModel::Generator(Box::new(load_generator(dir, device)?)),
        Architecture::Bert => LoadedModel::Classifier(Box::new(load_classifier(dir, device)?)),
    })
}

/// The GPT-2 in `dir`, in f32.
pub fn load_generator(dir: &Path, device: &Device) -> Result<Generator, ModelError> {
    load_generator_in(dir, device, Dtype::F32)
}

/// The BERT classifier in `dir`, in f32.
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

/// The BERT classifier in `dir`, its dense layers in `dtype`.
pub fn load_classifier_in(
    dir: &Path,
    device: &Device,
    dtype: Dtype,
) -> Result<Classifier, ModelError> {
    let files = expect_architecture(dir, Architecture::Bert)?;
    let config: BertConfig = read_json(&files.config)?;
    config.validate(&files.config)?;
    let mut max_tokens = config.max_position_embeddings;
    if files.tokenizer_config.is_file() {
        let tokenizer_config: serde_json::Value = read_json(&files.tokenizer_config)?;
        if let Some(limit) = tokenizer_config
            .get("model_max_length")
            .and_then(|v| v.as_u64())
        {
            max_tokens = max_tokens.min(limit as usize);
        }
    }
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?.truncate_to(max_tokens)?;
    let weights = WeightFile::open(&files.weights, "bert.", device)?.with_dtype(dtype)?;
    let model = BertForSequenceClassification::load(config, weights, device)?;
    Ok(Classifier::new(dir.to_path_buf(), model, tokenizer))
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
