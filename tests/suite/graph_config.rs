//! `[[graphs]]` in config.toml: how steps read, and every misconfiguration refused at start
//! with a message naming the graph, the step and the key.

use crate::common;

use std::path::Path;

use common::server::{fixture_models, models_toml, serve_refuses};
use infergraph::config::graphs::{Action, Best, Condition, OnError, StepInput, StepKind};
use infergraph::config::Config;

const MODELS: &str = r#"
[[models]]
name = "gpt2"
path = "g1"
role = "generator"

[[models]]
name = "distilgpt2"
path = "g2"
role = "generator"

[[models]]
name = "bert"
path = "c"
role = "classifier"
"#;

/// `graphs` (TOML) followed by the models above.
fn parse(graphs: &str) -> Result<Config, String> {
    Config::from_toml(&format!("{graphs}\n{MODELS}"), Path::new(".")).map_err(|e| e.to_string())
}

fn refused(graphs: &str) -> String {
    match parse(graphs) {
        Ok(_) => panic!("accepted:\n{graphs}"),
        Err(message) => message,
    }
}

fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
}

#[test]
fn without_graphs_the_config_gets_the_builtin_graph() {
    let config = parse("").unwrap();
    assert_eq!(config.graphs.len(), 1);
    let graph = &config.graphs[0];
    assert!(graph.default && graph.builtin);
    assert_eq!(graph.name, "default");
    let StepKind::Parallel(calls) = &graph.steps[0].kind else {
        panic!("{graph:?}");
    };
    let models: Vec<&str> = calls.iter().map(|c| c.model.as_str()).collect();
    assert_eq!(models, ["gpt2", "distilgpt2"]);
    assert!(
        matches!(&graph.steps[1].kind, StepKind::Each(c) if c.model == "bert" && c.action == Action::Classify)
    );
}

#[test]
fn every_step_kind_reads_as_written() {
    let config = parse(
        r#"
[[graphs]]
name = "all"
  [[graphs.steps]]
  name = "mood"
  each = { classify = "bert" }
  [[graphs.steps]]
  switch = [
    { label = "LABEL_0", generate = "gpt2" },
    { score_above = 0.9, generate = "distilgpt2" },
  ]
  otherwise = { generate = "gpt2" }
  on_error = "continue"
  [[graphs.steps]]
  split = [ { weight = 90, generate = "gpt2" }, { weight = 10, generate = "distilgpt2" } ]
  input = "request"
  [[graphs.steps]]
  parallel = { classify = ["bert"] }
  [[graphs.steps]]
  select = "lowest_score"
"#,
    )
    .unwrap();
    let graph = &config.graphs[0];
    assert!(
        graph.default && !graph.builtin,
        "the only graph is the default"
    );
    let names: Vec<&str> = graph.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mood", "switch", "split", "parallel", "select"]);
    assert_eq!(
        graph.steps[0].input,
        StepInput::Request,
        "the first step reads the request"
    );
    assert_eq!(graph.steps[1].input, StepInput::Previous);
    assert_eq!(graph.steps[2].input, StepInput::Request);
    assert_eq!(graph.steps[1].on_error, OnError::Continue);
    assert_eq!(graph.steps[0].on_error, OnError::Fail);
    let StepKind::Switch { cases, otherwise } = &graph.steps[1].kind else {
        panic!()
    };
    assert_eq!(cases[0].when, Condition::Label("LABEL_0".into()));
    assert_eq!(cases[1].when, Condition::ScoreAbove(0.9));
    assert_eq!(otherwise.as_ref().unwrap().model, "gpt2");
    let StepKind::Split(branches) = &graph.steps[2].kind else {
        panic!()
    };
    assert_eq!(
        branches.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [90, 10]
    );
    assert_eq!(graph.steps[4].kind, StepKind::Select(Best::LowestScore));
}

