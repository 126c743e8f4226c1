//! The same parity checks on burn's wgpu backend. In CI there is no GPU: wgpu runs on Mesa's
//! software Vulkan (lavapipe, installed by `.ci/run`), where every new kernel shape costs
//! seconds of compilation, so this stays on the smallest fixtures and one process.

use crate::common;

use burn::tensor::{Device, DeviceKind};
use common::*;
use infergraph::backend::{self, BackendChoice};
use infergraph::models::{self, GenerationParams};

#[test]
fn gpt2_qwen3_and_bert_match_transformers_on_wgpu() {
    let selected = backend::select(BackendChoice::Wgpu);
    assert_eq!(selected.backend, "wgpu");
    assert!(
        !selected.name.contains("no adapter"),
        "no Vulkan adapter: install libvulkan1 and mesa-vulkan-drivers (.ci/run does)"
    );
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    eprintln!("wgpu adapter: {}", selected.name);

    let name = "gpt2-tiny-b";
    let generator = models::load_generator(&fixture(name), &device).unwrap();
    let inputs = golden_inputs(name);
    // Input 2 is a one-token prompt: its attention products are single rows and columns,
    // the shapes burn's fused matmul gets wrong elsewhere (tracel-ai/burn#5122).
    for index in [0, 2] {
        let ids = u32s(&inputs[index]["input_ids"]);
        let last = last_logits(generator.model(), &ids);
        let diff = max_abs_diff(&last, &golden_last_logits(name, index));
        assert!(
            diff < 1e-4,
            "wgpu GPT-2 input {index}: max |Δlogit| = {diff}"
        );
    }
    let input = &inputs[0];
    let params = GenerationParams {
        max_new_tokens: 16,
        ..GenerationParams::default()
    };
    let generation = generator
        .generate(input["text"].as_str().unwrap(), &params)
        .unwrap();
    assert_eq!(
        generation.new_token_ids,
        u32s(&input["generate"]["new_token_ids"])
    );
    assert_eq!(generation.text, input["generate"]["text"].as_str().unwrap());

    // The Llama family's ops (RMSNorm, rotary, grouped-query heads, Qwen3's q/k norms) in
    // burn, prefill and decode.
    let name = "qwen3-tiny";
    let generator = models::load_generator(&fixture(name), &device).unwrap();
    let input = &golden_inputs(name)[0];
    let ids = u32s(&input["input_ids"]);
    let diff = max_abs_diff(
        &last_logits(generator.model(), &ids),
        &golden_last_logits(name, 0),
    );
    assert!(diff < 1e-4, "wgpu Qwen3: max |Δlogit| = {diff}");
    let (new, _) = generator.generate_ids(&ids, &params).unwrap();
    assert_eq!(new, u32s(&input["generate"]["new_token_ids"]));

    let classifier = models::load_classifier(&fixture("bert-tiny"), &device).unwrap();
    for input in golden_inputs("bert-tiny").iter().take(2) {
        let result = classifier
            .classify(input["text"].as_str().unwrap(), None)
            .unwrap();
        let diff = max_abs_diff(&result.logits, &f32s(&input["logits"]));
        assert!(
            diff < 1e-5,
            "wgpu BERT logits: max |Δ| = {diff} ({:?})",
            result.logits
        );
        assert!(
            max_abs_diff(&result.scores, &f32s(&input["softmax"])) < 1e-5,
            "wgpu BERT scores"
        );
        assert_eq!(result.label, input["pipeline"]["label"].as_str().unwrap());
    }
}

#[test]
fn roberta_xlm_roberta_distilbert_and_an_embedder_match_transformers_on_wgpu() {
    let selected = backend::select(BackendChoice::Wgpu);
    assert!(
        !selected.name.contains("no adapter"),
        "no Vulkan adapter: install libvulkan1 and mesa-vulkan-drivers (.ci/run does)"
    );
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    for name in ["roberta-tiny", "xlm-roberta-tiny", "distilbert-tiny"] {
        let classifier = models::load_classifier(&fixture(name), &device).unwrap();
        let inputs = golden_inputs(name);
        // Two inputs of different lengths in one padded batch (a pair where the golden has one).
        let items: Vec<(&str, Option<&str>)> = inputs[..2]
            .iter()
            .map(|input| match &input["text"] {
                serde_json::Value::Array(pair) => {
                    (pair[0].as_str().unwrap(), Some(pair[1].as_str().unwrap()))
                }
                text => (text.as_str().unwrap(), None),
            })
            .collect();
        for (result, input) in classifier
            .classify_batch(&items)
            .unwrap()
            .iter()
            .zip(&inputs)
        {
            let diff = max_abs_diff(&result.logits, &f32s(&input["logits"]));
            assert!(diff < 1e-5, "wgpu {name} logits: max |Δ| = {diff}");
            assert_eq!(result.label, input["pipeline"]["label"].as_str().unwrap());
        }
    }
    let embedder =
        models::load_embedder_in(&fixture("minilm-tiny"), &device, models::Dtype::F32, None)
            .unwrap();
    let inputs = golden_inputs("minilm-tiny");
    let texts: Vec<&str> = inputs[..2]
        .iter()
        .map(|i| i["text"].as_str().unwrap())
        .collect();
    for (result, input) in embedder.embed_batch(&texts).unwrap().iter().zip(&inputs) {
        let diff = max_abs_diff(&result.embedding, &f32s(&input["embedding"]));
        assert!(diff < 1e-5, "wgpu embedding: max |Δ| = {diff}");
    }
}
