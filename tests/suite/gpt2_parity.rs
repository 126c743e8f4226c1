//! GPT-2 against Hugging Face transformers' goldens, on the CPU backend; the tests of what every
//! architecture must do alike (continuous batching, `min_new_tokens`) run on the Llama-family
//! fixtures too.

use crate::common;

use common::*;
use infergraph::models::sampling::argmax;
use infergraph::models::{self, FinishReason, GenerationParams, Generator};

fn load(name: &str) -> Generator {
    models::load_generator(&fixture(name), &cpu()).expect("fixture loads")
}

#[test]
fn tokenizer_encodings_equal_the_goldens_input_ids() {
    for name in GPT2_FIXTURES {
        let generator = load(name);
        for input in golden_inputs(name) {
            let encoded = generator
                .tokenizer()
                .encode(input["text"].as_str().unwrap(), None)
                .unwrap();
            assert_eq!(
                encoded.ids,
                u32s(&input["input_ids"]),
                "{name}: {}",
                input["text"]
            );
        }
    }
}

#[test]
fn last_position_logits_match_transformers_within_1e_4() {
    for name in GPT2_FIXTURES {
        let generator = load(name);
        for (i, input) in golden_inputs(name).iter().enumerate() {
            let ids = u32s(&input["input_ids"]);
            let logits = generator.model().logits_all(&ids).unwrap();
            let [t, v] = logits.dims();
            let all = logits.into_data().try_into_vec::<f32>().unwrap();
            let last = &all[(t - 1) * v..];
            let diff = max_abs_diff(last, &golden_last_logits(name, i));
            assert!(diff < 1e-4, "{name} input {i}: max |Δlogit| = {diff}");

            let forward = &input["forward"];
            assert_eq!(
                argmax(last),
                forward["last_logits_argmax"].as_u64().unwrap() as u32
            );
            let per_position_argmax: Vec<u32> = all.chunks_exact(v).map(argmax).collect();
            assert_eq!(
                per_position_argmax,
                u32s(&forward["per_position_argmax"]),
                "{name} input {i}"
            );
            for (row, (expected_lse, expected_first8)) in all.chunks_exact(v).zip(
                f32s(&forward["per_position_logsumexp"])
                    .into_iter()
                    .zip(forward["per_position_first8_logits"].as_array().unwrap()),
            ) {
                assert!(
                    (logsumexp(row) - expected_lse).abs() < 1e-4,
                    "{name} input {i}: logsumexp"
                );
                assert!(
                    max_abs_diff(&row[..8], &f32s(expected_first8)) < 1e-4,
                    "{name} input {i}: first 8 logits"
                );
            }
        }
    }
}

#[test]
fn greedy_continuations_match_token_for_token_and_decode_identically() {
    for name in GPT2_FIXTURES {
        let generator = load(name);
        for input in golden_inputs(name) {
            let expected = &input["generate"];
            let params = GenerationParams {
                max_new_tokens: expected["max_new_tokens"].as_u64().unwrap() as usize,
                ..GenerationParams::default()
            };
            let text = input["text"].as_str().unwrap();
            let generation = generator.generate(text, &params).unwrap();
            assert_eq!(
                generation.new_token_ids,
                u32s(&expected["new_token_ids"]),
                "{name}: {text:?}"
            );
            assert_eq!(generation.text, expected["text"].as_str().unwrap());
            assert_eq!(
                generation.text,
                expected["pipeline_generated_text"].as_str().unwrap()
            );
            assert_eq!(generation.new_text, expected["new_text"].as_str().unwrap());
            let stopped_on_eos = generation.finish_reason == FinishReason::Eos;
            assert_eq!(
                stopped_on_eos,
                expected["stopped_on_eos"].as_bool().unwrap()
            );
        }
    }
}

#[test]
fn kv_cache_and_full_recompute_produce_the_same_tokens() {
    for name in GPT2_FIXTURES {
        let generator = load(name);
        for input in golden_inputs(name) {
            let ids = u32s(&input["input_ids"]);
            let max_new_tokens = input["generate"]["max_new_tokens"].as_u64().unwrap() as usize;
            let run = |use_cache| {
                let params = GenerationParams {
                    max_new_tokens,
                    use_cache,
                    ..GenerationParams::default()
                };
                generator.generate_ids(&ids, &params).unwrap()
            };
            assert_eq!(run(true), run(false), "{name}: {}", input["text"]);
        }
    }
}

