//! Bad model folders fail with errors that name the file, the tensor and the shapes;
//! both hub key styles and half-precision checkpoints load.

use crate::common;

use std::path::Path;

use common::tensors::{edited_copy, Raw};
use common::*;
use infergraph::models::weights::WeightFile;
use infergraph::models::{self, GenerationParams, ModelError};
use safetensors::tensor::Dtype;

fn load_error(dir: &Path) -> ModelError {
    models::load(dir, &cpu()).expect_err("the folder must be rejected")
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn a_missing_weights_file_is_named() {
    let dir = edited_copy("gpt2-tiny-a", |_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("model.safetensors") && error.contains("not found"),
        "{error}"
    );
}

#[test]
fn a_missing_tokenizer_is_named() {
    let dir = edited_copy("bert-tiny", |_| {});
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("tokenizer.json") && error.contains("not found"),
        "{error}"
    );
}

#[test]
fn a_wrongly_shaped_tensor_names_the_tensor_and_both_shapes() {
    let dir = edited_copy("gpt2-tiny-a", |tensors| {
        let t = tensors
            .iter_mut()
            .find(|t| t.name.ends_with("h.1.attn.c_attn.weight"))
            .unwrap();
        t.shape = vec![96, 32]; // a PyTorch-layout [out, in] weight where Conv1D is [in, out]
    });
    match load_error(dir.path()) {
        ModelError::ShapeMismatch {
            path,
            tensor,
            expected,
            found,
        } => {
            assert!(path.ends_with("model.safetensors"));
            assert!(tensor.ends_with("h.1.attn.c_attn.weight"));
            assert_eq!((expected, found), (vec![32, 96], vec![96, 32]));
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = edited_copy("gpt2-tiny-a", |tensors| {
        tensors.retain(|t| !t.name.ends_with("h.1.mlp.c_fc.bias"))
    });
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("model.safetensors")
            && error.contains("h.1.mlp.c_fc.bias")
            && error.contains("missing"),
        "{error}"
    );
}

#[test]
fn an_unexpected_tensor_is_rejected_not_ignored() {
    let dir = edited_copy("bert-tiny", |tensors| {
        tensors.push(Raw {
            name: "bert.extra.weight".into(),
            dtype: Dtype::F32,
            shape: vec![1],
            bytes: vec![0; 4],
        });
    });
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("bert.extra.weight") && error.contains("unexpected"),
        "{error}"
    );
}

#[test]
fn a_bert_without_a_classification_head_says_so() {
    let dir = edited_copy("bert-tiny", |tensors| {
        tensors.retain(|t| !t.name.starts_with("classifier."))
    });
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("classifier.weight") && error.contains("no sequence-classification head"),
        "{error}"
    );
}

#[test]
fn a_truncated_file_names_the_first_incomplete_tensor() {
    let dir = edited_copy("gpt2-tiny-a", |_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("model.safetensors")
            && error.contains("truncated")
            && error.contains("tensor \""),
        "{error}"
    );
}

#[test]
fn an_unknown_model_type_is_named() {
    let dir = edited_copy("gpt2-tiny-a", |_| {});
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"model_type\": \"gpt2\"", "\"model_type\": \"llama\"");
    std::fs::write(&config, text).unwrap();
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("config.json")
            && error.contains("unknown architecture")
            && error.contains("llama"),
        "{error}"
    );
}

#[test]
fn an_invalid_config_value_is_explained() {
    let dir = edited_copy("gpt2-tiny-a", |_| {});
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"n_head\": 2", "\"n_head\": 3");
    std::fs::write(&config, text).unwrap();
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("n_embd (32) must be a multiple of n_head (3)"),
        "{error}"
    );
}

#[test]
fn gpt2_keys_without_the_transformer_prefix_load_identically() {
    let dir = edited_copy("gpt2-tiny-a", |tensors| {
        for t in tensors.iter_mut() {
            t.name = t.name.trim_start_matches("transformer.").to_string();
        }
    });
    let generator = models::load_generator(dir.path(), &cpu()).unwrap();
    let input = &golden_inputs("gpt2-tiny-a")[0];
    let (ids, _) = generator
        .generate_ids(&u32s(&input["input_ids"]), &GenerationParams::default())
        .unwrap();
    assert_eq!(ids, u32s(&input["generate"]["new_token_ids"]));
}

#[test]
fn bert_keys_without_prefix_and_with_gamma_beta_load_identically() {
    let dir = edited_copy("bert-tiny", |tensors| {
        for t in tensors.iter_mut() {
            t.name = t
                .name
                .trim_start_matches("bert.")
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
        }
    });
    let classifier = models::load_classifier(dir.path(), &cpu()).unwrap();
    let input = &golden_inputs("bert-tiny")[0];
    let result = classifier
        .classify(input["text"].as_str().unwrap(), None)
        .unwrap();
    assert!(max_abs_diff(&result.logits, &f32s(&input["logits"])) < 1e-5);
}

#[test]
fn f16_and_bf16_tensors_are_widened_exactly_at_load() {
    for dtype in [Dtype::F16, Dtype::BF16] {
        let mut originals = Vec::new();
        let dir = edited_copy("gpt2-tiny-b", |tensors| {
            for t in tensors.iter_mut() {
                let values = f32_values(&t.bytes);
                originals.push((t.name.clone(), t.shape.clone(), values.clone()));
                t.bytes = match dtype {
                    Dtype::F16 => values
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                    _ => values
                        .iter()
                        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                        .collect(),
                };
                t.dtype = dtype;
            }
        });
        let mut file = WeightFile::open(
            &dir.path().join("model.safetensors"),
            "transformer.",
            &cpu(),
        )
        .unwrap();
        for (name, shape, values) in &originals {
            let canonical = name.trim_start_matches("transformer.");
            let widened = file.values(canonical, shape).unwrap();
            let expected: Vec<f32> = match dtype {
                Dtype::F16 => values
                    .iter()
                    .map(|v| half::f16::from_f32(*v).to_f32())
                    .collect(),
                _ => values
                    .iter()
                    .map(|v| half::bf16::from_f32(*v).to_f32())
                    .collect(),
            };
            assert_eq!(widened, expected, "{dtype:?} {name}");
        }
        // And the whole model loads and runs from the half-precision file.
        let generator = models::load_generator(dir.path(), &cpu()).unwrap();
        assert_eq!(
            generator
                .generate("Hello", &GenerationParams::default())
                .unwrap()
                .new_token_ids
                .len(),
            16
        );
    }
}

#[test]
fn an_integer_tensor_is_rejected_with_its_dtype() {
    let dir = edited_copy("gpt2-tiny-b", |tensors| {
        let t = tensors
            .iter_mut()
            .find(|t| t.name.ends_with("ln_f.bias"))
            .unwrap();
        t.dtype = Dtype::I32;
    });
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("ln_f.bias") && error.contains("I32"),
        "{error}"
    );
}