#[test]
fn steps_of_one_kind_are_numbered_when_unnamed() {
    let config = parse(
        r#"
[[graphs]]
name = "chain"
  [[graphs.steps]]
  each = { generate = "gpt2" }
  [[graphs.steps]]
  each = { generate = "distilgpt2" }
  [[graphs.steps]]
  each = { classify = "bert" }
"#,
    )
    .unwrap();
    let names: Vec<&str> = config.graphs[0]
        .steps
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["each-1", "each-2", "each-3"]);
}

#[test]
fn an_unknown_model_is_refused_naming_graph_step_and_key() {
    let message = refused(
        r#"
[[graphs]]
name = "g"
  [[graphs.steps]]
  parallel = { generate = ["gpt2", "gpt3"] }
  [[graphs.steps]]
  each = { classify = "bert" }
"#,
    );
    assert_names(
        &message,
        &[
            "graphs \"g\" step 1",
            "parallel.generate",
            "\"gpt3\"",
            "gpt2, distilgpt2, bert",
        ],
    );
}

#[test]
fn a_step_that_asks_a_classifier_to_generate_is_refused() {
    let message = refused(
        r#"
[[graphs]]
name = "g"
  [[graphs.steps]]
  name = "write"
  each = { generate = "bert" }
"#,
    );
    assert_names(
        &message,
        &[
            "graphs \"g\" step 1 (\"write\")",
            "each.generate",
            "\"bert\" is a classifier",
        ],
    );
    let message = refused(
        r#"
[[graphs]]
name = "g"
  [[graphs.steps]]
  parallel = { generate = ["gpt2"] }
  [[graphs.steps]]
  each = { classify = "gpt2" }
"#,
    );
    assert_names(
        &message,
        &["step 2", "each.classify", "\"gpt2\" is a generator"],
    );
}

#[test]
fn split_weights_that_do_not_add_up_to_100_are_refused() {
    let message = refused(
        r#"
[[graphs]]
name = "canary"
  [[graphs.steps]]
  split = [ { weight = 90, generate = "gpt2" }, { weight = 20, generate = "distilgpt2" } ]
  [[graphs.steps]]
  each = { classify = "bert" }
"#,
    );
    assert_names(
        &message,
        &[
            "graphs \"canary\" step 1",
            "split.weight",
            "90 + 20",
            "110",
            "100",
        ],
    );
    let message = refused(
        r#"
[[graphs]]
name = "canary"
  [[graphs.steps]]
  split = [ { weight = 100, generate = "gpt2" }, { generate = "distilgpt2" } ]
"#,
    );
    assert_names(&message, &["split[1].weight", "missing"]);
}

#[test]
fn a_condition_on_a_score_the_step_before_does_not_give_is_refused() {
    let message = refused(
        r#"
[[graphs]]
name = "g"
  [[graphs.steps]]
  parallel = { generate = ["gpt2", "distilgpt2"] }
  [[graphs.steps]]
  switch = [ { label = "LABEL_0", generate = "gpt2" } ]
"#,
    );
    assert_names(
        &message,
        &["graphs \"g\" step 2", "switch[0].label", "carries none"],
    );
    // The request's own text carries no score either.
    let message = refused(
        r#"
[[graphs]]
name = "g"
  [[graphs.steps]]
  switch = [ { score_above = 0.5, generate = "gpt2" } ]
"#,
    );
    assert_names(&message, &["step 1", "switch[0].score_above"]);
    let message = refused(
        r#"
[[graphs]]
name = "g"
  [[graphs.steps]]
  parallel = { generate = ["gpt2", "distilgpt2"] }
  [[graphs.steps]]
  select = "highest_score"
"#,
    );
    assert_names(
        &message,
        &["step 2", "select", "step 1 (parallel)", "no score"],
    );
}

#[test]
fn a_text_condition_needs_no_score() {
    parse(
        r#"
[[graphs]]
name = "g"
  [[graphs.steps]]
  switch = [ { text_contains = "?", generate = "gpt2" } ]
  otherwise = { generate = "distilgpt2" }
  [[graphs.steps]]
  each = { classify = "bert" }
"#,
    )
    .unwrap();
}

