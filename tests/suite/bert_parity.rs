//! BERT sequence classification against Hugging Face transformers' goldens, on the CPU backend.

use crate::common;

use common::*;
use infergraph::models::{self, Classifier};

fn load() -> Classifier {
    models::load_classifier(&fixture("bert-tiny"), &cpu()).expect("fixture loads")
}

#[test]
fn tokenizer_encodings_equal_the_goldens_input_ids() {
    let classifier = load();
    for input in golden_inputs("bert-tiny") {
        let encoded = classifier
            .tokenizer()
            .encode(input["text"].as_str().unwrap(), None)
            .unwrap();
        assert_eq!(encoded.ids, u32s(&input["input_ids"]), "{}", input["text"]);
        assert_eq!(encoded.type_ids, u32s(&input["token_type_ids"]));
    }
}

#[test]
fn logits_scores_and_labels_match_transformers_within_1e_5() {
    let classifier = load();
    for input in golden_inputs("bert-tiny") {
        let text = input["text"].as_str().unwrap();
        let result = classifier.classify(text, None).unwrap();
        assert!(
            max_abs_diff(&result.logits, &f32s(&input["logits"])) < 1e-5,
            "{text}: logits"
        );
        assert!(
            max_abs_diff(&result.scores, &f32s(&input["softmax"])) < 1e-5,
            "{text}: scores"
        );
        assert_eq!(result.label, input["pipeline"]["label"].as_str().unwrap());
        assert!((result.score - input["pipeline"]["score"].as_f64().unwrap() as f32).abs() < 1e-5);
    }
}

#[test]
fn a_padded_batch_scores_each_text_as_it_scores_alone() {
    let classifier = load();
    let inputs = golden_inputs("bert-tiny");
    let texts: Vec<(&str, Option<&str>)> = inputs
        .iter()
        .map(|i| (i["text"].as_str().unwrap(), None))
        .collect();
    let batch = classifier.classify_batch(&texts).unwrap();
    for (result, input) in batch.iter().zip(&inputs) {
        assert!(
            max_abs_diff(&result.logits, &f32s(&input["logits"])) < 1e-5,
            "{}",
            input["text"]
        );
    }
}

#[test]
fn labels_default_to_label_n_when_config_has_no_id2label() {
    assert_eq!(load().model().labels(), ["LABEL_0", "LABEL_1"]);
}

#[test]
fn a_sentence_pair_gets_segment_ids_and_two_separators() {
    let classifier = load();
    let encoded = classifier
        .tokenizer()
        .encode("This movie is good.", Some("I liked it."))
        .unwrap();
    let first_sep = encoded.ids.iter().position(|&id| id == 102).unwrap();
    assert_eq!(encoded.ids.first(), Some(&101), "[CLS] first");
    assert_eq!(encoded.ids.last(), Some(&102), "[SEP] last");
    assert!(encoded.type_ids[..=first_sep].iter().all(|&t| t == 0));
    assert!(encoded.type_ids[first_sep + 1..].iter().all(|&t| t == 1));
    let result = classifier
        .classify("This movie is good.", Some("I liked it."))
        .unwrap();
    assert_ne!(
        result.logits,
        classifier
            .classify("This movie is good.", None)
            .unwrap()
            .logits
    );
}

#[test]
fn long_texts_are_truncated_to_the_models_maximum() {
    let classifier = load(); // max_position_embeddings = 64
    let long = "word ".repeat(500);
    let encoded = classifier.tokenizer().encode(&long, None).unwrap();
    assert_eq!(encoded.ids.len(), 64);
    assert!(encoded.truncated);
    assert_eq!(
        encoded.ids.last(),
        Some(&102),
        "truncation keeps the final [SEP]"
    );
    let pair = classifier.tokenizer().encode(&long, Some(&long)).unwrap();
    assert_eq!(pair.ids.len(), 64);
    assert!(classifier.classify(&long, Some(&long)).is_ok());
}
