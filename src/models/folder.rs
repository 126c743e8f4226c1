//! Loading a Hugging Face model folder: `config.json`, `model.safetensors` (or its shards),
//! `tokenizer.json`, and for generators `generation_config.json`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::de::DeserializeOwned;

use super::architectures::{self, Architecture, Family, Task};
use super::bert::{BertConfig, BertForSequenceClassification};
use super::causal_lm::CausalLm;
use super::chat::ChatTemplate;
use super::classifier::Classifier;
use super::dtype::Dtype;
use super::error::ModelError;
use super::generator::Generator;
use super::gpt2::{Gpt2Config, Gpt2LmHeadModel};
use super::llama::{LlamaConfig, LlamaForCausalLm};
use super::tokenizer::TextTokenizer;
use super::weights::WeightFile;

/// A model read from a folder: a generator or a classifier (boxed: both are large).
#[derive(Debug)]
pub enum LoadedModel {
    Generator(Box<Generator>),
    Classifier(Box<Classifier>),
}

/// Paths of the files a model folder must hold.
struct FolderFiles {
    config: PathBuf,
    /// `model.safetensors`, or the index of its shards.
    weights: Weights,
    tokenizer: PathBuf,
    tokenizer_config: PathBuf,
    generation_config: PathBuf,
}

enum Weights {
    Single(PathBuf),
    /// `model.safetensors.index.json`, as `save_pretrained` writes it past its shard size.
    Sharded(PathBuf),
}

impl FolderFiles {
    fn of(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::MissingFile {
                path: dir.to_path_buf(),
                what: "the model folder",
            });
        }
        let (single, index) = (
            dir.join("model.safetensors"),
            dir.join("model.safetensors.index.json"),
        );
        let weights = if !single.is_file() && index.is_file() {
            Weights::Sharded(index)
        } else {
            Weights::Single(single)
        };
        let files = Self {
            config: dir.join("config.json"),
            weights,
            tokenizer: dir.join("tokenizer.json"),
            tokenizer_config: dir.join("tokenizer_config.json"),
            generation_config: dir.join("generation_config.json"),
        };
        for (path, what) in [
            (&files.config, "the model's config.json"),
            (
                match &files.weights {
                    Weights::Single(path) | Weights::Sharded(path) => path,
                },
                "the model's weights: model.safetensors, or model.safetensors.index.json and its shards",
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

    fn open_weights(
        &self,
        architecture: &Architecture,
        device: &Device,
        dtype: Dtype,
    ) -> Result<WeightFile, ModelError> {
        let prefix = architecture.weight_prefix;
        match &self.weights {
            Weights::Single(path) => WeightFile::open(path, prefix, device),
            Weights::Sharded(index) => WeightFile::open_sharded(index, prefix, device),
        }?
        .with_dtype(dtype)
    }
}

/// Reads `config.json` in `dir` and finds its architecture in the table.
pub fn architecture(dir: &Path) -> Result<&'static Architecture, ModelError> {
    let files = FolderFiles::of(dir)?;
    let config: serde_json::Value = read_json(&files.config)?;
    architecture_of(&config, &files.config)
}

fn architecture_of(
    config: &serde_json::Value,
    path: &Path,
) -> Result<&'static Architecture, ModelError> {
    match config.get("model_type").and_then(|v| v.as_str()) {
        Some(model_type) => {
            architectures::find(model_type).ok_or_else(|| ModelError::UnknownArchitecture {
                path: path.to_path_buf(),
                model_type: model_type.to_string(),
                supported: architectures::supported(),
            })
        }
        None => Err(ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason: "no \"model_type\" field".into(),
        }),
    }
}

/// Loads the model in `dir` onto `device`, in the role its architecture serves.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    Ok(match architecture(dir)?.task {
        Task::Generate => LoadedModel::Generator(Box::new(load_generator(dir, device)?)),
        Task::Classify => LoadedModel::Classifier(Box::new(load_classifier(dir, device)?)),
    })
}

/// The generator in `dir`, in f32.
pub fn load_generator(dir: &Path, device: &Device) -> Result<Generator, ModelError> {
    load_generator_in(dir, device, Dtype::F32)
}

/// The BERT classifier in `dir`, in f32.
pub fn load_classifier(dir: &Path, device: &Device) -> Result<Classifier, ModelError> {
    load_classifier_in(dir, device, Dtype::F32)
}

