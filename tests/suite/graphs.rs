//! Configured graphs (`[[graphs]]`) on the real server with the tiny fixture models: each
//! step kind does what its diagram says, and streams, traces and metrics follow the graph.

use crate::common;

use common::prometheus::{scrape, value};
use common::server::{fixture_models, free_port, models_toml, TestServer};
use common::ws::{connect, events_until_last, send};
use serde_json::{json, Value};

/// Inputs the tiny fixture classifier labels differently (checked in the switch test).
const LABEL_0_TEXT: &str = "I have an idea!";
const LABEL_1_TEXT: &str = "terrible";

/// The graphs under test; `ghost` is a generator at an address nobody listens on.
const GRAPHS: &str = r#"
[[graphs]]
name = "seed"
default = true
  [[graphs.steps]]
  name = "generate"
  parallel = { generate = ["gpt2", "distilgpt2", "gpt2-medium"] }
  [[graphs.steps]]
  name = "classify"
  each = { classify = "bert-base-uncased" }

[[graphs]]
name = "by-mood"
  [[graphs.steps]]
  name = "mood"
  each = { classify = "bert-base-uncased" }
  [[graphs.steps]]
  name = "write"
  switch = [
    { label = "LABEL_0", generate = "gpt2" },
    { label = "LABEL_1", generate = "distilgpt2" },
  ]
  [[graphs.steps]]
  name = "score"
  each = { classify = "bert-base-uncased" }

[[graphs]]
name = "strict"
  [[graphs.steps]]
  each = { classify = "bert-base-uncased" }
  [[graphs.steps]]
  switch = [ { label = "LABEL_0", generate = "gpt2" } ]

[[graphs]]
name = "canary"
  [[graphs.steps]]
  name = "rollout"
  split = [ { weight = 90, generate = "gpt2" }, { weight = 10, generate = "distilgpt2" } ]

[[graphs]]
name = "best-of-three"
  [[graphs.steps]]
  parallel = { generate = ["gpt2", "distilgpt2", "gpt2-medium"] }
  [[graphs.steps]]
  each = { classify = "bert-base-uncased" }
  [[graphs.steps]]
  select = "highest_score"

[[graphs]]
name = "resilient"
  [[graphs.steps]]
  name = "generate"
  parallel = { generate = ["gpt2", "ghost", "distilgpt2"] }
  on_error = "continue"
  [[graphs.steps]]
  name = "classify"
  each = { classify = "bert-base-uncased" }
"#;

fn graphs_server() -> TestServer {
    let ghost = format!(
        "\n[[models]]\nname = \"ghost\"\nurl = \"http://127.0.0.1:{}\"\nrole = \"generator\"\n",
        free_port()
    );
    // Fast failure for the ghost: its replica is down from the first health check.
    let extra = format!("[remote]\nconnect_timeout_ms = 500\n{GRAPHS}");
    TestServer::start_toml(0, &(models_toml(&fixture_models()) + &ghost), &extra)
}

async fn run(server: &TestServer, graph: &str, body: Value) -> Value {
    let (status, answer) = server
        .post_json(&format!("/v1/graphs/{graph}"), &body)
        .await;
    assert_eq!(status, 200, "{graph}: {answer}");
    assert_eq!(answer["graph"], graph);
    answer
}

fn models_of(results: &Value) -> Vec<&str> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap_or("<request>"))
        .collect()
}

#[actix_web::test]
async fn the_seed_graph_written_out_answers_exactly_what_the_builtin_one_answers() {
    let builtin = TestServer::start(&fixture_models(), "");
    let written = graphs_server();
    for body in [
        json!({"text": "Hello there", "max_new_tokens": 6}),
        json!({"text": "Sampled", "max_new_tokens": 6, "temperature": 0.9, "top_k": 40, "seed": 7}),
    ] {
        let (_, expected) = builtin.post_json("/v1/graph", &body).await;
        for path in ["/v1/graph", "/v1/graphs/seed"] {
            let (status, answer) = written.post_json(path, &body).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["results"], expected["results"], "{path} on {body}");
        }
        assert_eq!(expected["graph"], "default");
    }
    let sentence = json!({"original_sentence": "It was a dark night"});
    let (_, expected) = builtin.post_json("/generate_score", &sentence).await;
    let (_, answer) = written.post_json("/generate_score", &sentence).await;
    assert_eq!(answer, expected);
    assert_eq!(answer.as_array().unwrap().len(), 3);
}

