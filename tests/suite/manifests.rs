//! The Kubernetes manifests in `deploy/kubernetes/`: every overlay renders and validates
//! against the Kubernetes schemas in strict mode (`validate.sh`, with kubernetes-validate
//! installed by `.ci/run`), and every node's config is one this server starts from, in
//! base and with TLS (`overlays/tls`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use infergraph::config::{Config, ModelSource};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

#[test]
fn every_overlay_renders_and_validates_in_strict_mode() {
    crate::common::run_ok(
        "validate.sh",
        std::process::Command::new("bash").arg(deploy().join("validate.sh")),
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

/// The objects `kubectl kustomize` (or `kustomize build`) renders from `dir`, as JSON (by
/// python3's yaml, which validate.sh needs too).
fn render(dir: &Path) -> Vec<Value> {
    let stdout = crate::common::run_ok(
        &format!("rendering {}", dir.display()),
        std::process::Command::new("bash")
            .arg("-c")
            .arg(
                r#"set -euo pipefail
            if command -v kubectl >/dev/null; then kubectl kustomize "$1"; else kustomize build "$1"; fi |
              python3 -c 'import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)'"#,
            )
            .arg("render")
            .arg(dir),
    );
    serde_json::from_slice(&stdout).unwrap()
}

/// overlays/tls: every model is reached over https://, every node listens with
/// [server.tls] (the model nodes requiring the graph node's client certificate), and every
/// TLS file a config names is an item of the Secret infergraph-tls mounted at that path.
#[test]
fn the_tls_overlay_reaches_every_model_node_over_mutual_tls_from_the_secret() {
    let objects = render(&deploy().join("overlays/tls"));
    assert!(
        objects.iter().all(|o| o["kind"] != "Secret"),
        "the certificate's Secret is created apart, never rendered from the repository"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut graphs = Vec::new();
    let mut model_nodes = Vec::new();
    for deployment in objects.iter().filter(|o| o["kind"] == "Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let volumes = pod["volumes"].as_array().unwrap();
        let container = &pod["containers"][0];

        // The Secret's files in this container: path -> the Secret's key.
        let mut from_secret: HashMap<PathBuf, String> = HashMap::new();
        for mount in container["volumeMounts"].as_array().unwrap() {
            let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
            if volume["secret"]["secretName"] != "infergraph-tls" {
                continue;
            }
            assert_eq!(
                mount["readOnly"], true,
                "{name}: the TLS Secret is mounted read-only"
            );
            for item in volume["secret"]["items"].as_array().unwrap() {
                let path = Path::new(mount["mountPath"].as_str().unwrap())
                    .join(item["path"].as_str().unwrap());
                from_secret.insert(path, item["key"].as_str().unwrap().to_string());
            }
        }
        let mounted = |file: &Path| from_secret.get(file).map(String::as_str);

        // The config this pod runs, from its ConfigMap.
        let config_map = volumes
            .iter()
            .find(|v| v["name"] == "config")
            .and_then(|v| v["configMap"]["name"].as_str())
            .unwrap();
        let text = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == config_map)
            .and_then(|c| c["data"]["config.toml"].as_str())
            .unwrap_or_else(|| panic!("{name}: no ConfigMap {config_map} with config.toml"));
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let config = Config::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));

        let server = config
            .server
            .tls
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no [server.tls]"));
        assert_eq!(
            mounted(server.cert.as_path()),
            Some("tls.crt"),
            "{name}: [server.tls] cert"
        );
        assert_eq!(
            mounted(server.key.as_path()),
            Some("tls.key"),
            "{name}: [server.tls] key"
        );
        if config.runs_graph() {
            // Its own listener asks no client certificate: its clients hold API keys.
            assert_eq!(server.client_ca, None, "{name}: [server.tls] client_ca");
            let remote = config
                .remote
                .tls
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no [remote.tls]"));
            assert_eq!(
                mounted(remote.ca.as_path()),
                Some("ca.crt"),
                "{name}: [remote.tls] ca"
            );
            assert_eq!(
                remote.cert.as_deref().and_then(&mounted),
                Some("tls.crt"),
                "{name}: [remote.tls] cert"
            );
            assert_eq!(
                remote.key.as_deref().and_then(&mounted),
                Some("tls.key"),
                "{name}: [remote.tls] key"
            );
            graphs.push(config);
        } else {
            assert_eq!(
                server.client_ca.as_deref().and_then(mounted),
                Some("ca.crt"),
                "{name}: a model node requires client certificates signed by the CA"
            );
            assert!(
                config.remote.tls.is_none(),
                "{name}: a model node calls no one"
            );
            assert_eq!(config.models.len(), 1, "{name}");
            model_nodes.push(config.models[0].name.clone());
        }
    }

    assert_eq!(graphs.len(), 1, "one graph node");
    let graph = &graphs[0];
    for model in &graph.models {
        let ModelSource::Remote(urls) = &model.source else {
            panic!("the graph node loads no model itself: {}", model.name);
        };
        assert_eq!(urls, &[format!("https://infergraph-{}:3000", model.name)]);
    }
    let mut wanted: Vec<String> = graph.models.iter().map(|m| m.name.clone()).collect();
    wanted.sort();
    model_nodes.sort();
    assert_eq!(
        model_nodes, wanted,
        "one model node with mutual TLS per model of the graph"
    );
}

/// components/tls (which overlays/tls uses) replaces each node's config whole (a ConfigMap
/// cannot be patched inside), so each copy must stay the base's plus TLS: [server.tls],
/// [remote.tls] and https:// urls.
#[test]
fn the_tls_overlay_configs_are_the_bases_plus_tls() {
    let mut nodes = vec![PathBuf::from("graph")];
    for entry in std::fs::read_dir(deploy().join("base/models")).unwrap() {
        nodes.push(Path::new("models").join(entry.unwrap().file_name()));
    }
    for node in &nodes {
        let read = |root: &str| -> toml::Table {
            let path = deploy().join(root).join(node).join("config.toml");
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .parse()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let base = read("base");
        let mut tls = read("components/tls");
        for table in ["server", "remote"] {
            if let Some(toml::Value::Table(t)) = tls.get_mut(table) {
                t.remove("tls");
            }
        }
        if let Some(toml::Value::Array(models)) = tls.get_mut("models") {
            for model in models {
                if let Some(toml::Value::String(url)) = model.get_mut("url") {
                    *url = url.replacen("https://", "http://", 1);
                }
            }
        }
        assert_eq!(
            tls,
            base,
            "components/tls/{0}/config.toml is base/{0}/config.toml plus TLS",
            node.display()
        );
    }
}
