//! A model node on a test host of its own (a network namespace joined to this one by a veth
//! pair), cut off by taking the link down: the graph node answers 503 `model_unavailable`
//! within its timeouts, its `/readyz` turns 503, and it serves again by itself once the link
//! is back. Needs root and iproute2, as the project's machines and CI have.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::server::{fixture_models, models_toml, TestServer};
use common::*;
use serde_json::json;

/// A network namespace with a veth pair to this one, `10.231.N.1` here and `.2` there.
struct TestHost {
    namespace: String,
    /// This side of the pair.
    link: String,
    /// The test host's side, which the test takes down and up: packets to it are then
    /// dropped without a word, as on a cut cable.
    peer: String,
    address: String,
    /// The fallback route that keeps a cut link's traffic on this machine.
    subnet: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2's ip runs");
    assert!(status.success(), "ip {args:?} failed");
}

impl TestHost {
    fn new() -> Self {
        let n = std::process::id() % 250;
        let (namespace, link, peer) = (format!("ig-{n}"), format!("igh{n}"), format!("ign{n}"));
        let (here, there) = (format!("10.231.{n}.1/30"), format!("10.231.{n}.2/30"));
        ip(&["netns", "add", &namespace]);
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &namespace]);
        ip(&["addr", "add", &here, "dev", &link]);
        ip(&["link", "set", &link, "up"]);
        // Should the link's own route go, this one below it answers "unreachable", so no
        // packet for the test host ever takes the default route out of the machine.
        let subnet = format!("10.231.{n}.0/30");
        ip(&["route", "add", "unreachable", &subnet, "metric", "4000"]);
        for args in [
            vec!["addr", "add", there.as_str(), "dev", peer.as_str()],
            vec!["link", "set", peer.as_str(), "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            ip(&[&["netns", "exec", &namespace, "ip"], &args[..]].concat());
        }
        Self {
            namespace,
            link,
            peer,
            address: format!("10.231.{n}.2"),
            subnet,
        }
    }

    fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "netns",
            "exec",
            &self.namespace,
            "ip",
            "link",
            "set",
            &self.peer,
            state,
        ]);
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace ends its side of the pair, and so the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
        let _ = Command::new("ip")
            .args([
                "route",
                "del",
                "unreachable",
                &self.subnet,
                "metric",
                "4000",
            ])
            .status();
    }
}

#[actix_web::test]
async fn a_cut_link_is_a_503_within_the_timeouts_and_the_graph_recovers_when_it_is_back() {
    let host = TestHost::new();
    let all = fixture_models();
    let medium = all.iter().find(|m| m.0 == "gpt2-medium").unwrap().clone();
    let wrapper = ["ip", "netns", "exec", host.namespace.as_str()];
    // Not loopback, so the node would want keys; the test host is this machine's own
    // namespace, and auth is not what this test is about.
    let open = "[auth]\nmode = \"none\"\n";
    let node = TestServer::start_on(&wrapper, &host.address, 3000, &models_toml(&[medium]), open);
    let toml: String = all
        .iter()
        .map(|m| match m.0 {
            "gpt2-medium" => format!(
                "\n[[models]]\nname = \"gpt2-medium\"\nurl = \"{}\"\nrole = \"generator\"\n",
                node.base
            ),
            _ => models_toml(std::slice::from_ref(m)),
        })
        .collect();
    let remote = "[remote]\nconnect_timeout_ms = 500\nread_timeout_ms = 2000\nhealth_interval_ms = 200\n[limits]\nrequest_timeout_ms = 60000\n";
    let graph = TestServer::start_toml(0, &toml, remote);
    wait_until("the node is reached", Duration::from_secs(30), || {
        graph.is_ready()
    });
    graph.assert_serves_the_graph("I have an idea!").await;

    host.set_link(false);
    let (status, body) = graph
        .post_json("/v1/graph", &json!({"text": "Hello", "max_new_tokens": 2}))
        .await;
    // 503 from the hop's timeouts, not the request's 504 a minute later.
    assert_eq!(
        (status, body["error_type"].as_str()),
        (503, Some("model_unavailable")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains(&node.base),
        "{body}"
    );
    wait_until("readiness sees the cut", Duration::from_secs(30), || {
        !graph.is_ready()
    });

    host.set_link(true);
    wait_until("the graph node recovers", Duration::from_secs(30), || {
        graph.is_ready()
    });
    graph.assert_serves_the_graph("I have an idea!").await;
}
