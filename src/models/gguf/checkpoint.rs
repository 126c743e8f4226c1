//! A GGUF file seen as a Hugging Face checkpoint: the `config.json` its metadata stands for,
//! its tensors under their Hugging Face names, and its generation settings.
//!
//! llama.cpp's converter reorders the rows of a `llama` file's `attn_q`/`attn_k` (and their
//! biases) so that rotary embeddings turn adjacent pairs; our decoder turns halves, as
//! transformers does, so those rows are put back (`row_order`). `qwen2` and `qwen3` files are
//! written unpermuted.

use serde_json::{json, Map, Value as Json};

use super::quants::GgmlType;
use super::{GgufFile, TensorInfo, Value};
use crate::models::dtype::Dtype;
use crate::models::error::ModelError;

/// A GGUF architecture we run: its `general.architecture`, the `model_type` and class the
/// architecture table knows it by.
struct Known {
    gguf: &'static str,
    model_type: &'static str,
    class: &'static str,
    /// Whether the converter permuted q/k rows for adjacent-pair rotary embeddings.
    permuted_qk: bool,
}

const KNOWN: [Known; 3] = [
    Known {
        gguf: "llama",
        model_type: "llama",
        class: "LlamaForCausalLM",
        permuted_qk: true,
    },
    Known {
        gguf: "qwen2",
        model_type: "qwen2",
        class: "Qwen2ForCausalLM",
        permuted_qk: false,
    },
    Known {
        gguf: "qwen3",
        model_type: "qwen3",
        class: "Qwen3ForCausalLM",
        permuted_qk: false,
    },
];

/// The GGUF architectures we run, for error messages.
pub fn supported() -> String {
    KNOWN.iter().map(|k| k.gguf).collect::<Vec<_>>().join(", ")
}

fn known(gguf: &GgufFile) -> Result<&'static Known, ModelError> {
    let architecture = gguf.architecture()?;
    KNOWN
        .iter()
        .find(|k| k.gguf == architecture)
        .ok_or_else(|| ModelError::UnknownArchitecture {
            path: gguf.path().to_path_buf(),
            model_type: format!("{architecture} (GGUF general.architecture)"),
            supported: format!("GGUF architectures {}", supported()),
        })
}

/// The `config.json` (transformers 4.x shape) the file's metadata stands for.
pub fn config(gguf: &GgufFile) -> Result<Json, ModelError> {
    let known = known(gguf)?;
    let arch = known.gguf;
    let invalid = |reason: String| ModelError::InvalidGguf {
        path: gguf.path().to_path_buf(),
        reason,
    };
    let key = |name: &str| format!("{arch}.{name}");
    let number = |name: &str| -> Result<u64, ModelError> {
        gguf.get(&key(name))
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(format!("no integer {} key", key(name))))
    };
    let optional = |name: &str| gguf.get(&key(name)).and_then(Value::as_u64);
    let embedding = gguf
        .tensors()
        .iter()
        .find(|t| t.name == "token_embd.weight");
    let vocab_size = match optional("vocab_size") {
        Some(v) => v,
        None => embedding
            .map(|t| t.dims[1] as u64)
            .or_else(|| {
                gguf.get("tokenizer.ggml.tokens")
                    .and_then(Value::as_array)
                    .map(|a| a.len() as u64)
            })
            .ok_or_else(|| invalid("no vocabulary size (no token_embd.weight)".into()))?,
    };
    let heads = number("attention.head_count")?;
    let mut config = Map::new();
    config.insert("model_type".into(), json!(known.model_type));
    config.insert("architectures".into(), json!([known.class]));
    config.insert("vocab_size".into(), json!(vocab_size));
    config.insert("hidden_size".into(), json!(number("embedding_length")?));
    config.insert(
        "intermediate_size".into(),
        json!(number("feed_forward_length")?),
    );
    config.insert("num_hidden_layers".into(), json!(number("block_count")?));
    config.insert("num_attention_heads".into(), json!(heads));
    config.insert(
        "num_key_value_heads".into(),
        json!(optional("attention.head_count_kv").unwrap_or(heads)),
    );
    if let Some(head_dim) = optional("attention.key_length") {
        config.insert("head_dim".into(), json!(head_dim));
    }
    config.insert(
        "max_position_embeddings".into(),
        json!(number("context_length")?),
    );
    if let Some(eps) = gguf
        .get(&key("attention.layer_norm_rms_epsilon"))
        .and_then(Value::as_f64)
    {
        config.insert("rms_norm_eps".into(), json!(eps));
    }
    if let Some(theta) = gguf.get(&key("rope.freq_base")).and_then(Value::as_f64) {
        config.insert("rope_theta".into(), json!(theta));
    }
    if let Some(kind) = gguf.get(&key("rope.scaling.type")).and_then(Value::as_str) {
        if kind != "none" {
            return Err(invalid(format!(
                "{} {kind:?} is not supported (none; llama3 scaling comes as rope_freqs.weight)",
                key("rope.scaling.type")
            )));
        }
    }
    if let Some(window) = optional("attention.sliding_window") {
        config.insert("sliding_window".into(), json!(window));
    }
    let has = |name: &str| gguf.tensors().iter().any(|t| t.name == name);
    config.insert("tie_word_embeddings".into(), json!(!has("output.weight")));
    // Llama's flag covers q/k/v/o; Qwen2's biases are the family's (`LlamaConfig::flags`).
    config.insert(
        "attention_bias".into(),
        json!(arch == "llama" && has("blk.0.attn_q.bias")),
    );
    config.insert("mlp_bias".into(), json!(has("blk.0.ffn_up.bias")));
    let ids: Vec<u64> = ["eos_token_id", "eot_token_id", "eom_token_id"]
        .iter()
        .filter_map(|k| gguf.get(&format!("tokenizer.ggml.{k}"))?.as_u64())
        .collect();
    config.insert("eos_token_id".into(), json!(ids));
    if let Some(bos) = gguf
        .get("tokenizer.ggml.bos_token_id")
        .and_then(Value::as_u64)
    {
        config.insert("bos_token_id".into(), json!(bos));
    }
    Ok(Json::Object(config))
}

