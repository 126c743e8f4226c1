//! Bad model folders fail with errors that name the file, the tensor and the shapes;
//! both hub key styles, half-precision and sharded checkpoints load.

use crate::common;

use std::path::Path;

use common::tensors::{edited_copy, Raw};
use common::*;
use infergraph::models::weights::WeightFile;
use infergraph::models::{self, GenerationParams, ModelError};
use safetensors::tensor::{Dtype, TensorView};

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
        .replace("\"model_type\": \"gpt2\"", "\"model_type\": \"falcon\"");
    std::fs::write(&config, text).unwrap();
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("config.json")
            && error.contains("unknown architecture")
            && error.contains("falcon")
            && error.contains("gpt2, llama, mistral, qwen2, qwen3 (generators)")
            && error.contains("bert, roberta, xlm-roberta, camembert, distilbert (classifiers)"),
        "{error}"
    );
}

#[test]
fn a_known_architecture_in_the_wrong_role_is_named() {
    // A Llama classifier's folder, configured as a generator.
    let dir = edited_copy("llama-tiny", |_| {});
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("LlamaForCausalLM", "LlamaForSequenceClassification");
    std::fs::write(&config, text).unwrap();
    let error = models::load_generator(dir.path(), &cpu())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("config.json")
            && error.contains("LlamaForSequenceClassification")
            && error.contains("LlamaForCausalLM")
            && error.contains("supported: gpt2, llama"),
        "{error}"
    );
    // A classifier's model_type asked to generate.
    let error = models::load_generator(&fixture("bert-tiny"), &cpu())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"bert\" serves as a classifier or an embedder, not as a generator"),
        "{error}"
    );
}

/// Writes `name`'s tensors as two shards and an index, as `save_pretrained` does past its
/// shard size, with `edit` applied to the index's weight map.
fn sharded_copy(
    name: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> tempfile::TempDir {
    let dir = edited_copy(name, |_| {});
    let single = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&single).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let shard_name = format!("model-{:05}-of-00002.safetensors", shard + 1);
        let views: Vec<(String, TensorView)> = part
            .iter()
            .map(|&n| (n.to_string(), file.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.path().join(&shard_name)).unwrap();
        for n in part {
            weight_map.insert(n.to_string(), shard_name.clone().into());
        }
    }
    std::fs::remove_file(&single).unwrap();
    edit(&mut weight_map);
    let index =
        serde_json::json!({"metadata": {"total_size": bytes.len()}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn a_sharded_checkpoint_loads_and_answers_as_the_single_file_does() {
    for name in ["llama-tiny", "gpt2-tiny-a"] {
        let dir = sharded_copy(name, |_| {});
        let sharded = models::load_generator(dir.path(), &cpu()).unwrap();
        let single = models::load_generator(&fixture(name), &cpu()).unwrap();
        for input in golden_inputs(name) {
            let ids = u32s(&input["input_ids"]);
            assert_eq!(
                last_logits(sharded.model(), &ids),
                last_logits(single.model(), &ids),
                "{name}"
            );
        }
    }
}

#[test]
fn a_missing_shard_is_named() {
    let dir = sharded_copy("llama-tiny", |_| {});
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("model-00002-of-00002.safetensors") && error.contains("file not found"),
        "{error}"
    );
}

#[test]
fn a_shard_missing_a_tensor_of_the_index_names_the_shard_and_the_tensor() {
    let dir = sharded_copy("llama-tiny", |map| {
        // The index claims the first shard's norm lives in the second.
        map.insert(
            "model.norm.weight".into(),
            "model-00001-of-00002.safetensors".into(),
        );
    });
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("model-00001-of-00002.safetensors")
            && error.contains("\"model.norm.weight\" is missing"),
        "{error}"
    );
}

#[test]
fn a_llama_tensor_of_the_wrong_shape_names_the_file_and_the_tensor() {
    let dir = sharded_copy("qwen2-tiny", |_| {});
    // Rewrite the shard holding k_proj's bias with a wider one.
    let shard = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && safetensors::SafeTensors::deserialize(&std::fs::read(p).unwrap())
                    .unwrap()
                    .names()
                    .contains(&"model.layers.0.self_attn.k_proj.bias")
        })
        .unwrap();
    let bytes = std::fs::read(&shard).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let wider = vec![0u8; 2 * 9];
    let views: Vec<(String, TensorView)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            if n == "model.layers.0.self_attn.k_proj.bias" {
                (n, TensorView::new(Dtype::F16, vec![9], &wider).unwrap())
            } else {
                (n, v)
            }
        })
        .collect();
    safetensors::serialize_to_file(views, None, &shard).unwrap();
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains(shard.file_name().unwrap().to_str().unwrap())
            && error.contains("model.layers.0.self_attn.k_proj.bias")
            && error.contains("[9]")
            && error.contains("[8]"),
        "{error}"
    );
}

#[test]
fn a_bf16_llama_checkpoint_loads_in_bf16_bit_for_bit() {
    // mistral-tiny ships F32: make a BF16 checkpoint of it, as most hub models are.
    let dir = edited_copy("mistral-tiny", |tensors| {
        for t in tensors.iter_mut() {
            t.bytes = f32_values(&t.bytes)
                .into_iter()
                .flat_map(|v| half::bf16::from_f32(v).to_le_bytes())
                .collect();
            t.dtype = Dtype::BF16;
        }
    });
    let generator = models::load_generator_in(dir.path(), &cpu(), models::Dtype::Bf16).unwrap();
    let model = generator.model();
    assert_eq!(model.dtype(), "bf16");
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let stored = |name: &str| -> Vec<f32> {
        file.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()
    };
    let projections = ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(|p| format!("self_attn.{p}"))
        .into_iter()
        .chain(["gate_proj", "up_proj", "down_proj"].map(|p| format!("mlp.{p}")));
    let names: Vec<String> = (0..2)
        .flat_map(|l| {
            projections
                .clone()
                .map(move |p| format!("model.layers.{l}.{p}.weight"))
        })
        .collect();
    for (dense, name) in model.block_dense_layers().into_iter().zip(&names) {
        let out = stored(name).len() / dense.in_features();
        let rows: Vec<u32> = (0..out as u32).collect();
        let held = dense.rows(&rows).into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(held, stored(name), "{name}");
    }
    let vocab: Vec<u32> = (0..32000).collect();
    let head = model
        .lm_head()
        .rows(&vocab)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(head, stored("lm_head.weight"));
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
