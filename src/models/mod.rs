//! The models infergraph serves, in burn, loaded from Hugging Face model folders.
//!
//! One file per architecture family (`gpt2`; `llama` for Llama, Mistral, Qwen2 and Qwen3;
//! the encoders `bert`, `roberta`, `distilbert` on the layers they share in `encoder`) on
//! shared building blocks (`attention`, `kv_cache`, `norm`, `rotary`, `dense`, `activation`),
//! the table of which `model_type` each serves and in which roles (`architectures`), their
//! task wrappers (`generator` over any `causal_lm`, `classifier`, `embedder`), and the
//! loading path they share (`folder` → `weights` + `tokenizer`, from a Hugging Face folder
//! or a `gguf` file).

pub mod activation;
pub mod architectures;
pub mod attention;
pub mod bert;
pub mod causal_lm;
pub mod chat;
pub mod classifier;
pub mod dense;
pub mod distilbert;
pub mod dtype;
pub mod embedder;
pub mod encoder;
pub mod error;
pub mod folder;
pub mod generator;
pub mod gguf;
pub mod gpt2;
pub mod json_mode;
pub mod kernels;
pub mod kv_cache;
pub mod llama;
pub mod logprobs;
pub mod norm;
pub mod roberta;
pub mod rotary;
pub mod tokenizer;
pub mod weights;

pub use causal_lm::{CausalLm, LmDescription};
pub use classifier::{Classification, Classifier};
pub use dtype::Dtype;
pub use embedder::{Embedder, Embedding, Pooling};
pub use error::ModelError;
pub use folder::{
    architecture, configured_chat_template, load, load_classifier, load_classifier_in,
    load_embedder_in, load_generator, load_generator_as, load_generator_in, stored_dtype,
    LoadedModel,
};
pub use generator::{
    FinishReason, Generation, GenerationParams, Generator, Prompt, ResponseFormat,
};
pub mod presets;
pub mod rng;
pub mod sampling;
