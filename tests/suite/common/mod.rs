//! Shared by the integration tests: fixture paths, golden files, and comparisons.

pub mod prometheus;
pub mod server;
pub mod tensors;
pub mod ws;

use std::path::PathBuf;

use burn::tensor::Device;
use infergraph::engine::{CancelToken, GenerationEngine};
use infergraph::models::GenerationParams;
use serde_json::Value;

pub const GPT2_FIXTURES: [&str; 3] = ["gpt2-tiny-a", "gpt2-tiny-b", "gpt2-tiny-c"];
pub const LLAMA_FIXTURES: [&str; 4] = ["llama-tiny", "mistral-tiny", "qwen2-tiny", "qwen3-tiny"];

/// A graph server whose generator `name` is served by `node` (another server) and whose
/// classifier is bert-tiny, once the node has answered its probe.
pub fn graph_with_generator_on(node: &server::TestServer, name: &str) -> server::TestServer {
    let models = format!(
        "\n[[models]]\nname = {name:?}\nurl = \"{}\"\nrole = \"generator\"\n\n[[models]]\nname = \"bert\"\npath = {:?}\nrole = \"classifier\"\n",
        node.base,
        fixture("bert-tiny"),
    );
    let graph = server::TestServer::start_toml(0, &models, "");
    wait_until(
        "the node is ready",
        std::time::Duration::from_secs(30),
        || graph.is_ready(),
    );
    graph
}

/// The real SmolLM2-135M-Instruct GGUF as the generator `smollm2`.
pub fn real_smollm2() -> server::ModelEntry {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/real-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        file.is_file(),
        "{} is missing: run tests/fixtures/real/fetch-smollm2-135m-instruct.sh (.ci/run does)",
        file.display()
    );
    ("smollm2", file, "generator")
}

/// Runs `tests/openai/{script}` (the official `openai` client, installed by `.ci/run`) with
/// `args`; fails the test with its output unless it succeeds, and returns its stdout.
pub fn openai_check(script: &str, args: &[&str]) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openai")
        .join(script);
    run_ok(
        script,
        std::process::Command::new("python3").arg(path).args(args),
    )
}

/// Runs `command`; fails the test naming `what`, with the command's output, unless it
/// succeeds, and returns its stdout.
pub fn run_ok(what: &str, command: &mut std::process::Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

pub fn golden(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("golden.json")).expect("golden.json");
    serde_json::from_str(&text).expect("golden.json parses")
}

pub fn golden_inputs(name: &str) -> Vec<Value> {
    golden(name)["inputs"].as_array().expect("inputs").clone()
}

/// Full last-position logits of input `index`, from `golden_logits.safetensors`.
pub fn golden_last_logits(name: &str, index: usize) -> Vec<f32> {
    let bytes =
        std::fs::read(fixture(name).join("golden_logits.safetensors")).expect("golden logits");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let view = file
        .tensor(&format!("last_logits.{index}"))
        .expect("tensor present");
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn u32s(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_u64().expect("integer") as u32)
        .collect()
}

pub fn f32s(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The largest `|got − reference|` as a share of `reference`'s range (largest − smallest):
/// how logit errors are compared across models whose logits spread differently.
pub fn max_diff_over_range(got: &[f32], reference: &[f32]) -> f32 {
    let range = reference.iter().copied().fold(f32::MIN, f32::max)
        - reference.iter().copied().fold(f32::MAX, f32::min);
    max_abs_diff(got, reference) / range
}

pub fn logsumexp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row
        .iter()
        .map(|v| ((v - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32
}

pub fn cpu() -> Device {
    Device::flex()
}

/// Waits until `condition` holds, checking often; fails the test after `timeout`. Used to
/// wait for an engine state, never as a proof in itself.
pub fn wait_until(what: &str, timeout: std::time::Duration, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A generator loaded from the embedded demo models (room for 1000-token generations).
pub fn demo_generator(name: &str) -> infergraph::models::Generator {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("model-weights")
        .join(name);
    infergraph::models::load_generator(&dir, &cpu()).expect("demo model loads")
}

/// The logits at the last position of `ids`, from a full forward without a cache.
pub fn last_logits(model: &dyn infergraph::models::CausalLm, ids: &[u32]) -> Vec<f32> {
    let logits = model.logits_all(ids).unwrap();
    let [t, v] = logits.dims();
    logits
        .slice([t - 1..t, 0..v])
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

/// A generation long enough to hold its slot until cancelled (1000 tokens, EOS suppressed).
pub fn slot_holder() -> GenerationParams {
    GenerationParams {
        max_new_tokens: 1000,
        min_new_tokens: 1000,
        ..Default::default()
    }
}

/// Where a generation engine's answer to one request arrives.
pub type Answer = tokio::sync::oneshot::Receiver<infergraph::engine::generation::Reply>;

/// Queues `prompt` on `engine`, cancelled through `cancel`, outside any trace.
pub fn submit(
    engine: &GenerationEngine,
    prompt: &str,
    params: GenerationParams,
    cancel: &CancelToken,
) -> Answer {
    engine
        .submit(
            prompt.to_string(),
            params,
            cancel.clone(),
            tracing::Span::none(),
        )
        .expect("the engine accepts the request")
}

/// Queues a slot holder and waits until the engine has taken it into its batch.
pub fn hold_a_slot(engine: &GenerationEngine, cancel: &CancelToken) -> Answer {
    use std::sync::atomic::Ordering;
    let admitted = engine.stats().admitted.load(Ordering::Acquire);
    let answer = submit(engine, "I have an idea!", slot_holder(), cancel);
    wait_until(
        "the slot holder runs",
        std::time::Duration::from_secs(30),
        || engine.stats().admitted.load(Ordering::Acquire) > admitted,
    );
    answer
}

/// The `data:` of each SSE event in `text` (the final `[DONE]` left out).
pub fn sse_data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// A golden's `messages` (`[{role, content}]`) as a conversation.
pub fn chat_messages(value: &Value) -> Vec<infergraph::models::chat::ChatMessage> {
    value["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            infergraph::models::chat::ChatMessage::new(
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap(),
            )
        })
        .collect()
}

/// Each answer has its input's greedy tokens and text from transformers.
pub fn assert_greedy_goldens(inputs: &[serde_json::Value], answers: Vec<Answer>) {
    for (input, answer) in inputs.iter().zip(answers) {
        let (generation, _) = answer.blocking_recv().unwrap().unwrap();
        assert_eq!(
            generation.new_token_ids,
            u32s(&input["generate"]["new_token_ids"]),
            "{}",
            input["text"]
        );
        assert_eq!(generation.text, input["generate"]["text"].as_str().unwrap());
    }
}
