//! Cancelled requests free their slot within one decode step; queued ones never start.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::server::{read_all, total, JSON_HEADER, SLOT_HOLDING_BODY};
use common::*;
use infergraph::engine::{CancelOnDrop, CancelToken, EngineSettings, GenerationEngine};
use infergraph::work::ActorError;

fn engine(max_batch: usize) -> GenerationEngine {
    GenerationEngine::start(
        "gpt2",
        demo_generator("gpt2"),
        EngineSettings {
            max_batch,
            queue_capacity: 8,
            panic_on_prompt: None,
            panic_picking_on_prompt: None,
        },
    )
}

/// Alone in its engine, so no other work moves the step counter after it leaves.
#[test]
fn a_cancelled_running_request_leaves_the_batch_within_one_step() {
    let engine = engine(4);
    let cancel = CancelToken::new();
    let doomed = hold_a_slot(&engine, &cancel);
    wait_until("the request decodes", Duration::from_secs(30), || {
        engine.stats().steps.load(Ordering::Relaxed) >= 2
    });
    cancel.cancel();
    let steps_at_cancel = engine.stats().steps.load(Ordering::Relaxed);
    assert!(matches!(
        doomed.blocking_recv().unwrap(),
        Err(ActorError::Cancelled)
    ));
    let steps_at_answer = engine.stats().steps.load(Ordering::Relaxed);
    assert!(
        steps_at_answer <= steps_at_cancel + 1,
        "left after {} steps",
        steps_at_answer - steps_at_cancel
    );
    assert_eq!(
        engine.stats().active.load(Ordering::Acquire),
        0,
        "its slot is free"
    );
    assert_eq!(engine.stats().cancelled.load(Ordering::Relaxed), 1);
    assert_eq!(engine.stats().completed.load(Ordering::Relaxed), 0);
}

#[test]
fn dropping_the_waiters_guard_cancels_the_request() {
    let engine = engine(1);
    let guard = CancelOnDrop(CancelToken::new());
    let answer = hold_a_slot(&engine, &guard.0);
    drop(guard); // what a timed-out or disconnected HTTP handler does
    assert!(matches!(
        answer.blocking_recv().unwrap(),
        Err(ActorError::Cancelled)
    ));
    assert_eq!(engine.stats().active.load(Ordering::Acquire), 0);
}

#[test]
fn a_queued_request_whose_waiter_left_never_starts() {
    let engine = engine(1);
    let running = CancelToken::new();
    let first = hold_a_slot(&engine, &running);
    let left = CancelToken::new();
    let queued = submit(&engine, "Hello", slot_holder(), &left);
    left.cancel();
    running.cancel();
    assert!(matches!(
        first.blocking_recv().unwrap(),
        Err(ActorError::Cancelled)
    ));
    assert!(matches!(
        queued.blocking_recv().unwrap(),
        Err(ActorError::Cancelled)
    ));
    assert_eq!(
        engine.stats().admitted.load(Ordering::Relaxed),
        1,
        "only the first request was ever prefilled"
    );
}

#[test]
fn a_client_that_disconnects_mid_request_frees_its_slots() {
    let server = common::server::TestServer::start(
        &common::server::demo_models(),
        "[limits]\nmax_new_tokens = 1000\n",
    );
    let client = server.raw_request("POST /v1/graph", JSON_HEADER, SLOT_HOLDING_BODY);
    wait_until(
        "all three generators run the request",
        Duration::from_secs(30),
        || total(&server.engines(), "active") == 3,
    );
    drop(client);
    wait_until("the slots are free", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 0
    });
    let after = server.engines();
    assert_eq!(total(&after, "cancelled"), 3, "{after}");
    assert_eq!(
        total(&after, "completed"),
        0,
        "nothing ran to its end: {after}"
    );
}

#[test]
fn a_request_past_its_timeout_gets_504_and_leaves_the_batch() {
    // 1000 tokens take the demo models several times longer than this timeout.
    let server = common::server::TestServer::start(
        &common::server::demo_models(),
        "[limits]\nmax_new_tokens = 1000\nrequest_timeout_ms = 100\n",
    );
    let response = read_all(server.raw_request(
        "POST /v1/graph",
        &format!("{JSON_HEADER}connection: close\r\n"),
        SLOT_HOLDING_BODY,
    ));
    assert!(response.starts_with("HTTP/1.1 504"), "{response}");
    assert!(
        response.contains("\"error_type\":\"timeout\""),
        "{response}"
    );
    wait_until("every slot is free", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 0
    });
    let after = server.engines();
    assert_eq!(total(&after, "cancelled"), 3, "{after}");
    assert_eq!(total(&after, "completed"), 0, "{after}");
}
