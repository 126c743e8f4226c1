//! The Llama family (llama, mistral, qwen2, qwen3) against Hugging Face transformers'
//! goldens, on the CPU backend.

use std::path::Path;

use crate::common;

use common::*;
use infergraph::models::llama::LlamaConfig;
use infergraph::models::rotary::{RopeScaling, Rotary};
use infergraph::models::sampling::argmax;
use infergraph::models::{self, FinishReason, GenerationParams, Generator};

fn load(name: &str) -> Generator {
    models::load_generator(&fixture(name), &cpu()).expect("fixture loads")
}

/// The golden input's text, encoded as transformers encoded it (a rendered chat prompt
/// already carries its BOS, so it was encoded without special tokens).
fn golden_prompt_ids(input: &serde_json::Value) -> Vec<u32> {
    u32s(&input["input_ids"])
}

#[test]
fn tokenizer_encodings_equal_the_goldens_input_ids() {
    for name in LLAMA_FIXTURES {
        let generator = load(name);
        for input in golden_inputs(name) {
            if input.get("tokenized_with").is_some() {
                continue; // a chat prompt: the chat tests render and encode those
            }
            let encoded = generator
                .tokenizer()
                .encode(input["text"].as_str().unwrap(), None)
                .unwrap();
            assert_eq!(encoded.ids, u32s(&input["input_ids"]), "{name}: {input}");
        }
    }
}

#[test]
fn last_position_logits_match_transformers_within_1e_4() {
    for name in LLAMA_FIXTURES {
        let generator = load(name);
        for (i, input) in golden_inputs(name).iter().enumerate() {
            let ids = golden_prompt_ids(input);
            let logits = generator.model().logits_all(&ids).unwrap();
            let [t, v] = logits.dims();
            let all = logits.into_data().try_into_vec::<f32>().unwrap();
            let last = &all[(t - 1) * v..];
            let diff = max_abs_diff(last, &golden_last_logits(name, i));
            assert!(diff < 1e-4, "{name} input {i}: max |Δlogit| = {diff}");
            let forward = &input["forward"];
            let per_position_argmax: Vec<u32> = all.chunks_exact(v).map(argmax).collect();
            assert_eq!(
                per_position_argmax,
                u32s(&forward["per_position_argmax"]),
                "{name} input {i}"
            );
            for (row, expected) in all
                .chunks_exact(v)
                .zip(f32s(&forward["per_position_logsumexp"]))
            {
                assert!((logsumexp(row) - expected).abs() < 1e-4, "{name} input {i}");
            }
        }
    }
}

#[test]
fn greedy_continuations_match_token_for_token_with_and_without_the_cache() {
    for name in LLAMA_FIXTURES {
        let generator = load(name);
        for (i, input) in golden_inputs(name).iter().enumerate() {
            let expected = &input["generate"];
            for use_cache in [true, false] {
                let params = GenerationParams {
                    max_new_tokens: expected["max_new_tokens"].as_u64().unwrap() as usize,
                    use_cache,
                    ..GenerationParams::default()
                };
                let (new, reason) = generator
                    .generate_ids(&golden_prompt_ids(input), &params)
                    .unwrap();
                assert_eq!(
                    new,
                    u32s(&expected["new_token_ids"]),
                    "{name} input {i}, cache {use_cache}"
                );
                assert_eq!(
                    reason == FinishReason::Eos,
                    expected["stopped_on_eos"].as_bool().unwrap(),
                    "{name} input {i}"
                );
                assert_eq!(
                    generator.tokenizer().decode(&new).unwrap(),
                    expected["new_text_skip_special"].as_str().unwrap(),
                    "{name} input {i}"
                );
            }
        }
    }
}

#[test]
fn llama_3_stops_at_eot_id_which_only_generation_config_lists() {
    let generator = load("llama-tiny");
    // config.json says 128009; generation_config.json says [128001, 128009].
    assert_eq!(generator.eos_token_ids(), [128009, 128001]);
    let input = &golden_inputs("llama-tiny")[4];
    let (new, reason) = generator
        .generate_ids(&golden_prompt_ids(input), &GenerationParams::default())
        .unwrap();
    assert_eq!(reason, FinishReason::Eos);
    assert_eq!(new.len(), 8);
    assert_eq!(*new.last().unwrap(), 128009);
}

