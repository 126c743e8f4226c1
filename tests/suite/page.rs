//! The page at `/`, end to end in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`; `.ci/run` installs both). Screenshots land in `target/e2e/`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::server::{fixture_models, TestServer, SEED_GRAPH};
use serde_json::Value;

/// Runs `tests/e2e/page.mjs` against `server` (with `extra` arguments: a graph and a text),
/// saving `target/e2e/{screenshot}`; returns the script's JSON report and the screenshot.
fn run_page(server: &TestServer, screenshot: &str, extra: &[&str]) -> (Value, std::path::PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "needs Debian's chromium and `npm ci` in tests/e2e: run .ci/run once"
    );
    let artifacts = root.join("target/e2e");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join(screenshot);
    let output = Command::new("node")
        .current_dir(&e2e)
        .args(["page.mjs", &server.base, screenshot.to_str().unwrap()])
        .args(extra)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_slice(&output.stdout).expect("the script's JSON report");
    (report, screenshot)
}

#[test]
fn the_page_streams_three_generations_scores_them_and_draws_the_waterfall() {
    let server = TestServer::start(&fixture_models(), "");
    let (report, screenshot) = run_page(&server, "page.png", &[]);
    assert_eq!(
        report["models"],
        serde_json::json!(["gpt2", "distilgpt2", "gpt2-medium"])
    );
    let scores = report["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 3);
    assert!(scores
        .iter()
        .all(|s| (0.5..=1.0).contains(&s.as_f64().unwrap())));
    assert!(
        report["queueBars"].as_u64().unwrap() >= 6,
        "queue wait drawn for every step: {report}"
    );
    assert!(
        report["computeBars"].as_u64().unwrap() >= 6,
        "compute drawn for every step: {report}"
    );
    assert!(report["status"].as_str().unwrap().starts_with("Done"));
    assert_eq!(
        report["narrow"], true,
        "no horizontal scrolling on a phone-sized screen"
    );
    assert_eq!(report["errors"], serde_json::json!([]), "no script errors");
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}

/// A graph of the config's own, picked in the page: its steps' waterfall is drawn.
#[test]
fn the_page_runs_a_picked_graph_and_draws_its_steps_in_the_waterfall() {
    let by_mood = r#"
[[graphs]]
name = "by-mood"
  [[graphs.steps]]
  name = "mood"
  each = { classify = "bert-base-uncased" }
  [[graphs.steps]]
  name = "write"
  switch = [ { label = "LABEL_0", generate = "gpt2" }, { label = "LABEL_1", generate = "distilgpt2" } ]
  [[graphs.steps]]
  name = "score"
  each = { classify = "bert-base-uncased" }
"#;
    let server = TestServer::start(&fixture_models(), &format!("{SEED_GRAPH}{by_mood}"));
    let (report, screenshot) = run_page(&server, "page-graph.png", &["by-mood", "terrible"]);
    assert!(
        report["status"].as_str().unwrap().starts_with("Done"),
        "{report}"
    );
    assert_eq!(
        report["models"],
        serde_json::json!(["gpt2", "distilgpt2"]),
        "the graph's generators"
    );
    assert_eq!(
        report["filled"],
        serde_json::json!(["distilgpt2"]),
        "the branch taken streamed"
    );
    assert_eq!(report["scores"].as_array().unwrap().len(), 1);
    let diagram = report["diagram"].as_str().unwrap();
    assert!(
        diagram.contains("mood: each") && diagram.contains("write: switch"),
        "{diagram}"
    );
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("mood:") && notes.contains("→ distilgpt2"),
        "{notes}"
    );
    let rows: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    for step in ["step mood", "step write", "step score"] {
        assert!(rows.contains(&step), "{step} drawn: {rows:?}");
    }
    assert_eq!(report["stepBars"], 3);
    assert!(report["computeBars"].as_u64().unwrap() >= 3);
    assert_eq!(report["narrow"], true);
    assert_eq!(report["errors"], serde_json::json!([]), "no script errors");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
