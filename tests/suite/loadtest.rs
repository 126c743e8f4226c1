//! `infergraph loadtest` against the tiny fixture models: every request is answered and the
//! JSON report has every figure.

use crate::common;

use std::process::Command;

use common::server::{fixture_models, models_toml, TestServer, SEED_GRAPH};
use serde_json::Value;

fn loadtest(args: &[&str]) -> Value {
    loadtest_with_key(None, args)
}

/// `loadtest` with `INFERGRAPH_API_KEY` set to `key` (or unset).
fn loadtest_with_key(key: Option<&str>, args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_infergraph"));
    command.env_remove("INFERGRAPH_API_KEY");
    if let Some(key) = key {
        command.env("INFERGRAPH_API_KEY", key);
    }
    let stdout = common::run_ok(
        "loadtest",
        command
            .arg("loadtest")
            .args(args)
            .args(["--json", "--max-new-tokens", "6"]),
    );
    serde_json::from_slice(&stdout).expect("one JSON report")
}

/// Every model of the fixture graph, as the report lists its actors.
const ALL: [&str; 4] = ["gpt2", "distilgpt2", "gpt2-medium", "bert-base-uncased"];

/// Checks every figure of `report`; the actors in `worked` carried the load, the others none.
fn check_report(report: &Value, requests: u64, streaming: bool, worked: &[&str]) {
    assert_eq!(report["requests"], requests, "{report}");
    assert_eq!(
        report["ok"], requests,
        "every request is answered: {report}"
    );
    assert_eq!(report["errors"], serde_json::json!({}));
    for figure in ["elapsed_s", "requests_per_s", "generated_tokens_per_s"] {
        assert!(report[figure].as_f64().unwrap() > 0.0, "{figure}");
    }
    let percentiles = |name: &str| {
        let p = &report[name];
        let values: Vec<f64> = ["p50", "p90", "p99", "max"]
            .iter()
            .map(|k| p[k].as_f64().unwrap())
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]) && values[0] >= 0.0,
            "{name}: {p}"
        );
    };
    percentiles("latency_ms");
    if streaming {
        percentiles("ttft_ms");
        percentiles("inter_token_ms");
    } else {
        assert!(report["ttft_ms"].is_null());
    }
    let actors = report["actors"].as_array().unwrap();
    let names: Vec<&str> = actors
        .iter()
        .map(|a| a["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALL);
    for actor in actors {
        for figure in [
            "queue_depth_max",
            "queue_depth_mean",
            "busy_percent",
            "mean_batch_size",
        ] {
            assert!(actor[figure].as_f64().unwrap() >= 0.0, "{figure}: {actor}");
        }
        let batch = actor["mean_batch_size"].as_f64().unwrap();
        if worked.contains(&actor["model"].as_str().unwrap()) {
            assert!(batch >= 1.0, "the actor worked: {actor}");
        } else {
            assert_eq!(batch, 0.0, "the actor was left alone: {actor}");
        }
    }
}

/// A config of the fixture graph in `dir`, for the in-process target.
fn fixture_config(dir: &tempfile::TempDir) -> String {
    fixture_config_with(dir, "")
}

/// As `fixture_config`, with `extra` TOML (say `[[graphs]]`) before the models.
fn fixture_config_with(dir: &tempfile::TempDir, extra: &str) -> String {
    let config = dir.path().join("config.toml");
    let mut text = format!("backend = \"cpu\"\n{extra}");
    for (name, path, role) in fixture_models() {
        text += &format!("[[models]]\nname = \"{name}\"\npath = {path:?}\nrole = \"{role}\"\n");
    }
    std::fs::write(&config, text).unwrap();
    config.to_str().unwrap().to_string()
}

#[test]
fn the_actor_target_drives_the_coordinator_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let report = loadtest(&[
        "--target",
        "actor",
        "--config",
        &fixture_config(&dir),
        "--requests",
        "8",
        "--concurrency",
        "4",
    ]);
    assert_eq!(report["target"], "actor");
    check_report(&report, 8, false, &ALL);
}

#[test]
fn the_http_and_ws_targets_drive_a_running_server() {
    let server = TestServer::start(&fixture_models(), "");
    let report = loadtest(&[
        "--target",
        "http",
        &server.base,
        "--requests",
        "8",
        "--concurrency",
        "4",
    ]);
    check_report(&report, 8, false, &ALL);
    let report = loadtest(&[
        "--target",
        "ws",
        &server.url("/v1/graph/ws"),
        "--requests",
        "6",
        "--concurrency",
        "3",
    ]);
    check_report(&report, 6, true, &ALL);
}

