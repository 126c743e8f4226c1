//! The integration tests, one module per concern, built as one test binary: one link and one
//! copy of the shared helpers instead of one of each per file.

mod common;

mod auth;
mod backpressure;
mod batching;
mod bert_parity;
mod cancellation;
mod cli;
mod config;
mod contract;
mod demo_weights;
mod dtypes;
mod failure;
mod fairness;
mod gpt2_parity;
mod graph_config;
mod graphs;
mod http_api;
mod http_errors;
mod kernels;
mod lifecycle;
mod loader_errors;
mod loadtest;
mod manifests;
mod metrics;
mod model_route_errors;
mod model_routes;
mod openai;
mod openapi;
mod origins;
mod otlp;
mod page;
mod partition;
mod sampling;
mod split_graph;
mod streaming;
mod traces;
mod wgpu_parity;
