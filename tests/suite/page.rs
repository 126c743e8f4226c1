//! The page at `/`, end to end in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`; `.ci/run` installs both). Screenshots land in `target/e2e/`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::server::{fixture_models, models_toml, TestServer, SEED_GRAPH};
use serde_json::{json, Value};

/// Runs `tests/e2e/page.mjs` against `server` (with `extra` arguments: a graph and a text,
/// and `key` to give the page when it asks), saving `target/e2e/{screenshot}`; returns the
/// script's JSON report and the screenshot.
fn run_page(
    server: &TestServer,
    screenshot: &str,
    extra: &[&str],
    key: Option<&str>,
) -> (Value, std::path::PathBuf) {
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
    let stdout = common::run_ok(
        "page.mjs",
        Command::new("node")
            .current_dir(&e2e)
            .args(["page.mjs", &server.base, screenshot.to_str().unwrap()])
            .args(extra)
            .env_remove("PAGE_KEY")
            .envs(key.map(|key| ("PAGE_KEY", key))),
    );
    let report = serde_json::from_slice(&stdout).expect("the script's JSON report");
    (report, screenshot)
}

#[test]
fn the_page_streams_three_generations_scores_them_and_draws_the_waterfall() {
    let server = TestServer::start(&fixture_models(), "");
    let (report, screenshot) = run_page(&server, "page.png", &[], None);
    assert_eq!(
        report["models"],
        json!(["gpt2", "distilgpt2", "gpt2-medium"])
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
    assert_eq!(report["waterfall"], "drawn");
    // Without keys on the server the page never asks for one nor sends one.
    assert_eq!(report["keyFormHidden"], true);
    assert!(
        report["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r[1] == "none"),
        "{report}"
    );
    assert_eq!(
        report["narrow"], true,
        "no horizontal scrolling on a phone-sized screen"
    );
    assert_eq!(report["errors"], json!([]), "no script errors");
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
    let (report, screenshot) = run_page(&server, "page-graph.png", &["by-mood", "terrible"], None);
    assert!(
        report["status"].as_str().unwrap().starts_with("Done"),
        "{report}"
    );
    assert_eq!(
        report["models"],
        json!(["gpt2", "distilgpt2"]),
        "the graph's generators"
    );
    assert_eq!(
        report["filled"],
        json!(["distilgpt2"]),
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
    assert_eq!(report["errors"], json!([]), "no script errors");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

/// With API keys on, the page loads without one, asks for it, refuses a wrong one with a
/// message and the form again, and with the right one streams as it does without keys.
#[test]
fn the_page_asks_for_a_key_refuses_a_wrong_one_and_streams_with_the_right_one() {
    const KEY: &str = "k-page-0123456789";
    let server = TestServer::start_with_env(
        &[("INFERGRAPH_API_KEYS", KEY)],
        &models_toml(&fixture_models()),
        "",
    );
    let (report, screenshot) = run_page(&server, "page-key.png", &[], Some(KEY));

    let form = &report["keyForm"];
    assert_eq!(form["type"], "password", "{report}");
    assert!(
        form["asked"].as_str().unwrap().contains("needs an API key"),
        "{report}"
    );
    assert_eq!(form["graphsBefore"], 0, "nothing is read without the key");
    assert!(
        form["refused"].as_str().unwrap().contains("not accepted"),
        "the wrong key is refused in words: {report}"
    );
    assert_eq!(
        form["emptied"], true,
        "the wrong key is not left in the form"
    );
    assert_eq!(
        form["checksCharacters"], true,
        "a space is stopped in the form"
    );
    assert_eq!(form["narrow"], true, "the form fits a phone-sized screen");
    assert_eq!(report["keyFormHidden"], true);

    // The calls: refused without a key and with the wrong one, then each with the key.
    let requests = report["requests"].as_array().unwrap();
    assert_eq!(
        requests[..3],
        [
            json!(["/v1/graphs", "none"]),
            json!(["/v1/graphs", "other"]),
            json!(["/v1/graphs", "key"])
        ],
        "{report}"
    );
    assert!(requests[3..].iter().all(|r| r[1] == "key"), "{report}");
    assert!(
        requests
            .iter()
            .any(|r| r[0].as_str().unwrap().starts_with("/v1/traces/")),
        "{report}"
    );
    assert_eq!(
        report["wsProtocol"], "infergraph",
        "the socket was let in on the key offered as a subprotocol"
    );
    assert_eq!(report["keyInSession"], KEY, "kept for the tab");
    assert_eq!(report["localItems"], 0, "nothing in localStorage");

    // The run itself, as without keys.
    assert_eq!(
        report["models"],
        json!(["gpt2", "distilgpt2", "gpt2-medium"])
    );
    assert_eq!(report["scores"].as_array().unwrap().len(), 3, "{report}");
    assert!(
        report["status"].as_str().unwrap().starts_with("Done"),
        "{report}"
    );
    // Traces answer admin keys only: a user's key is told so instead of a waterfall.
    let waterfall = report["waterfall"].as_str().unwrap();
    assert!(
        waterfall.starts_with("No waterfall") && waterfall.contains("admin keys only"),
        "{waterfall}"
    );
    assert_eq!(report["narrow"], true);
    assert_eq!(report["errors"], json!([]), "no script errors");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