#[test]
fn kv_cache_decode_logits_equal_full_forward_logits() {
    let generator = load("gpt2-tiny-a");
    let ids = u32s(&golden_inputs("gpt2-tiny-a")[2]["input_ids"]);
    let model = generator.model();
    let (_, mut cache) = model.prefill(&[ids[..4].to_vec()]).unwrap();
    for t in 4..ids.len() {
        let step = model
            .decode(&[ids[t]], &mut cache)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let full = last_logits(model, &ids[..=t]);
        assert!(max_abs_diff(&step, &full) < 1e-4, "position {t}");
    }
}

/// The cache grows in place; a clone must still be a separate cache (copy on write).
#[test]
fn decoding_on_a_cloned_cache_leaves_the_original_untouched() {
    let generator = load("gpt2-tiny-a");
    let model = generator.model();
    let prompt = u32s(&golden_inputs("gpt2-tiny-a")[2]["input_ids"]);
    let (_, mut original) = model.prefill(std::slice::from_ref(&prompt)).unwrap();
    let mut copy = original.clone();
    let (a, b, z) = (11u32, 42u32, 7u32);
    model.decode(&[a], &mut copy).unwrap();
    model.decode(&[b], &mut original).unwrap();
    for (cache, branch) in [(&mut copy, a), (&mut original, b)] {
        let step = model.decode(&[z], cache).unwrap();
        let step = step.into_data().try_into_vec::<f32>().unwrap();
        let ids: Vec<u32> = prompt.iter().copied().chain([branch, z]).collect();
        assert!(
            max_abs_diff(&step, &last_logits(model, &ids)) < 1e-4,
            "branch {branch}"
        );
    }
}

#[test]
fn min_new_tokens_matches_transformers_forced_continuation() {
    for name in GPT2_FIXTURES.into_iter().chain(LLAMA_FIXTURES) {
        let generator = load(name);
        for input in golden_inputs(name) {
            let expected = &input["generate"];
            let n = expected["max_new_tokens"].as_u64().unwrap() as usize;
            let params = GenerationParams {
                max_new_tokens: n,
                min_new_tokens: n,
                ..GenerationParams::default()
            };
            let (ids, _) = generator
                .generate_ids(&u32s(&input["input_ids"]), &params)
                .unwrap();
            assert_eq!(
                ids,
                u32s(&expected["forced_min_new_tokens_ids"]),
                "{name}: {}",
                input["text"]
            );
        }
    }
}

#[test]
fn a_left_padded_batch_computes_what_each_row_computes_alone() {
    let name = "gpt2-tiny-a";
    let generator = load(name);
    let model = generator.model();
    let prompts: Vec<Vec<u32>> = golden_inputs(name)
        .iter()
        .map(|i| u32s(&i["input_ids"]))
        .collect();
    let (batch_logits, mut cache) = model.prefill(&prompts).unwrap();
    let vocab = model.description().vocab_size;
    let batch_logits = batch_logits.into_data().try_into_vec::<f32>().unwrap();
    let mut next: Vec<u32> = batch_logits.chunks_exact(vocab).map(argmax).collect();
    for (row, prompt) in prompts.iter().enumerate() {
        let alone = model
            .prefill(std::slice::from_ref(prompt))
            .unwrap()
            .0
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let diff = max_abs_diff(&batch_logits[row * vocab..(row + 1) * vocab], &alone);
        assert!(diff < 1e-4, "row {row}: max |Δlogit| = {diff}");
    }
    // Eight batched greedy steps reproduce each row's own greedy continuation.
    let mut batched: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
    for _ in 0..7 {
        let logits = model
            .decode(&next, &mut cache)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        next = logits.chunks_exact(vocab).map(argmax).collect();
        for (row, &t) in next.iter().enumerate() {
            batched[row].push(t);
        }
    }
    for (row, input) in golden_inputs(name).iter().enumerate() {
        assert_eq!(
            batched[row],
            u32s(&input["generate"]["new_token_ids"])[..8],
            "row {row}"
        );
    }
}

