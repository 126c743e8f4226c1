//! The embedder role over HTTP: `POST /v1/models/{name}/embed`, OpenAI's `POST /v1/embeddings`
//! (on the wire, and through the official `openai` client, installed by `.ci/run`), and how
//! `/v1/models` describes an embedder.

use std::path::PathBuf;

use crate::common;

use common::server::{fixture_models, ModelEntry, TestServer};
use common::*;
use serde_json::{json, Value};

/// The fixture graph plus `minilm-tiny` as the embedder `minilm`.
fn models_with_embedder() -> Vec<ModelEntry> {
    let mut models = fixture_models();
    models.push(("minilm", fixture("minilm-tiny"), "embedder"));
    models
}

fn texts(name: &str) -> Vec<String> {
    golden_inputs(name)
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_string())
        .collect()
}

/// A base64 string of little-endian f32s, decoded.
fn f32s_from_base64(text: &str) -> Vec<f32> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut bytes = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let n = data
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
        bytes.extend((0..data.len() - 1).map(|i| (n >> (16 - 8 * i)) as u8));
    }
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[actix_web::test]
async fn the_embed_route_answers_each_texts_golden_embedding_in_order() {
    let server = TestServer::start(&models_with_embedder(), "");
    let inputs = golden_inputs("minilm-tiny");
    let (status, answer) = server
        .post_json(
            "/v1/models/minilm/embed",
            &json!({"texts": texts("minilm-tiny")}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], "minilm");
    assert_eq!(answer["dimension"], 32);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), inputs.len());
    for (result, input) in results.iter().zip(&inputs) {
        let delta = max_abs_diff(&f32s(&result["embedding"]), &f32s(&input["embedding"]));
        assert!(delta < 1e-5, "{}: off by {delta}", input["text"]);
        assert_eq!(result["input_tokens"], input["n_tokens"]);
        assert_eq!(result["truncated"], input["truncated"]);
    }
    let (status, one) = server
        .post_json(
            "/v1/models/minilm/embed",
            &json!({"text": inputs[0]["text"]}),
        )
        .await;
    assert_eq!(status, 200, "{one}");
    // Alone, not in a padded batch: the same vector to float rounding.
    let alone = max_abs_diff(
        &f32s(&one["results"][0]["embedding"]),
        &f32s(&results[0]["embedding"]),
    );
    assert!(alone < 1e-6, "{alone}");
    let (status, both) = server
        .post_json(
            "/v1/models/minilm/embed",
            &json!({"text": "a", "texts": ["b"]}),
        )
        .await;
    assert_eq!(status, 422, "{both}");
}

#[actix_web::test]
async fn v1_embeddings_gives_floats_or_base64_of_the_same_vectors_with_token_usage() {
    let server = TestServer::start(&models_with_embedder(), "");
    let inputs = golden_inputs("minilm-tiny");
    let tokens: u64 = inputs.iter().map(|i| i["n_tokens"].as_u64().unwrap()).sum();
    let request = |format: Value| json!({"model": "minilm", "input": texts("minilm-tiny"), "encoding_format": format});
    let (status, floats) = server
        .post_json("/v1/embeddings", &request(json!("float")))
        .await;
    assert_eq!(status, 200, "{floats}");
    let (status, base64) = server
        .post_json("/v1/embeddings", &request(json!("base64")))
        .await;
    assert_eq!(status, 200, "{base64}");
    for answer in [&floats, &base64] {
        assert_eq!(answer["object"], "list");
        assert_eq!(answer["model"], "minilm");
        assert_eq!(answer["usage"]["prompt_tokens"], tokens);
        assert_eq!(answer["usage"]["total_tokens"], tokens);
    }
    for (i, input) in inputs.iter().enumerate() {
        let (float, encoded) = (&floats["data"][i], &base64["data"][i]);
        assert_eq!(
            (float["index"].as_u64(), float["object"].as_str()),
            (Some(i as u64), Some("embedding"))
        );
        let vector = f32s(&float["embedding"]);
        assert!(max_abs_diff(&vector, &f32s(&input["embedding"])) < 1e-5);
        // Another request, whose texts may batch otherwise: equal to float rounding.
        let decoded = f32s_from_base64(encoded["embedding"].as_str().unwrap());
        assert!(max_abs_diff(&decoded, &vector) < 1e-6);
    }
    // No format is float; one string is one embedding.
    let (status, plain) = server
        .post_json("/v1/embeddings", &json!({"model": "minilm", "input": "a"}))
        .await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["data"].as_array().unwrap().len(), 1);
    assert!(plain["data"][0]["embedding"].is_array());
}

