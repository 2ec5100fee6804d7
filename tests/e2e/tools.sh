#!/usr/bin/env bash
# The command-line tools the Helm chart tests use, built with `go install` from
# the Go module proxy at pinned versions and cached per version, like the
# control plane (tests/e2e/control-plane.sh):
#
#   helm      helm.sh/helm/v3 — lint, template and install the chart
#   promtool  github.com/prometheus/prometheus/cmd/promtool — check and unit-test
#             the chart's alerting rules
#   the ServiceMonitor and PrometheusRule CRDs of the Prometheus Operator, copied
#   from its Go module, so the chart's monitoring objects are installed into the
#   test cluster against their real schemas
#
#   tests/e2e/tools.sh build   build (or reuse) the cached binaries and CRDs
#   tests/e2e/tools.sh bin     build if needed, then print the directory holding them
#   tests/e2e/tools.sh crds    build if needed, then print the directory holding the CRDs
#
# Environment: IDSYNC_CACHE, the cache root (default ~/.cache/idsync).
set -euo pipefail

# Helm 3 rather than 4: it is the major version most clusters' tooling (Argo CD,
# Flux, CI images) still runs, and a chart that lints, renders and installs with
# Helm 3 (apiVersion v2, JSON-schema values) also works with Helm 4.
HELM_MODULE=helm.sh/helm/v3
HELM_VERSION=v3.22.0
PROMETHEUS_MODULE=github.com/prometheus/prometheus
PROMETHEUS_VERSION=v0.316.0 # Prometheus 3.x's Go module version
PROMETHEUS_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator
PROMETHEUS_OPERATOR_VERSION=v0.85.0

CACHE_ROOT=${IDSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idsync}
BUILD_ROOT=$CACHE_ROOT/tools-helm-$HELM_VERSION-prometheus-$PROMETHEUS_VERSION
BIN_DIR=$BUILD_ROOT/bin
CRD_DIR=$CACHE_ROOT/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION

log() { echo "tools: $*" >&2; }
die() { log "error: $*"; exit 1; }

install_tool() {
  local name=$1 package=$2 version=$3 ldflags=$4 started=$SECONDS
  [[ -x $BIN_DIR/$name ]] && return 0
  log "go install $package@$version (usually 2-6 minutes cold on 2 cores)"
  # A private GOBIN per build so a half-built binary never lands in BIN_DIR.
  local gobin=$BUILD_ROOT/gobin-$name
  rm -rf "$gobin"
  GOBIN=$gobin CGO_ENABLED=0 go install -trimpath -ldflags "-s -w $ldflags" "$package@$version"
  mv "$gobin/$name" "$BIN_DIR/$name"
  rm -rf "$gobin"
  log "built $name in $((SECONDS - started))s"
}

monitoring_crds() {
  [[ -f $CRD_DIR/monitoring.coreos.com_prometheusrules.yaml ]] && return 0
  log "go mod download $PROMETHEUS_OPERATOR_MODULE@$PROMETHEUS_OPERATOR_VERSION (its CRDs, ~4 MB)"
  local dir
  dir=$(cd "$BUILD_ROOT" && go mod download -json "$PROMETHEUS_OPERATOR_MODULE@$PROMETHEUS_OPERATOR_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$CRD_DIR.tmp"
  cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "$CRD_DIR.tmp/"
  rm -rf "$CRD_DIR" && mv "$CRD_DIR.tmp" "$CRD_DIR"
}

# The Kubernetes version `helm template` and `helm lint` assume without a
# cluster (.Capabilities.KubeVersion), as Helm's Makefile sets it: that of the
# client-go it is built with (v0.37.x is Kubernetes 1.37). Unset, it is 1.20.
helm_kube_version_flags() {
  local f
  for f in pkg/chartutil pkg/lint/rules; do
    printf -- '-X %s/%s.k8sVersionMajor=1 -X %s/%s.k8sVersionMinor=37 ' "$HELM_MODULE" "$f" "$HELM_MODULE" "$f"
  done
}

build() {
  [[ -x $BIN_DIR/helm && -x $BIN_DIR/promtool && -f $CRD_DIR/monitoring.coreos.com_prometheusrules.yaml ]] && return 0
  command -v go >/dev/null || die "the Go toolchain is required to build helm and promtool (https://go.dev/doc/install)"
  mkdir -p "$BIN_DIR"
  exec 9>"$BUILD_ROOT/.build.lock"
  log "waiting for the build lock (another build may be running)..."
  flock 9
  # Version stamps, so `helm version` and `promtool --version` name what was built.
  install_tool helm "$HELM_MODULE/cmd/helm" "$HELM_VERSION" \
    "-X $HELM_MODULE/internal/version.version=$HELM_VERSION -X $HELM_MODULE/internal/version.gitTreeState=clean $(helm_kube_version_flags)"
  install_tool promtool "$PROMETHEUS_MODULE/cmd/promtool" "$PROMETHEUS_VERSION" \
    "-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
  monitoring_crds
}

case ${1:-} in
  build) build ;;
  bin) build && echo "$BIN_DIR" ;;
  crds) build && echo "$CRD_DIR" ;;
  *) echo "usage: $0 build | bin | crds" >&2; exit 2 ;;
esac