#[test]
fn malformed_steps_are_refused_with_the_key() {
    for (step, parts) in [
        (
            "each = { classify = \"bert\" }\nselect = \"highest_score\"",
            &["kind", "each, select"][..],
        ),
        ("name = \"empty\"", &["kind", "found none"][..]),
        (
            "each = { classify = \"bert\", generate = \"gpt2\" }",
            &["each", "exactly one of generate"][..],
        ),
        (
            "each = { classify = \"bert\" }\notherwise = { generate = \"gpt2\" }",
            &["otherwise", "switch step only"][..],
        ),
        (
            "each = { classify = \"bert\" }\ninput = \"previous\"",
            &["input", "no previous step"][..],
        ),
        (
            "switch = [ { generate = \"gpt2\" } ]",
            &["switch[0]", "exactly one condition"][..],
        ),
        (
            "split = [ { weight = 100, generate = \"gpt2\" } ]",
            &["split", "two branches"][..],
        ),
        (
            "parallel = { generate = [] }",
            &["parallel", "no model"][..],
        ),
    ] {
        let message = refused(&format!(
            "[[graphs]]\nname = \"g\"\n[[graphs.steps]]\n{step}\n"
        ));
        assert_names(&message, &[&["graphs \"g\" step 1"][..], parts].concat());
    }
}

#[test]
fn graph_names_are_unique_url_safe_and_one_is_default() {
    let one = "[[graphs.steps]]\neach = { classify = \"bert\" }\n";
    let message = refused(&format!(
        "[[graphs]]\nname = \"a\"\n{one}[[graphs]]\nname = \"a\"\n{one}"
    ));
    assert_names(&message, &["graphs.name", "\"a\" appears twice"]);
    let message = refused(&format!("[[graphs]]\nname = \"a/b\"\n{one}"));
    assert_names(&message, &["graphs.name", "\"a/b\""]);
    let message = refused(&format!(
        "[[graphs]]\nname = \"a\"\ndefault = true\n{one}[[graphs]]\nname = \"b\"\ndefault = true\n{one}"
    ));
    assert_names(&message, &["graphs.default", "only one"]);
    let message = refused("[[graphs]]\nname = \"a\"\n");
    assert_names(&message, &["graphs \"a\"", "at least one [[graphs.steps]]"]);

    let config = parse(&format!(
        "[[graphs]]\nname = \"a\"\n{one}[[graphs]]\nname = \"b\"\ndefault = true\n{one}"
    ))
    .unwrap();
    assert_eq!(config.default_graph().unwrap().name, "b");
}

#[test]
fn the_default_graph_must_give_scores_for_the_seed_endpoints() {
    let message = refused(
        "[[graphs]]\nname = \"writer\"\n[[graphs.steps]]\nparallel = { generate = [\"gpt2\"] }\n",
    );
    assert_names(&message, &["graphs \"writer\"", "default", "score"]);
    // Another graph may be the default instead.
    parse(
        "[[graphs]]\nname = \"writer\"\n[[graphs.steps]]\nparallel = { generate = [\"gpt2\"] }\n\
         [[graphs]]\nname = \"scored\"\ndefault = true\n[[graphs.steps]]\neach = { classify = \"bert\" }\n",
    )
    .unwrap();
}

#[test]
fn with_graphs_a_config_runs_them_whatever_its_models() {
    let config =
        parse("[[graphs]]\nname = \"c\"\n[[graphs.steps]]\neach = { classify = \"bert\" }\n")
            .unwrap();
    assert!(config.runs_graph());
    assert_eq!(config.graphs.len(), 1);
}