#[actix_web::test]
async fn a_switch_graph_routes_by_the_classifiers_label() {
    let server = graphs_server();
    for (text, label, generator) in [
        (LABEL_0_TEXT, "LABEL_0", "gpt2"),
        (LABEL_1_TEXT, "LABEL_1", "distilgpt2"),
    ] {
        let answer = run(
            &server,
            "by-mood",
            json!({"text": text, "max_new_tokens": 4}),
        )
        .await;
        let mood = &answer["steps"][0];
        assert_eq!(mood["name"], "mood");
        assert_eq!(
            mood["results"][0]["label"], label,
            "the input chosen for {label}"
        );
        assert!(
            mood["results"][0].get("model").is_none(),
            "it scored the request's own text"
        );
        let write = &answer["steps"][1];
        assert_eq!(
            write["routes"],
            json!([{"to": generator, "reason": format!("label = \"{label}\"")}])
        );
        assert_eq!(models_of(&write["results"]), [generator]);
        // The generated text is scored again by the last step.
        let result = &answer["results"][0];
        assert_eq!(result["model"], generator);
        assert!(result["generated"].as_str().unwrap().starts_with(text));
        assert!(result["score"].as_f64().unwrap() >= 0.5);
        assert_eq!(result["generated_tokens"], 4);
    }
}

#[actix_web::test]
async fn a_switch_with_no_matching_case_answers_422_no_route() {
    let server = graphs_server();
    let (status, body) = server
        .post_json("/v1/graphs/strict", &json!({"text": LABEL_1_TEXT}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error_type"], "no_route");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("\"strict\"") && error.contains("LABEL_1"),
        "{error}"
    );
    // The server carries on.
    run(
        &server,
        "strict",
        json!({"text": LABEL_0_TEXT, "max_new_tokens": 2}),
    )
    .await;
}

#[actix_web::test]
async fn a_90_10_split_over_200_seeded_requests_takes_each_branch_near_its_weight() {
    let server = graphs_server();
    let mut gpt2 = 0;
    let mut first_draws = Vec::new();
    for seed in 0..200u64 {
        let body = json!({"text": "Hi", "max_new_tokens": 1, "seed": seed});
        let answer = run(&server, "canary", body).await;
        let route = &answer["steps"][0]["routes"][0];
        let chosen = route["to"].as_str().unwrap().to_string();
        assert_eq!(
            models_of(&answer["results"]),
            [chosen.as_str()],
            "the branch is named and taken"
        );
        assert!(
            route["reason"].as_str().unwrap().starts_with("drew "),
            "{route}"
        );
        if chosen == "gpt2" {
            gpt2 += 1;
        }
        if seed < 5 {
            first_draws.push(chosen);
        }
    }
    assert!(
        (170..=190).contains(&gpt2),
        "gpt2 took {gpt2} of 200 (90 % is 180)"
    );
    // The same seed draws the same branch again.
    for (seed, chosen) in first_draws.iter().enumerate() {
        let answer = run(
            &server,
            "canary",
            json!({"text": "Hi", "max_new_tokens": 1, "seed": seed}),
        )
        .await;
        assert_eq!(&answer["steps"][0]["routes"][0]["to"], chosen);
    }
}

#[actix_web::test]
async fn a_best_of_three_graph_returns_the_highest_scoring_text() {
    let server = graphs_server();
    let answer = run(
        &server,
        "best-of-three",
        json!({"text": "Once", "max_new_tokens": 5}),
    )
    .await;
    let scored = answer["steps"][1]["results"].as_array().unwrap();
    assert_eq!(scored.len(), 3);
    let best = scored
        .iter()
        .max_by(|a, b| {
            a["score"]
                .as_f64()
                .partial_cmp(&b["score"].as_f64())
                .unwrap()
        })
        .unwrap();
    assert_eq!(answer["results"].as_array().unwrap().len(), 1);
    assert_eq!(&answer["results"][0], best);
}

