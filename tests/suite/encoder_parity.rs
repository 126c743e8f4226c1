//! RoBERTa, XLM-RoBERTa and DistilBERT sequence classifiers against transformers' goldens
//! (`tests/fixtures/models/{roberta,xlm-roberta,distilbert}-tiny`), on the CPU backend, in f32:
//! token ids exact, logits and scores within 1e-5, labels identical, as the
//! text-classification pipeline gives them (softmax; a sigmoid for the one-label reranker and
//! for a multi-label config).

use crate::common;

use common::tensors::{copy_dir, edited_copy, Raw};
use common::*;
use infergraph::models::{self, Classifier};
use serde_json::Value;

const CLASSIFIERS: [&str; 3] = ["roberta-tiny", "xlm-roberta-tiny", "distilbert-tiny"];

fn load(name: &str) -> Classifier {
    models::load_classifier(&fixture(name), &cpu()).expect("fixture loads")
}

/// A golden input as the classifier takes it: a text, or a (text, pair).
fn text_and_pair(input: &Value) -> (&str, Option<&str>) {
    match &input["text"] {
        Value::Array(pair) => (pair[0].as_str().unwrap(), Some(pair[1].as_str().unwrap())),
        text => (text.as_str().unwrap(), None),
    }
}

/// The scores the golden records: `softmax`, or `sigmoid` for a one-label model.
fn golden_scores(input: &Value) -> Vec<f32> {
    f32s(if input["softmax"].is_null() {
        &input["sigmoid"]
    } else {
        &input["softmax"]
    })
}

fn assert_matches_golden(name: &str, input: &Value, result: &models::Classification) {
    let (text, _) = text_and_pair(input);
    let logits = max_abs_diff(&result.logits, &f32s(&input["logits"]));
    assert!(logits < 1e-5, "{name} {text:?}: logits off by {logits}");
    let scores = max_abs_diff(&result.scores, &golden_scores(input));
    assert!(scores < 1e-5, "{name} {text:?}: scores off by {scores}");
    assert_eq!(result.label, input["pipeline"]["label"].as_str().unwrap());
    let score = input["pipeline"]["score"].as_f64().unwrap() as f32;
    assert!(
        (result.score - score).abs() < 1e-5,
        "{name} {text:?}: pipeline score {} vs {score}",
        result.score
    );
}

#[test]
fn tokenizers_give_the_goldens_ids_with_each_familys_special_tokens_and_truncation() {
    for name in CLASSIFIERS {
        let classifier = load(name);
        for input in golden_inputs(name) {
            let (text, pair) = text_and_pair(&input);
            let encoded = classifier.tokenizer().encode(text, pair).unwrap();
            assert_eq!(encoded.ids, u32s(&input["input_ids"]), "{name} {text:?}");
            assert_eq!(encoded.truncated, input["truncated"].as_bool().unwrap());
        }
    }
    // RoBERTa's pair layout: <s> A </s></s> B </s>.
    let classifier = load("roberta-tiny");
    let pair = classifier.tokenizer().encode("a", Some("b")).unwrap().ids;
    let (bos, eos) = (0, 2);
    assert_eq!(pair.first(), Some(&bos));
    assert_eq!(pair.iter().filter(|&&id| id == eos).count(), 3, "{pair:?}");
    assert!(pair.windows(2).any(|w| w == [eos, eos]), "{pair:?}");
}

#[test]
fn logits_scores_and_labels_match_transformers_within_1e_5() {
    for name in CLASSIFIERS {
        let classifier = load(name);
        for input in golden_inputs(name) {
            let (text, pair) = text_and_pair(&input);
            let result = classifier.classify(text, pair).unwrap();
            assert_matches_golden(name, &input, &result);
        }
    }
}

#[test]
fn a_padded_batch_of_texts_and_pairs_scores_each_as_it_scores_alone() {
    for name in CLASSIFIERS {
        let classifier = load(name);
        let inputs = golden_inputs(name);
        let items: Vec<(&str, Option<&str>)> = inputs.iter().map(text_and_pair).collect();
        let batch = classifier.classify_batch(&items).unwrap();
        for (result, input) in batch.iter().zip(&inputs) {
            assert_matches_golden(name, input, result);
        }
    }
}

