#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for idsync's end-to-end tests and
# for the README's local stack: etcd, kube-apiserver and kube-controller-manager,
# built with `go build` from published Go modules and cached per version.
#
#   tests/e2e/control-plane.sh build        build (or reuse) the cached binaries
#   tests/e2e/control-plane.sh start DIR    start everything with state, logs and
#                                           PIDs under DIR; the last line printed
#                                           on stdout is the kubeconfig path
#   tests/e2e/control-plane.sh stop DIR     stop everything started under DIR
#   tests/e2e/control-plane.sh bin          print the directory holding kubectl
#
# Environment:
#   IDSYNC_CACHE                      cache root (default ~/.cache/idsync)
#   IDSYNC_CONTROL_PLANE_OWNER_PID    when set, the control plane stops by itself
#                                     once that process has exited (tests set it
#                                     so nothing outlives a crashed test run)
#
# There is no kubelet: pods never run. idsync runs as host processes against
# the apiserver. kube-controller-manager is there for what tests need from it:
# garbage collection through owner references and namespace finalization.
set -euo pipefail

K8S_VERSION=v1.36.3
# The etcd that k8s.io/kubernetes v1.36.3 itself requires (its go.mod), so the
# test cluster runs the storage version that release was tested with.
ETCD_MODULE_VERSION=v3.6.8

CACHE_ROOT=${IDSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idsync}
BUILD_ROOT=$CACHE_ROOT/k8s-$K8S_VERSION
BIN_DIR=$BUILD_ROOT/bin
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BINARIES=(etcd kube-apiserver kube-controller-manager kubectl)

log() { echo "control-plane: $*" >&2; }
die() { log "error: $*"; exit 1; }

have_binaries() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x $BIN_DIR/$b ]] || return 1; done
}

write_build_module() {
  local src=$1 kube_mod staging minor patch
  kube_mod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # Staging modules (k8s.io/api, k8s.io/client-go, ...) are published as
  # v0.<minor>.<patch>; k8s.io/kubernetes points at them with ./staging paths,
  # which only work inside its own repository. Replace each with the release.
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  patch=$(echo "$K8S_VERSION" | cut -d. -f3)
  staging=$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/' "$kube_mod" | awk '{print $1}')
  {
    echo "module idsync.dev/e2e-control-plane"
    echo
    echo "go 1.26"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes $K8S_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $ETCD_MODULE_VERSION"
    echo ")"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m v0.$minor.$patch"; done
    echo ")"
  } >"$src/go.mod"
  mkdir -p "$src/etcd" "$src/tools"
  cp "$SCRIPT_DIR/etcd/main.go" "$src/etcd/main.go"
  cat >"$src/tools/tools.go" <<'EOF'
//go:build tools

// Package tools pins the Kubernetes commands this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
}

