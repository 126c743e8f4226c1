//! `POST /v1/completions` and `GET /v1/models` as OpenAI's clients see them: the official
//! `openai` Python package (installed by `.ci/run`), and the wire format itself.

use crate::common;

use common::server::{fixture_models, TestServer};
use serde_json::{json, Value};

#[actix_web::test]
async fn the_official_openai_client_gets_what_the_native_route_answers() {
    let server = TestServer::start(&fixture_models(), "");
    common::openai_check("client_check.py", &[&server.base, "gpt2"]);
}

/// The `data:` payloads of an SSE body.
fn data_lines(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[actix_web::test]
async fn a_streamed_completion_is_openai_chunks_then_done_and_equals_the_plain_one() {
    let server = TestServer::start(&fixture_models(), "");
    let request = json!({"model": "gpt2", "prompt": ["Hello, my name is", "I have an idea!"],
        "max_tokens": 5, "temperature": 0});
    let (status, plain) = server.post_json("/v1/completions", &request).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["object"], "text_completion");
    assert_eq!(plain["model"], "gpt2");
    assert!(plain["id"].as_str().unwrap().starts_with("cmpl-"));
    let choices = plain["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        assert_eq!(choice["finish_reason"], "length");
        assert!(choice["logprobs"].is_null());
    }
    assert_eq!(plain["usage"]["completion_tokens"], 10);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let lines = data_lines(&server.post_sse("/v1/completions", &streamed).await);
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut texts = [String::new(), String::new()];
    let mut finished = [None, None];
    for chunk in &chunks[..chunks.len() - 1] {
        assert_eq!(chunk["id"], chunks[0]["id"], "one id for the whole stream");
        assert_eq!(chunk["object"], "text_completion");
        let choice = &chunk["choices"][0];
        let i = choice["index"].as_u64().unwrap() as usize;
        assert!(finished[i].is_none(), "nothing after a choice's last chunk");
        texts[i] += choice["text"].as_str().unwrap();
        if !choice["finish_reason"].is_null() {
            finished[i] = Some(choice["finish_reason"].clone());
        }
    }
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(texts[i], choice["text"].as_str().unwrap());
        assert_eq!(finished[i].as_ref(), Some(&choice["finish_reason"]));
    }
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], plain["usage"]);
}

