//! `config.toml` parsing: typos and impossible graphs fail at start with the key named.

use std::path::Path;

use infergraph::backend::BackendChoice;
use infergraph::config::{Config, ModelSource, Role};

const GRAPH: &str = r#"
[[models]]
name = "g"
path = "weights/g"
role = "generator"

[[models]]
name = "c"
path = "/abs/c"
role = "classifier"
"#;

#[test]
fn relative_model_paths_resolve_against_the_config_folder() {
    let config = Config::from_toml(GRAPH, Path::new("/etc/infergraph")).unwrap();
    assert_eq!(
        config.models[0].path(),
        Some(Path::new("/etc/infergraph/weights/g"))
    );
    assert_eq!(config.models[1].path(), Some(Path::new("/abs/c")));
    assert_eq!(config.backend, BackendChoice::Auto);
    assert_eq!(config.classifier().unwrap().role, Role::Classifier);
    assert!(config.runs_graph());
}

#[test]
fn an_unknown_key_is_an_error_that_names_it() {
    let text = format!("backnd = \"cpu\"\n{GRAPH}");
    let error = Config::from_toml(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(error.contains("backnd"), "{error}");
}

#[test]
fn a_bad_backend_value_is_an_error_that_names_the_key() {
    let text = format!("backend = \"tpu\"\n{GRAPH}");
    let error = Config::from_toml(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("backend") && error.contains("tpu"),
        "{error}"
    );
}

#[test]
fn a_graph_has_at_most_one_classifier() {
    let text = GRAPH.replace("role = \"generator\"", "role = \"classifier\"");
    let error = Config::from_toml(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("exactly one role = \"classifier\""),
        "{error}"
    );
}

#[test]
fn models_that_are_not_a_whole_graph_make_a_model_node() {
    let one = "[[models]]\nname = \"gpt2-medium\"\npath = \"m\"\nrole = \"generator\"\n";
    let config = Config::from_toml(one, Path::new(".")).unwrap();
    assert!(!config.runs_graph());
    let classifier_only = GRAPH.replace("role = \"generator\"", "role = \"classifier\"");
    let classifier_only = classifier_only.split("[[models]]").nth(2).unwrap();
    let config =
        Config::from_toml(&format!("[[models]]{classifier_only}"), Path::new(".")).unwrap();
    assert!(!config.runs_graph());
    // A model node serves what it loads; it forwards nothing.
    let remote = one.replace("path = \"m\"", "url = \"http://10.0.0.1:3000\"");
    let error = Config::from_toml(&remote, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"gpt2-medium\"") && error.contains("model node"),
        "{error}"
    );
}

#[test]
fn a_graph_may_reach_its_models_by_url_or_replica_urls() {
    let text = GRAPH
        .replace("path = \"weights/g\"", "url = \"http://node-a:3000\"")
        .replace(
            "path = \"/abs/c\"",
            "urls = [\"http://b1:3000\", \"http://b2:3000\"]",
        );
    let config = Config::from_toml(&text, Path::new(".")).unwrap();
    assert!(config.runs_graph());
    assert_eq!(
        config.models[0].source,
        ModelSource::Remote(vec!["http://node-a:3000".into()])
    );
    assert_eq!(
        config.models[1].source,
        ModelSource::Remote(vec!["http://b1:3000".into(), "http://b2:3000".into()])
    );
    for (entry, message) in [
        (
            "path = \"x\"\nurl = \"http://a:1\"",
            "exactly one of path, url, urls",
        ),
        ("urls = []", "exactly one of path, url, urls"),
        ("url = \"https://a:1\"", "needs [remote.tls] ca"),
        (
            "url = \"ftp://a:1\"",
            "must be http://host:port or https://host:port",
        ),
        ("url = \"http://a:1/v1\"", "must be http://host:port"),
    ] {
        let text = GRAPH.replace("path = \"weights/g\"", entry);
        let error = Config::from_toml(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(message) && error.contains("\"g\""),
            "{entry}: {error}"
        );
    }
}

#[test]
fn model_names_must_be_unique() {
    let text = GRAPH.replace("name = \"c\"", "name = \"g\"");
    let error = Config::from_toml(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"g\" appears twice"), "{error}");
}

#[test]
fn a_model_takes_a_dtype_and_a_bad_one_is_named() {
    let text = GRAPH.replace(
        "role = \"generator\"",
        "role = \"generator\"\ndtype = \"int8\"",
    );
    let config = Config::from_toml(&text, Path::new(".")).unwrap();
    assert_eq!(
        config.models[0].dtype,
        Some(infergraph::models::Dtype::Int8)
    );
    assert_eq!(
        config.models[1].dtype, None,
        "as stored by default (f32 for a safetensors folder)"
    );
    let text = GRAPH.replace(
        "role = \"generator\"",
        "role = \"generator\"\ndtype = \"fp8\"",
    );
    let error = Config::from_toml(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(error.contains("fp8") && error.contains("int8"), "{error}");
    let text = "[[models]]\nname = \"g\"\nurl = \"http://127.0.0.1:9\"\nrole = \"generator\"\ndtype = \"f16\"\n";
    let error = Config::from_toml(text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("dtype") && error.contains("\"g\""),
        "{error}"
    );
}

#[test]
fn a_chat_template_is_a_local_generators_and_given_one_way() {
    let base = "[[models]]\nname = \"g\"\npath = \"m\"\nrole = \"generator\"\n";
    let config = Config::from_toml(
        &format!("{base}chat_template_file = \"t.jinja\"\n"),
        Path::new("/etc/ig"),
    )
    .unwrap();
    assert_eq!(
        config.models[0].chat_template,
        Some(infergraph::config::ConfiguredTemplate::File(
            "/etc/ig/t.jinja".into()
        )),
        "relative to the config"
    );
    for (text, says) in [
        (
            format!("{base}chat_template = \"x\"\nchat_template_file = \"t\"\n"),
            "not both",
        ),
        (
            base.replace("generator", "classifier") + "chat_template = \"x\"\n",
            "local generator",
        ),
    ] {
        let error = Config::from_toml(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(error.contains(says) && error.contains("\"g\""), "{error}");
    }
}