#[test]
fn each_family_reports_its_architecture_labels_and_usable_length() {
    let roberta = load("roberta-tiny");
    assert_eq!(roberta.model().architecture(), "roberta");
    assert_eq!(
        roberta.model().labels(),
        ["negative", "neutral", "positive"]
    );
    // max_position_embeddings 34, positions from padding_idx + 1 = 2: 32 tokens.
    assert_eq!(roberta.model().shape().max_tokens(), 32);
    assert_eq!(roberta.tokenizer().max_length(), Some(32));

    let reranker = load("xlm-roberta-tiny");
    assert_eq!(reranker.model().architecture(), "xlm-roberta");
    assert_eq!(reranker.model().labels(), ["LABEL_0"]);
    assert_eq!(reranker.model().score_function().as_str(), "sigmoid");
    assert_eq!(reranker.tokenizer().max_length(), Some(64));

    let distilbert = load("distilbert-tiny");
    assert_eq!(distilbert.model().architecture(), "distilbert");
    assert_eq!(distilbert.model().labels(), ["NEGATIVE", "POSITIVE"]);
    assert_eq!(distilbert.model().score_function().as_str(), "softmax");
    assert_eq!(distilbert.tokenizer().max_length(), Some(40));
}

#[test]
fn a_multi_label_config_scores_a_sigmoid_per_label_as_the_pipeline_does() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("roberta-tiny"), dir.path());
    let config_path = dir.path().join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["problem_type"] = "multi_label_classification".into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let classifier = models::load_classifier(dir.path(), &cpu()).unwrap();
    assert_eq!(classifier.model().score_function().as_str(), "sigmoid");

    let golden = golden("roberta-tiny");
    let variant = golden["multi_label_variant"]["inputs"].as_array().unwrap();
    let inputs = golden_inputs("roberta-tiny");
    assert_eq!(variant.len(), inputs.len());
    for (input, expected) in inputs.iter().zip(variant) {
        let (text, pair) = text_and_pair(input);
        let result = classifier.classify(text, pair).unwrap();
        assert!(max_abs_diff(&result.logits, &f32s(&input["logits"])) < 1e-5);
        let scores = max_abs_diff(&result.scores, &f32s(&expected["sigmoid"]));
        assert!(scores < 1e-5, "{text:?}: sigmoid off by {scores}");
        assert_eq!(
            result.label,
            expected["pipeline"]["label"].as_str().unwrap()
        );
        let score = expected["pipeline"]["score"].as_f64().unwrap() as f32;
        assert!((result.score - score).abs() < 1e-5, "{text:?}");
        // Every label's own probability: they need not sum to one.
        let sum: f32 = result.scores.iter().sum();
        assert!((sum - 1.0).abs() > 1e-3, "{text:?}: a softmax?");
    }
}

#[test]
fn keys_without_the_family_prefix_load_identically() {
    for (name, prefix) in [
        ("roberta-tiny", "roberta."),
        ("xlm-roberta-tiny", "roberta."),
        ("distilbert-tiny", "distilbert."),
    ] {
        let dir = edited_copy(name, |tensors| {
            for t in tensors.iter_mut() {
                t.name = t.name.trim_start_matches(prefix).to_string();
            }
        });
        let classifier = models::load_classifier(dir.path(), &cpu()).unwrap();
        let input = &golden_inputs(name)[0];
        let (text, pair) = text_and_pair(input);
        let result = classifier.classify(text, pair).unwrap();
        assert_matches_golden(name, input, &result);
    }
}

#[test]
fn an_int64_position_ids_buffer_is_skipped_not_refused() {
    for (name, key) in [
        ("roberta-tiny", "roberta.embeddings.position_ids"),
        ("distilbert-tiny", "distilbert.embeddings.position_ids"),
    ] {
        let dir = edited_copy(name, |tensors| {
            tensors.push(Raw {
                name: key.into(),
                dtype: safetensors::Dtype::I64,
                shape: vec![1, 4],
                bytes: (0..4i64).flat_map(|i| i.to_le_bytes()).collect(),
            });
        });
        let classifier = models::load_classifier(dir.path(), &cpu()).unwrap();
        let input = &golden_inputs(name)[1];
        let (text, pair) = text_and_pair(input);
        assert_matches_golden(name, input, &classifier.classify(text, pair).unwrap());
    }
}

#[test]
fn a_roberta_without_its_classification_head_says_so() {
    let dir = edited_copy("roberta-tiny", |tensors| {
        tensors.retain(|t| !t.name.starts_with("classifier."));
    });
    let error = models::load_classifier(dir.path(), &cpu())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("classifier.out_proj.weight")
            && error.contains("no sequence-classification head")
            && error.contains("embedder"),
        "{error}"
    );
}

#[test]
fn a_generator_folder_is_not_a_classifier() {
    let error = models::load_classifier(&fixture("gpt2-tiny-a"), &cpu())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"gpt2\" serves as a generator, not as a classifier"),
        "{error}"
    );
}
