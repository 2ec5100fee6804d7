#!/usr/bin/env bash
# Installs the system packages idsync's build, tests and local stack need on
# Debian: xmlsec1, libxml2, OpenSSL headers, pkg-config and libclang (the SAML
# crate samael binds xmlsec with bindgen), PostgreSQL (the tests start their own
# server from its binaries), OpenSSL and curl (the test control plane's
# certificates and readiness checks), and Chromium (the sign-in browser test:
# cookies across sites are browser behaviour), and HAProxy (the balancer in front of
# the several-replica tests). Go is expected from the machine
# (it builds the Kubernetes control plane).
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v runuser >/dev/null || need+=(util-linux)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists xmlsec1 2>/dev/null || need+=(libxmlsec1-dev)
pkg-config --exists libxml-2.0 2>/dev/null || need+=(libxml2-dev)
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v chromium >/dev/null || need+=(chromium)
[[ -x /usr/sbin/haproxy ]] || need+=(haproxy)

if ((${#need[@]})); then
  echo "install-deps: installing ${need[*]} from Debian" >&2
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  # Debian starts a system cluster on install; the tests run their own servers.
  $sudo service postgresql stop >/dev/null 2>&1 || true
  $sudo service haproxy stop >/dev/null 2>&1 || true
fi

command -v node >/dev/null || {
  echo "install-deps: Node.js is required to run the test identity providers" >&2
  exit 1
}
command -v go >/dev/null || {
  echo "install-deps: Go is required to build the test Kubernetes control plane (https://go.dev/doc/install)" >&2
  exit 1
}
