//! Lower-precision weights (`dtype`), measured against f32 on the transformers fixtures and
//! bounded here. The f32 parity tests (gpt2_parity, bert_parity) are the ground truth;
//! these bound how far each dtype may move from f32:
//!
//! | dtype | GPT-2: max |Δlogit| / f32 logit range (measured max) | Llama family: the same (measured max) | BERT: |Δscore| (measured max) |
//! |---|---|---|---|
//! | f16 | 1.5e-3 (6.1e-4) | 1.5e-3 (1.2e-3) | 5e-4 (9.4e-5) |
//! | bf16 | 1e-2 (4.1e-3) | 1.5e-2 (9.7e-3) | 3e-3 (8.5e-4) |
//! | int8 (per-channel) | 3e-2 (1.5e-2) | 4e-2 (2.7e-2) | 1e-2 (3.5e-3) |
//! | w8a8 (int8 weights per channel, activations per row, asymmetric) | 3e-2 (2.2e-2) | 4e-2 (3.3e-2) | 1e-2 (8.6e-3) |
//! | q4 (4-bit blocks of 32, a scale each, f32 activations) | 0.35 (0.24) | 0.5 (0.41) | 0.1 (2.6e-2) |
//! | w4a8 (q4's weights, activations int8 per block of 32) | 0.35 (0.24) | 0.5 (0.41) | 0.1 (2.4e-2) |
//!
//! (every fixture generator on every golden input, every position's logits; the BERT fixture
//! on its single-text inputs.) The Llama-family fixtures move further than GPT-2's: their
//! random weights are ten times larger than trained ones (initializer_range 0.2) and
//! qwen2-tiny's rows are 16 wide, so one int8 scale covers few, large values. Keeping the LM
//! head or `down_proj` (SwiGLU's outlier-prone input) out of w8a8 was tried: neither moved
//! the maximum by more than 10 %, so nothing was kept. Asymmetric activations (256 steps
//! over each row's own range, where the symmetric `max |x| / 127` had 255 over twice its
//! larger side) took the fixtures' relative RMS error down 5–15 % and the Llama-family
//! maximum from 4.5e-2 to 3.3e-2 (qwen3-tiny; the others under GPT-2's 3e-2), and the real
//! all-MiniLM-L6-v2's cosine error from 1.7e-2 to 5.6e-3 (embedder_parity). 4-bit blocks
//! quantized at load keep a scale and no offset (Q4_0's 4.5 bits a weight, not Q4_1's 5: the
//! seed graph's memory) and get least-squares refits of the scale. Against the offset blocks
//! with refits they replace, GPT-2's maximum rose from 0.18 to 0.24, the Llama family's fell
//! from 0.43 to 0.41, BERT's from 4.6e-2 to 2.6e-2 and the other encoders' moved both ways:
//! these maxima are a few outlying logits, while on Gaussian blocks the scale-only RMS error
//! is 13 % above the offset's. The real SmolLM2-135M-Instruct (gguf_real), whose golden is
//! f32 on its file's own 4-bit blocks, holds q4 within 1.7e-2 of its logit range (only the
//! int8 embedding moves it) with every input's top-5 and first token, but it turns the 8-bit
//! dtypes the other way, past GPT-2's 3e-2: requantized, int8 reaches 4.8e-2 of its range
//! there, since one int8 scale per output channel spans 576–1536 trained weights (its file's
//! blocks have one per 32), and w8a8 6.3e-2, its 8-bit activations costing that model about
//! 3e-2 by themselves (q4 against w4a8, the same weights: 1.7e-2 against 4.5e-2).
//!
//! The other encoder classifiers, every input (pairs and truncated ones included), every
//! label's score:
//!
//! | dtype | roberta-tiny | xlm-roberta-tiny (F16 checkpoint) | distilbert-tiny |
//! |---|---|---|---|
//! | f16 | 1e-3 (2.5e-4) | 5e-4 (0: its own weights) | 5e-4 (1.5e-4) |
//! | bf16 | 1.5e-2 (5.0e-3) | 1e-3 (1.2e-4) | 1e-2 (3.3e-3) |
//! | int8 | 5e-2 (1.8e-2) | 3e-3 (3.0e-4) | 3e-2 (1.1e-2) |
//! | w8a8 | 5e-2 (2.6e-2) | 3e-3 (5.9e-4) | 3e-2 (1.3e-2) |
//! | q4 | 0.25 (8.9e-2) | 2e-2 (2.7e-3) | 0.25 (8.0e-2) |
//! | w4a8 | 0.25 (7.9e-2) | 2e-2 (3.1e-3) | 0.25 (8.8e-2) |
//!
//! (Their tiny random weights, drawn with a 0.2 standard deviation, quantize worse than a
//! trained model's; the real all-MiniLM-L6-v2's cosines are bounded in embedder_parity.)

