//! The engine under load, at the actor level, on true-size random models.
//!
//! `cargo bench --bench engine` (`-- --quick` for a shorter run). Every figure of a table
//! comes from the same run, so compare them as ratios:
//! - tokens/s per generator with 1, 4 and 8 concurrent requests, continuous batching
//!   (`max_batch = 8`) against one request at a time (`max_batch = 1`);
//! - graph requests/s with 8 concurrent clients sending `RunGraph` to the coordinator.

mod common;

use std::time::{Duration, Instant};

use actix::Actor;
use common::ensure_model;
use futures_util::future::join_all;
use infergraph::actors::{CallContext, ClassifierActor, GeneratorActor};
use infergraph::backend;
use infergraph::config::graphs::GraphSpec;
use infergraph::engine::{CancelToken, EngineSettings, GenerationEngine};
use infergraph::graph::{GraphCoordinator, GraphModels, Named, RunGraph};
use infergraph::models::presets::Preset;
use infergraph::models::{self, GenerationParams};

const GENERATORS: [Preset; 3] = [Preset::Gpt2, Preset::Distilgpt2, Preset::Gpt2Medium];

fn settings(max_batch: usize) -> EngineSettings {
    EngineSettings {
        max_batch,
        queue_capacity: 64,
        panic_on_prompt: None,
        panic_picking_on_prompt: None,
    }
}

/// Every request generates exactly this many tokens, so runs compare like for like.
fn fixed_length(tokens: usize) -> GenerationParams {
    GenerationParams {
        max_new_tokens: tokens,
        min_new_tokens: tokens,
        ..GenerationParams::default()
    }
}

fn main() {
    let (choice, quick) = common::args();
    let tokens = if quick { 16 } else { 32 };
    let device = backend::select(choice);
    println!(
        "backend: {} ({}); {tokens} new tokens per request",
        device.backend, device.name
    );
    println!();
    println!("| model | concurrent requests | one at a time (tok/s) | continuous batching (tok/s) | speed-up |");
    println!("|---|---|---|---|---|");
    for preset in GENERATORS {
        let dir = ensure_model(preset);
        let mut rates = Vec::new();
        for max_batch in [1, 8] {
            let generator = models::load_generator(&dir, &device.device).unwrap();
            let engine = GenerationEngine::start(preset.name(), generator, settings(max_batch));
            // Warm-up: first-use allocations and kernel selection.
            run_concurrent(&engine, 1, 4);
            rates.push([1, 4, 8].map(|c| run_concurrent(&engine, c, tokens)));
        }
        for (i, concurrent) in [1, 4, 8].into_iter().enumerate() {
            let (alone, batched) = (rates[0][i], rates[1][i]);
            println!(
                "| {} | {concurrent} | {alone:.1} | {batched:.1} | {:.2}× |",
                preset.name(),
                batched / alone
            );
        }
    }
    println!();
    graph_throughput(&device.device, if quick { 1 } else { 2 });
}

/// Tokens per second for `concurrent` requests submitted at once.
fn run_concurrent(engine: &GenerationEngine, concurrent: usize, tokens: usize) -> f64 {
    let started = Instant::now();
    let answers: Vec<_> = (0..concurrent)
        .map(|i| {
            let prompt = format!("Request {i} asks the model to continue this sentence about");
            engine
                .submit(
                    prompt,
                    fixed_length(tokens),
                    CancelToken::new(),
                    tracing::Span::none(),
                )
                .unwrap()
        })
        .collect();
    for answer in answers {
        answer.blocking_recv().unwrap().unwrap();
    }
    (concurrent * tokens) as f64 / started.elapsed().as_secs_f64()
}

/// Graph requests per second with 8 clients, each sending `rounds` requests in turn.
fn graph_throughput(device: &burn::tensor::Device, rounds: usize) {
    let clients = 8;
    let elapsed: Duration = actix::System::new().block_on(async move {
        let generators = GENERATORS
            .iter()
            .map(|&preset| {
                let generator = models::load_generator(&ensure_model(preset), device).unwrap();
                Named {
                    name: preset.name().to_string(),
                    addr: GeneratorActor::new(preset.name().to_string(), generator, settings(8))
                        .start()
                        .recipient(),
                }
            })
            .collect();
        let classifier =
            models::load_classifier(&ensure_model(Preset::BertBaseUncased), device).unwrap();
        let classifier = Named {
            name: "bert-base-uncased".to_string(),
            addr: ClassifierActor::new("bert-base-uncased".into(), classifier, settings(8))
                .start()
                .recipient(),
        };
        let names: Vec<&str> = GENERATORS.iter().map(|p| p.name()).collect();
        let graph = GraphSpec::builtin(&names, &classifier.name);
        let models = GraphModels {
            generators,
            classifiers: vec![classifier],
            embedders: Vec::new(),
        };
        let coordinator = GraphCoordinator::new(vec![std::sync::Arc::new(graph)], models).start();
        let request = |i: usize| RunGraph {
            graph: 0,
            events: None,
            text: "I have an idea!".to_string(),
            params: fixed_length(16),
            context: CallContext::detached(format!("bench-{i}")),
        };
        coordinator.send(request(0)).await.unwrap().unwrap(); // warm-up
        let started = Instant::now();
        join_all((0..clients).map(|client| {
            let coordinator = coordinator.clone();
            async move {
                for round in 0..rounds {
                    coordinator
                        .send(request(client * 100 + round))
                        .await
                        .unwrap()
                        .unwrap();
                }
            }
        }))
        .await;
        started.elapsed()
    });
    let requests = clients * rounds;
    println!(
        "graph: {requests} requests from {clients} concurrent clients in {:.1} s = {:.2} requests/s (16 new tokens per generator)",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64()
    );
}
