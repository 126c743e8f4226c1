//! Deterministic random-weight model folders in Hugging Face layout (`infergraph init-weights`).
//!
//! Two sizes of the seed's architectures: `true_size` has the real checkpoint's dimensions
//! (for benchmarks), `demo` is small enough to commit and to start in seconds. The Llama
//! family's presets (SmolLM2, Qwen2.5, Llama 3.2) come in true size only, for benchmarks. Both are written
//! as a real checkpoint is (config.json, model.safetensors, tokenizer.json) and read back
//! through the same loader, so the demo exercises the real loading path.

use std::borrow::Cow;
use std::path::Path;

use safetensors::tensor::{Dtype, View};
use serde_json::json;

use super::error::ModelError;
use super::rng::SplitMix64;

/// The real tokenizers, shipped with the binary so any folder can be made anywhere.
const GPT2_TOKENIZER: &[u8] = include_bytes!("../../model-weights/gpt2/tokenizer.json");
const BERT_TOKENIZER: &[u8] =
    include_bytes!("../../model-weights/bert-base-uncased/tokenizer.json");
const SMOLLM2_TOKENIZER: &[u8] = include_bytes!("../../assets/tokenizers/smollm2.json");
const QWEN2_5_TOKENIZER: &[u8] = include_bytes!("../../assets/tokenizers/qwen2.5.json");
const LLAMA3_TOKENIZER: &[u8] = include_bytes!("../../assets/tokenizers/llama3.json");
/// RoBERTa's byte-level BPE in GPT-2's order (synthetic: see tests/fixtures/README.md).
const ROBERTA_TOKENIZER: &[u8] = include_bytes!("../../assets/tokenizers/roberta.json");

/// The architectures `init-weights` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    Gpt2,
    Distilgpt2,
    Gpt2Medium,
    BertBaseUncased,
    #[value(name = "smollm2-135m")]
    Smollm2_135m,
    #[value(name = "smollm2-360m")]
    Smollm2_360m,
    #[value(name = "qwen2.5-0.5b")]
    Qwen2_5_0_5b,
    #[value(name = "llama-3.2-1b")]
    Llama3_2_1b,
    RobertaBase,
    DistilbertBaseUncased,
}

impl Preset {
    pub const ALL: [Preset; 10] = [
        Preset::Gpt2,
        Preset::Distilgpt2,
        Preset::Gpt2Medium,
        Preset::BertBaseUncased,
        Preset::Smollm2_135m,
        Preset::Smollm2_360m,
        Preset::Qwen2_5_0_5b,
        Preset::Llama3_2_1b,
        Preset::RobertaBase,
        Preset::DistilbertBaseUncased,
    ];

    /// The models `model-weights/` ships (`init-weights --demo`): the seed graph's.
    pub const DEMOS: [Preset; 4] = [
        Preset::Gpt2,
        Preset::Distilgpt2,
        Preset::Gpt2Medium,
        Preset::BertBaseUncased,
    ];

    /// The folder name the default config expects under `model-weights/`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Gpt2 => "gpt2",
            Preset::Distilgpt2 => "distilgpt2",
            Preset::Gpt2Medium => "gpt2-medium",
            Preset::BertBaseUncased => "bert-base-uncased",
            Preset::Smollm2_135m => "smollm2-135m",
            Preset::Smollm2_360m => "smollm2-360m",
            Preset::Qwen2_5_0_5b => "qwen2.5-0.5b",
            Preset::Llama3_2_1b => "llama-3.2-1b",
            Preset::RobertaBase => "roberta-base",
            Preset::DistilbertBaseUncased => "distilbert-base-uncased",
        }
    }

    fn seed(self) -> u64 {
        Preset::ALL.iter().position(|p| *p == self).expect("listed") as u64 + 1
    }
}

/// Element type of the written weights. (int8 has no checkpoint format of its own: a model is
/// quantized when it loads with `dtype = "int8"`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightDtype {
    F32,
    F16,
    Bf16,
}