/// The real binary on the fixture models, refusing a bad graph before it listens.
#[test]
fn the_server_refuses_to_start_on_a_bad_graph_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[graphs]]\nname = \"mood\"\n[[graphs.steps]]\neach = { classify = \"bert-base-uncased\" }\n\
             [[graphs.steps]]\nswitch = [ { label = \"POSITIVE\", generate = \"gpt2\" } ]\n\
             otherwise = { generate = \"distilgpt2\" }\n[[graphs.steps]]\neach = { classify = \"bert-base-uncased\" }\n",
            // Known only once the classifier is loaded: its labels.
            &["graphs \"mood\" step 2", "switch[0].label", "\"POSITIVE\"", "LABEL_0, LABEL_1"][..],
            false,
        ),
        (
            "[[graphs]]\nname = \"g\"\n[[graphs.steps]]\neach = { generate = \"bert-base-uncased\" }\n",
            &["graphs \"g\" step 1", "each.generate", "is a classifier"][..],
            true,
        ),
    ];
    for (graphs, parts, before_listening) in cases {
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "backend = \"cpu\"\n[server]\nport = 0\n{graphs}{}",
                models_toml(&fixture_models())
            ),
        )
        .unwrap();
        let stderr = serve_refuses(&path, &[]);
        if before_listening {
            assert!(
                !stderr.contains("listening on"),
                "refused before listening: {stderr}"
            );
        }
        assert_names(&stderr, parts);
    }
}

#[test]
fn a_generate_calls_prompt_or_chat_reads_as_written_and_bad_ones_are_refused_by_key() {
    use infergraph::config::graphs::Framing;
    let config = parse(
        r#"
[[graphs]]
name = "ask"
  [[graphs.steps]]
  name = "rewrite"
  each = { generate = "gpt2", prompt = "Rewrite politely: {text}\n{{done}}" }
  [[graphs.steps]]
  name = "reply"
  each = { generate = "gpt2", chat = { system = "Be brief.", user = "Answer this: {text}" } }
  [[graphs.steps]]
  each = { classify = "bert" }
"#,
    )
    .unwrap();
    let graph = &config.graphs[0];
    let StepKind::Each(rewrite) = &graph.steps[0].kind else {
        panic!("{graph:?}");
    };
    let Some(Framing::Prompt(prompt)) = &rewrite.framing else {
        panic!("{rewrite:?}");
    };
    assert_eq!(
        Framing::fill(prompt, "hey"),
        "Rewrite politely: hey\n{done}"
    );
    let StepKind::Each(reply) = &graph.steps[1].kind else {
        panic!("{graph:?}");
    };
    assert_eq!(
        reply.framing,
        Some(Framing::Chat {
            system: Some("Be brief.".into()),
            user: "Answer this: {text}".into()
        })
    );

    let step = |call: &str| {
        format!(
            "[[graphs]]\nname = \"g\"\n[[graphs.steps]]\n{call}\n[[graphs.steps]]\n\
             each = {{ classify = \"bert\" }}\n"
        )
    };
    for (call, parts) in [
        (
            r#"each = { generate = "gpt2", prompt = "Say {txt}" }"#,
            &[
                "graphs \"g\" step 1",
                "each.prompt",
                "unknown placeholder {txt}",
            ][..],
        ),
        (
            r#"each = { generate = "gpt2", prompt = "Say something" }"#,
            &["each.prompt", "never says {text}"][..],
        ),
        (
            r#"each = { generate = "gpt2", chat = { system = "Be {mood}.", user = "{text}" } }"#,
            &["each.chat.system", "unknown placeholder {mood}"][..],
        ),
        (
            r#"each = { generate = "gpt2", chat = { system = "Be brief." } }"#,
            &["each.chat.user", "missing"][..],
        ),
        (
            r#"each = { classify = "bert", prompt = "{text}" }"#,
            &[
                "each.prompt",
                "only a generate call takes one, not classify",
            ][..],
        ),
        (
            r#"each = { generate = "gpt2", prompt = "{text}", chat = { user = "{text}" } }"#,
            &["each", "give prompt or chat, not both"][..],
        ),
        (
            r#"parallel = { generate = ["gpt2", "distilgpt2"], prompt = "a } b {text}" }"#,
            &["parallel.prompt", "a lone }"][..],
        ),
    ] {
        assert_names(&refused(&step(call)), parts);
    }
}
