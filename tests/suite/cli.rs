//! The `infergraph` binary, as users and scripts call it.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn infergraph(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_infergraph"))
        .args(args)
        .env("INFERGRAPH_BACKEND", "cpu")
        .output()
        .expect("binary runs")
}

fn json_stdout(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

/// `generate --json` with `extra` arguments on a golden input of gpt2-tiny-c: the input and
/// what was printed.
fn generate_on_a_golden_input(extra: &[&str]) -> (Value, Value) {
    let model = fixture("gpt2-tiny-c");
    let input = golden_inputs("gpt2-tiny-c")[1].clone();
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        input["text"].as_str().unwrap(),
        "--json",
    ];
    args.extend(extra);
    let out = json_stdout(&infergraph(&args));
    (input, out)
}

#[test]
fn generate_json_prints_the_greedy_continuation() {
    let (input, out) = generate_on_a_golden_input(&[]);
    assert_eq!(out["prompt_ids"], input["input_ids"]);
    assert_eq!(out["new_token_ids"], input["generate"]["new_token_ids"]);
    assert_eq!(out["text"], input["generate"]["text"]);
    assert_eq!(out["new_text"], input["generate"]["new_text"]);
    assert_eq!(out["finish_reason"], "length");
}

#[test]
fn classify_json_prints_logits_scores_and_label() {
    let model = fixture("bert-tiny");
    let input = &golden_inputs("bert-tiny")[1];
    let out = json_stdout(&infergraph(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        "--text",
        input["text"].as_str().unwrap(),
        "--json",
    ]));
    assert_eq!(out["input_ids"], input["input_ids"]);
    assert!(max_abs_diff(&f32s(&out["logits"]), &f32s(&input["logits"])) < 1e-5);
    assert!(max_abs_diff(&f32s(&out["scores"]), &f32s(&input["softmax"])) < 1e-5);
    assert_eq!(out["label"], input["pipeline"]["label"]);
}

#[test]
fn a_bad_model_folder_exits_non_zero_with_the_reason() {
    let output = infergraph(&["classify", "--model", "/nonexistent/model", "--text", "hi"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/model") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_backend_is_refused() {
    let model = fixture("bert-tiny");
    let output = infergraph(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "hi",
        "--backend",
        "tpu",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown backend \"tpu\""));
}

/// `infergraph health` as the image's healthcheck runs it: on the config's own port.
fn health(config: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_infergraph"))
        .args(["health", "--config", config.to_str().unwrap()])
        .env_remove("INFERGRAPH_HOST")
        .env_remove("INFERGRAPH_PORT")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn health_asks_the_port_the_config_names_and_fails_when_nothing_answers_there() {
    let mut server = common::server::TestServer::start(&common::server::fixture_models(), "");
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let models = common::server::models_toml(&common::server::fixture_models());
    std::fs::write(
        &config,
        format!("[server]\nhost = \"127.0.0.1\"\nport = {port}\n{models}"),
    )
    .unwrap();
    let up = health(&config, &[]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(String::from_utf8_lossy(&up.stdout).contains("200"));
    // The environment overrides the file for `health` as for `serve`.
    let elsewhere = common::server::free_port().to_string();
    let moved = health(&config, &[("INFERGRAPH_PORT", &elsewhere)]);
    assert!(!moved.status.success());
    assert!(String::from_utf8_lossy(&moved.stderr).contains(&elsewhere));
    server.kill();
    assert!(!health(&config, &[]).status.success());
}

#[test]
fn generate_with_a_json_schema_ends_on_one_of_its_values_and_refuses_one_it_cannot_keep_to() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("answer.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "required": ["ok", "kind"],
            "properties": {"ok": {"type": "boolean"}, "kind": {"enum": ["cat", "dog"]}}}"#,
    )
    .unwrap();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("model-weights/gpt2");
    let out = json_stdout(&infergraph(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "JSON:",
        "--json-schema",
        schema.to_str().unwrap(),
        "--max-new-tokens",
        "400",
        "--temperature",
        "1",
        "--seed",
        "7",
        "--json",
    ]));
    // At most ~320 bytes (nine gaps of 32 white-space bytes at most, and the value): each
    // token writes one at least, so the random model must end within its budget.
    assert_eq!(out["finish_reason"], "eos", "{out}");
    let value: Value = serde_json::from_str(out["new_text"].as_str().unwrap()).unwrap();
    assert!(value["ok"].is_boolean() && ["cat", "dog"].contains(&value["kind"].as_str().unwrap()));

    std::fs::write(&schema, r#"{"type": "string", "format": "email"}"#).unwrap();
    let refused = infergraph(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Hi",
        "--json-schema",
        schema.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("\"format\" is not supported"), "{stderr}");
}

#[test]
fn generate_with_logprobs_prints_each_tokens_with_its_alternatives() {
    let (_, out) = generate_on_a_golden_input(&["--logprobs", "3"]);
    let steps = out["logprobs"].as_array().unwrap();
    assert_eq!(steps.len(), out["new_token_ids"].as_array().unwrap().len());
    for (step, id) in steps.iter().zip(out["new_token_ids"].as_array().unwrap()) {
        // Greedy: the chosen token is the most likely one.
        assert_eq!(&step["token_id"], id);
        let top = step["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token_id"], step["token_id"]);
        assert_eq!(top[0]["logprob"], step["logprob"]);
        assert!(step["logprob"].as_f64().unwrap() <= 0.0);
    }
    let model = fixture("gpt2-tiny-c");
    let refused = infergraph(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Hi",
        "--logprobs",
        "21",
    ]);
    assert!(!refused.status.success());
}