/// Sizes of one folder to write.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Gpt2 {
        n_layer: usize,
        n_head: usize,
        n_embd: usize,
        n_positions: usize,
    },
    Bert {
        layers: usize,
        heads: usize,
        hidden: usize,
        intermediate: usize,
        max_positions: usize,
    },
    Llama(LlamaShape),
    /// roberta-base's sizes: BERT's, 514 positions from `pad_token_id + 1`, one token type.
    Roberta,
    /// distilbert-base-uncased's sizes: 6 layers of BERT-base width.
    DistilBert,
}

/// A Llama-family checkpoint's sizes and flags, as its hub `config.json` gives them.
#[derive(Debug, Clone, Copy)]
struct LlamaShape {
    model_type: &'static str,
    class: &'static str,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    hidden: usize,
    intermediate: usize,
    vocab: usize,
    max_positions: usize,
    rope_theta: f64,
    /// Llama 3.2's `llama3` rope scaling factor (low 1, high 4, original 8192).
    llama3_rope_factor: Option<f64>,
    rms_norm_eps: f64,
    /// Qwen2's q/k/v biases.
    qkv_bias: bool,
    bos: Option<u32>,
    eos: u32,
    tokenizer: &'static [u8],
}

const GPT2_VOCAB: usize = 50257;
const BERT_VOCAB: usize = 30522;
const ROBERTA_VOCAB: usize = 50265;
const EOS: u32 = 50256;

/// A GPT-2 with the real models' 1024-token context.
fn gpt2(n_layer: usize, n_head: usize, n_embd: usize) -> Shape {
    Shape::Gpt2 {
        n_layer,
        n_head,
        n_embd,
        n_positions: 1024,
    }
}

fn true_size(preset: Preset) -> Shape {
    match preset {
        Preset::Gpt2 => gpt2(12, 12, 768),
        Preset::Distilgpt2 => gpt2(6, 12, 768),
        Preset::Gpt2Medium => gpt2(24, 16, 1024),
        Preset::BertBaseUncased => Shape::Bert {
            layers: 12,
            heads: 12,
            hidden: 768,
            intermediate: 3072,
            max_positions: 512,
        },
        Preset::Smollm2_135m => smollm2(30, 9, 3, 576, 1536),
        Preset::Smollm2_360m => smollm2(32, 15, 5, 960, 2560),
        Preset::RobertaBase => Shape::Roberta,
        Preset::DistilbertBaseUncased => Shape::DistilBert,
        Preset::Qwen2_5_0_5b => Shape::Llama(LlamaShape {
            model_type: "qwen2",
            class: "Qwen2ForCausalLM",
            layers: 24,
            heads: 14,
            kv_heads: 2,
            hidden: 896,
            intermediate: 4864,
            vocab: 151_936,
            max_positions: 32768,
            rope_theta: 1_000_000.0,
            llama3_rope_factor: None,
            rms_norm_eps: 1e-6,
            qkv_bias: true,
            bos: None,
            eos: 151_643,
            tokenizer: QWEN2_5_TOKENIZER,
        }),
        Preset::Llama3_2_1b => Shape::Llama(LlamaShape {
            model_type: "llama",
            class: "LlamaForCausalLM",
            layers: 16,
            heads: 32,
            kv_heads: 8,
            hidden: 2048,
            intermediate: 8192,
            vocab: 128_256,
            max_positions: 131_072,
            rope_theta: 500_000.0,
            llama3_rope_factor: Some(32.0),
            rms_norm_eps: 1e-5,
            qkv_bias: false,
            bos: Some(128_000),
            eos: 128_001,
            tokenizer: LLAMA3_TOKENIZER,
        }),
    }
}

/// SmolLM2 (verified against the real 135M GGUF; 360M from its hub config).
fn smollm2(
    layers: usize,
    heads: usize,
    kv_heads: usize,
    hidden: usize,
    intermediate: usize,
) -> Shape {
    Shape::Llama(LlamaShape {
        model_type: "llama",
        class: "LlamaForCausalLM",
        layers,
        heads,
        kv_heads,
        hidden,
        intermediate,
        vocab: 49152,
        max_positions: 8192,
        rope_theta: 100_000.0,
        llama3_rope_factor: None,
        rms_norm_eps: 1e-5,
        qkv_bias: false,
        bos: Some(1),
        eos: 2,
        tokenizer: SMOLLM2_TOKENIZER,
    })
}