/// The chat template the file carries, if any.
pub fn chat_template(gguf: &GgufFile) -> Option<&str> {
    gguf.get("tokenizer.chat_template").and_then(Value::as_str)
}

/// `bos_token` and `eos_token` as `tokenizer_config.json` would name them, for the chat
/// template.
pub fn special_tokens(gguf: &GgufFile) -> Json {
    let tokens = gguf.get("tokenizer.ggml.tokens").and_then(Value::as_array);
    let token = |key: &str| {
        let id = gguf.get(&format!("tokenizer.ggml.{key}"))?.as_u64()? as usize;
        tokens?.get(id)?.as_str()
    };
    json!({ "bos_token": token("bos_token_id"), "eos_token": token("eos_token_id") })
}

/// The dtype the file's matrices are stored in, as we run it: the type most of its blocks'
/// matrices have, Q4_0/Q4_1/Q4_K as `q4`, Q8_0 and the 5- and 6-bit K-quants as `int8`.
pub fn stored_dtype(gguf: &GgufFile) -> Result<Dtype, ModelError> {
    let mut counts: Vec<(GgmlType, usize)> = Vec::new();
    for tensor in gguf.tensors() {
        if tensor.dims.len() == 2 && tensor.name.starts_with("blk.") {
            match counts.iter_mut().find(|(ty, _)| *ty == tensor.ty) {
                Some((_, n)) => *n += 1,
                None => counts.push((tensor.ty, 1)),
            }
        }
    }
    let most = counts.iter().max_by_key(|(_, n)| *n).map(|(ty, _)| *ty);
    let Some(most) = most else {
        return Err(ModelError::InvalidGguf {
            path: gguf.path().to_path_buf(),
            reason: "no blk.* matrices: a vocabulary-only file holds no model".into(),
        });
    };
    Ok(match most {
        GgmlType::F32 => Dtype::F32,
        GgmlType::F16 => Dtype::F16,
        GgmlType::Bf16 => Dtype::Bf16,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K => Dtype::Q4,
        GgmlType::Q8_0 | GgmlType::Q5K | GgmlType::Q6K => Dtype::Int8,
    })
}

/// A tensor of the file under its Hugging Face name (without the `model.` prefix, as the
/// loader asks for it), with the rows to take in Hugging Face order where the converter
/// permuted them.
pub struct Mapped<'a> {
    pub name: String,
    pub tensor: &'a TensorInfo,
    /// `row_order[i]` is the file's row that is Hugging Face's row `i`.
    pub row_order: Option<Vec<usize>>,
}

