//! `config.toml` parsing: typos and impossible graphs fail at start with the key named.

use std::path::Path;

use infergraph::backend::BackendChoice;
use infergraph::config::{Config, Role};

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
        config.models[0].path,
        Path::new("/etc/infergraph/weights/g")
    );
    assert_eq!(config.models[1].path, Path::new("/abs/c"));
    assert_eq!(config.backend, BackendChoice::Auto);
    assert_eq!(config.classifier().role, Role::Classifier);
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
fn a_graph_needs_exactly_one_classifier() {
    let text = GRAPH.replace("role = \"classifier\"", "role = \"generator\"");
    let error = Config::from_toml(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("exactly one role = \"classifier\""),
        "{error}"
    );
}

#[test]
fn model_names_must_be_unique() {
    let text = GRAPH.replace("name = \"c\"", "name = \"g\"");
    let error = Config::from_toml(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"g\" appears twice"), "{error}");
}
