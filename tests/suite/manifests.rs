//! The Kubernetes manifests in `deploy/kubernetes/`: every overlay renders and validates
//! against the Kubernetes schemas in strict mode (`validate.sh`, with kubernetes-validate
//! installed by `.ci/run`), and every node's config is one this server starts from.

use std::path::{Path, PathBuf};

use infergraph::config::{Config, ModelSource};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

#[test]
fn every_overlay_renders_and_validates_in_strict_mode() {
    let output = std::process::Command::new("bash")
        .arg(deploy().join("validate.sh"))
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "validate.sh failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_node_config_parses_and_the_graph_reaches_every_model_node() {
    let base = deploy().join("base");
    let graph = Config::from_file(&base.join("graph/config.toml")).unwrap();
    assert!(graph.runs_graph());
    for model in &graph.models {
        let ModelSource::Remote(urls) = &model.source else {
            panic!("the graph node loads no model itself: {}", model.name);
        };
        assert_eq!(urls, &[format!("http://infergraph-{}:3000", model.name)]);
        let node = Config::from_file(&base.join("models").join(&model.name).join("config.toml"))
            .unwrap_or_else(|e| panic!("{}: {e}", model.name));
        assert!(!node.runs_graph(), "{} is a model node", model.name);
        assert_eq!(node.models.len(), 1);
        assert_eq!(
            (node.models[0].name.as_str(), node.models[0].role),
            (model.name.as_str(), model.role)
        );
    }
}
