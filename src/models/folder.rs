//! Loading a Hugging Face model folder: `config.json`, `model.safetensors` (or its shards),
//! `tokenizer.json`, and for generators `generation_config.json`; or a generator's GGUF file
//! (a `.gguf` path, or a folder holding exactly one), which carries all of them
//! (`gguf::checkpoint`, `gguf::tokenizer`).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::de::DeserializeOwned;

use super::architectures::{self, Architecture, Family, Task};
use super::bert::{self, BertConfig};
use super::causal_lm::CausalLm;
use super::chat::{ChatTemplate, TemplateSource};
use super::classifier::Classifier;
use super::distilbert::{self, DistilBertConfig};
use super::dtype::Dtype;
use super::embedder::{self, Embedder, Pooling};
use super::encoder::{Encoder, EncoderForSequenceClassification};
use super::error::ModelError;
use super::generator::Generator;
use super::gguf::{self, GgufFile};
use super::gpt2::{Gpt2Config, Gpt2LmHeadModel};
use super::llama::{LlamaConfig, LlamaForCausalLm};
use super::roberta::{self, RobertaConfig};
use super::tokenizer::TextTokenizer;
use super::weights::{return_freed_heap, WeightFile};

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

/// Loads the model in `dir` onto `device`, in the role its architecture serves: an encoder
/// in a sentence-transformers folder (`modules.json`) is an embedder, any other a classifier.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let found = architecture(dir)?;
    Ok(if found.role(Task::Generate).is_some() {
        LoadedModel::Generator(Box::new(load_generator(dir, device)?))
    } else if dir.join(embedder::MODULES).is_file() {
        LoadedModel::Embedder(Box::new(load_embedder_in(dir, device, Dtype::F32, None)?))
    } else {
        LoadedModel::Classifier(Box::new(load_classifier(dir, device)?))
    })
}

/// The generator in `dir`, in f32.
pub fn load_generator(dir: &Path, device: &Device) -> Result<Generator, ModelError> {
    load_generator_in(dir, device, Dtype::F32)
}

/// The encoder classifier in `dir`, in f32.
pub fn load_classifier(dir: &Path, device: &Device) -> Result<Classifier, ModelError> {
    load_classifier_in(dir, device, Dtype::F32)
}

/// The GGUF file `path` names: the path itself, or the one `.gguf` file of a folder.
fn gguf_path(path: &Path) -> Result<Option<PathBuf>, ModelError> {
    if path.extension().is_some_and(|e| e == "gguf") {
        return Ok(Some(path.to_path_buf()));
    }
    if !path.is_dir() || path.join("config.json").is_file() {
        return Ok(None);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| ModelError::io(path, e))? {
        let entry = entry.map_err(|e| ModelError::io(path, e))?.path();
        if entry.extension().is_some_and(|e| e == "gguf") {
            found.push(entry);
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason: format!(
                "the folder holds {} GGUF files; name one as the model's path",
                found.len()
            ),
        }),
    }
}

/// The dtype a model is served in when `config.toml` names none: a GGUF file's own (`q4` for a
/// 4-bit file, `int8` for Q8_0 and the 5- and 6-bit K-quants, f16, bf16 or f32 as stored),
/// f32 for a safetensors folder.
pub fn stored_dtype(path: &Path) -> Result<Dtype, ModelError> {
    match gguf_path(path)? {
        Some(file) => gguf::checkpoint::stored_dtype(&GgufFile::open(&file)?),
        None => Ok(Dtype::F32),
    }
}

/// The generator in `dir` (any architecture the table lists for generating, from a model
/// folder or a GGUF file), its dense layers in `dtype`.
pub fn load_generator_in(
    dir: &Path,
    device: &Device,
    dtype: Dtype,
) -> Result<Generator, ModelError> {
    load_generator_as(dir, device, Some(dtype))
}

/// `load_generator_in`, in `dtype` or else as stored (`stored_dtype`), the file read once.
pub fn load_generator_as(
    dir: &Path,
    device: &Device,
    dtype: Option<Dtype>,
) -> Result<Generator, ModelError> {
    if let Some(file) = gguf_path(dir)? {
        return load_gguf_generator(&file, device, dtype);
    }
    let dtype = dtype.unwrap_or(Dtype::F32);
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
        Family::Bert | Family::Roberta | Family::DistilBert => {
            unreachable!("the table lists encoders as classifiers and embedders")
        }
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
    Ok(Generator::new(
        dir.to_path_buf(),
        model,
        tokenizer,
        eos,
        chat_template,
    ))
}

/// The chat template `config.toml` gives a generator (`text`, read from `origin`, for
/// errors), compiled with the special tokens of the model at `path` (a folder's
/// `tokenizer_config.json`, or a GGUF file's metadata).
pub fn configured_chat_template(
    path: &Path,
    text: String,
    origin: &Path,
) -> Result<ChatTemplate, ModelError> {
    let specials = match gguf_path(path)? {
        Some(file) => Some(gguf::checkpoint::special_tokens(&GgufFile::open(&file)?)),
        None => {
            let tokenizer_config = path.join("tokenizer_config.json");
            tokenizer_config
                .is_file()
                .then(|| read_json(&tokenizer_config))
                .transpose()?
        }
    };
    ChatTemplate::new(text, TemplateSource::Config, specials.as_ref(), origin)
}