#[test]
fn a_prompt_that_fills_the_context_is_rejected_with_its_length() {
    let generator = load("gpt2-tiny-b"); // n_positions = 32
    let ids = vec![464u32; 32];
    let error = generator
        .generate_ids(&ids, &GenerationParams::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("32 tokens") && error.contains("n_positions (32)"),
        "{error}"
    );
}

#[test]
fn the_budget_is_cut_to_what_the_context_leaves() {
    let generator = load("gpt2-tiny-b"); // n_positions = 32
    let ids = vec![464u32; 30];
    let params = GenerationParams {
        max_new_tokens: 16,
        ..GenerationParams::default()
    };
    let (new, reason) = generator.generate_ids(&ids, &params).unwrap();
    assert_eq!((new.len(), reason), (2, FinishReason::Length));
}

/// Continuous batching at the model level: sequences join a running batch at different
/// steps (left-padded into it) and leave when done; each still gets its own greedy tokens.
/// The same for every architecture (the Llama family's goldens included).
#[test]
fn sequences_joining_and_leaving_a_batch_mid_flight_keep_their_greedy_tokens() {
    for name in ["gpt2-tiny-a"].into_iter().chain(LLAMA_FIXTURES) {
        joining_and_leaving(name);
    }
}

fn joining_and_leaving(name: &str) {
    let generator = load(name);
    let model = generator.model();
    let vocab = model.description().vocab_size;
    let inputs = golden_inputs(name);
    let expected: Vec<Vec<u32>> = inputs
        .iter()
        .map(|i| u32s(&i["generate"]["new_token_ids"]))
        .collect();
    let prompts: Vec<Vec<u32>> = inputs.iter().map(|i| u32s(&i["input_ids"])).collect();
    // Sequence i joins at step joins[i] and leaves once it has its golden's tokens.
    let joins = [0usize, 0, 3, 5, 5, 9];
    let mut cache: Option<infergraph::models::kv_cache::KvCache> = None;
    let mut rows: Vec<usize> = Vec::new(); // sequence index of each batch row
    let mut produced: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut step = 0;
    while produced
        .iter()
        .zip(&expected)
        .any(|(p, e)| p.len() < e.len())
    {
        // Admit the sequences due now: prefill them together, then join the batch.
        let joining: Vec<usize> = (0..prompts.len()).filter(|&i| joins[i] == step).collect();
        if !joining.is_empty() {
            let batch: Vec<Vec<u32>> = joining.iter().map(|&i| prompts[i].clone()).collect();
            let (logits, fresh) = model.prefill(&batch).unwrap();
            let logits = logits.into_data().try_into_vec::<f32>().unwrap();
            for (row, &i) in joining.iter().enumerate() {
                produced[i].push(argmax(&logits[row * vocab..(row + 1) * vocab]));
            }
            cache = Some(match cache.take() {
                Some(running) => running.concat(fresh),
                None => fresh,
            });
            rows.extend(joining);
        }
        // Retire finished rows.
        let keep: Vec<usize> = (0..rows.len())
            .filter(|&r| produced[rows[r]].len() < expected[rows[r]].len())
            .collect();
        if keep.len() < rows.len() {
            cache = cache.take().map(|c| c.retain(&keep));
            rows = keep.iter().map(|&r| rows[r]).collect();
        }
        // One decode step for everyone still running.
        if !rows.is_empty() {
            let next: Vec<u32> = rows.iter().map(|&i| *produced[i].last().unwrap()).collect();
            let logits = model.decode(&next, cache.as_mut().unwrap()).unwrap();
            let logits = logits.into_data().try_into_vec::<f32>().unwrap();
            for (row, &i) in rows.iter().enumerate() {
                produced[i].push(argmax(&logits[row * vocab..(row + 1) * vocab]));
            }
        }
        step += 1;
    }
    for (i, (got, want)) in produced.iter().zip(&expected).enumerate() {
        assert_eq!(
            &got[..want.len()],
            &want[..],
            "{name}: sequence {i} (joined at step {})",
            joins[i]
        );
    }
}
