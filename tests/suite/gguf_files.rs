//! GGUF files as llama.cpp's converter and `llama-quantize` write them
//! (`tests/fixtures/gguf/README.md`): they load, agree with the safetensors folder they were
//! made from, and bad files fail at start naming the file, the tensor and what was expected.
//! Tokenizers built from GGUF vocabularies give Hugging Face's ids.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;
use infergraph::models::gguf::GgufFile;
use infergraph::models::tokenizer::TextTokenizer;
use infergraph::models::{self, Dtype, GenerationParams, ModelError};

fn gguf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

fn gguf(name: &str) -> PathBuf {
    gguf_dir().join(format!("{name}.gguf"))
}

/// Every file made from `llama-kquant-tiny/` (hidden 256, so the K-quants apply).
const KQUANT_FILES: [&str; 7] = [
    "llama-kquant-tiny-f32",
    "llama-kquant-tiny-f16",
    "llama-kquant-tiny-q8_0",
    "llama-kquant-tiny-q4_0",
    "llama-kquant-tiny-q4_1",
    "llama-kquant-tiny-q4_k_m",
    "llama-kquant-tiny-q5_k_m",
];

fn dequant_golden() -> Value {
    let text = std::fs::read_to_string(gguf_dir().join("dequant_golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// transformers' last-position logits on a file's own dequantized weights.
fn dequant_logits(key: &str) -> Vec<f32> {
    let bytes = std::fs::read(gguf_dir().join("dequant_golden_logits.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensor(key)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn greedy(max_new_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_new_tokens,
        min_new_tokens: max_new_tokens,
        ..GenerationParams::default()
    }
}

#[test]
fn every_format_dequantized_to_f32_matches_transformers_on_the_same_weights() {
    let golden = dequant_golden();
    for name in KQUANT_FILES {
        let generator = models::load_generator_in(&gguf(name), &cpu(), Dtype::F32).unwrap();
        let input = &golden[name]["inputs"][0];
        let ids = u32s(&input["input_ids"]);
        let logits = last_logits(generator.model(), &ids);
        let key = input["last_logits_key"].as_str().unwrap();
        let diff = max_abs_diff(&logits, &dequant_logits(key));
        assert!(diff < 1e-4, "{name}: max |Δlogit| = {diff}");
        let (new, _) = generator.generate_ids(&ids, &greedy(10)).unwrap();
        assert_eq!(new, u32s(&input["greedy_new_token_ids"]), "{name}");
    }
}

#[test]
fn the_f32_file_equals_the_safetensors_folder_exactly_and_the_others_stay_within_bounds() {
    let folder = gguf_dir().join("llama-kquant-tiny");
    let reference = models::load_generator(&folder, &cpu()).unwrap();
    let ids = u32s(&dequant_golden()["llama-kquant-tiny-f32"]["inputs"][0]["input_ids"]);
    let want = last_logits(reference.model(), &ids);
    // What the formats cost on these random weights (logits span about ±2.3); the README
    // beside the files lists transformers' own figures, which these bounds sit just above.
    for (name, bound) in [
        ("llama-kquant-tiny-f32", 0.0),
        ("llama-kquant-tiny-f16", 0.0),
        ("llama-kquant-tiny-q8_0", 0.06),
        ("llama-kquant-tiny-q5_k_m", 0.45),
        ("llama-kquant-tiny-q4_k_m", 0.65),
        ("llama-kquant-tiny-q4_0", 0.9),
        ("llama-kquant-tiny-q4_1", 0.95),
    ] {
        let generator = models::load_generator_in(&gguf(name), &cpu(), Dtype::F32).unwrap();
        let diff = max_abs_diff(&last_logits(generator.model(), &ids), &want);
        assert!(
            diff <= bound,
            "{name}: max |Δlogit| = {diff}, bound {bound}"
        );
    }
}

#[test]
fn q4_0_and_q4_1_files_served_in_4_bit_keep_their_blocks_bit_for_bit() {
    let golden = dequant_golden();
    for name in ["llama-kquant-tiny-q4_0", "llama-kquant-tiny-q4_1"] {
        assert_eq!(models::stored_dtype(&gguf(name)).unwrap(), Dtype::Q4);
        let generator = models::load_generator_in(&gguf(name), &cpu(), Dtype::Q4).unwrap();
        let input = &golden[name]["inputs"][0];
        let ids = u32s(&input["input_ids"]);
        // Kept as they are, the blocks are the dequantized golden's weights: only the order
        // of the f32 sums differs.
        let key = input["last_logits_key"].as_str().unwrap();
        let diff = max_abs_diff(&last_logits(generator.model(), &ids), &dequant_logits(key));
        assert!(diff < 1e-4, "{name}: max |Δlogit| = {diff}");
    }
}

/// What converting K-quant tensors at load costs: Q4_K blocks become q4's with their codes
/// kept (only the sub-block scales rounded to f16), Q5_K/Q6_K ones int8 (per output row),
/// against transformers on the file's own dequantized weights (measured: q4_k_m 0.029 in q4,
/// q5_k_m 0.068 in int8; logits span about ±2.3; re-quantizing Q4_K's values instead cost
/// 0.32).
#[test]
fn k_quant_files_served_in_their_own_precision_stay_near_their_exact_values() {
    let golden = dequant_golden();
    for (name, bound) in [
        ("llama-kquant-tiny-q4_k_m", 0.05),
        ("llama-kquant-tiny-q5_k_m", 0.1),
    ] {
        let dtype = models::stored_dtype(&gguf(name)).unwrap();
        let generator = models::load_generator_in(&gguf(name), &cpu(), dtype).unwrap();
        let input = &golden[name]["inputs"][0];
        let ids = u32s(&input["input_ids"]);
        let key = input["last_logits_key"].as_str().unwrap();
        let diff = max_abs_diff(&last_logits(generator.model(), &ids), &dequant_logits(key));
        eprintln!("{name} in {dtype}: max |Δlogit| = {diff}");
        assert!(diff < bound, "{name} in {dtype}: max |Δlogit| = {diff}");
    }
}

#[test]
fn each_file_is_served_in_its_own_precision_unless_told_otherwise() {
    for (name, dtype) in [
        ("llama-kquant-tiny-f32", Dtype::F32),
        ("llama-kquant-tiny-f16", Dtype::F16),
        ("llama-kquant-tiny-q8_0", Dtype::Int8),
        ("llama-kquant-tiny-q4_k_m", Dtype::Q4),
        ("llama-kquant-tiny-q5_k_m", Dtype::Int8),
    ] {
        assert_eq!(models::stored_dtype(&gguf(name)).unwrap(), dtype, "{name}");
    }
    // A folder holding one GGUF is that file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        gguf("llama-kquant-tiny-q4_0"),
        dir.path().join("model.gguf"),
    )
    .unwrap();
    assert_eq!(models::stored_dtype(dir.path()).unwrap(), Dtype::Q4);
    models::load_generator_in(dir.path(), &cpu(), Dtype::Int8).unwrap();
}

#[test]
fn a_mistral_folder_converted_as_llama_loads_with_its_explicit_head_dim() {
    // mistral-tiny: head_dim 16 with hidden 32, one kv head; the converter writes it as
    // `llama` (no sliding window), so only inputs shorter than the window agree.
    let generator =
        models::load_generator_in(&gguf("mistral-tiny-q8_0"), &cpu(), Dtype::F32).unwrap();
    let reference = models::load_generator(&fixture("mistral-tiny"), &cpu()).unwrap();
    let ids = u32s(&golden_inputs("mistral-tiny")[0]["input_ids"]);
    let diff = max_abs_diff(
        &last_logits(generator.model(), &ids),
        &last_logits(reference.model(), &ids),
    );
    // Q8_0's rounding of these random weights: 0.073 measured.
    assert!(diff < 0.1, "max |Δlogit| = {diff}");
}

/// A copy of `llama-kquant-tiny-q4_0.gguf` with `edit` applied to its bytes.
fn corrupt(edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    let mut bytes = std::fs::read(gguf("llama-kquant-tiny-q4_0")).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("present in the header")
}

fn load_error(path: &Path) -> String {
    let error: ModelError = models::load_generator_in(path, &cpu(), Dtype::F32).unwrap_err();
    let error = error.to_string();
    assert!(error.contains("broken.gguf"), "names the file: {error}");
    error
}

#[test]
fn a_file_with_the_wrong_magic_is_refused_by_name() {
    let (_dir, path) = corrupt(|b| b[..4].copy_from_slice(b"GGML"));
    let error = load_error(&path);
    assert!(
        error.contains("bad magic") && error.contains("GGUF"),
        "{error}"
    );
}

#[test]
fn an_unread_version_is_refused_by_name() {
    let (_dir, path) = corrupt(|b| b[4..8].copy_from_slice(&1u32.to_le_bytes()));
    let error = load_error(&path);
    assert!(error.contains("version 1"), "{error}");
}

#[test]
fn a_truncated_file_names_the_first_tensor_it_cuts() {
    let (_dir, path) = corrupt(|b| b.truncate(b.len() / 2));
    let error = load_error(&path);
    assert!(
        error.contains("truncated") && error.contains("tensor"),
        "{error}"
    );
    let (_dir, path) = corrupt(|b| b.truncate(100));
    let error = load_error(&path);
    assert!(error.contains("truncated"), "{error}");
}

#[test]
fn an_unknown_tensor_type_names_the_tensor_and_the_types_read() {
    let (_dir, path) = corrupt(|b| {
        // The entry after the name: n_dims (u32), its dims (u64 each), then the type (u32).
        let name = b"token_embd.weight";
        let at = find(b, name) + name.len();
        let n_dims = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let ty = at + 4 + 8 * n_dims;
        b[ty..ty + 4].copy_from_slice(&99u32.to_le_bytes());
    });
    let error = load_error(&path);
    assert!(
        error.contains("token_embd.weight")
            && error.contains("ggml type 99")
            && error.contains("Q4_K"),
        "{error}"
    );
}

#[test]
fn a_missing_tensor_is_named_as_the_file_names_it() {
    let (_dir, path) = corrupt(|b| {
        let at = find(b, b"blk.1.ffn_up.weight");
        b[at..at + 19].copy_from_slice(b"blk.1.ffn_xx.weight");
    });
    let error = load_error(&path);
    assert!(error.contains("blk.1.ffn_up.weight"), "{error}");
}

#[test]
fn an_architecture_we_do_not_run_is_named_with_the_ones_we_do() {
    let (_dir, path) = corrupt(|b| {
        let key = b"general.architecture";
        // key, then its type (u32) and the string's length (u64): "llama".
        let at = find(b, key) + key.len() + 4 + 8;
        b[at..at + 5].copy_from_slice(b"mamba");
    });
    let error = load_error(&path);
    assert!(
        error.contains("mamba") && error.contains("llama, qwen2, qwen3"),
        "{error}"
    );
}

fn vocab(name: &str) -> PathBuf {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/real-models/llama-cpp-vocabs")
        .join(format!("ggml-vocab-{name}.gguf"));
    assert!(
        file.is_file(),
        "{} is missing: run tests/fixtures/real/fetch-llama-cpp-vocabs.sh (.ci/run does)",
        file.display()
    );
    file
}

#[test]
fn tokenizers_built_from_gguf_vocabularies_give_hugging_faces_ids() {
    // (vocabulary file, vectors, what encoding prepends)
    for (file, vectors, bos) in [
        ("llama-bpe", "llama3", &[128000][..]),
        ("qwen2", "qwen2.5", &[][..]),
        ("llama-spm", "llama2-spm", &[1][..]),
    ] {
        let tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&vocab(file)).unwrap()).unwrap();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tokenizers")
            .join(vectors)
            .join("vectors.json");
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = json["cases"].as_array().unwrap();
        assert!(cases.len() >= 46, "{vectors}");
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let mut expected = u32s(&case["ids"]);
            if !case["add_special_tokens"].as_bool().unwrap() {
                expected.splice(0..0, bos.iter().copied());
            }
            assert_eq!(
                tokenizer.encode(text, None).unwrap().ids,
                expected,
                "{file}: {text:?}"
            );
            let want = case.get("decode").unwrap_or(&case["text"]);
            assert_eq!(
                tokenizer.decode(&u32s(&case["ids"])).unwrap(),
                want.as_str().unwrap(),
                "{file}: {text:?}"
            );
        }
    }
}

#[test]
fn a_vocabulary_only_file_is_not_a_model() {
    let error = models::load_generator_in(&vocab("llama-spm"), &cpu(), Dtype::F32)
        .unwrap_err()
        .to_string();
    assert!(error.contains("ggml-vocab-llama-spm.gguf"), "{error}");
    let error = models::stored_dtype(&vocab("llama-spm"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("vocabulary-only"), "{error}");
}
