"""Checks what a Kubernetes schema cannot, on one rendered overlay (kubectl kustomize output).

    python3 check.py RENDERED.yaml BACKEND [tls]   # BACKEND: the overlay's, cpu or wgpu

- every Deployment: startup, readiness (/readyz) and liveness (/livez) probes, each with one
  handler: an httpGet, or an exec of `infergraph health` (`--ready` for /readyz); runs as
  non-root with a read-only root filesystem, no privilege escalation, all capabilities
  dropped; CPU and memory requests and limits, none left a placeholder;
- terminationGracePeriodSeconds > preStop sleep + `[server] shutdown_grace_secs` of the
  config.toml the pod mounts, and shutdown_grace_secs >= `[limits] request_timeout_ms`
  (a rollout cuts no accepted request);
- every config.toml parses, listens on 0.0.0.0 at the container's port, and every model's
  `path` lies on a mounted volume; model nodes hold one model and no `url`;
- every Deployment has a PodDisruptionBudget and a Service; every model node has an
  autoscaling/v2 HPA on `infergraph_actor_queue_depth` for its model, and no `replicas`;
- the graph node's every `url` names a Service (host and port) whose pods serve a model of
  that name and role;
- model nodes run INFERGRAPH_BACKEND=BACKEND; with wgpu each also has an nvidia.com/gpu limit;
- keys: no server runs open (`[auth] mode = "none"`); the graph node reads users' keys and
  every node its node key from files on mounted Secret volumes (never a ConfigMap, never a
  literal env value), the graph node's node key from the same Secret key as the model nodes';
- NetworkPolicy: every model node's pods are selected by one whose ingress admits only the
  graph node's pods and namespaces (Prometheus), on the server's port;
- TLS: every file of `[server.tls]` and `[remote.tls]` is an item of a mounted Secret; an
  httpGet probe uses `scheme: HTTPS` exactly when the server has [server.tls], and none is
  used where the server requires client certificates (`client_ca`: the kubelet has none);
  the graph node's url to each model node is https:// exactly when that node has
  [server.tls], with [remote.tls] `ca`, and with its `cert` and `key` where the node has a
  `client_ca`. With `tls`: every model node has [server.tls] with a `client_ca`, and every
  url is https://.
Exits 1 with one line per failure.
"""

import re
import sys
import tomllib
from urllib.parse import urlsplit

import yaml

failures = []


def fail(msg):
    failures.append(msg)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def probe_target(p):
    """(handler, path, scheme) of a probe: ("httpGet", path, "HTTP"|"HTTPS"), ("exec", the
    path `infergraph health` asks, None), or the handler alone when it is neither."""
    handlers = [h for h in ("httpGet", "exec", "tcpSocket", "grpc") if h in p]
    if len(handlers) != 1:
        return (handlers, None, None)
    if "httpGet" in p:
        return ("httpGet", p["httpGet"].get("path"), p["httpGet"].get("scheme", "HTTP"))
    if "exec" in p:
        cmd = p["exec"].get("command", [])
        if cmd[:2] == ["infergraph", "health"] and set(cmd[2:]) <= {"--ready"}:
            return ("exec", "/readyz" if "--ready" in cmd else "/livez", None)
    return (handlers[0], None, None)


def quantity_placeholder(value):
    return not re.fullmatch(r"[0-9.]+(m|Ki|Mi|Gi|Ti|k|M|G|T)?", str(value))


