//! The models infergraph serves, in burn, loaded from Hugging Face model folders.
//!
//! One file per model family (`gpt2`; the encoders `bert`, `roberta`, `distilbert` on the
//! layers they share in `encoder`), their task wrappers (`generator`, `classifier`,
//! `embedder`), and the loading path they share (`folder` → `weights` + `tokenizer`).

pub mod activation;
pub mod attention;
pub mod bert;
pub mod classifier;
pub mod dense;
pub mod distilbert;
pub mod dtype;
pub mod embedder;
pub mod encoder;
pub mod error;
pub mod folder;
pub mod generator;
pub mod gpt2;
pub mod kernels;
pub mod roberta;
pub mod tokenizer;
pub mod weights;

pub use classifier::{Classification, Classifier};
pub use dtype::Dtype;
pub use embedder::{Embedder, Embedding, Pooling};
pub use error::ModelError;
pub use folder::{
    architecture, load, load_classifier, load_classifier_in, load_embedder_in, load_generator,
    load_generator_in, Architecture, LoadedModel,
};
pub use generator::{FinishReason, Generation, GenerationParams, Generator};
pub mod presets;
pub mod rng;
pub mod sampling;