/// Small stand-ins: the vocabulary and context of the real models, few and narrow layers.
fn demo_size(preset: Preset) -> Shape {
    match preset {
        Preset::Gpt2 => gpt2(2, 2, 32),
        Preset::Distilgpt2 => gpt2(1, 2, 32),
        Preset::Gpt2Medium => gpt2(3, 3, 48),
        Preset::BertBaseUncased => Shape::Bert {
            layers: 2,
            heads: 2,
            hidden: 32,
            intermediate: 64,
            max_positions: 512,
        },
        // Benchmark presets only: `init-weights --demo` writes `DEMOS`.
        other => true_size(other),
    }
}

/// Writes a true-size random model of `preset` into `out`.
pub fn write_true_size(preset: Preset, out: &Path, dtype: WeightDtype) -> Result<(), ModelError> {
    write_folder(preset, true_size(preset), out, dtype)
}

/// Writes the small demo model of `preset` into `out`: in f16 it is what `model-weights/` ships.
pub fn write_demo(preset: Preset, out: &Path, dtype: WeightDtype) -> Result<(), ModelError> {
    write_folder(preset, demo_size(preset), out, dtype)
}

fn write_folder(
    preset: Preset,
    shape: Shape,
    out: &Path,
    dtype: WeightDtype,
) -> Result<(), ModelError> {
    let write_err = |path: &Path, e: &dyn std::fmt::Display| ModelError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(|e| write_err(out, &e))?;
    let mut rng = SplitMix64::new(preset.seed());
    let (config, tokenizer, tokenizer_config, tensors) = match shape {
        Shape::Gpt2 {
            n_layer,
            n_head,
            n_embd,
            n_positions,
        } => (
            json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "activation_function": "gelu_new",
                "vocab_size": GPT2_VOCAB,
                "n_positions": n_positions,
                "n_embd": n_embd,
                "n_layer": n_layer,
                "n_head": n_head,
                "n_inner": null,
                "layer_norm_epsilon": 1e-5,
                "initializer_range": 0.02,
                "bos_token_id": EOS,
                "eos_token_id": EOS,
                "tie_word_embeddings": true,
                "infergraph_note": "random weights made by `infergraph init-weights`: outputs are meaningless",
            }),
            GPT2_TOKENIZER,
            json!({
                "tokenizer_class": "GPT2Tokenizer",
                "model_max_length": n_positions,
                "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
            }),
            gpt2_tensors(&mut rng, n_layer, n_embd, n_positions),
        ),
        Shape::Bert {
            layers,
            heads,
            hidden,
            intermediate,
            max_positions,
        } => (
            json!({
                "architectures": ["BertForSequenceClassification"],
                "model_type": "bert",
                "hidden_act": "gelu",
                "vocab_size": BERT_VOCAB,
                "hidden_size": hidden,
                "num_hidden_layers": layers,
                "num_attention_heads": heads,
                "intermediate_size": intermediate,
                "max_position_embeddings": max_positions,
                "type_vocab_size": 2,
                "layer_norm_eps": 1e-12,
                "initializer_range": 0.02,
                "pad_token_id": 0,
                "infergraph_note": "random weights made by `infergraph init-weights`: outputs are meaningless",
            }),
            BERT_TOKENIZER,
            json!({
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": true,
                "model_max_length": max_positions,
            }),
            bert_tensors(&mut rng, layers, hidden, intermediate, max_positions),
        ),
        Shape::Roberta => (
            json!({
                "architectures": ["RobertaForSequenceClassification"],
                "model_type": "roberta",
                "hidden_act": "gelu",
                "vocab_size": ROBERTA_VOCAB,
                "hidden_size": 768,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "intermediate_size": 3072,
                "max_position_embeddings": 514,
                "type_vocab_size": 1,
                "layer_norm_eps": 1e-5,
                "initializer_range": 0.02,
                "pad_token_id": 1,
                "bos_token_id": 0,
                "eos_token_id": 2,
                "infergraph_note": "random weights made by `infergraph init-weights`: outputs are meaningless",
            }),
            ROBERTA_TOKENIZER,
            json!({
                "tokenizer_class": "RobertaTokenizer",
                "model_max_length": 512,
            }),
            roberta_tensors(&mut rng),
        ),
        Shape::DistilBert => (
            json!({
                "architectures": ["DistilBertForSequenceClassification"],
                "model_type": "distilbert",
                "activation": "gelu",
                "vocab_size": BERT_VOCAB,
                "dim": 768,
                "n_layers": 6,
                "n_heads": 12,
                "hidden_dim": 3072,
                "max_position_embeddings": 512,
                "sinusoidal_pos_embds": false,
                "initializer_range": 0.02,
                "pad_token_id": 0,
                "infergraph_note": "random weights made by `infergraph init-weights`: outputs are meaningless",
            }),
            BERT_TOKENIZER,
            json!({
                "tokenizer_class": "DistilBertTokenizer",
                "do_lower_case": true,
                "model_max_length": 512,
            }),
            distilbert_tensors(&mut rng),
        ),
        Shape::Llama(shape) => (
            json!({
                "architectures": [shape.class],
                "model_type": shape.model_type,
                "hidden_act": "silu",
                "vocab_size": shape.vocab,
                "hidden_size": shape.hidden,
                "intermediate_size": shape.intermediate,
                "num_hidden_layers": shape.layers,
                "num_attention_heads": shape.heads,
                "num_key_value_heads": shape.kv_heads,
                "max_position_embeddings": shape.max_positions,
                "rms_norm_eps": shape.rms_norm_eps,
                "rope_theta": shape.rope_theta,
                "rope_scaling": shape.llama3_rope_factor.map(|factor| json!({
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192,
                })),
                "tie_word_embeddings": true,
                "bos_token_id": shape.bos,
                "eos_token_id": shape.eos,
                "initializer_range": 0.02,
                "infergraph_note": "random weights made by `infergraph init-weights`: outputs are meaningless",
            }),
            shape.tokenizer,
            json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": shape.max_positions,
            }),
            llama_tensors(&mut rng, &shape),
        ),
    };
    let write_json = |name: &str, value: &serde_json::Value| {
        let path = out.join(name);
        // Keys sorted, as transformers writes them.
        let mut value = value.clone();
        value.sort_all_objects();
        let text = serde_json::to_string_pretty(&value).expect("json values serialize");
        std::fs::write(&path, text + "\n").map_err(|e| write_err(&path, &e))
    };
    write_json("config.json", &config)?;
    write_json("tokenizer_config.json", &tokenizer_config)?;
    let tokenizer_path = out.join("tokenizer.json");
    std::fs::write(&tokenizer_path, tokenizer).map_err(|e| write_err(&tokenizer_path, &e))?;
    let weights_path = out.join("model.safetensors");
    let views = tensors
        .into_iter()
        .map(|(name, shape, values)| (name, HostTensor::new(shape, &values, dtype)));
    // Written aside and renamed, so an interrupted run never leaves a truncated checkpoint.
    let partial = out.join("model.safetensors.partial");
    safetensors::serialize_to_file(views, None, &partial).map_err(|e| write_err(&partial, &e))?;
    std::fs::rename(&partial, &weights_path).map_err(|e| write_err(&weights_path, &e))
}

