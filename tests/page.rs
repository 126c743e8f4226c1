//! The page at `/`, end to end in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`; `.ci/run` installs both). Screenshots land in `target/e2e/`.

mod common;

use std::path::Path;
use std::process::Command;

use common::server::{fixture_models, TestServer};
use serde_json::Value;

#[test]
fn the_page_streams_three_generations_scores_them_and_draws_the_waterfall() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "needs Debian's chromium and `npm ci` in tests/e2e: run .ci/run once"
    );
    let artifacts = root.join("target/e2e");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("page.png");

    let server = TestServer::start(&fixture_models(), "");
    let output = Command::new("node")
        .current_dir(&e2e)
        .args(["page.mjs", &server.base, screenshot.to_str().unwrap()])
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("the script's JSON report");
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
