//! Log-probabilities of generated tokens: transformers' numbers on the model routes, the same
//! streamed, across a hop from a graph node, and in OpenAI's chat shape; graphs refuse them.

use crate::common;

use common::server::TestServer;
use serde_json::{json, Value};

/// gpt2-tiny-a, whose golden holds transformers' last-position logits for its prompts.
const FIXTURE: &str = "gpt2-tiny-a";

fn gpt2() -> TestServer {
    TestServer::start(&[("gpt2", common::fixture(FIXTURE), "generator")], "")
}

/// The `data:` payloads of an SSE body that are JSON.
fn data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// `/generate/stream`'s events for `body`: the tokens' `logprob`s as one list, and `done`.
async fn streamed_logprobs(server: &TestServer, body: &Value) -> (Value, Value) {
    let events = data(
        &server
            .post_sse("/v1/models/gpt2/generate/stream", body)
            .await,
    );
    let tokens: Vec<Value> = events
        .iter()
        .filter(|e| e["type"] == "token")
        .map(|e| e["logprob"].clone())
        .collect();
    let done = events.iter().find(|e| e["type"] == "done").unwrap().clone();
    (Value::from(tokens), done)
}

#[actix_web::test]
async fn the_first_tokens_logprobs_are_transformers_log_softmax_with_its_top_five() {
    let server = gpt2();
    for input in common::golden_inputs(FIXTURE) {
        let forward = &input["forward"];
        let body = json!({"text": input["text"], "max_new_tokens": 3, "logprobs": 5});
        let (status, answer) = server.post_json("/v1/models/gpt2/generate", &body).await;
        assert_eq!(status, 200, "{answer}");
        let logprobs = answer["logprobs"].as_array().unwrap();
        assert_eq!(logprobs.len(), 3);
        let log_sum = forward["last_logits_logsumexp"].as_f64().unwrap();
        let first = &logprobs[0];
        let top = first["top_logprobs"].as_array().unwrap();
        for (i, (id, value)) in forward["last_logits_top5_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(forward["last_logits_top5_values"].as_array().unwrap())
            .enumerate()
        {
            assert_eq!(top[i]["token_id"], *id, "{}", input["text"]);
            let expected = value.as_f64().unwrap() - log_sum;
            let got = top[i]["logprob"].as_f64().unwrap();
            assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
        }
        // Greedy: every chosen token is its position's most likely, with that number.
        for (entry, id) in logprobs.iter().zip(answer["token_ids"].as_array().unwrap()) {
            assert_eq!(entry["token_id"], *id);
            assert_eq!(entry["top_logprobs"][0]["token_id"], *id);
            assert_eq!(entry["logprob"], entry["top_logprobs"][0]["logprob"]);
            let probability: f64 = entry["top_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["logprob"].as_f64().unwrap().exp())
                .sum();
            assert!(probability <= 1.0 + 1e-5, "{probability}");
        }
    }
}

#[actix_web::test]
async fn sampling_does_not_change_the_numbers_and_streams_carry_the_same_ones() {
    let server = gpt2();
    let greedy = json!({"text": "I have an idea!", "max_new_tokens": 4, "logprobs": 2});
    let (_, plain) = server.post_json("/v1/models/gpt2/generate", &greedy).await;
    let (streamed, done) = streamed_logprobs(&server, &greedy).await;
    assert_eq!(streamed, plain["logprobs"]);
    assert_eq!(done["logprobs"], plain["logprobs"]);

    // A hot, seeded sample: the first position's distribution is the model's, whatever the
    // temperature picks from it.
    let sampled = json!({"text": "I have an idea!", "max_new_tokens": 4, "logprobs": 2,
        "temperature": 1.7, "seed": 3});
    let (_, hot) = server.post_json("/v1/models/gpt2/generate", &sampled).await;
    assert_eq!(
        hot["logprobs"][0]["top_logprobs"],
        plain["logprobs"][0]["top_logprobs"]
    );
    // Without the field there is none.
    let (_, none) = server
        .post_json(
            "/v1/models/gpt2/generate",
            &json!({"text": "I have an idea!", "max_new_tokens": 2}),
        )
        .await;
    assert!(none.get("logprobs").is_none(), "{none}");
}

#[actix_web::test]
async fn a_scored_prompt_gives_its_continuation_the_numbers_its_generation_gave() {
    let server = gpt2();
    let input = &common::golden_inputs(FIXTURE)[0];
    let text = input["text"].as_str().unwrap();
    let (_, generated) = server
        .post_json(
            "/v1/models/gpt2/generate",
            &json!({"text": text, "max_new_tokens": 3, "logprobs": 2}),
        )
        .await;
    // The prompt and its continuation as one prompt: its last three tokens are scored on
    // the same positions the generation chose them at (one forward without a cache there,
    // a prefill and cached steps here).
    let whole = generated["generated"].as_str().unwrap();
    let (status, scored) = server
        .post_json(
            "/v1/models/gpt2/generate",
            &json!({"text": whole, "max_new_tokens": 1, "logprobs": 2, "prompt_logprobs": true}),
        )
        .await;
    assert_eq!(status, 200, "{scored}");
    let prompt = &scored["prompt_logprobs"];
    let ids = input["input_ids"].as_array().unwrap();
    assert_eq!(prompt["first_token_id"], ids[0]);
    let tokens = prompt["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), ids.len() - 1 + 3);
    // Each prompt position's most likely next token is transformers' argmax there.
    let argmax = input["forward"]["per_position_argmax"].as_array().unwrap();
    for (i, entry) in tokens.iter().take(ids.len() - 1).enumerate() {
        assert_eq!(entry["token_id"], ids[i + 1]);
        assert_eq!(entry["top_logprobs"][0]["token_id"], argmax[i]);
    }
    for (entry, own) in tokens[ids.len() - 1..]
        .iter()
        .zip(generated["logprobs"].as_array().unwrap())
    {
        assert_eq!(entry["token_id"], own["token_id"]);
        let (a, b) = (
            entry["logprob"].as_f64().unwrap(),
            own["logprob"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[actix_web::test]
async fn echo_answers_the_prompt_and_its_scores_first_as_an_evaluation_harness_asks() {
    let server = gpt2();
    let prompt = "I have an idea!";
    // lm-evaluation-harness's loglikelihood request.
    let request = json!({"model": "gpt2", "prompt": prompt, "echo": true, "logprobs": 1,
        "max_tokens": 1, "temperature": 0});
    let (status, answer) = server.post_json("/v1/completions", &request).await;
    assert_eq!(status, 200, "{answer}");
    let choice = &answer["choices"][0];
    assert!(choice["text"].as_str().unwrap().starts_with(prompt));
    let logprobs = &choice["logprobs"];
    let prompt_tokens = answer["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    assert_eq!(
        logprobs["tokens"].as_array().unwrap().len(),
        prompt_tokens + 1
    );
    assert!(logprobs["token_logprobs"][0].is_null());
    assert!(logprobs["top_logprobs"][0].is_null());
    assert_eq!(logprobs["text_offset"][0], 0);
    let tokens: String = logprobs["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens, choice["text"].as_str().unwrap());
    let (_, native) = server
        .post_json(
            "/v1/models/gpt2/generate",
            &json!({"text": prompt, "max_new_tokens": 1, "logprobs": 1, "prompt_logprobs": true}),
        )
        .await;
    let expected: Vec<Value> = native["prompt_logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .chain(native["logprobs"].as_array().unwrap())
        .map(|t| t["logprob"].clone())
        .collect();
    assert_eq!(
        logprobs["token_logprobs"].as_array().unwrap()[1..],
        expected[..]
    );
    // Each of a prompt's choices starts with its scores (its first choice alone scored it).
    let mut two = request.clone();
    two["n"] = json!(2);
    let (status, answer) = server.post_json("/v1/completions", &two).await;
    assert_eq!(status, 200, "{answer}");
    for choice in answer["choices"].as_array().unwrap() {
        assert_eq!(
            choice["logprobs"]["token_logprobs"].as_array().unwrap()[..prompt_tokens],
            logprobs["token_logprobs"].as_array().unwrap()[..prompt_tokens]
        );
    }
}

#[actix_web::test]
async fn a_graph_refuses_them_and_a_model_route_bounds_them() {
    let server = TestServer::start(&common::server::fixture_models(), "");
    for (path, body, named) in [
        (
            "/v1/graph",
            json!({"text": "Hello", "logprobs": 1}),
            "logprobs: a graph does not report them",
        ),
        (
            "/v1/graph",
            json!({"text": "Hello", "logprobs": 1, "prompt_logprobs": true}),
            "logprobs: a graph does not report them",
        ),
        (
            "/v1/models/gpt2/generate",
            json!({"text": "Hello", "logprobs": 21}),
            "logprobs: 21 is out of range 0..=20",
        ),
        (
            "/v1/models/gpt2/generate",
            json!({"text": "Hello", "prompt_logprobs": true}),
            "prompt_logprobs: only with logprobs",
        ),
    ] {
        server.assert_refused(path, &body, named).await;
    }
}

/// The `prompt_logprobs` entries' numbers, as `/v1/models/qwen/generate` answers them.
fn scored_numbers(answer: &Value) -> Vec<(u64, f64)> {
    answer["prompt_logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["token_id"].as_u64().unwrap(),
                t["logprob"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Scoring runs the LM head on 64 positions at a time; qwen2-tiny's context (128) holds a
/// prompt that needs two runs. Its scores are those of its prefixes (a causal model's
/// position sees only what comes before it) and, at the end, those its own generation gave.
#[actix_web::test]
async fn a_prompt_longer_than_one_run_of_the_lm_head_is_scored_as_its_prefixes_and_generation_score_it(
) {
    let server = TestServer::start(&[("qwen", common::fixture("qwen2-tiny"), "generator")], "");
    // 96 words, 97 tokens; a prefix of the words is a prefix of the ids (a word is a token
    // here but for "barley").
    let words: Vec<&str> = "the quick brown fox jumps over a lazy dog while seven old men play \
        chess under green trees near quiet river banks and children run past small houses with \
        red roofs before evening rain falls across wide open fields where farmers gather wheat \
        corn and barley into large wooden barns then rest beside warm fires telling long \
        stories about distant mountains deep forests cold winters bright summers strange \
        travelers lost ships hidden treasure and songs that nobody remembers except one grey \
        owl sitting high above the sleeping village watching stars move slowly through the \
        night sky"
        .split_whitespace()
        .collect();
    let score = |text: String| {
        let server = &server;
        async move {
            let body = json!({"text": text, "max_new_tokens": 1, "logprobs": 2,
                "prompt_logprobs": true});
            let (status, answer) = server.post_json("/v1/models/qwen/generate", &body).await;
            assert_eq!(status, 200, "{answer}");
            answer
        }
    };
    let (status, generated) = server
        .post_json(
            "/v1/models/qwen/generate",
            &json!({"text": words.join(" "), "max_new_tokens": 3, "logprobs": 2,
                "temperature": 0}),
        )
        .await;
    assert_eq!(status, 200, "{generated}");
    let whole = scored_numbers(&score(generated["generated"].as_str().unwrap().into()).await);
    assert!(whole.len() > 64 + 3, "{} scored tokens", whole.len());
    let close = |(id_a, a): (u64, f64), (id_b, b): (u64, f64)| {
        assert_eq!(id_a, id_b);
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    };
    for (entry, own) in whole[whole.len() - 3..]
        .iter()
        .zip(generated["logprobs"].as_array().unwrap())
    {
        let own = (
            own["token_id"].as_u64().unwrap(),
            own["logprob"].as_f64().unwrap(),
        );
        close(*entry, own);
    }
    // 64 words are 65 tokens, whose 64 scored positions are one run; 65 words need two.
    for cut in [64, 65, 80] {
        let prefix = scored_numbers(&score(words[..cut].join(" ")).await);
        for (a, b) in prefix.iter().zip(&whole) {
            close(*a, *b);
        }
    }
}

#[actix_web::test]
async fn a_model_on_another_node_reports_what_the_node_reports() {
    let node = gpt2();
    let graph = common::graph_with_generator_on(&node, "gpt2");
    let body = json!({"text": "I have an idea!", "max_new_tokens": 3, "logprobs": 3,
        "prompt_logprobs": true});
    let (_, direct) = node.post_json("/v1/models/gpt2/generate", &body).await;
    let (status, hop) = graph.post_json("/v1/models/gpt2/generate", &body).await;
    assert_eq!(status, 200, "{hop}");
    assert_eq!(hop["logprobs"], direct["logprobs"]);
    assert_eq!(hop["prompt_logprobs"], direct["prompt_logprobs"]);
    assert!(direct["prompt_logprobs"]["tokens"].is_array(), "{direct}");
    let (streamed, done) = streamed_logprobs(&graph, &body).await;
    assert_eq!(streamed, direct["logprobs"]);
    assert_eq!(done["logprobs"], direct["logprobs"]);
}

#[actix_web::test]
async fn chat_completions_show_the_chat_routes_numbers_in_openais_shape_plain_and_streamed() {
    let server = TestServer::start(&[("llama", common::fixture("llama-tiny"), "generator")], "");
    let messages = json!([{"role": "user", "content": "Hi"}]);
    let (_, native) = server
        .post_json(
            "/v1/models/llama/chat",
            &json!({"messages": messages, "max_new_tokens": 4, "logprobs": 2}),
        )
        .await;
    let native = native["logprobs"].as_array().unwrap().clone();
    let request = json!({"model": "llama", "messages": messages, "max_tokens": 4,
        "temperature": 0, "logprobs": true, "top_logprobs": 2});
    let (status, answer) = server.post_json("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{answer}");
    let content = answer["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(content.len(), native.len());
    for (shown, own) in content.iter().zip(&native) {
        assert_eq!(shown["token"], own["token"]);
        assert_eq!(shown["logprob"], own["logprob"]);
        let bytes: Vec<u8> = own["token"].as_str().unwrap().bytes().collect();
        assert_eq!(shown["bytes"], json!(bytes));
        let top = |entries: &Value| -> Vec<(Value, Value)> {
            entries
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["token"].clone(), e["logprob"].clone()))
                .collect()
        };
        assert_eq!(top(&shown["top_logprobs"]), top(&own["top_logprobs"]));
    }
    let mut stream = request.clone();
    stream["stream"] = json!(true);
    let chunks = data(&server.post_sse("/v1/chat/completions", &stream).await);
    let streamed: Vec<Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
        .flatten()
        .cloned()
        .collect();
    assert_eq!(streamed, content);
    // Without `logprobs` the field is null, as OpenAI sends it.
    let (_, plain) = server
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "llama", "messages": messages, "max_tokens": 2}),
        )
        .await;
    assert!(plain["choices"][0]["logprobs"].is_null(), "{plain}");
}