type NamedTensor = (String, Vec<usize>, Vec<f32>);

fn gpt2_tensors(
    rng: &mut SplitMix64,
    n_layer: usize,
    c: usize,
    positions: usize,
) -> Vec<NamedTensor> {
    let mut t = TensorMaker {
        rng,
        out: Vec::new(),
    };
    t.normal("transformer.wte.weight", vec![GPT2_VOCAB, c]);
    t.normal("transformer.wpe.weight", vec![positions, c]);
    for i in 0..n_layer {
        let p = format!("transformer.h.{i}");
        t.layer_norm(&format!("{p}.ln_1"), c);
        t.conv1d(&format!("{p}.attn.c_attn"), c, 3 * c);
        t.conv1d(&format!("{p}.attn.c_proj"), c, c);
        t.layer_norm(&format!("{p}.ln_2"), c);
        t.conv1d(&format!("{p}.mlp.c_fc"), c, 4 * c);
        t.conv1d(&format!("{p}.mlp.c_proj"), 4 * c, c);
    }
    t.layer_norm("transformer.ln_f", c);
    t.out
}

fn bert_tensors(
    rng: &mut SplitMix64,
    layers: usize,
    d: usize,
    ffn: usize,
    positions: usize,
) -> Vec<NamedTensor> {
    let mut t = TensorMaker {
        rng,
        out: Vec::new(),
    };
    t.normal(
        "bert.embeddings.word_embeddings.weight",
        vec![BERT_VOCAB, d],
    );
    t.normal(
        "bert.embeddings.position_embeddings.weight",
        vec![positions, d],
    );
    t.normal("bert.embeddings.token_type_embeddings.weight", vec![2, d]);
    t.layer_norm("bert.embeddings.LayerNorm", d);
    for i in 0..layers {
        t.bert_layer(&format!("bert.encoder.layer.{i}"), d, ffn);
    }
    t.linear("bert.pooler.dense", d, d);
    t.linear("classifier", d, 2);
    t.out
}

