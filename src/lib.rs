//! infergraph: an inference graph (GPT-2 generators feeding a BERT classifier) served by
//! actix actors over burn models.

pub mod actors;
pub mod backend;
pub mod cli;
pub mod config;
pub mod engine;
pub mod graph;
pub mod histogram;
pub mod http;
pub mod loadtest;
pub mod memory;
pub mod models;
pub mod telemetry;
pub mod tls;
pub mod work;
