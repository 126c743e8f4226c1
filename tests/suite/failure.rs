//! FAILURE: a model that errors or panics answers the affected request with 500; the
//! actor, its engine and the server go on serving the next request.

use crate::common;

use std::path::Path;
use std::sync::atomic::Ordering;

use common::server::{fixture_models, TestServer};
use common::{assert_greedy_goldens, cpu, fixture, golden_inputs, submit, u32s};
use infergraph::engine::{CancelToken, EngineSettings, GenerationEngine};
use infergraph::models::{self, GenerationParams};
use infergraph::work::ActorError;
use serde_json::json;

const TEXT: Option<&str> = Some("text/plain");

#[actix_web::test]
async fn a_panicking_model_step_is_a_500_and_the_next_request_succeeds() {
    let server = TestServer::start(
        &fixture_models(),
        "[engine]\npanic_on_prompt = \"Trigger a panic\"\n",
    );
    let (status, body, _) = server
        .post(
            "/v1/graph",
            Some("application/json"),
            json!({"text": "Trigger a panic"}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error_type"], "model_error");
    assert!(
        body["error"].as_str().unwrap().contains("injected fault"),
        "{body}"
    );

    server.assert_serves_the_graph("I have an idea!").await;
    assert!(server
        .wait_for_log("batch step failed", std::time::Duration::from_secs(5))
        .is_some());
}

/// A generator whose tokenizer yields ids its weights do not cover: a broken model folder.
fn model_with_a_1000_token_vocabulary(dir: &Path) {
    let source = common::fixture("gpt2-tiny-b");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"vocab_size\": 50257", "\"vocab_size\": 1000"),
    )
    .unwrap();
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut shape = view.shape().to_vec();
            let mut data = view.data().to_vec();
            if name.ends_with("wte.weight") {
                shape[0] = 1000;
                data.truncate(1000 * shape[1] * 4);
            }
            (name, shape, data)
        })
        .collect();
    let views = tensors.iter().map(|(name, shape, data)| {
        (
            name.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .unwrap(),
        )
    });
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[actix_web::test]
async fn a_model_error_is_a_500_and_the_actor_serves_the_next_request() {
    let broken = tempfile::tempdir().unwrap();
    model_with_a_1000_token_vocabulary(broken.path());
    let mut models = fixture_models();
    models[1].1 = broken.path().to_path_buf();
    let server = TestServer::start(&models, "");

    // "Hello" is token 15496: outside the broken model's vocabulary.
    let (status, body, _) = server
        .post("/classify_generated_texts", TEXT, b"Hello".to_vec())
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error_type"], "model_error");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("outside the model's vocabulary"),
        "{body}"
    );

    // "a,b" is tokens 64, 11, 65: inside it. The same actors answer.
    server.assert_serves_the_graph("a,b").await;
}

#[test]
fn a_panic_picking_one_requests_token_fails_that_request_alone_and_its_batch_goes_on() {
    let name = "gpt2-tiny-a";
    let settings = EngineSettings {
        max_batch: 8,
        queue_capacity: 32,
        panic_on_prompt: None,
        panic_picking_on_prompt: Some("Trigger a panic".into()),
    };
    // Held until every request is queued, so they are prefilled and decoded as one batch,
    // the faulty row between healthy ones.
    let (engine, gate) = GenerationEngine::start_held(
        name,
        models::load_generator(&fixture(name), &cpu()).unwrap(),
        settings,
    );
    let inputs = golden_inputs(name);
    let greedy = |text: &str| {
        submit(
            &engine,
            text,
            GenerationParams::default(),
            &CancelToken::new(),
        )
    };
    let first = greedy(inputs[0]["text"].as_str().unwrap());
    let faulty = greedy("Trigger a panic");
    let rest: Vec<_> = inputs[1..]
        .iter()
        .map(|input| greedy(input["text"].as_str().unwrap()))
        .collect();
    drop(gate);

    match faulty.blocking_recv().unwrap() {
        Err(ActorError::Failed { model, message }) => {
            assert_eq!(model, name);
            assert!(message.contains("injected fault"), "{message}");
        }
        other => panic!("expected the faulty request to fail, got {other:?}"),
    }
    assert_greedy_goldens(&inputs, std::iter::once(first).chain(rest).collect());
    // Sixteen tokens each: the healthy rows went on decoding together after the fault.
    assert_eq!(engine.stats().steps.load(Ordering::Relaxed), 15);
    assert_eq!(engine.stats().failed.load(Ordering::Relaxed), 1);

    let text = inputs[0]["text"].as_str().unwrap();
    let (again, _) = greedy(text).blocking_recv().unwrap().unwrap();
    assert_eq!(
        again.new_token_ids,
        u32s(&inputs[0]["generate"]["new_token_ids"])
    );
}
