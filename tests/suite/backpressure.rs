//! A full queue refuses at once, every request is answered, and the server keeps serving.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::server::{demo_models, header, TestServer};
use common::*;
use infergraph::engine::{CancelToken, ClassificationEngine, EngineSettings, GenerationEngine};
use infergraph::models::GenerationParams;
use infergraph::work::ActorError;
use serde_json::json;

#[test]
fn a_full_queue_refuses_at_once_and_every_accepted_request_is_answered() {
    let engine = GenerationEngine::start(
        "gpt2",
        demo_generator("gpt2"),
        EngineSettings {
            max_batch: 1,
            queue_capacity: 1,
            panic_on_prompt: None,
            panic_picking_on_prompt: None,
        },
    );
    let (running, queued) = (CancelToken::new(), CancelToken::new());
    let first = hold_a_slot(&engine, &running);
    let second = submit(&engine, "Hello", slot_holder(), &queued);
    assert_eq!(engine.stats().queued.load(Ordering::Acquire), 1);

    let refused = engine.submit(
        "Hello".into(),
        slot_holder(),
        CancelToken::new(),
        tracing::Span::none(),
    );
    assert!(matches!(refused, Err(ActorError::Overloaded { .. })));
    assert_eq!(engine.stats().rejected.load(Ordering::Relaxed), 1);

    running.cancel();
    queued.cancel();
    assert!(matches!(
        first.blocking_recv().unwrap(),
        Err(ActorError::Cancelled)
    ));
    assert!(matches!(
        second.blocking_recv().unwrap(),
        Err(ActorError::Cancelled)
    ));
    assert_eq!(engine.stats().active.load(Ordering::Acquire), 0);
    assert_eq!(engine.stats().queued.load(Ordering::Acquire), 0);

    // Capacity is back: the next request is accepted and served.
    let params = GenerationParams {
        max_new_tokens: 4,
        ..GenerationParams::default()
    };
    let next = submit(&engine, "Hello", params, &CancelToken::new());
    assert_eq!(
        next.blocking_recv().unwrap().unwrap().0.new_token_ids.len(),
        4
    );
}

#[actix_web::test]
async fn overload_is_answered_with_429_and_retry_after_and_the_server_keeps_serving() {
    let server = TestServer::start(
        &demo_models(),
        "[engine]\nmax_batch = 1\nqueue_capacity = 1\n[limits]\nmax_new_tokens = 1000\n",
    );
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish();
    let body = json!({"text": "I have an idea!", "max_new_tokens": 400, "min_new_tokens": 400});
    let requests = (0..6).map(|_| {
        let request = client.post(server.url("/v1/graph")).send_json(&body);
        async move {
            let mut response = request.await.expect("every request is answered");
            let retry_after = header(response.headers(), "retry-after");
            let body: serde_json::Value = response.json().limit(1 << 22).await.unwrap();
            (response.status().as_u16(), retry_after, body)
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == 429)
        .collect();
    assert!(
        !refused.is_empty(),
        "six long requests against one slot and one queue place"
    );
    for (status, retry_after, body) in &answers {
        assert!(*status == 200 || *status == 429, "{status}: {body}");
        if *status == 429 {
            assert_eq!(retry_after.as_deref(), Some("1"));
            assert_eq!(body["error_type"], "overloaded");
        }
    }
    let mut response = client
        .post(server.url("/v1/graph"))
        .send_json(&json!({"text": "Hi", "max_new_tokens": 3}))
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.body().await
    );
}

/// The graph's entrance refuses; past it, a text waits for the classifier's queue.
#[actix_web::test]
async fn an_admitted_requests_text_waits_for_room_in_the_classifiers_queue_instead_of_a_429() {
    let classifier = infergraph::models::load_classifier(&fixture("bert-tiny"), &cpu()).unwrap();
    let (engine, gate) = ClassificationEngine::start_held(
        "bert",
        classifier,
        EngineSettings {
            max_batch: 1,
            queue_capacity: 1,
            panic_on_prompt: None,
            panic_picking_on_prompt: None,
        },
    );
    let first = engine
        .submit(("I have an idea!".into(), None), CancelToken::new())
        .unwrap();
    assert!(matches!(
        engine.submit(("A new request".into(), None), CancelToken::new()),
        Err(ActorError::Overloaded { .. })
    ));
    let left = CancelToken::new();
    left.cancel();
    assert!(matches!(
        engine
            .submit_when_room(("Its client left".into(), None), left)
            .await,
        Err(ActorError::Cancelled)
    ));

    // Held engine, full queue: this one can only be queued once the engine takes the first.
    let waiting = {
        let engine = engine.clone();
        actix_web::rt::spawn(async move {
            engine
                .submit_when_room(("An admitted request".into(), None), CancelToken::new())
                .await
        })
    };
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "queued into a full queue");
    drop(gate);
    assert!(first.await.unwrap().is_ok(), "the first text is classified");
    let answer = waiting.await.unwrap().unwrap().await.unwrap();
    assert!(answer.is_ok(), "the waiting text is classified");
    let stats = engine.admission().stats();
    assert_eq!(stats.completed.load(Ordering::Relaxed), 2);
    assert_eq!(
        stats.rejected.load(Ordering::Relaxed),
        1,
        "only the new request counts as refused"
    );
}
