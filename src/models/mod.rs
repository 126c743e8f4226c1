//! The models infergraph serves, in burn, loaded from Hugging Face model folders.
//!
//! One file per architecture family (`gpt2`; `llama` for Llama, Mistral, Qwen2 and Qwen3;
//! `bert`) on shared building blocks (`attention`, `kv_cache`, `norm`, `rotary`, `dense`,
//! `activation`), the table of which `model_type` each serves and in which role
//! (`architectures`), their task wrappers (`generator` over any `causal_lm`, `classifier`),
//! and the loading path they share (`folder` → `weights` + `tokenizer`).

pub mod activation;
pub mod architectures;
pub mod attention;
pub mod bert;
pub mod causal_lm;
pub mod chat;
pub mod classifier;
pub mod dense;
pub mod dtype;
pub mod error;
pub mod folder;
pub mod generator;
pub mod gpt2;
pub mod kernels;
pub mod kv_cache;
pub mod llama;
pub mod norm;
pub mod rotary;
pub mod tokenizer;
pub mod weights;

pub use causal_lm::{CausalLm, LmDescription};
pub use classifier::{Classification, Classifier};
pub use dtype::Dtype;
pub use error::ModelError;
pub use folder::{
    architecture, load, load_classifier, load_classifier_in, load_generator, load_generator_in,
    LoadedModel,
};
pub use generator::{FinishReason, Generation, GenerationParams, Generator};
pub mod presets;
pub mod rng;
pub mod sampling;