use crate::common;

use common::server::{fixture_models, serve_refuses, TestServer};
use common::*;
use infergraph::models::{self, Dtype};

/// (dtype, GPT-2 logit bound relative to the range, BERT score bound, Llama-family logit
/// bound relative to the range).
const BOUNDS: [(Dtype, f32, f32, f32); 6] = [
    (Dtype::F16, 1.5e-3, 5e-4, 1.5e-3),
    (Dtype::Bf16, 1e-2, 3e-3, 1.5e-2),
    (Dtype::Int8, 3e-2, 1e-2, 4e-2),
    (Dtype::W8a8, 3e-2, 1e-2, 4e-2),
    (Dtype::Q4, 0.35, 0.1, 0.5),
    (Dtype::W4a8, 0.35, 0.1, 0.5),
];

fn all_logits(generator: &models::Generator, ids: &[u32]) -> Vec<f32> {
    generator
        .model()
        .logits_all(ids)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn every_dtype_loads_the_fixtures_and_generates() {
    for name in GPT2_FIXTURES.into_iter().chain(LLAMA_FIXTURES) {
        for dtype in Dtype::ALL {
            let generator = models::load_generator_in(&fixture(name), &cpu(), dtype).unwrap();
            assert_eq!(generator.model().dtype(), dtype.as_str());
            let params = models::GenerationParams {
                max_new_tokens: 6,
                min_new_tokens: 6,
                ..Default::default()
            };
            let generation = generator.generate("Hello there", &params).unwrap();
            assert_eq!(generation.new_token_ids.len(), 6, "{name} {dtype}");
        }
    }
    for dtype in Dtype::ALL {
        let classifier = models::load_classifier_in(&fixture("bert-tiny"), &cpu(), dtype).unwrap();
        assert_eq!(classifier.model().dtype(), dtype.as_str());
        let result = classifier.classify("I have an idea!", None).unwrap();
        assert!(
            (0.5..=1.0).contains(&result.score),
            "{dtype}: {}",
            result.score
        );
    }
}

#[test]
fn generator_logits_stay_within_each_dtypes_bound_of_f32() {
    for name in GPT2_FIXTURES.into_iter().chain(LLAMA_FIXTURES) {
        let f32_model = models::load_generator(&fixture(name), &cpu()).unwrap();
        for (dtype, gpt2_bound, _, llama_bound) in BOUNDS {
            let bound = if GPT2_FIXTURES.contains(&name) {
                gpt2_bound
            } else {
                llama_bound
            };
            let model = models::load_generator_in(&fixture(name), &cpu(), dtype).unwrap();
            for input in golden_inputs(name) {
                let ids = u32s(&input["input_ids"]);
                let reference = all_logits(&f32_model, &ids);
                let logits = all_logits(&model, &ids);
                let relative = max_diff_over_range(&logits, &reference);
                println!("{name} {dtype}: max |Δlogit| / range = {relative:.2e}");
                assert!(relative < bound, "{name} {dtype}: {relative} ≥ {bound}");
            }
        }
    }
}

#[test]
fn bert_scores_stay_within_each_dtypes_bound_of_f32() {
    let reference = models::load_classifier(&fixture("bert-tiny"), &cpu()).unwrap();
    for (dtype, _, bound, _) in BOUNDS {
        let classifier = models::load_classifier_in(&fixture("bert-tiny"), &cpu(), dtype).unwrap();
        for input in golden_inputs("bert-tiny") {
            let Some(text) = input["text"].as_str() else {
                continue; // a pair
            };
            let expected = reference.classify(text, None).unwrap();
            let result = classifier.classify(text, None).unwrap();
            let delta = (result.scores[0] - expected.scores[0]).abs();
            println!("bert {dtype}: |Δscore| = {delta:.2e}");
            assert!(delta < bound, "{dtype} {text:?}: {delta} ≥ {bound}");
        }
    }
}

/// Per fixture, the score bound of f16, bf16, int8, w8a8, q4 and w4a8 (the table above).
const ENCODER_BOUNDS: [(&str, [f32; 6]); 3] = [
    ("roberta-tiny", [1e-3, 1.5e-2, 5e-2, 5e-2, 0.25, 0.25]),
    ("xlm-roberta-tiny", [5e-4, 1e-3, 3e-3, 3e-3, 2e-2, 2e-2]),
    ("distilbert-tiny", [5e-4, 1e-2, 3e-2, 3e-2, 0.25, 0.25]),
];

#[test]
fn encoder_classifiers_load_in_every_dtype_and_stay_within_each_dtypes_bound_of_f32() {
    for (name, bounds) in ENCODER_BOUNDS {
        let reference = models::load_classifier(&fixture(name), &cpu()).unwrap();
        for ((dtype, ..), bound) in BOUNDS.into_iter().zip(bounds) {
            let classifier = models::load_classifier_in(&fixture(name), &cpu(), dtype).unwrap();
            assert_eq!(classifier.model().dtype(), dtype.as_str());
            let mut worst = 0f32;
            for input in golden_inputs(name) {
                let (text, pair) = match &input["text"] {
                    serde_json::Value::Array(p) => (p[0].as_str().unwrap(), p[1].as_str()),
                    text => (text.as_str().unwrap(), None),
                };
                let expected = reference.classify(text, pair).unwrap();
                let result = classifier.classify(text, pair).unwrap();
                worst = worst.max(max_abs_diff(&result.scores, &expected.scores));
            }
            println!("{name} {dtype}: max |Δscore| = {worst:.2e}");
            assert!(worst < bound, "{name} {dtype}: {worst} ≥ {bound}");
        }
    }
}

#[test]
fn an_f16_checkpoint_loaded_as_f16_stays_in_half_precision() {
    // The demo models ship as F16 safetensors.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("model-weights/gpt2");
    let half = models::load_generator_in(&dir, &cpu(), Dtype::F16).unwrap();
    let full = models::load_generator(&dir, &cpu()).unwrap();
    assert_eq!(half.model().dtype(), "f16");
    // Two bytes a weight, against four (tiles pad the outputs to a multiple of 8).
    let (half, full) = (
        half.model().dense_weight_bytes(),
        full.model().dense_weight_bytes(),
    );
    let ratio = half as f64 / full as f64;
    assert!((0.5..0.501).contains(&ratio), "{half} / {full} = {ratio}");
    // And f16's packing of f16 bits is the checkpoint itself: logits equal an f32 load's
    // to float tolerance (the same weights, summed in another order).
    let ids = [464, 2068, 7586];
    let a = all_logits(
        &models::load_generator_in(&dir, &cpu(), Dtype::F16).unwrap(),
        &ids,
    );
    let b = all_logits(&models::load_generator(&dir, &cpu()).unwrap(), &ids);
    assert!(max_abs_diff(&a, &b) < 1e-3, "{}", max_abs_diff(&a, &b));
}

#[test]
fn init_weights_writes_bf16_checkpoints_that_load_as_bf16_bit_for_bit() {
    let out = tempfile::tempdir().unwrap();
    let run = |dtype: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_infergraph"))
            .args(["init-weights", "--demo", "--dtype", dtype, "--out"])
            .arg(out.path())
            .output()
            .unwrap()
    };
    let written = run("bf16");
    assert!(written.status.success(), "{written:?}");
    let dir = out.path().join("gpt2");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let wte = file.tensor("transformer.wte.weight").unwrap();
    assert_eq!(wte.dtype(), safetensors::Dtype::BF16);

    let half = models::load_generator_in(&dir, &cpu(), Dtype::Bf16).unwrap();
    let full = models::load_generator(&dir, &cpu()).unwrap();
    assert_eq!(half.model().dtype(), "bf16");
    let ratio = half.model().dense_weight_bytes() as f64 / full.model().dense_weight_bytes() as f64;
    assert!((0.5..0.501).contains(&ratio), "{ratio}");
    // bf16 bits packed as they are: the same weights as the f32 load, summed in another order.
    let ids = [464, 2068, 7586];
    let (a, b) = (all_logits(&half, &ids), all_logits(&full, &ids));
    assert!(max_abs_diff(&a, &b) < 1e-3, "{}", max_abs_diff(&a, &b));

    // int8 has no checkpoint format; clap names the ones there are.
    let refused = run("int8");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("possible values: f32, f16, bf16"),
        "{stderr}"
    );
}