#[test]
fn the_goldens_left_padded_batch_gives_each_row_its_tokens_alone() {
    for name in LLAMA_FIXTURES {
        let batch = &golden(name)["batch_left_padded"];
        let generator = load(name);
        let model = generator.model();
        let inputs = golden_inputs(name);
        let rows: Vec<usize> = u32s(&batch["input_indices"])
            .into_iter()
            .map(|i| i as usize)
            .collect();
        let prompts: Vec<Vec<u32>> = rows
            .iter()
            .map(|&i| golden_prompt_ids(&inputs[i]))
            .collect();
        let vocab = model.description().vocab_size;
        let (logits, mut cache) = model.prefill(&prompts).unwrap();
        let logits = logits.into_data().try_into_vec::<f32>().unwrap();
        let mut next: Vec<u32> = logits.chunks_exact(vocab).map(argmax).collect();
        let mut produced: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
        let steps = batch["max_new_tokens"].as_u64().unwrap() as usize;
        for _ in 1..steps {
            let logits = model.decode(&next, &mut cache).unwrap();
            let logits = logits.into_data().try_into_vec::<f32>().unwrap();
            next = logits.chunks_exact(vocab).map(argmax).collect();
            for (row, &t) in next.iter().enumerate() {
                produced[row].push(t);
            }
        }
        for (row, expected) in batch["rows"].as_array().unwrap().iter().enumerate() {
            // The golden's batched row equals the row alone up to its EOS (then padding).
            let alone = u32s(&inputs[rows[row]]["generate"]["new_token_ids"]);
            let batched = u32s(&expected["new_token_ids"]);
            assert_eq!(
                batched[..alone.len()],
                alone[..],
                "{name} row {row}: the golden"
            );
            assert_eq!(produced[row][..alone.len()], alone[..], "{name} row {row}");
        }
    }
}

#[test]
fn transformers_5_configs_load_to_the_same_outputs_as_the_hubs_4_x_configs() {
    for name in LLAMA_FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        copy_folder(&fixture(name), dir.path());
        std::fs::copy(
            fixture(name).join("config.v5.json"),
            dir.path().join("config.json"),
        )
        .unwrap();
        let (hub, v5) = (
            load(name),
            models::load_generator(dir.path(), &cpu()).unwrap(),
        );
        assert_eq!(
            hub.model().description(),
            v5.model().description(),
            "{name}"
        );
        for input in golden_inputs(name) {
            let ids = golden_prompt_ids(&input);
            assert_eq!(
                last_logits(hub.model(), &ids),
                last_logits(v5.model(), &ids),
                "{name}"
            );
        }
    }
}

#[test]
fn rope_inverse_frequencies_match_transformers_default_and_llama3() {
    for name in LLAMA_FIXTURES {
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("config.json")).unwrap(),
        )
        .unwrap();
        let config = LlamaConfig::from_json(&config, Path::new("config.json")).unwrap();
        let (theta, scaling) = config.rope().unwrap();
        let rotary = Rotary::new(config.head_dim(), theta, &scaling);
        assert_close(
            rotary.inv_freq(),
            &f32s(&golden(name)["rope_inv_freq"]),
            name,
        );
    }
    // Llama-3.2-1B's own table: every band of the llama3 rescale (the tiny model's head_dim
    // has no frequency in the interpolated one).
    let reference = &golden("llama-tiny")["rope_reference"];
    let rotary = Rotary::new(
        64,
        500_000.0,
        &RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        },
    );
    assert_close(
        rotary.inv_freq(),
        &f32s(&reference["inv_freq"]),
        "llama-3.2-1b",
    );
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-6 * w.abs(), "{what} [{i}]: {g} vs {w}");
    }
}

/// Every golden generation of mistral-tiny runs past its 8-token window, and the window
/// changes them (`sliding_window_check`); the tests above match them all. Here a long
/// prompt's last logits agree whichever attention path saw the window: burn's over the
/// whole prompt, or the host's decode steps over the cache.
#[test]
fn mistral_tiny_decode_steps_apply_the_sliding_window_like_the_full_forward() {
    let generator = load("mistral-tiny");
    let model = generator.model();
    let ids = golden_prompt_ids(&golden_inputs("mistral-tiny")[3]); // 27 tokens
    let (_, mut cache) = model.prefill(&[ids[..20].to_vec()]).unwrap();
    let mut stepped = Vec::new();
    for &id in &ids[20..] {
        stepped = model
            .decode(&[id], &mut cache)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
    }
    let golden = golden_last_logits("mistral-tiny", 3);
    assert!(max_abs_diff(&stepped, &golden) < 1e-4);
    assert!(max_abs_diff(&last_logits(model, &ids), &golden) < 1e-4);
}

fn copy_folder(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
