//! Graphs with `embed` steps and a RoBERTa classifier: an embed call scores each item by the
//! cosine similarity of its text's embedding to the request's (label `similarity`), so
//! `select` and `switch` on scores work on it; the graph answers, streams and traces; a
//! misconfigured embed step fails at start naming the graph, the step and the key.

use crate::common;

use common::server::{models_toml, TestServer};
use common::*;
use infergraph::config::Config;
use infergraph::models::embedder::cosine;
use serde_json::{json, Value};

const GRAPHS: &str = r#"
[[graphs]]
name = "on-topic"
  [[graphs.steps]]
  name = "write"
  parallel = { generate = ["gpt2", "distilgpt2"] }
  [[graphs.steps]]
  name = "relevance"
  each = { embed = "minilm" }
  [[graphs.steps]]
  name = "closest"
  select = "highest_score"
  [[graphs.steps]]
  name = "mood"
  each = { classify = "roberta" }

[[graphs]]
name = "by-similarity"
  [[graphs.steps]]
  name = "self"
  each = { embed = "minilm" }
  [[graphs.steps]]
  name = "route"
  switch = [ { score_above = 0.99, generate = "gpt2" } ]
  otherwise = { generate = "distilgpt2" }
"#;

fn server() -> TestServer {
    let models = [
        ("gpt2", fixture("gpt2-tiny-a"), "generator"),
        ("distilgpt2", fixture("gpt2-tiny-b"), "generator"),
        ("roberta", fixture("roberta-tiny"), "classifier"),
        ("minilm", fixture("minilm-tiny"), "embedder"),
    ];
    TestServer::start_toml(0, &models_toml(&models), GRAPHS)
}

async fn embedding(server: &TestServer, text: &str) -> Vec<f32> {
    let (status, answer) = server
        .post_json("/v1/models/minilm/embed", &json!({"text": text}))
        .await;
    assert_eq!(status, 200, "{answer}");
    f32s(&answer["results"][0]["embedding"])
}

#[actix_web::test]
async fn an_embed_step_scores_each_text_by_its_similarity_to_the_request_and_select_keeps_the_closest(
) {
    let server = server();
    let text = "I have an idea!";
    let (status, answer) = server
        .post_json(
            "/v1/graphs/on-topic",
            &json!({"text": text, "max_new_tokens": 4}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let request = embedding(&server, text).await;
    let relevance = &answer["steps"][1];
    assert_eq!(relevance["name"], "relevance");
    let scored = relevance["results"].as_array().unwrap();
    assert_eq!(scored.len(), 2);
    let mut best = (f32::MIN, String::new());
    for result in scored {
        assert_eq!(result["label"], "similarity");
        let generated = result["generated"].as_str().unwrap();
        let expected = cosine(&request, &embedding(&server, generated).await);
        let score = result["score"].as_f64().unwrap() as f32;
        assert!(
            (score - expected).abs() < 1e-5,
            "{generated:?}: {score} vs {expected}"
        );
        if score > best.0 {
            best = (score, generated.to_string());
        }
    }
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0]["generated"],
        best.1.as_str(),
        "select kept the closest"
    );
    let label = results[0]["label"].as_str().unwrap();
    assert!(
        ["negative", "neutral", "positive"].contains(&label),
        "the RoBERTa classifier's label: {label}"
    );
}

#[actix_web::test]
async fn a_switch_routes_on_an_embed_steps_score() {
    let server = server();
    // The request's text against itself: cosine 1.
    let (status, answer) = server
        .post_json(
            "/v1/graphs/by-similarity",
            &json!({"text": "Hello there", "max_new_tokens": 2}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let score = answer["steps"][0]["results"][0]["score"].as_f64().unwrap();
    assert!((score - 1.0).abs() < 1e-5, "{score}");
    assert_eq!(answer["results"][0]["model"], "gpt2");
}

#[actix_web::test]
async fn an_embed_graph_streams_its_steps_and_traces_its_embed_calls() {
    let server = server();
    let text = server
        .post_sse(
            "/v1/graphs/on-topic/stream",
            &json!({"text": "Hello", "max_new_tokens": 2}),
        )
        .await;
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let scored: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "classified")
        .map(|e| {
            (
                e["step"].as_str().unwrap(),
                e["classifier"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        scored,
        [
            ("relevance", "minilm"),
            ("relevance", "minilm"),
            ("mood", "roberta")
        ]
    );
    assert!(events.iter().any(|e| e["type"] == "selected"));
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done");
    let trace: Value = awc::Client::default()
        .get(server.url(&format!(
            "/v1/traces/{}",
            done["trace_id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .json()
        .limit(1 << 20)
        .await
        .unwrap();
    let embeds: Vec<&Value> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "embed")
        .collect();
    assert_eq!(embeds.len(), 2, "{trace}");
    for span in embeds {
        assert_eq!(span["attributes"]["classifier"], "minilm");
        assert_eq!(span["attributes"]["label"], "similarity");
    }
}

#[test]
fn a_misconfigured_embed_step_fails_at_start_naming_the_graph_the_step_and_the_key() {
    let models = "[[models]]\nname = \"gpt2\"\npath = \"g\"\nrole = \"generator\"\n\
                  [[models]]\nname = \"bert\"\npath = \"b\"\nrole = \"classifier\"\n\
                  [[models]]\nname = \"minilm\"\npath = \"m\"\nrole = \"embedder\"\n";
    for (steps, parts) in [
        (
            "[[graphs.steps]]\nname = \"near\"\neach = { embed = \"gpt2\" }\n",
            &[
                "graphs \"g\" step 1 (\"near\")",
                "each.embed",
                "\"gpt2\" is a generator",
            ][..],
        ),
        (
            "[[graphs.steps]]\neach = { embed = \"nope\" }\n",
            &[
                "graphs \"g\" step 1",
                "each.embed",
                "no model is called \"nope\"",
            ][..],
        ),
        (
            "[[graphs.steps]]\neach = { classify = \"minilm\" }\n",
            &[
                "each.classify",
                "\"minilm\" is an embedder: it can only embed",
            ][..],
        ),
        (
            "[[graphs.steps]]\neach = { embed = \"minilm\", generate = \"gpt2\" }\n",
            &["step 1", "each", "give exactly one of generate"][..],
        ),
    ] {
        let toml = format!("{models}[[graphs]]\nname = \"g\"\n{steps}");
        let error = Config::from_toml(&toml, std::path::Path::new("/"))
            .unwrap_err()
            .to_string();
        for part in parts {
            assert!(error.contains(part), "{part:?} is not in: {error}");
        }
    }
}
