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

fn greedy_with(sampling: SamplingParams) -> GenerationParams {
    GenerationParams {
        max_new_tokens: 24,
        logprobs: Some(20),
        sampling,
        ..GenerationParams::default()
    }
}

/// OpenAI's rule, checked from outside the sampler: each greedy pick has the best logit after
/// `frequency·count + presence·[count > 0]` is taken off every token, `count` being how often
/// the continuation holds it so far. The model's own log-probabilities (reported before any
/// change) differ from its logits by one constant a step, so they rank alike.
#[test]
fn each_penalized_greedy_pick_is_the_best_token_after_openais_adjustment() {
    let generator = load();
    let text = "Hello, my name is";
    let plain = generator
        .generate(text, &greedy_with(SamplingParams::default()))
        .unwrap()
        .new_token_ids;
    for (presence, frequency) in [(1.5, 0.0), (0.0, 0.7), (0.4, 0.3), (-1.0, 0.0)] {
        let params = greedy_with(SamplingParams {
            presence_penalty: presence,
            frequency_penalty: frequency,
            ..SamplingParams::default()
        });
        let generation = generator.generate(text, &params).unwrap();
        let mut counts = std::collections::HashMap::<u32, u32>::new();
        for (step, token) in generation.logprobs.unwrap().iter().enumerate() {
            let adjusted = |id: u32, logprob: f32| {
                let count = counts.get(&id).copied().unwrap_or(0);
                let present = if count > 0 { presence } else { 0.0 };
                logprob - frequency * count as f32 - present
            };
            let picked = adjusted(token.token_id, token.logprob);
            for other in &token.top_logprobs {
                assert!(
                    picked >= adjusted(other.token_id, other.logprob) - 1e-4,
                    "({presence}, {frequency}) step {step}: {} beat {}",
                    other.token_id,
                    token.token_id
                );
            }
            *counts.entry(token.token_id).or_default() += 1;
        }
        // The tiny model repeats itself when greedy, so a penalty changes its continuation.
        if presence > 0.0 || frequency > 0.0 {
            assert_ne!(generation.new_token_ids, plain, "({presence}, {frequency})");
        }
    }
}

#[test]
fn a_logit_bias_of_minus_100_avoids_a_token_and_100_makes_greedy_repeat_one() {
    let generator = load();
    let biased = |logit_bias: Vec<(u32, f32)>| {
        let sampling = SamplingParams {
            logit_bias,
            ..SamplingParams::default()
        };
        generator
            .generate("Hello, my name is", &greedy_with(sampling))
            .unwrap()
    };
    let plain = biased(Vec::new());
    let first = plain.new_token_ids[0];
    let avoided = biased(vec![(first, -100.0)]);
    assert!(!avoided.new_token_ids.contains(&first), "{avoided:?}");
    assert_eq!(biased(vec![(500, 100.0)]).new_token_ids, vec![500; 24]);
    // The reported log-probabilities stay the model's own.
    assert_eq!(
        avoided.logprobs.unwrap()[0].top_logprobs,
        plain.logprobs.unwrap()[0].top_logprobs
    );
}