#[actix_web::test]
async fn embedding_with_a_generator_or_classifier_is_a_422_naming_the_role() {
    let server = TestServer::start(&models_with_embedder(), "");
    for (path, body, role) in [
        (
            "/v1/embeddings",
            json!({"model": "gpt2", "input": "Hi"}),
            "generator",
        ),
        (
            "/v1/embeddings",
            json!({"model": "bert-base-uncased", "input": "Hi"}),
            "classifier",
        ),
        ("/v1/models/gpt2/embed", json!({"text": "Hi"}), "generator"),
    ] {
        let (status, answer) = server.post_json(path, &body).await;
        assert_eq!(status, 422, "{path} {body}: {answer}");
        assert_eq!(answer["error_type"], "wrong_role");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("is a {role}")) && error.contains("needs an embedder"),
            "{error}"
        );
    }
    // And the other way round.
    let (status, answer) = server
        .post_json("/v1/models/minilm/classify", &json!({"text": "Hi"}))
        .await;
    assert_eq!(
        (status, answer["error_type"].as_str()),
        (422, Some("wrong_role"))
    );
    for (body, named) in [
        (json!({"model": "minilm", "input": []}), "input"),
        (json!({"model": "minilm", "input": ["ok", " "]}), "input[1]"),
        (
            json!({"model": "minilm", "input": "a", "dimensions": 32}),
            "dimensions",
        ),
        (
            json!({"model": "minilm", "input": "a", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (json!({"model": "minilm", "input": "a", "beam": 2}), "beam"),
    ] {
        let (status, answer) = server.post_json("/v1/embeddings", &body).await;
        assert!(status == 422 || status == 400, "{body}: {status} {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(named), "{body}: {error}");
    }
}

#[actix_web::test]
async fn v1_models_describes_an_embedders_role_pooling_and_dimension() {
    let server = TestServer::start(&models_with_embedder(), "");
    let mut response = awc::Client::default()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let minilm = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "minilm")
        .unwrap()
        .clone();
    assert_eq!(minilm["role"], "embedder");
    assert_eq!(minilm["architecture"], "bert");
    assert_eq!(minilm["pooling"], "mean");
    assert_eq!(minilm["dimension"], 32);
    assert_eq!(minilm["context_length"], 32);
    assert!(minilm.get("labels").is_none());
    let engines = server.engines();
    assert!(
        engines["engines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["model"] == "minilm" && e["role"] == "embedder"),
        "{engines}"
    );
}

#[actix_web::test]
async fn the_official_openai_client_gets_all_minilm_l6_v2s_embeddings_as_base64_and_floats() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/real-models/all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run tests/fixtures/real/fetch-all-minilm-l6-v2.sh (.ci/run does)",
        dir.display()
    );
    let mut models = fixture_models();
    models.push(("all-minilm-l6-v2", dir, "embedder"));
    let server = TestServer::start(&models, "");
    let golden = format!(
        "{}/tests/fixtures/real/all-minilm-l6-v2/golden.json",
        env!("CARGO_MANIFEST_DIR")
    );
    common::openai_check(
        "embeddings_check.py",
        &[&server.base, "all-minilm-l6-v2", &golden],
    );
}

#[test]
fn pooling_belongs_to_embedders_and_embedders_are_served_where_they_are_named() {
    use infergraph::config::Config;
    let base = std::path::Path::new("/");
    for (toml, named) in [
        (
            "[[models]]\nname = \"b\"\npath = \"x\"\nrole = \"classifier\"\npooling = \"mean\"\n",
            "pooling is an embedder's",
        ),
        (
            "[[models]]\nname = \"e\"\nurl = \"http://127.0.0.1:1\"\nrole = \"embedder\"\n",
            "give it a path",
        ),
        (
            "[[models]]\nname = \"e\"\npath = \"x\"\nrole = \"embedder\"\npooling = \"max\"\n",
            "pooling",
        ),
    ] {
        let error = Config::from_toml(toml, base).unwrap_err().to_string();
        assert!(error.contains(named), "{toml}: {error}");
    }
    let config = Config::from_toml(
        "[[models]]\nname = \"e\"\npath = \"x\"\nrole = \"embedder\"\npooling = \"cls\"\n",
        base,
    )
    .unwrap();
    assert_eq!(
        config.models[0].pooling,
        Some(infergraph::models::Pooling::Cls)
    );
}

#[test]
fn loadtest_model_drives_an_embedder_in_process_and_over_http() {
    let run = |args: &[&str]| -> Value {
        let stdout = common::run_ok(
            "loadtest",
            std::process::Command::new(env!("CARGO_BIN_EXE_infergraph"))
                .arg("loadtest")
                .args(args)
                .args([
                    "--json",
                    "--model",
                    "minilm",
                    "--requests",
                    "8",
                    "--concurrency",
                    "4",
                ]),
        );
        serde_json::from_slice(&stdout).expect("one JSON report")
    };
    let minilm_load = |report: &Value| -> f64 {
        report["actors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["model"] == "minilm")
            .map(|a| a["mean_batch_size"].as_f64().unwrap())
            .unwrap_or_else(|| panic!("no minilm actor: {report}"))
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let models = common::server::models_toml(&models_with_embedder());
    std::fs::write(&config, format!("backend = \"cpu\"\n{models}")).unwrap();
    let report = run(&["--target", "actor", "--config", config.to_str().unwrap()]);
    assert_eq!(
        (report["requests"].as_u64(), report["ok"].as_u64()),
        (Some(8), Some(8)),
        "{report}"
    );
    assert_eq!(report["errors"], json!({}));
    assert!(minilm_load(&report) >= 1.0, "{report}");

    let server = TestServer::start(&models_with_embedder(), "");
    let report = run(&["--target", "http", &server.base]);
    assert_eq!(
        (report["requests"].as_u64(), report["ok"].as_u64()),
        (Some(8), Some(8)),
        "{report}"
    );
    let engines = server.engines();
    let minilm = engines["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["model"] == "minilm")
        .unwrap()
        .clone();
    assert_eq!(
        minilm["completed"], 8,
        "every request reached /v1/models/minilm/embed"
    );
}