#[test]
fn the_model_option_drives_one_actor_in_process_and_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let report = loadtest(&[
        "--target",
        "actor",
        "--config",
        &fixture_config(&dir),
        "--model",
        "gpt2",
        "--requests",
        "8",
        "--concurrency",
        "4",
    ]);
    assert_eq!(
        (&report["target"], &report["model"]),
        (&"actor".into(), &"gpt2".into())
    );
    check_report(&report, 8, false, &["gpt2"]);

    let server = TestServer::start(&fixture_models(), "");
    let report = loadtest(&[
        "--target",
        "http",
        &server.base,
        "--model",
        "gpt2",
        "--requests",
        "8",
        "--concurrency",
        "4",
    ]);
    assert_eq!(report["model"], "gpt2");
    check_report(&report, 8, false, &["gpt2"]);
    let engines = server.engines();
    let gpt2 = &engines["engines"][0];
    assert_eq!(
        (&gpt2["model"], gpt2["completed"].as_u64()),
        (&"gpt2".into(), Some(8)),
        "every request reached /v1/models/gpt2/generate"
    );
}

#[test]
fn an_open_loop_run_at_a_fixed_rate_is_bounded_by_its_duration() {
    let server = TestServer::start(&fixture_models(), "");
    let report = loadtest(&[
        "--target",
        "http",
        &server.base,
        "--rate",
        "20",
        "--duration",
        "0.5",
        "--concurrency",
        "4",
    ]);
    let requests = report["requests"].as_u64().unwrap();
    assert!(
        (5..=12).contains(&requests),
        "about 10 requests in half a second at 20/s: {requests}"
    );
    assert_eq!(report["ok"], requests);
}

/// A graph that calls only gpt2 and the classifier (after `SEED_GRAPH`, the default).
const GPT2_ONLY: &str = r#"
[[graphs]]
name = "gpt2-only"
  [[graphs.steps]]
  each = { generate = "gpt2" }
  [[graphs.steps]]
  each = { classify = "bert-base-uncased" }
"#;

#[test]
fn the_graph_option_drives_a_configured_graph_on_every_target() {
    let dir = tempfile::tempdir().unwrap();
    let graphs = format!("{SEED_GRAPH}{GPT2_ONLY}");
    let config = fixture_config_with(&dir, &graphs);
    let worked = ["gpt2", "bert-base-uncased"];
    let graph = [
        "--graph",
        "gpt2-only",
        "--requests",
        "6",
        "--concurrency",
        "3",
    ];
    let report = loadtest(&[&["--target", "actor", "--config", &config][..], &graph].concat());
    assert_eq!(report["graph"], "gpt2-only");
    check_report(&report, 6, false, &worked);

    let server = TestServer::start(&fixture_models(), &graphs);
    let report = loadtest(&[&["--target", "http", &server.base][..], &graph].concat());
    check_report(&report, 6, false, &worked);
    assert_eq!(
        (report["generated_tokens_per_s"].as_f64().unwrap()
            * report["elapsed_s"].as_f64().unwrap())
        .round(),
        36.0,
        "six tokens from each request's one generation"
    );
    let url = server.url("/v1/graph/ws");
    let report = loadtest(&[&["--target", "ws", &url][..], &graph].concat());
    check_report(&report, 6, true, &worked);

    let output = Command::new(env!("CARGO_BIN_EXE_infergraph"))
        .args([
            "loadtest", "--target", "actor", "--config", &config, "--graph", "nope",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--graph \"nope\""));
}

#[test]
fn against_a_server_with_keys_it_sends_infergraph_api_key_over_http_and_ws() {
    let key = "loadtest-key-0123456789";
    let server = TestServer::start_with_env(
        &[("INFERGRAPH_API_KEYS", key)],
        &models_toml(&fixture_models()),
        "",
    );
    let http = [
        "--target",
        "http",
        &server.base,
        "--requests",
        "4",
        "--concurrency",
        "2",
    ];
    check_report(&loadtest_with_key(Some(key), &http), 4, false, &ALL);
    let ws_url = server.url("/v1/graph/ws");
    let ws = [
        "--target",
        "ws",
        &ws_url,
        "--requests",
        "3",
        "--concurrency",
        "3",
    ];
    check_report(&loadtest_with_key(Some(key), &ws), 3, true, &ALL);
    // Without it every request is refused, and the report says why.
    let refused = loadtest_with_key(None, &http);
    assert_eq!(refused["ok"], 0, "{refused}");
    assert_eq!(refused["errors"]["unauthorized"], 4, "{refused}");
    let refused = loadtest_with_key(None, &ws);
    assert_eq!(refused["errors"]["unauthorized"], 3, "{refused}");
}
