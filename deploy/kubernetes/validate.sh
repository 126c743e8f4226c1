#!/usr/bin/env bash
# Renders every kustomization under deploy/kubernetes and validates it; exits non-zero on
# any error. Run from anywhere: `deploy/kubernetes/validate.sh` (CI and a Rust test do).
#
#  1. `kubectl kustomize` (or `kustomize build`) renders overlays/* and model-loader/*
#     (components/* only through the overlays that use them);
#  2. kubernetes-validate checks every object against the Kubernetes OpenAPI schema, in
#     strict mode (an unknown or misspelt field is an error), for each version in
#     K8S_VERSIONS. An object whose kind has no schema (a CRD) is an error too: the
#     overlays hold only core kinds (the HPAs are autoscaling/v2, not a KEDA
#     ScaledObject), and extras/ (a PodMonitor CRD, Helm values) is not rendered here;
#  3. check.py checks, on each overlay, what no schema can (probes, drain timing against
#     the node's config.toml, PDBs, HPAs, the graph node's urls against the Services, TLS
#     files from Secrets and each url's scheme against the node's listener); on
#     overlays/tls also that every hop to a model node is mutual TLS.
#
# Needs python3 and kubectl (or kustomize); installs the pinned kubernetes-validate when
# it is missing. KEEP_RENDERED=DIR keeps the rendered YAML there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

KUBERNETES_VALIDATE=1.37.0
# The oldest and the newest versions the manifests are meant for (both bundled by
# kubernetes-validate 1.37.0, which has 1.25 to 1.37).
K8S_VERSIONS="${K8S_VERSIONS:-1.31.0 1.37.0}"

if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null)" != "$KUBERNETES_VALIDATE" ]; then
  python3 -m pip install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE"
fi

if command -v kubectl >/dev/null 2>&1; then
  render() { kubectl kustomize "$1"; }
elif command -v kustomize >/dev/null 2>&1; then
  render() { kustomize build "$1"; }
else
  echo "validate.sh: needs kubectl (kubectl kustomize) or kustomize" >&2
  exit 2
fi

out="${KEEP_RENDERED:-}"
if [ -z "$out" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

status=0
targets=(overlays/*/ model-loader/*/)
for dir in "${targets[@]}"; do
  dir="${dir%/}"
  failed=0
  file="$out/${dir//\//-}.yaml"
  if ! render "$dir" >"$file"; then
    echo "FAIL $dir: does not render"
    status=1
    continue
  fi
  count="$(python3 -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$file")"
  for version in $K8S_VERSIONS; do
    # --quiet prints only warnings and errors; a WARN is a kind without a schema.
    report="$(python3 -m kubernetes_validate --strict --quiet -k "$version" "$file" 2>&1)" || failed=1
    if [ -n "$report" ]; then
      echo "$report" | sed "s#$out/##g"
      failed=1
    fi
  done
  # By the overlay's name: overlays/gpu (and any overlays/*gpu*) runs wgpu, the others cpu;
  # overlays/tls (and any overlays/*tls*, e.g. a gpu one with components/tls) must make
  # every hop to a model node mutual TLS.
  case "$dir" in
    overlays/*gpu*) backend=wgpu ;;
    overlays/*) backend=cpu ;;
    *) backend= ;;
  esac
  case "$dir" in
    overlays/*tls*) tls=tls ;;
    *) tls= ;;
  esac
  if [ -n "$backend" ]; then
    python3 check.py "$file" "$backend" ${tls:+"$tls"} >"$file.check" || failed=1
    sed "s#$out/##g" "$file.check"
  fi
  if [ "$failed" -eq 0 ]; then
    echo "ok   $dir: $count objects, strict against Kubernetes ${K8S_VERSIONS// /, }"
  else
    status=1
  fi
done

if [ "$status" -ne 0 ]; then
  echo "validate.sh: FAILED" >&2
else
  echo "validate.sh: all ${#targets[@]} kustomizations valid"
fi
exit "$status"