#[test]
fn int8_quarters_the_weights() {
    let name = GPT2_FIXTURES[0];
    let int8 = models::load_generator_in(&fixture(name), &cpu(), Dtype::Int8).unwrap();
    let full = models::load_generator(&fixture(name), &cpu()).unwrap();
    let ratio = int8.model().dense_weight_bytes() as f64 / full.model().dense_weight_bytes() as f64;
    // One byte a weight plus one f32 scale per output channel.
    assert!((0.25..0.32).contains(&ratio), "{ratio}");
}

/// `[[models]]` TOML for the fixture graph, each model in `dtype`.
fn models_in(dtype: &str) -> String {
    fixture_models()
        .iter()
        .map(|(name, path, role)| {
            format!("\n[[models]]\nname = \"{name}\"\npath = {path:?}\nrole = \"{role}\"\ndtype = \"{dtype}\"\n")
        })
        .collect()
}

#[actix_web::test]
async fn the_server_runs_the_graph_in_the_configured_dtype_and_says_so() {
    for dtype in ["int8", "w8a8"] {
        let server = TestServer::start_toml(0, &models_in(dtype), "");
        let models: serde_json::Value = awc::Client::default()
            .get(server.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for model in models["models"].as_array().unwrap() {
            assert_eq!(model["dtype"], dtype, "{model}");
            // Which CPU kernels run is part of the device's name.
            if model["backend"] == "cpu" {
                let kernels = infergraph::models::kernels::simd_path();
                assert_eq!(model["device"], format!("flex (CPU kernels: {kernels})"));
            }
        }
        server.assert_serves_the_graph("I have an idea!").await;
    }
}

#[test]
fn a_dtype_the_backend_cannot_run_fails_at_start_naming_model_dtype_and_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    for dtype in ["int8", "bf16", "w8a8"] {
        std::fs::write(
            &path,
            format!(
                "backend = \"wgpu\"\n[server]\nport = 0\n{}",
                models_in(dtype)
            ),
        )
        .unwrap();
        let stderr = serve_refuses(&path, &[]);
        assert!(
            stderr.contains(&format!(
                "model \"gpt2\": dtype {dtype} cannot run on the wgpu backend"
            )),
            "{stderr}"
        );
    }
}