#[actix_web::test]
async fn a_continue_steps_failure_leaves_the_rest_intact_and_says_what_failed() {
    let server = graphs_server();
    let answer = run(
        &server,
        "resilient",
        json!({"text": "Hello", "max_new_tokens": 3}),
    )
    .await;
    assert_eq!(models_of(&answer["results"]), ["gpt2", "distilgpt2"]);
    for result in answer["results"].as_array().unwrap() {
        assert!(
            result["score"].is_number() && result["generated_tokens"] == 3,
            "{result}"
        );
    }
    let failures = answer["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["step"], "generate");
    assert_eq!(failures[0]["model"], "ghost");
    assert_eq!(failures[0]["error_type"], "model_unavailable");
    assert!(failures[0]["error"].as_str().unwrap().contains("ghost"));
    // The same failure in a step that fails the request fails it.
    let (status, body) = server
        .post_json("/v1/models/ghost/generate", &json!({"text": "Hello"}))
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (503, Some("model_unavailable"))
    );
}

#[actix_web::test]
async fn get_v1_graphs_lists_every_graph_with_its_steps() {
    let server = graphs_server();
    let body: Value = awc::Client::default()
        .get(server.url("/v1/graphs"))
        .send()
        .await
        .unwrap()
        .json()
        .limit(1 << 20)
        .await
        .unwrap();
    let graphs = body["graphs"].as_array().unwrap();
    let names: Vec<&str> = graphs.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "seed",
            "by-mood",
            "strict",
            "canary",
            "best-of-three",
            "resilient"
        ]
    );
    assert_eq!(graphs[0]["default"], true);
    assert_eq!(graphs[1]["default"], false);
    assert_eq!(
        graphs[1]["steps"][1],
        json!({"name": "write", "kind": "switch", "input": "previous", "on_error": "fail", "calls": [
            {"action": "generate", "model": "gpt2", "when": "label = \"LABEL_0\""},
            {"action": "generate", "model": "distilgpt2", "when": "label = \"LABEL_1\""},
        ]})
    );
    assert_eq!(
        graphs[3]["steps"][0]["calls"][1],
        json!({"action": "generate", "model": "distilgpt2", "weight": 10})
    );
    assert_eq!(graphs[4]["steps"][2]["select"], "highest_score");
    assert_eq!(graphs[5]["steps"][0]["on_error"], "continue");

    let (status, body) = server
        .post_json("/v1/graphs/nope", &json!({"text": "x"}))
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (404, Some("graph_not_found"))
    );
    assert!(
        body["error"].as_str().unwrap().contains("by-mood"),
        "{body}"
    );
}