build() {
  have_binaries && return 0
  command -v go >/dev/null || die "the Go toolchain is required to build the control plane (https://go.dev/doc/install)"
  mkdir -p "$BUILD_ROOT"
  exec 9>"$BUILD_ROOT/.build.lock"
  log "waiting for the build lock (another build may be running)..."
  flock 9
  have_binaries && return 0

  local src=$BUILD_ROOT/src started=$SECONDS
  rm -rf "$src" && mkdir -p "$src" "$BIN_DIR"
  log "building Kubernetes $K8S_VERSION and etcd $ETCD_MODULE_VERSION into $BIN_DIR"
  log "a first build downloads ~1 GB of modules and compiles for 10-20 minutes on 2 cores; later runs reuse the cache"
  write_build_module "$src"
  log "step 1/5: resolving modules (go mod tidy, usually 1-3 minutes)"
  (cd "$src" && go mod tidy >&2)

  local date ldflags
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  # Without a version stamp kubectl and clients refuse to parse the server version.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done

  local step=2 target
  for target in etcd kube-apiserver kube-controller-manager kubectl; do
    local pkg=k8s.io/kubernetes/cmd/$target hint="usually 3-8 minutes cold"
    [[ $target == etcd ]] && pkg=./etcd && hint="usually 1-2 minutes cold"
    [[ $target != etcd && $target != kube-apiserver ]] && hint="usually 1-4 minutes once kube-apiserver is built"
    log "step $step/5: go build $target ($hint)"
    (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$target.tmp" "$pkg")
    mv "$BIN_DIR/$target.tmp" "$BIN_DIR/$target"
    step=$((step + 1))
  done
  log "built in $((SECONDS - started))s"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

generate_pki() {
  local pki=$1
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=idsync-e2e-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -out "$pki/apiserver.crt" -extfile <(printf '%s\n' \
      "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc") 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  openssl rand -hex 32 >"$pki/admin.token"
  echo "$(cat "$pki/admin.token"),admin,admin-uid,system:masters" >"$pki/tokens.csv"
}

start_process() {
  local dir=$1 name=$2
  shift 2
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

wait_until() {
  local what=$1 timeout=$2 log_file=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "$what not ready after ${timeout}s; last lines of $log_file:"
      tail -n 20 "$log_file" >&2 || true
      return 1
    fi
    sleep 0.3
  done
}

start() {
  local dir=${1:?usage: control-plane.sh start DIR}
  build
  mkdir -p "$dir/logs"
  dir=$(cd "$dir" && pwd)
  [[ -f $dir/kube-apiserver.pid ]] && kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null &&
    die "a control plane is already running under $dir (stop it first)"
  local started=$SECONDS
  generate_pki "$dir/pki"
  local pki=$dir/pki etcd_port etcd_peer api_port kcm_port token
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port); kcm_port=$(free_port)
  token=$(cat "$pki/admin.token")

  start_process "$dir" etcd "$BIN_DIR/etcd" --data-dir "$dir/etcd-data" \
    --listen-client-url "http://127.0.0.1:$etcd_port" --listen-peer-url "http://127.0.0.1:$etcd_peer"
  wait_until etcd 30 "$dir/logs/etcd.log" curl -sf "http://127.0.0.1:$etcd_port/health" ||
    { stop "$dir"; die "etcd did not start"; }

  start_process "$dir" kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --cert-dir "$pki" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC \
    --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none
  wait_until kube-apiserver 90 "$dir/logs/kube-apiserver.log" \
    curl -sf --cacert "$pki/ca.crt" -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz" ||
    { stop "$dir"; die "kube-apiserver did not become ready"; }

  local kubeconfig=$dir/kubeconfig
  cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: idsync-e2e
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: idsync-e2e
  context:
    cluster: idsync-e2e
    user: admin
    namespace: default
current-context: idsync-e2e
EOF
  chmod 600 "$kubeconfig"

  start_process "$dir" kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --controllers garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller
  wait_until kube-controller-manager 60 "$dir/logs/kube-controller-manager.log" \
    curl -sfk "https://127.0.0.1:$kcm_port/healthz" ||
    { stop "$dir"; die "kube-controller-manager did not become healthy"; }

  if [[ -n ${IDSYNC_CONTROL_PLANE_OWNER_PID:-} ]]; then
    local owner=$IDSYNC_CONTROL_PLANE_OWNER_PID
    setsid bash -c "while kill -0 $owner 2>/dev/null && [[ -f '$dir/kube-apiserver.pid' ]]; do sleep 1; done; '$SCRIPT_DIR/control-plane.sh' stop '$dir'" \
      >"$dir/logs/watchdog.log" 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid.owner"
  fi
  log "ready in $((SECONDS - started))s: kube-apiserver https://127.0.0.1:$api_port (logs in $dir/logs)"
  echo "$kubeconfig"
}

stop() {
  local dir=${1:?usage: control-plane.sh stop DIR} name pid
  for name in kube-controller-manager kube-apiserver etcd; do
    [[ -f $dir/$name.pid ]] || continue
    pid=$(cat "$dir/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$name.pid"
  done
  log "stopped the control plane under $dir"
}

case ${1:-} in
  build) build ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  bin) build && echo "$BIN_DIR" ;;
  *) echo "usage: $0 build | start DIR | stop DIR | bin" >&2; exit 2 ;;
esac