/// Every tensor of the file, mapped. A tensor of no known name keeps its GGUF name, so the
/// loader reports it as unexpected.
pub fn tensors(gguf: &GgufFile) -> Result<Vec<Mapped<'_>>, ModelError> {
    let known = known(gguf)?;
    let arch = known.gguf;
    let count = |name: &str| gguf.get(&format!("{arch}.{name}")).and_then(Value::as_u64);
    let heads = count("attention.head_count").unwrap_or(1) as usize;
    let kv_heads = count("attention.head_count_kv").map_or(heads, |h| h as usize);
    gguf.tensors()
        .iter()
        .map(|tensor| {
            let (name, permute_heads) = hf_name(&tensor.name, heads, kv_heads);
            let row_order = permute_heads
                .filter(|_| known.permuted_qk)
                .map(|heads| unpermute(tensor.hf_shape()[0], heads))
                .transpose()
                .map_err(|reason| ModelError::InvalidGguf {
                    path: gguf.path().to_path_buf(),
                    reason: format!("tensor {:?}: {reason}", tensor.name),
                })?;
            Ok(Mapped {
                name,
                tensor,
                row_order,
            })
        })
        .collect()
}

/// Whole-tensor names: (GGUF, Hugging Face without `model.`).
const FIXED: [(&str, &str); 4] = [
    ("token_embd.weight", "embed_tokens.weight"),
    ("output_norm.weight", "norm.weight"),
    ("output.weight", "lm_head.weight"),
    ("rope_freqs.weight", "rope_freqs.weight"),
];

/// Per-block modules: (GGUF, Hugging Face).
const MODULES: [(&str, &str); 11] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The GGUF name of the Hugging Face tensor `hf` (as the loader asks for it), for errors.
pub fn gguf_name(hf: &str) -> Option<String> {
    if let Some((gguf, _)) = FIXED.iter().find(|(_, h)| *h == hf) {
        return Some(gguf.to_string());
    }
    let rest = hf.strip_prefix("layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let (gguf, _) = MODULES.iter().find(|(_, h)| *h == module)?;
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// The Hugging Face name of GGUF tensor `name`, and for q/k the head count its rows were
/// permuted over.
fn hf_name(name: &str, heads: usize, kv_heads: usize) -> (String, Option<usize>) {
    if let Some((_, hf)) = FIXED.iter().find(|(gguf, _)| *gguf == name) {
        return (hf.to_string(), None);
    }
    let Some(rest) = name.strip_prefix("blk.") else {
        return (name.to_string(), None);
    };
    let Some((layer, rest)) = rest.split_once('.') else {
        return (name.to_string(), None);
    };
    let Some((module, suffix)) = rest.split_once('.') else {
        return (name.to_string(), None);
    };
    let Some((_, hf)) = MODULES.iter().find(|(gguf, _)| *gguf == module) else {
        return (name.to_string(), None);
    };
    let permuted = match module {
        "attn_q" => Some(heads),
        "attn_k" => Some(kv_heads),
        _ => None,
    };
    (format!("layers.{layer}.{hf}.{suffix}"), permuted)
}

/// For `rows` rows over `heads` heads of `rows / heads` rows each: Hugging Face's row
/// `h·hd + p·hd/2 + i` is the file's row `h·hd + 2i + p` (the inverse of the converter's
/// `permute`).
fn unpermute(rows: usize, heads: usize) -> Result<Vec<usize>, String> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(format!(
            "{rows} rows do not split into {heads} heads of pairs"
        ));
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    Ok((0..rows)
        .map(|row| {
            let (h, r) = (row / head_dim, row % head_dim);
            let (p, i) = (r / half, r % half);
            h * head_dim + 2 * i + p
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_matches_the_converters_inverse() {
        // SmolLM2 (head_dim 64): HF row 1 is GGUF row 2, HF row 32 is GGUF row 1.
        let order = unpermute(9 * 64, 9).unwrap();
        assert_eq!(order[1], 2);
        assert_eq!(order[32], 1);
        assert_eq!(order[64 + 33], 64 + 3);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..9 * 64).collect::<Vec<_>>());
    }

    #[test]
    fn block_tensors_map_to_hugging_face_names() {
        assert_eq!(
            hf_name("blk.3.attn_k.weight", 9, 3),
            ("layers.3.self_attn.k_proj.weight".into(), Some(3))
        );
        assert_eq!(
            hf_name("blk.0.ffn_down.weight", 9, 3),
            ("layers.0.mlp.down_proj.weight".into(), None)
        );
        assert_eq!(
            hf_name("blk.0.mystery.weight", 9, 3).0,
            "blk.0.mystery.weight"
        );
        assert_eq!(
            gguf_name("layers.3.self_attn.k_proj.bias").as_deref(),
            Some("blk.3.attn_k.bias")
        );
        assert_eq!(
            gguf_name("lm_head.weight").as_deref(),
            Some("output.weight")
        );
    }
}
