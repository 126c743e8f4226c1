//! Everything that can go wrong while turning a Hugging Face model folder into a model.
//!
//! Every variant names the file it is about, and where a tensor is involved, the tensor and
//! the expected and found shapes: a user who drops in the wrong checkpoint must be able to
//! tell which file to fix without reading our code.

use std::path::PathBuf;

/// Why a model folder could not be loaded or a model could not run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: file not found ({what})")]
    MissingFile { path: PathBuf, what: &'static str },

    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: invalid config: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },

    #[error("{path}: unknown architecture: model_type {model_type:?} (supported: {supported})")]
    UnknownArchitecture {
        path: PathBuf,
        model_type: String,
        /// The table's model types by role (`architectures::supported`).
        supported: String,
    },

    /// A known architecture asked to serve a role it does not fit.
    #[error("{path}: {reason} (supported: {supported})")]
    WrongRole {
        path: PathBuf,
        reason: String,
        supported: String,
    },

    #[error("{path}: not a valid safetensors file: {reason}")]
    InvalidSafetensors { path: PathBuf, reason: String },

    #[error("{path}: tensor {tensor:?} is missing{hint}")]
    MissingTensor {
        path: PathBuf,
        tensor: String,
        hint: String,
    },

    #[error("{path}: tensor {tensor:?} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("{path}: tensor {tensor:?} has dtype {dtype}, expected {expected}")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
        /// The types this file format is read in.
        expected: &'static str,
    },

    #[error("{path}: not a valid GGUF file: {reason}")]
    InvalidGguf { path: PathBuf, reason: String },

    #[error("dtype {dtype} cannot run on the {backend} backend: {reason}")]
    DtypeUnsupported {
        dtype: &'static str,
        backend: &'static str,
        reason: &'static str,
    },

    #[error("{path}: unexpected tensors that this architecture does not use: {tensors:?}")]
    UnexpectedTensors { path: PathBuf, tensors: Vec<String> },

    #[error("{path}: cannot load tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    /// The request asked for something the model cannot do; the caller's to fix.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The tokenizer produced an id the model has no embedding for: a folder whose
    /// tokenizer.json and weights do not belong together.
    #[error("token id {id} is outside the model's vocabulary ({vocab_size}): the tokenizer and the model do not match")]
    TokenOutOfVocabulary { id: u32, vocab_size: usize },

    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile {
                path,
                what: "required by the model folder",
            }
        } else {
            ModelError::Io { path, source }
        }
    }
}