/// wgpu runs f16 in burn where the device has f16 shaders (lavapipe does), within f16's
/// bound of the CPU's f32; where it has none, loading says so.
#[test]
fn f16_on_wgpu_stays_within_its_bound_or_is_refused_by_name() {
    let selected = infergraph::backend::select(infergraph::backend::BackendChoice::Wgpu);
    assert!(
        !selected.name.contains("no adapter"),
        "no Vulkan adapter: install libvulkan1 and mesa-vulkan-drivers (.ci/run does)"
    );
    let device = burn::tensor::Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    let name = "gpt2-tiny-b";
    let loaded = models::load_generator_in(&fixture(name), &device, Dtype::F16);
    if !device.supports_dtype(burn::tensor::FloatDType::F16) {
        let error = loaded.unwrap_err().to_string();
        assert!(
            error.contains("dtype f16 cannot run on the wgpu backend"),
            "{error}"
        );
        return;
    }
    let generator = loaded.unwrap();
    assert_eq!(generator.model().dtype(), "f16");
    let reference = models::load_generator(&fixture(name), &cpu()).unwrap();
    let ids = u32s(&golden_inputs(name)[0]["input_ids"]);
    let expected = last_logits(reference.model(), &ids);
    let got = last_logits(generator.model(), &ids);
    let relative = max_diff_over_range(&got, &expected);
    assert!(relative < BOUNDS[0].1, "wgpu f16: {relative}");
}