#[actix_web::test]
async fn n_choices_a_prompt_are_sampled_with_consecutive_seeds_and_numbered_prompt_by_prompt() {
    let server = TestServer::start(&fixture_models(), "");
    let prompts = ["Hello, my name is", "I have an idea!"];
    let request = json!({"model": "gpt2", "prompt": prompts, "n": 3, "max_tokens": 6,
        "temperature": 0.9, "seed": 11});
    let (status, plain) = server.post_json("/v1/completions", &request).await;
    assert_eq!(status, 200, "{plain}");
    let choices = plain["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 6);
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    for (i, prompt) in prompts.iter().enumerate() {
        for j in 0..3 {
            let native = json!({"text": prompt, "max_new_tokens": 6, "temperature": 0.9,
                "seed": 11 + j});
            let (status, want) = server.post_json("/v1/models/gpt2/generate", &native).await;
            assert_eq!(status, 200, "{want}");
            let choice = &choices[i * 3 + j as usize];
            assert_eq!(choice["index"], i * 3 + j as usize);
            assert_eq!(
                choice["text"], want["continuation"],
                "prompt {i}, choice {j}"
            );
            if j == 0 {
                prompt_tokens += want["prompt_tokens"].as_u64().unwrap();
            }
            completion_tokens += want["generated_tokens"].as_u64().unwrap();
        }
    }
    let texts: Vec<&Value> = choices.iter().map(|c| &c["text"]).collect();
    assert_ne!(texts[0], texts[1], "another seed samples another text");
    // Each prompt counts once, as OpenAI counts it.
    assert_eq!(plain["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(plain["usage"]["completion_tokens"], completion_tokens);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let lines = data_lines(&server.post_sse("/v1/completions", &streamed).await);
    let mut joined = vec![String::new(); 6];
    for line in lines.iter().filter(|l| *l != "[DONE]") {
        let chunk: Value = serde_json::from_str(line).unwrap();
        for choice in chunk["choices"].as_array().unwrap() {
            let index = choice["index"].as_u64().unwrap() as usize;
            joined[index] += choice["text"].as_str().unwrap();
        }
    }
    let want: Vec<&str> = choices
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, want);
}

#[actix_web::test]
async fn what_is_not_implemented_or_unknown_gets_a_422_naming_it() {
    let server = TestServer::start(&fixture_models(), "[limits]\nmax_new_tokens = 16\n");
    let base = json!({"model": "gpt2", "prompt": "Hello"});
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (body, named) in [
        (with(json!({"n": 0})), vec!["n: 0 choices; give 1 to 4"]),
        (with(json!({"n": 5})), vec!["n: 5 choices; give 1 to 4"]),
        (with(json!({"best_of": 3})), vec!["best_of"]),
        (
            with(json!({"echo": true, "stream": true})),
            vec!["echo with stream"],
        ),
        (
            with(json!({"logprobs": 6})),
            vec!["logprobs: 6 is out of range 0..=5"],
        ),
        (with(json!({"suffix": "x"})), vec!["suffix"]),
        (
            with(json!({"presence_penalty": 2.5})),
            vec!["presence_penalty: 2.5 is out of range [-2, 2]"],
        ),
        (
            with(json!({"frequency_penalty": -3})),
            vec!["frequency_penalty: -3 is out of range [-2, 2]"],
        ),
        (
            with(json!({"logit_bias": {"50257": -100}})),
            vec!["logit_bias: \"50257\" is not a token id of the model's vocabulary (0 to 50256)"],
        ),
        (
            with(json!({"logit_bias": {"007": 5}})),
            vec!["logit_bias: \"007\" is not a token id"],
        ),
        (
            with(json!({"logit_bias": {"7": 101}})),
            vec!["logit_bias: token 7's bias 101 is not a number from -100 to 100"],
        ),
        (
            with(json!({"logit_bias": {"7": "-5"}})),
            vec!["logit_bias: token 7's bias \"-5\""],
        ),
        (
            with(json!({"beam": 2, "tools": []})),
            vec!["unknown fields: beam, tools"],
        ),
        (
            with(json!({"max_tokens": 17})),
            vec!["max_tokens: 17 is out of range"],
        ),
        (with(json!({"temperature": 2.5})), vec!["temperature"]),
        (with(json!({"prompt": [1, "two"]})), vec!["prompt"]),
        (with(json!({"prompt": ["fine", ""]})), vec!["prompt[1]"]),
    ] {
        let (status, answer) = server.post_json("/v1/completions", &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error_type"], "validation");
        let error = answer["error"].as_str().unwrap();
        for name in named {
            assert!(error.contains(name), "{body}: {error}");
        }
    }
    // Neutral values of those fields change nothing, so they are taken.
    let neutral = with(
        json!({"n": 1, "best_of": 1, "echo": false, "logprobs": null,
        "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": {}, "user": "me",
        "temperature": 0, "max_tokens": 3}),
    );
    let (status, answer) = server.post_json("/v1/completions", &neutral).await;
    assert_eq!(status, 200, "{answer}");
    for (model, status, error_type) in [
        ("gpt3", 404, "model_not_found"),
        ("bert-base-uncased", 422, "wrong_role"),
    ] {
        let (got, answer) = server
            .post_json(
                "/v1/completions",
                &json!({"model": model, "prompt": "Hello"}),
            )
            .await;
        assert_eq!(
            (got, answer["error_type"].as_str()),
            (status, Some(error_type))
        );
    }
}

#[actix_web::test]
async fn penalties_and_a_logit_bias_steer_a_greedy_completion() {
    let server = TestServer::start(&fixture_models(), "");
    let prompt = "Hello, my name is";
    let native = |extra: Value| {
        let mut body = json!({"text": prompt, "max_new_tokens": 8, "logprobs": 0});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, plain) = server
        .post_json("/v1/models/gpt2/generate", &native(json!({})))
        .await;
    assert_eq!(status, 200, "{plain}");
    let ids = |answer: &Value| -> Vec<u64> {
        answer["logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["token_id"].as_u64().unwrap())
            .collect()
    };
    let greedy = ids(&plain);

    // The penalties: the completion is the native route's with the same penalties, and the
    // tiny model, which repeats itself when greedy, says something else.
    let penalties = json!({"frequency_penalty": 0.8, "presence_penalty": 0.5});
    let (status, penalized) = server
        .post_json("/v1/models/gpt2/generate", &native(penalties.clone()))
        .await;
    assert_eq!(status, 200, "{penalized}");
    assert_ne!(ids(&penalized), greedy);
    let mut completion = json!({"model": "gpt2", "prompt": prompt, "max_tokens": 8,
        "temperature": 0});
    completion
        .as_object_mut()
        .unwrap()
        .extend(penalties.as_object().unwrap().clone());
    let (status, answer) = server.post_json("/v1/completions", &completion).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["choices"][0]["text"], penalized["continuation"],
        "{answer}"
    );

    // A bias of −100 on the greedy first token: another one comes first.
    let banned = json!({"model": "gpt2", "prompt": prompt, "max_tokens": 8, "temperature": 0,
        "logprobs": 0, "logit_bias": {greedy[0].to_string(): -100}});
    let (status, answer) = server.post_json("/v1/completions", &banned).await;
    assert_eq!(status, 200, "{answer}");
    let first = &answer["choices"][0]["logprobs"]["tokens"][0];
    assert_ne!(*first, plain["logprobs"][0]["token"], "{answer}");
}

#[actix_web::test]
async fn vllms_top_k_min_p_and_repetition_penalty_work_on_the_completions_route() {
    let server = TestServer::start(&fixture_models(), "");
    let text = |extra: Value| {
        let server = &server;
        async move {
            let mut body = json!({"model": "gpt2", "prompt": "Hello, my name is",
                "max_tokens": 8});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let (status, answer) = server.post_json("/v1/completions", &body).await;
            assert_eq!(status, 200, "{body}: {answer}");
            answer["choices"][0]["text"].as_str().unwrap().to_string()
        }
    };
    let greedy = text(json!({"temperature": 0})).await;
    // Only the most likely token is left to draw from: the greedy text, at any temperature.
    for only_the_top in [json!({"top_k": 1}), json!({"min_p": 1.0})] {
        let mut body = json!({"temperature": 1.5, "seed": 3});
        body.as_object_mut()
            .unwrap()
            .extend(only_the_top.as_object().unwrap().clone());
        assert_eq!(text(body.clone()).await, greedy, "{body}");
    }
    let sampled = text(json!({"temperature": 1.5, "seed": 3})).await;
    assert_ne!(sampled, greedy, "the seed samples off the greedy path");
    // -1 and 0 keep every token, as vLLM reads them.
    for all in [-1, 0] {
        let body = json!({"temperature": 1.5, "seed": 3, "top_k": all});
        assert_eq!(text(body).await, sampled, "top_k {all}");
    }
    // The repetition penalty is the native route's.
    let (status, native) = server
        .post_json(
            "/v1/models/gpt2/generate",
            &json!({"text": "Hello, my name is", "max_new_tokens": 8, "repetition_penalty": 1.5}),
        )
        .await;
    assert_eq!(status, 200, "{native}");
    let penalized = text(json!({"temperature": 0, "repetition_penalty": 1.5})).await;
    assert_eq!(penalized, native["continuation"].as_str().unwrap());
    assert_ne!(penalized, greedy);
    for (extra, named) in [
        (
            json!({"top_k": -2}),
            "top_k: -2 is not a positive integer, or -1 or 0",
        ),
        (json!({"min_p": 1.5}), "min_p: 1.5 is out of range [0, 1]"),
        (
            json!({"repetition_penalty": 0}),
            "repetition_penalty: 0 is out of range (0, 100]",
        ),
    ] {
        let mut body = json!({"model": "gpt2", "prompt": "Hello"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        server.assert_refused("/v1/completions", &body, named).await;
    }
}

#[actix_web::test]
async fn v1_models_keeps_its_fields_and_adds_openais() {
    let server = TestServer::start(&fixture_models(), "");
    let mut response = awc::Client::default()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    let models = body["models"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    for (entry, model) in data.iter().zip(models) {
        assert_eq!(entry["id"], model["name"]);
        assert_eq!(entry["object"], "model");
        assert_eq!(entry["owned_by"], "infergraph");
        assert!(entry["created"].as_u64().unwrap() > 1_700_000_000);
        assert!(model["role"].is_string() && model["parameters"].is_u64());
    }
}