/// roberta-base's keys: BERT's under `roberta.`, one token type, no pooler, and its
/// two-layer head.
fn roberta_tensors(rng: &mut SplitMix64) -> Vec<NamedTensor> {
    let mut t = TensorMaker {
        rng,
        out: Vec::new(),
    };
    let d = 768;
    t.normal(
        "roberta.embeddings.word_embeddings.weight",
        vec![ROBERTA_VOCAB, d],
    );
    t.normal(
        "roberta.embeddings.position_embeddings.weight",
        vec![514, d],
    );
    t.normal(
        "roberta.embeddings.token_type_embeddings.weight",
        vec![1, d],
    );
    t.layer_norm("roberta.embeddings.LayerNorm", d);
    for i in 0..12 {
        t.bert_layer(&format!("roberta.encoder.layer.{i}"), d, 3072);
    }
    t.linear("classifier.dense", d, d);
    t.linear("classifier.out_proj", d, 2);
    t.out
}

/// distilbert-base-uncased's keys (`q_lin` … `lin2`), no token types, its head.
fn distilbert_tensors(rng: &mut SplitMix64) -> Vec<NamedTensor> {
    let mut t = TensorMaker {
        rng,
        out: Vec::new(),
    };
    let (d, ffn) = (768, 3072);
    t.normal(
        "distilbert.embeddings.word_embeddings.weight",
        vec![BERT_VOCAB, d],
    );
    t.normal(
        "distilbert.embeddings.position_embeddings.weight",
        vec![512, d],
    );
    t.layer_norm("distilbert.embeddings.LayerNorm", d);
    for i in 0..6 {
        let p = format!("distilbert.transformer.layer.{i}");
        for name in ["q_lin", "k_lin", "v_lin", "out_lin"] {
            t.linear(&format!("{p}.attention.{name}"), d, d);
        }
        t.layer_norm(&format!("{p}.sa_layer_norm"), d);
        t.linear(&format!("{p}.ffn.lin1"), d, ffn);
        t.linear(&format!("{p}.ffn.lin2"), ffn, d);
        t.layer_norm(&format!("{p}.output_layer_norm"), d);
    }
    t.linear("pre_classifier", d, d);
    t.linear("classifier", d, 2);
    t.out
}

