//! The integration tests, one module per concern, built as one test binary: one link and one
//! copy of the shared helpers instead of one of each per file.

mod common;

mod backpressure;
mod batching;
mod bert_parity;
mod cancellation;
mod chat_templates;
mod cli;
mod config;
mod contract;
mod demo_weights;
mod dtypes;
mod embed_graphs;
mod embedder_parity;
mod embeddings;
mod encoder_parity;
mod failure;
mod gpt2_parity;
mod graph_config;
mod graphs;
mod http_api;
mod http_errors;
mod kernels;
mod lifecycle;
mod llama_parity;
mod llama_server;
mod loader_errors;
mod loadtest;
mod manifests;
mod metrics;
mod model_route_errors;
mod model_routes;
mod openai;
mod openapi;
mod otlp;
mod page;
mod partition;
mod sampling;
mod split_graph;
mod streaming;
mod tokenizers;
mod traces;
mod wgpu_parity;