#[actix_web::test]
async fn a_websocket_request_to_a_named_graph_streams_its_steps_in_order_and_traces_each_step() {
    let server = graphs_server();
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"id": "mood-1", "graph": "by-mood", "text": LABEL_1_TEXT, "max_new_tokens": 4}),
    )
    .await;
    let events = events_until_last(&mut socket, "mood-1").await;
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["step"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let token = ("token", "write");
    assert_eq!(
        kinds,
        [
            &[("started", ""), ("classified", "mood"), ("routed", "write")][..],
            &[token; 4][..],
            &[
                ("generated", "write"),
                ("classified", "score"),
                ("done", "")
            ][..],
        ]
        .concat(),
        "{events:#?}"
    );
    assert_eq!(events[1]["classifier"], "bert-base-uncased");
    assert_eq!(events[2]["to"], "distilgpt2");
    assert!(events
        .iter()
        .filter(|e| e["type"] == "token")
        .all(|e| e["model"] == "distilgpt2"));
    let done = events.last().unwrap();
    assert_eq!(done["graph"], "by-mood");

    // An unknown graph is an error event, and the connection lives on.
    send(
        &mut socket,
        json!({"id": "x", "graph": "nope", "text": "hi"}),
    )
    .await;
    let refused = events_until_last(&mut socket, "x").await;
    assert_eq!(refused[0]["error_type"], "graph_not_found");

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
    let spans = trace["spans"].as_array().unwrap();
    let named =
        |name: &str| -> Vec<&Value> { spans.iter().filter(|s| s["name"] == name).collect() };
    let graph = named("graph");
    assert_eq!(graph[0]["attributes"]["graph"], "by-mood");
    let steps = named("step");
    let step_names: Vec<&str> = steps
        .iter()
        .map(|s| s["attributes"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(step_names, ["mood", "write", "score"], "one span per step");
    for step in &steps {
        assert_eq!(step["parent"], graph[0]["id"]);
    }
    for pair in steps.windows(2) {
        assert!(
            pair[0]["end_ms"].as_f64() <= pair[1]["start_ms"].as_f64(),
            "steps in order"
        );
    }
    // Each model call inside its step, each child inside its parent.
    let calls: Vec<(&str, &Value)> = spans
        .iter()
        .filter(|s| s["name"] == "generate" || s["name"] == "classify")
        .map(|s| (s["name"].as_str().unwrap(), &s["parent"]))
        .collect();
    assert_eq!(
        calls,
        [
            ("classify", &steps[0]["id"]),
            ("generate", &steps[1]["id"]),
            ("classify", &steps[2]["id"])
        ]
    );
    for span in spans.iter().skip(1) {
        let parent = &spans[span["parent"].as_u64().unwrap() as usize];
        assert!(
            parent["start_ms"].as_f64() <= span["start_ms"].as_f64()
                && span["end_ms"].as_f64() <= parent["end_ms"].as_f64(),
            "{} inside {}",
            span["name"],
            parent["name"]
        );
    }
}

#[actix_web::test]
async fn sse_on_a_named_graph_carries_the_steps_and_ends_with_the_answer() {
    let server = graphs_server();
    let text = server
        .post_sse(
            "/v1/graphs/resilient/stream",
            &json!({"text": "Hello", "max_new_tokens": 2}),
        )
        .await;
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let skipped: Vec<&Value> = events.iter().filter(|e| e["type"] == "skipped").collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (skipped[0]["step"].as_str(), skipped[0]["model"].as_str()),
        (Some("generate"), Some("ghost"))
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "done");
    assert_eq!(models_of(&last["results"]), ["gpt2", "distilgpt2"]);
    assert_eq!(last["failures"][0]["model"], "ghost");
}

#[actix_web::test]
async fn metrics_count_requests_steps_routes_and_skips_per_graph() {
    let server = graphs_server();
    run(
        &server,
        "by-mood",
        json!({"text": LABEL_0_TEXT, "max_new_tokens": 1}),
    )
    .await;
    run(
        &server,
        "resilient",
        json!({"text": "Hi", "max_new_tokens": 1}),
    )
    .await;
    let _ = server
        .post_json("/v1/graphs/strict", &json!({"text": LABEL_1_TEXT}))
        .await;
    let scrape = scrape(&server).await;
    let value = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);
    let requests = "infergraph_graph_requests_total";
    assert_eq!(
        value(requests, &[("graph", "by-mood"), ("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        value(requests, &[("graph", "strict"), ("outcome", "no_route")]),
        1.0
    );
    let steps = "infergraph_graph_step_duration_seconds";
    for step in ["mood", "write", "score"] {
        assert_eq!(
            value(steps, &[("graph", "by-mood"), ("step", step)]),
            1.0,
            "{step}"
        );
    }
    let routes = "infergraph_graph_routes_total";
    assert_eq!(
        value(
            routes,
            &[("graph", "by-mood"), ("step", "write"), ("model", "gpt2")]
        ),
        1.0
    );
    let skipped = "infergraph_graph_step_skipped_total";
    assert_eq!(
        value(skipped, &[("graph", "resilient"), ("model", "ghost")]),
        1.0
    );
}