fn llama_tensors(rng: &mut SplitMix64, shape: &LlamaShape) -> Vec<NamedTensor> {
    let mut t = TensorMaker {
        rng,
        out: Vec::new(),
    };
    let (c, i) = (shape.hidden, shape.intermediate);
    let d = c / shape.heads;
    let (q, kv) = (shape.heads * d, shape.kv_heads * d);
    t.normal("model.embed_tokens.weight", vec![shape.vocab, c]);
    for layer in 0..shape.layers {
        let p = format!("model.layers.{layer}");
        t.constant(&format!("{p}.input_layernorm.weight"), c, 1.0);
        for (name, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            let prefix = format!("{p}.self_attn.{name}");
            if shape.qkv_bias {
                t.linear(&prefix, c, out);
            } else {
                t.normal(&format!("{prefix}.weight"), vec![out, c]);
            }
        }
        t.normal(&format!("{p}.self_attn.o_proj.weight"), vec![c, q]);
        t.constant(&format!("{p}.post_attention_layernorm.weight"), c, 1.0);
        t.normal(&format!("{p}.mlp.gate_proj.weight"), vec![i, c]);
        t.normal(&format!("{p}.mlp.up_proj.weight"), vec![i, c]);
        t.normal(&format!("{p}.mlp.down_proj.weight"), vec![c, i]);
    }
    t.constant("model.norm.weight", c, 1.0);
    t.out
}

/// Fills tensors as transformers initialises them: N(0, 0.02) weights, zero biases,
/// unit LayerNorm scales.
struct TensorMaker<'a> {
    rng: &'a mut SplitMix64,
    out: Vec<NamedTensor>,
}

impl TensorMaker<'_> {
    fn normal(&mut self, name: &str, shape: Vec<usize>) {
        let n = shape.iter().product();
        let values = (0..n).map(|_| self.rng.normal() * 0.02).collect();
        self.out.push((name.to_string(), shape, values));
    }

    fn constant(&mut self, name: &str, n: usize, value: f32) {
        self.out.push((name.to_string(), vec![n], vec![value; n]));
    }

    /// A GPT-2 `Conv1D`: weight stored `[in, out]`.
    fn conv1d(&mut self, prefix: &str, d_in: usize, d_out: usize) {
        self.normal(&format!("{prefix}.weight"), vec![d_in, d_out]);
        self.constant(&format!("{prefix}.bias"), d_out, 0.0);
    }

    /// A PyTorch `nn.Linear`: weight stored `[out, in]`.
    fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize) {
        self.normal(&format!("{prefix}.weight"), vec![d_out, d_in]);
        self.constant(&format!("{prefix}.bias"), d_out, 0.0);
    }

    /// One BERT-style encoder layer (BERT's and RoBERTa's key names).
    fn bert_layer(&mut self, p: &str, d: usize, ffn: usize) {
        for name in ["query", "key", "value"] {
            self.linear(&format!("{p}.attention.self.{name}"), d, d);
        }
        self.linear(&format!("{p}.attention.output.dense"), d, d);
        self.layer_norm(&format!("{p}.attention.output.LayerNorm"), d);
        self.linear(&format!("{p}.intermediate.dense"), d, ffn);
        self.linear(&format!("{p}.output.dense"), ffn, d);
        self.layer_norm(&format!("{p}.output.LayerNorm"), d);
    }

    fn layer_norm(&mut self, prefix: &str, d: usize) {
        self.constant(&format!("{prefix}.weight"), d, 1.0);
        self.constant(&format!("{prefix}.bias"), d, 0.0);
    }
}

/// A tensor's bytes, ready for `safetensors::serialize_to_file`.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl HostTensor {
    fn new(shape: Vec<usize>, values: &[f32], dtype: WeightDtype) -> Self {
        let (dtype, bytes) = match dtype {
            WeightDtype::F32 => (
                Dtype::F32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            WeightDtype::F16 => (
                Dtype::F16,
                values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            WeightDtype::Bf16 => (
                Dtype::BF16,
                values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
        };
        Self {
            dtype,
            shape,
            bytes,
        }
    }
}

impl View for HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}