/// The generator in `dir` (any architecture the table lists for generating), its dense
/// layers in `dtype`.
pub fn load_generator_in(
    dir: &Path,
    device: &Device,
    dtype: Dtype,
) -> Result<Generator, ModelError> {
    let (files, config, architecture) = open_for(dir, Task::Generate)?;
    let weights = files.open_weights(architecture, device, dtype)?;
    let model: Box<dyn CausalLm> = match architecture.family {
        Family::Gpt2 => {
            let config: Gpt2Config = from_json(&config, &files.config)?;
            config.validate(&files.config)?;
            Box::new(Gpt2LmHeadModel::load(config, weights, device)?)
        }
        Family::Llama => Box::new(LlamaForCausalLm::load(
            LlamaConfig::from_json(&config, &files.config)?,
            weights,
            device,
        )?),
        Family::Bert => unreachable!("the table lists bert as a classifier"),
    };
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
    let mut eos = token_ids(&config, "eos_token_id", &files.config)?;
    if files.generation_config.is_file() {
        // Instruct models often list their end-of-turn token only here (Llama 3's eot_id).
        let generation: serde_json::Value = read_json(&files.generation_config)?;
        for id in token_ids(&generation, "eos_token_id", &files.generation_config)? {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
    }
    let tokenizer_config: Option<serde_json::Value> = files
        .tokenizer_config
        .is_file()
        .then(|| read_json(&files.tokenizer_config))
        .transpose()?;
    let chat_template = ChatTemplate::from_folder(dir, tokenizer_config.as_ref())?;
    // A chat's turn ends at the template's end-of-turn token, even where the config's eos
    // list leaves it out (Qwen2.5 base: <|endoftext|> only; the template writes <|im_end|>).
    let end_of_turn = chat_template
        .as_ref()
        .and_then(ChatTemplate::eos_token)
        .and_then(|token| tokenizer.token_id(token));
    if let Some(id) = end_of_turn.filter(|id| !eos.contains(id)) {
        eos.push(id);
    }
    Ok(Generator::new(
        dir.to_path_buf(),
        model,
        tokenizer,
        eos,
        chat_template,
    ))
}

/// The BERT classifier in `dir`, its dense layers in `dtype`.
pub fn load_classifier_in(
    dir: &Path,
    device: &Device,
    dtype: Dtype,
) -> Result<Classifier, ModelError> {
    let (files, config, architecture) = open_for(dir, Task::Classify)?;
    let config: BertConfig = from_json(&config, &files.config)?;
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
    let weights = files.open_weights(architecture, device, dtype)?;
    let model = BertForSequenceClassification::load(config, weights, device)?;
    Ok(Classifier::new(dir.to_path_buf(), model, tokenizer))
}

/// The folder's files, its parsed `config.json` and its architecture, checked to serve
/// `task`: by `model_type`, and by `architectures[0]` where the config names one.
fn open_for(
    dir: &Path,
    task: Task,
) -> Result<(FolderFiles, serde_json::Value, &'static Architecture), ModelError> {
    let files = FolderFiles::of(dir)?;
    let config: serde_json::Value = read_json(&files.config)?;
    let architecture = architecture_of(&config, &files.config)?;
    let wrong_role = |reason: String| ModelError::WrongRole {
        path: files.config.clone(),
        reason,
        supported: architectures::supported(),
    };
    if architecture.task != task {
        return Err(wrong_role(format!(
            "model_type {:?} serves as a {}, not as a {}",
            architecture.model_type,
            architecture.task.role(),
            task.role()
        )));
    }
    let class = config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str());
    if let Some(class) = class.filter(|c| !architecture.classes.contains(c)) {
        return Err(wrong_role(format!(
            "architectures[0] is {class:?}; a {} of model_type {:?} must be one of {:?}",
            task.role(),
            architecture.model_type,
            architecture.classes
        )));
    }
    Ok((files, config, architecture))
}

/// `key` as one token id or a list of them (absent or null: none).
fn token_ids(json: &serde_json::Value, key: &str, path: &Path) -> Result<Vec<u32>, ModelError> {
    let invalid = || ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason: format!("{key} must be a token id or a list of them"),
    };
    let id = |v: &serde_json::Value| v.as_u64().and_then(|i| u32::try_from(i).ok());
    match json.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(ids)) => {
            ids.iter().map(|v| id(v).ok_or_else(invalid)).collect()
        }
        Some(v) => Ok(vec![id(v).ok_or_else(invalid)?]),
    }
}

fn from_json<T: DeserializeOwned>(json: &serde_json::Value, path: &Path) -> Result<T, ModelError> {
    serde_json::from_value(json.clone()).map_err(|e| ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
