//! Continuous batching in the generation engine: a batch computes what each request
//! computes alone, whoever it shares the batch with and whenever it joins.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use infergraph::engine::{CancelToken, EngineSettings, GenerationEngine};
use infergraph::models::sampling::SamplingParams;
use infergraph::models::{self, GenerationParams};

const SETTINGS: EngineSettings = EngineSettings {
    max_batch: 8,
    queue_capacity: 32,
    panic_on_prompt: None,
    panic_picking_on_prompt: None,
};

fn engine(name: &str) -> GenerationEngine {
    GenerationEngine::start(
        name,
        models::load_generator(&fixture(name), &cpu()).unwrap(),
        SETTINGS,
    )
}

/// Queues each golden input's text for greedy generation.
fn submit_greedy(engine: &GenerationEngine, inputs: &[serde_json::Value]) -> Vec<Answer> {
    inputs
        .iter()
        .map(|i| {
            submit(
                engine,
                i["text"].as_str().unwrap(),
                GenerationParams::default(),
                &CancelToken::new(),
            )
        })
        .collect()
}

#[test]
fn concurrent_greedy_requests_of_different_lengths_get_their_own_greedy_tokens() {
    let name = "gpt2-tiny-a";
    let (engine, gate) = GenerationEngine::start_held(
        name,
        models::load_generator(&fixture(name), &cpu()).unwrap(),
        SETTINGS,
    );
    let inputs = golden_inputs(name);
    let waiting = submit_greedy(&engine, &inputs);
    drop(gate);
    assert_greedy_goldens(&inputs, waiting);
    // Sixteen tokens each: one prefill gives every first token, 15 shared steps the rest.
    let steps = engine.stats().steps.load(Ordering::Relaxed);
    assert_eq!(steps, 15, "all six decoded in one batch");
}

#[test]
fn requests_joining_a_running_batch_mid_flight_get_their_own_greedy_tokens() {
    let name = "gpt2-tiny-c";
    let engine = engine(name);
    let inputs = golden_inputs(name);
    let (early, late) = inputs.split_at(2);
    let mut waiting = submit_greedy(&engine, early);
    wait_until(
        "the first requests have decoded a few steps",
        Duration::from_secs(30),
        || engine.stats().steps.load(Ordering::Relaxed) >= 3,
    );
    waiting.extend(submit_greedy(&engine, late));
    assert_greedy_goldens(&inputs, waiting);
}

#[test]
fn a_seeded_sample_is_the_same_batched_or_alone() {
    let engine = engine("gpt2-tiny-b");
    let sampled = GenerationParams {
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: Some(40),
            seed: Some(99),
            ..SamplingParams::default()
        },
        ..GenerationParams::default()
    };
    let alone = submit(
        &engine,
        "Hello, my name is",
        sampled.clone(),
        &CancelToken::new(),
    )
    .blocking_recv()
    .unwrap()
    .unwrap()
    .0;
    let others: Vec<_> = (0..5)
        .map(|i| {
            let params = GenerationParams {
                sampling: SamplingParams {
                    temperature: 0.7,
                    seed: Some(i),
                    ..SamplingParams::default()
                },
                ..GenerationParams::default()
            };
            submit(
                &engine,
                "A different, longer prompt to share the batch with",
                params,
                &CancelToken::new(),
            )
        })
        .collect();
    let batched = submit(&engine, "Hello, my name is", sampled, &CancelToken::new())
        .blocking_recv()
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(batched.new_token_ids, alone.new_token_ids);
    for other in others {
        other.blocking_recv().unwrap().unwrap();
    }
}

#[test]
fn texts_waiting_together_are_classified_in_one_forward_with_unchanged_scores() {
    use infergraph::engine::ClassificationEngine;
    let classifier = models::load_classifier(&fixture("bert-tiny"), &cpu()).unwrap();
    let (engine, gate) = ClassificationEngine::start_held("bert", classifier, SETTINGS);
    let inputs = golden_inputs("bert-tiny");
    let waiting: Vec<_> = inputs
        .iter()
        .map(|i| {
            engine
                .submit(
                    (i["text"].as_str().unwrap().to_string(), None),
                    CancelToken::new(),
                )
                .unwrap()
        })
        .collect();
    drop(gate);
    for (input, answer) in inputs.iter().zip(waiting) {
        let (result, _) = answer.blocking_recv().unwrap().unwrap();
        assert!(
            max_abs_diff(&result.logits, &f32s(&input["logits"])) < 1e-5,
            "{}",
            input["text"]
        );
        assert_eq!(result.label, input["pipeline"]["label"].as_str().unwrap());
    }
    let stats = engine.admission().stats();
    let forwards = stats.steps.load(Ordering::Relaxed);
    assert_eq!(stats.completed.load(Ordering::Relaxed), inputs.len() as u64);
    assert_eq!(forwards, 1, "{} texts waiting together", inputs.len());
}