/// The generator a GGUF file holds, its dense layers in `dtype`, else in the file's own.
fn load_gguf_generator(
    path: &Path,
    device: &Device,
    dtype: Option<Dtype>,
) -> Result<Generator, ModelError> {
    let file = GgufFile::open(path)?;
    let dtype = match dtype {
        Some(dtype) => dtype,
        None => gguf::checkpoint::stored_dtype(&file)?,
    };
    let config = gguf::checkpoint::config(&file)?;
    let tokenizer = TextTokenizer::from_gguf(&file)?;
    let chat_template = gguf::checkpoint::chat_template(&file)
        .map(|text| {
            let specials = gguf::checkpoint::special_tokens(&file);
            ChatTemplate::new(
                text.to_string(),
                TemplateSource::Gguf,
                Some(&specials),
                path,
            )
        })
        .transpose()?;
    let eos = token_ids(&config, "eos_token_id", path)?;
    let llama = LlamaConfig::from_json(&config, path)?;
    let weights = WeightFile::open_gguf(file, device)?.with_dtype(dtype)?;
    // The file's metadata is dropped now; its pages go back before the weights come in.
    return_freed_heap();
    let model: Box<dyn CausalLm> = Box::new(LlamaForCausalLm::load(llama, weights, device)?);
    Ok(Generator::new(
        path.to_path_buf(),
        model,
        tokenizer,
        eos,
        chat_template,
    ))
}

/// The encoder classifier (BERT, RoBERTa, XLM-RoBERTa, CamemBERT, DistilBERT) in `dir`, its
/// dense layers in `dtype`.
pub fn load_classifier_in(
    dir: &Path,
    device: &Device,
    dtype: Dtype,
) -> Result<Classifier, ModelError> {
    let (files, config, architecture) = open_for(dir, Task::Classify)?;
    let weights = files.open_weights(architecture, device, dtype)?;
    let model: EncoderForSequenceClassification = match architecture.family {
        Family::Bert => {
            let config: BertConfig = from_json(&config, &files.config)?;
            config.validate(&files.config)?;
            bert::load_classifier(&config, weights)?
        }
        Family::Roberta => {
            let config: RobertaConfig = from_json(&config, &files.config)?;
            config.validate(&files.config)?;
            roberta::load_classifier(&config, weights, architecture.model_type)?
        }
        Family::DistilBert => {
            let config: DistilBertConfig = from_json(&config, &files.config)?;
            config.validate(&files.config)?;
            distilbert::load_classifier(&config, weights)?
        }
        Family::Gpt2 | Family::Llama => unreachable!("the table lists them as generators"),
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
    let (files, config, architecture) = open_for(dir, Task::Embed)?;
    let modules = embedder::SentenceTransformer::read(dir, pooling)?;
    // A headless checkpoint has no prefix; one saved from a `...For...` class has it.
    let weights = files.open_weights(architecture, device, dtype)?;
    let encoder: Encoder = match architecture.family {
        Family::Bert => {
            let config: BertConfig = from_json(&config, &files.config)?;
            config.validate(&files.config)?;
            bert::load_model(&config, weights)?
        }
        Family::Roberta => {
            let config: RobertaConfig = from_json(&config, &files.config)?;
            config.validate(&files.config)?;
            roberta::load_model(&config, weights)?
        }
        Family::DistilBert => {
            let config: DistilBertConfig = from_json(&config, &files.config)?;
            config.validate(&files.config)?;
            distilbert::load_model(&config, weights)?
        }
        Family::Gpt2 | Family::Llama => unreachable!("the table lists them as generators"),
    };
    // sentence-transformers truncates at `max_seq_length`, whatever tokenizer.json says.
    let max_tokens = match modules.max_seq_length {
        Some(limit) => limit.min(encoder.shape().max_tokens()),
        None => model_max_length(&files, encoder.shape().max_tokens())?,
    };
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?.truncate_exactly(max_tokens)?;
    Ok(Embedder::new(
        dir.to_path_buf(),
        architecture.model_type,
        encoder,
        tokenizer,
        modules,
    ))
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
    let Some(role) = architecture.role(task) else {
        let serves: Vec<&str> = architecture.roles.iter().map(|r| r.task.role()).collect();
        return Err(wrong_role(format!(
            "model_type {:?} serves as {}, not as {}",
            architecture.model_type,
            serves
                .iter()
                .map(|r| a_or_an(r))
                .collect::<Vec<_>>()
                .join(" or "),
            a_or_an(task.role())
        )));
    };
    let class = config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str());
    if let Some(class) = class.filter(|c| !role.classes.is_empty() && !role.classes.contains(c)) {
        return Err(wrong_role(format!(
            "architectures[0] is {class:?}; {} of model_type {:?} must be one of {:?}",
            a_or_an(task.role()),
            architecture.model_type,
            role.classes
        )));
    }
    Ok((files, config, architecture))
}

/// "a generator", "an embedder".
fn a_or_an(role: &str) -> String {
    let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {role}")
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
