//! `/openapi.json` is the contract: schemathesis (installed by `.ci/run`) runs every one of its
//! checks against a real server with keys on, generating 150 requests per operation from the
//! document plus its stateful phase, and finds nothing.

use crate::common;

use common::server::{demo_models, TestServer};

/// Limits under which the schema is the whole truth: 64 characters are at most 256 GPT-2
/// tokens (4 bytes each), and 256 + 8 fit the demo models' 1024 positions, so every
/// schema-valid text is a valid prompt. A conversation renders each of its 64-character
/// texts (contents, call ids, names and arguments, the tools listed with their parameters)
/// with a few tokens of markup around it, and has no bound on how many it holds: the chat
/// routes' 422 for one past 4096 tokens counts as accepting (schemathesis.toml). 4096 holds
/// what generated cases carry (the largest seen rendered to 2971 tokens) while keeping the
/// longest prompt to about 11 s of SmolLM2's time alone (benches/chat_prefill.py), well
/// within the 120 s timeout even while other tests share the cores (a 1718-token case, 7 s
/// alone then, outran the 20 s this was, in CI).
const LIMITS: &str = "[limits]\nmax_input_chars = 64\nmax_input_tokens = 4096\nmax_new_tokens = 8\nrequest_timeout_ms = 120000\n";

/// An admin's key, so that the traces are fuzzed too rather than only refused (a user's key
/// gets the 403 the document states for them; tests/suite/auth.rs checks that).
const KEY: &str = "k-contract-0123456789";

#[test]
fn schemathesis_with_every_check_and_a_key_finds_no_fault() {
    // An embedder too, so that its routes have a model to take, and the real SmolLM2, so
    // that the chat routes have a generator with a chat template.
    let mut models = demo_models();
    models.push(("minilm", common::fixture("minilm-tiny"), "embedder"));
    models.push(common::real_smollm2());
    // With keys on, as a server reachable beyond loopback runs: every request carries the
    // key, and the `ignored_auth` check sends some without it, expecting the documented 401.
    let server = TestServer::start_with_env(
        &[
            ("INFERGRAPH_API_KEYS", "k-contract-user-0123"),
            ("INFERGRAPH_ADMIN_KEYS", KEY),
        ],
        &common::server::models_toml(&models),
        LIMITS,
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/run.sh");
    let output = std::process::Command::new("bash")
        .args([script, &server.base])
        .env("ST_API_KEY", KEY)
        // 150 fuzzed cases per operation (about 6500 requests, under ten minutes here).
        .env("ST_MAX_EXAMPLES", "150")
        .env("ST_TIME_LIMIT", "1200")
        .output()
        .expect("bash runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found faults:\n{report}"
    );
    assert!(report.contains("contract: PASSED"), "{report}");
}
