//! Prompts given as token ids on `/v1/completions` (as an evaluation harness sends them,
//! tokenized on its side): answered as the text they encode is; an empty list, ids outside
//! the vocabulary or past the context, or ids for a model on another node get a 422 naming
//! them, streamed or not.

use crate::common;

use common::server::TestServer;
use serde_json::{json, Value};

/// gpt2-tiny-a: its tokenizer is GPT-2's, which adds no special token to a text; 64 positions.
fn gpt2() -> TestServer {
    TestServer::start(&[("gpt2", common::fixture("gpt2-tiny-a"), "generator")], "")
}

const TEXT: &str = "I have an idea! Let us";

/// `TEXT`'s ids, as the model route reports them.
async fn text_ids(server: &TestServer) -> Value {
    let (status, answer) = server
        .post_json(
            "/v1/models/gpt2/generate",
            &json!({"text": TEXT, "max_new_tokens": 1}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["prompt_token_ids"].clone()
}

#[actix_web::test]
async fn one_or_several_token_id_prompts_are_answered_as_their_texts_are_and_echo_them() {
    let server = gpt2();
    let ids = text_ids(&server).await;
    // lm-evaluation-harness's loglikelihood request, tokenized on its side.
    let request = |prompt: Value| {
        json!({"model": "gpt2", "prompt": prompt, "echo": true, "logprobs": 1,
            "max_tokens": 2, "temperature": 0})
    };
    let (_, by_text) = server
        .post_json("/v1/completions", &request(json!(TEXT)))
        .await;
    let (status, by_ids) = server
        .post_json("/v1/completions", &request(ids.clone()))
        .await;
    assert_eq!(status, 200, "{by_ids}");
    assert_eq!(by_ids["choices"], by_text["choices"]);
    assert_eq!(by_ids["usage"], by_text["usage"]);
    assert!(by_ids["choices"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with(TEXT));
    // Whole floats are integers, as JSON Schema has them.
    let floats: Vec<f64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_f64().unwrap())
        .collect();
    let (status, by_floats) = server
        .post_json("/v1/completions", &request(json!(floats)))
        .await;
    assert_eq!(status, 200, "{by_floats}");
    assert_eq!(by_floats["choices"], by_text["choices"]);
    // Two prompts of ids: a choice each, in order; the second as it is alone.
    let short = json!(ids.as_array().unwrap()[..3]);
    let (status, both) = server
        .post_json("/v1/completions", &request(json!([ids, short])))
        .await;
    assert_eq!(status, 200, "{both}");
    let (_, alone) = server.post_json("/v1/completions", &request(short)).await;
    assert_eq!(both["choices"][0]["text"], by_text["choices"][0]["text"]);
    assert_eq!(both["choices"][1]["text"], alone["choices"][0]["text"]);
    assert_eq!(both["choices"][1]["index"], 1);
}

#[actix_web::test]
async fn empty_out_of_vocabulary_or_too_long_ids_get_a_422_before_a_stream_starts() {
    let server = gpt2();
    let too_long: Vec<u32> = vec![464; 64];
    for (prompt, named) in [
        (json!([]), "prompt: 0 prompts; give 1 to 16"),
        (json!([[]]), "prompt[0]: 0 token ids; give 1 to 63"),
        (json!(too_long), "prompt[0]: 64 token ids; give 1 to 63"),
        (
            json!([[464], [464, 50257]]),
            "prompt[1]: token id 50257 is not in the model's vocabulary (ids 0 to 50256)",
        ),
        (
            json!([464, "Hello"]),
            "prompt: must be a string, a list of strings, a list of token ids or a list of such lists",
        ),
        (json!([464, 2.5]), "prompt: must be"),
    ] {
        for stream in [false, true] {
            let body = json!({"model": "gpt2", "prompt": prompt, "max_tokens": 1,
                "stream": stream});
            server.assert_refused("/v1/completions", &body, named).await;
        }
    }
}

#[actix_web::test]
async fn a_model_on_another_node_takes_text_only_and_says_so() {
    let node = gpt2();
    let graph = common::graph_with_generator_on(&node, "gpt2");
    let body = json!({"model": "gpt2", "prompt": [464, 318], "max_tokens": 2});
    let (status, answer) = graph.post_json("/v1/completions", &body).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("prompt[0]: token ids need the model loaded on this server"),
        "{answer}"
    );
}

/// GPT-2's byte tokens 127 (0xC3) and 102 (0xA9) make "é" together: a prompt that ends with
/// the first, and a continuation that a logit bias of 100 makes start with the second.
#[actix_web::test]
async fn a_character_split_between_prompt_ids_and_continuation_is_the_continuations() {
    let server = gpt2();
    let body = |echo: bool, stream: bool| {
        json!({"model": "gpt2", "prompt": [15496, 127], "max_tokens": 1, "temperature": 0,
            "logit_bias": {"102": 100}, "echo": echo, "stream": stream})
    };
    let (status, plain) = server
        .post_json("/v1/completions", &body(false, false))
        .await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["choices"][0]["text"], "é");
    let (status, echoed) = server
        .post_json("/v1/completions", &body(true, false))
        .await;
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(echoed["choices"][0]["text"], "Helloé");
    let streamed: String = server
        .post_sse("/v1/completions", &body(false, true))
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
        .map(|l| {
            let chunk: Value = serde_json::from_str(l).unwrap();
            chunk["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(streamed, "é");
    // The text grows as the tokens come, so a stop string sees the character at once.
    let mut stopped = body(false, false);
    stopped["max_tokens"] = json!(4);
    stopped["stop"] = json!(["é"]);
    let (status, answer) = server.post_json("/v1/completions", &stopped).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 1, "{answer}");
}
