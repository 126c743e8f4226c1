//! Sampling on a real model: reproducible with a seed, exact at the limits, stop strings.

use crate::common;

use common::*;
use infergraph::models::sampling::SamplingParams;
use infergraph::models::{self, FinishReason, GenerationParams, Generator};

fn load() -> Generator {
    models::load_generator(&fixture("gpt2-tiny-b"), &cpu()).unwrap()
}

fn sampled(seed: u64) -> GenerationParams {
    GenerationParams {
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: Some(0.95),
            seed: Some(seed),
            ..SamplingParams::default()
        },
        ..GenerationParams::default()
    }
}

#[test]
fn a_seeded_sample_is_reproducible_and_another_seed_differs() {
    let generator = load();
    let run = |seed| {
        generator
            .generate("Hello, my name is", &sampled(seed))
            .unwrap()
            .new_token_ids
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn top_k_of_one_samples_exactly_the_greedy_continuation() {
    let generator = load();
    for input in golden_inputs("gpt2-tiny-b") {
        let params = GenerationParams {
            sampling: SamplingParams {
                temperature: 1.5,
                top_k: Some(1),
                seed: Some(3),
                ..SamplingParams::default()
            },
            ..GenerationParams::default()
        };
        let generation = generator
            .generate(input["text"].as_str().unwrap(), &params)
            .unwrap();
        assert_eq!(
            generation.new_token_ids,
            u32s(&input["generate"]["new_token_ids"])
        );
    }
}

#[test]
fn a_stop_string_ends_generation_at_the_token_that_completes_it() {
    let generator = load();
    let input = &golden_inputs("gpt2-tiny-b")[0]; // continues " dedicateatteringattering..."
    let greedy = u32s(&input["generate"]["new_token_ids"]);
    let params = GenerationParams {
        stop: vec!["attering".into()],
        ..GenerationParams::default()
    };
    let generation = generator
        .generate(input["text"].as_str().unwrap(), &params)
        .unwrap();
    assert_eq!(generation.finish_reason, FinishReason::Stop);
    let n = generation.new_token_ids.len();
    assert!(n < greedy.len());
    assert_eq!(generation.new_token_ids, greedy[..n]);
    assert!(generation.new_text.contains("attering"));
    let before = generator
        .tokenizer()
        .decode(&generation.new_token_ids[..n - 1])
        .unwrap();
    assert!(
        !before.contains("attering"),
        "it stopped at the first token that completed it"
    );
}

#[test]
fn a_repetition_penalty_moves_greedy_decoding_off_its_loop() {
    let generator = load();
    let input = &golden_inputs("gpt2-tiny-b")[0]; // greedy repeats "attering" seven times
    let params = GenerationParams {
        sampling: SamplingParams {
            repetition_penalty: 5.0,
            ..SamplingParams::default()
        },
        ..GenerationParams::default()
    };
    let generation = generator
        .generate(input["text"].as_str().unwrap(), &params)
        .unwrap();
    let mut unique = generation.new_token_ids.clone();
    unique.sort();
    unique.dedup();
    assert!(
        unique.len() > 12,
        "a strong penalty makes almost every token new: {:?}",
        generation.new_token_ids
    );
}
