//! The Llama-family tokenizers (Llama 3's byte-level BPE, Llama 2's SentencePiece BPE with
//! byte fallback, Qwen's BPE) against the ids Hugging Face's own tokenizers give.

use crate::common;

use common::*;
use infergraph::models::tokenizer::TextTokenizer;

/// `(vectors folder, model fixture carrying that tokenizer.json, what encoding prepends)`:
/// Llama 3 and Llama 2 add their BOS, Qwen adds nothing.
const TOKENIZERS: [(&str, &str, &[u32]); 4] = [
    ("llama3", "llama-tiny", &[128000]),
    ("llama2-spm", "mistral-tiny", &[1]),
    ("qwen2.5", "qwen2-tiny", &[]),
    ("qwen3", "qwen3-tiny", &[]),
];

fn vectors(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizers")
        .join(name)
        .join("vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_vector_string_encodes_to_hugging_faces_ids_with_bos_where_the_tokenizer_adds_it() {
    for (name, model, bos) in TOKENIZERS {
        let tokenizer = TextTokenizer::from_file(&fixture(model).join("tokenizer.json")).unwrap();
        let cases = vectors(name)["cases"].as_array().unwrap().clone();
        assert!(cases.len() >= 46, "{name}");
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let mut expected = u32s(&case["ids"]);
            if !case["add_special_tokens"].as_bool().unwrap() {
                expected.splice(0..0, bos.iter().copied());
            }
            let ids = tokenizer.encode(text, None).unwrap().ids;
            assert_eq!(ids, expected, "{name}: {text:?}");
        }
    }
}

#[test]
fn every_vector_decodes_back_to_its_string() {
    for (name, model, _) in TOKENIZERS {
        let tokenizer = TextTokenizer::from_file(&fixture(model).join("tokenizer.json")).unwrap();
        for case in vectors(name)["cases"].as_array().unwrap() {
            let want = case
                .get("decode")
                .unwrap_or(&case["text"])
                .as_str()
                .unwrap();
            let got = tokenizer.decode(&u32s(&case["ids"])).unwrap();
            assert_eq!(got, want, "{name}");
        }
    }
}

#[test]
fn special_tokens_encode_to_their_own_ids() {
    for (name, model, bos) in TOKENIZERS {
        let tokenizer = TextTokenizer::from_file(&fixture(model).join("tokenizer.json")).unwrap();
        let specials = vectors(name)["special_tokens"].as_object().unwrap().clone();
        for (token, id) in specials {
            let ids = tokenizer.encode(&token, None).unwrap().ids;
            let id = id.as_u64().unwrap() as u32;
            let mut expected = bos.to_vec();
            // A text that is the BOS itself gets it once more from the post-processor.
            expected.push(id);
            assert_eq!(ids, expected, "{name}: {token}");
        }
    }
}