def main(path, backend, require_tls=False):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    services = by_kind.get("Service", [])
    pdbs = by_kind.get("PodDisruptionBudget", [])
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    served = {}  # Deployment name -> (pod labels, {model name: role}, container port)
    node_keys = {}  # Deployment name -> (Secret, key) of its node key file
    listeners = {}  # Deployment name -> its [server.tls] (None: plain HTTP)
    policies = by_kind.get("NetworkPolicy", [])
    graph_configs = []

    for dep in by_kind.get("Deployment", []):
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            fail(f"{name}: pod securityContext.runAsNonRoot is not true")
        if len(pod["containers"]) != 1:
            fail(f"{name}: expected one container")
        c = pod["containers"][0]
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{name}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail(f"{name}: capabilities are not all dropped")
        probes = {}  # probe -> probe_target
        for probe, want in (("startupProbe", None), ("readinessProbe", "/readyz"),
                            ("livenessProbe", "/livez")):
            p = c.get(probe)
            if not p:
                fail(f"{name}: no {probe}")
                continue
            probes[probe] = target = probe_target(p)
            if isinstance(target[0], list):
                fail(f"{name}: {probe} has {len(target[0])} handlers {target[0]}, expected 1")
            elif target[0] not in ("httpGet", "exec"):
                fail(f"{name}: {probe} is neither an httpGet nor `infergraph health [--ready]`")
            elif want and target[1] != want:
                fail(f"{name}: {probe} is not on {want}")
        res = c.get("resources", {})
        for side in ("requests", "limits"):
            for r in ("cpu", "memory"):
                v = res.get(side, {}).get(r)
                if v is None or quantity_placeholder(v):
                    fail(f"{name}: resources.{side}.{r} is {v!r}")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        env = {e["name"]: e.get("value") for e in c.get("env", [])}

        # The config this pod mounts.
        cfg_path = env.get("INFERGRAPH_CONFIG")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        config = None
        if not cfg_path:
            fail(f"{name}: no INFERGRAPH_CONFIG")
        else:
            folder, _, file = cfg_path.rpartition("/")
            vol = volumes.get(mounts.get(folder, ""), {})
            cm = configmaps.get(vol.get("configMap", {}).get("name", ""))
            if not cm or file not in cm.get("data", {}):
                fail(f"{name}: {cfg_path} is not a mounted ConfigMap key")
            else:
                try:
                    config = tomllib.loads(cm["data"][file])
                except tomllib.TOMLDecodeError as e:
                    fail(f"{name}: {cfg_path} does not parse: {e}")
        if config is None:
            continue

        server = config.get("server", {})
        grace = server.get("shutdown_grace_secs", 30)
        timeout_ms = config.get("limits", {}).get("request_timeout_ms", 120000)
        if grace * 1000 < timeout_ms:
            fail(f"{name}: shutdown_grace_secs {grace} < request_timeout_ms {timeout_ms} / 1000")
        cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop = int(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" else None
        if pre_stop is None:
            fail(f"{name}: no preStop `sleep N`")
            pre_stop = 0
        tgp = pod.get("terminationGracePeriodSeconds", 30)
        if not tgp > pre_stop + grace:
            fail(f"{name}: terminationGracePeriodSeconds {tgp} <= preStop {pre_stop} + "
                 f"shutdown_grace_secs {grace}")
        if server.get("host") != "0.0.0.0" and env.get("INFERGRAPH_HOST") != "0.0.0.0":
            fail(f"{name}: the server does not listen on 0.0.0.0")
        port = int(env.get("INFERGRAPH_PORT") or server.get("port", 3000))
        if ports.get("http") != port:
            fail(f"{name}: container port http {ports.get('http')} != the server's {port}")

        auth = config.get("auth", {})
        if auth.get("mode") == "none":
            fail(f"{name}: [auth] mode = \"none\" on a server that listens on 0.0.0.0")
        for var in ("INFERGRAPH_API_KEYS", "INFERGRAPH_NODE_KEY"):
            if env.get(var) is not None:
                fail(f"{name}: {var} has a literal value; take it from a Secret")
        secret_files = {}  # path in the container -> (Secret name, key)
        for mount_path, vol_name in mounts.items():
            vol = volumes.get(vol_name, {})
            sources = [{"secret": {"name": vol["secret"].get("secretName"),
                                   "items": vol["secret"].get("items", [])}}] \
                if "secret" in vol else vol.get("projected", {}).get("sources", [])
            for src in sources:
                sec = src.get("secret")
                if not sec:
                    continue
                for item in sec.get("items", []):
                    secret_files[f"{mount_path.rstrip('/')}/{item['path']}"] = (sec["name"], item["key"])

        server_tls = server.get("tls")
        remote_tls = config.get("remote", {}).get("tls")
        listeners[name] = server_tls
        for section, tls in (("server.tls", server_tls), ("remote.tls", remote_tls)):
            for key, file in (tls or {}).items():
                if file not in secret_files:
                    fail(f"{name}: [{section}] {key} {file} is no item of a mounted Secret")
        for probe, (handler, _, scheme) in probes.items():
            if handler != "httpGet":
                continue
            if scheme != ("HTTPS" if server_tls else "HTTP"):
                fail(f"{name}: {probe} is {scheme}, the server "
                     f"{'has' if server_tls else 'has no'} [server.tls]")
            if server_tls and server_tls.get("client_ca"):
                fail(f"{name}: {probe} is an httpGet, but the server requires a client "
                     "certificate ([server.tls] client_ca), which the kubelet cannot present")

        models = config.get("models", [])
        local = [m for m in models if "path" in m]
        remote = [m for m in models if "url" in m or "urls" in m]
        for m in local:
            if not any(m["path"].startswith(mp.rstrip("/") + "/") for mp in mounts):
                fail(f"{name}: model {m['name']} path {m['path']} is on no mounted volume")
        roles = {m["role"] for m in models}
        is_graph = "generator" in roles and sum(m["role"] == "classifier" for m in models) == 1
        served[name] = (labels, {m["name"]: m["role"] for m in local}, port)

        wanted = ["keys_file", "node_key_file"] if is_graph else ["node_key_file"]
        for key in wanted:
            file = auth.get(key)
            if not file:
                fail(f"{name}: no [auth] {key}")
            elif file not in secret_files:
                fail(f"{name}: [auth] {key} {file} is no item of a mounted Secret")
        node_keys[name] = secret_files.get(auth.get("node_key_file"))

        if is_graph:
            graph_configs.append((name, remote, remote_tls))
        else:
            if require_tls and not (server_tls or {}).get("client_ca"):
                fail(f"{name}: a model node without [server.tls] client_ca")
            if len(models) != 1 or remote:
                fail(f"{name}: a model node should hold exactly one local model")
            if "replicas" in dep["spec"]:
                fail(f"{name}: `replicas` set, but an HPA owns it")
            model = models[0]["name"] if models else None
            hpa = [h for h in hpas if h["spec"]["scaleTargetRef"]["name"] == name
                   and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"]
            if len(hpa) != 1:
                fail(f"{name}: {len(hpa)} HorizontalPodAutoscalers, expected 1")
            else:
                h = hpa[0]
                if h["apiVersion"] != "autoscaling/v2":
                    fail(f"{name}: HPA is {h['apiVersion']}")
                ok = any(
                    m.get("type") == "Pods"
                    and m["pods"]["metric"]["name"] == "infergraph_actor_queue_depth"
                    and m["pods"]["metric"].get("selector", {}).get("matchLabels", {})
                    .get("model") == model
                    for m in h["spec"].get("metrics", [])
                )
                if not ok:
                    fail(f"{name}: HPA does not scale on infergraph_actor_queue_depth{{model={model}}}")
                if h["spec"].get("minReplicas", 1) < 2:
                    fail(f"{name}: HPA minReplicas < 2 (a drain would take the model away)")
            if env.get("INFERGRAPH_BACKEND") != backend:
                fail(f"{name}: INFERGRAPH_BACKEND is {env.get('INFERGRAPH_BACKEND')!r}, "
                     f"expected {backend!r}")
            gpu = res.get("limits", {}).get("nvidia.com/gpu")
            if backend == "wgpu" and str(gpu) != "1":
                fail(f"{name}: wgpu without an nvidia.com/gpu limit")
            if backend != "wgpu" and gpu is not None:
                fail(f"{name}: an nvidia.com/gpu limit on {backend}")

        if not any(selects(p["spec"].get("selector", {}).get("matchLabels"), labels)
                   for p in pdbs):
            fail(f"{name}: no PodDisruptionBudget selects its pods")
        if not any(selects(s["spec"].get("selector"), labels) for s in services):
            fail(f"{name}: no Service selects its pods")

    if len(graph_configs) != 1:
        fail(f"{len(graph_configs)} graph nodes, expected 1")
    for name, remote, remote_tls in graph_configs:
        for m in remote:
            for url in m.get("urls", [m.get("url")]):
                u = urlsplit(url)
                svc = [s for s in services if s["metadata"]["name"] == u.hostname]
                if not svc:
                    fail(f"{name}: {m['name']} url {url}: no Service {u.hostname}")
                    continue
                default_port = 443 if u.scheme == "https" else 80
                sp = [p for p in svc[0]["spec"]["ports"] if p["port"] == (u.port or default_port)]
                if not sp:
                    fail(f"{name}: {m['name']} url {url}: Service has no port {u.port}")
                backing = [d for d, (labels, models, _) in served.items()
                           if selects(svc[0]["spec"].get("selector"), labels)]
                if not any(served[d][1].get(m["name"]) == m["role"] for d in backing):
                    fail(f"{name}: {url} serves no {m['role']} {m['name']} "
                         f"(Deployments behind it: {backing})")
                if u.scheme == "https" and not (remote_tls or {}).get("ca"):
                    fail(f"{name}: {url} is https, but no [remote.tls] ca")
                if require_tls and u.scheme != "https":
                    fail(f"{name}: {url} is not https")
                for d in backing:
                    tls = listeners.get(d)
                    if (u.scheme == "https") != bool(tls):
                        fail(f"{name}: {url} is {u.scheme}, but {d} "
                             f"{'has' if tls else 'has no'} [server.tls]")
                    if tls and tls.get("client_ca") and not (
                            (remote_tls or {}).get("cert") and (remote_tls or {}).get("key")):
                        fail(f"{name}: {d} requires a client certificate, but [remote.tls] "
                             "has no cert and key")

    if len(set(node_keys.values())) > 1:
        fail(f"the nodes read their node keys from different Secrets: {node_keys}")
    graph_labels = [served[g][0] for g, _, _ in graph_configs if g in served]
    for name, (labels, models, port) in served.items():
        if any(g == name for g, _, _ in graph_configs):
            continue
        guarding = [p for p in policies
                    if selects(p["spec"]["podSelector"].get("matchLabels"), labels)
                    and "Ingress" in p["spec"].get("policyTypes", [])]
        if not guarding:
            fail(f"{name}: no NetworkPolicy selects the model node's pods")
        for p in guarding:
            for rule in p["spec"].get("ingress", []):
                peers = rule.get("from")
                if not peers:
                    fail(f"{p['metadata']['name']}: an ingress rule from anywhere to {name}")
                for peer in peers or []:
                    pod_sel = peer.get("podSelector", {}).get("matchLabels")
                    if "podSelector" in peer and not any(selects(pod_sel, l) for l in graph_labels):
                        fail(f"{p['metadata']['name']}: admits pods {pod_sel} that are no graph node")
                    if "ipBlock" in peer:
                        fail(f"{p['metadata']['name']}: admits an ipBlock to {name}")
                ports = [q.get("port") for q in rule.get("ports", [])]
                if port not in ports and "http" not in ports:
                    fail(f"{p['metadata']['name']}: {name}'s port {port} is not the one admitted")

    for f in failures:
        print(f"FAIL {path}: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["tls"]):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], require_tls=sys.argv[3:] == ["tls"]))
