#!/usr/bin/env bash
# The whole test suite: unit, integration (SQLite and a real PostgreSQL) and
# end-to-end tests (a real kube-apiserver built from the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idsync/target}
scripts/install-deps.sh
# Real identity providers from npm for the end-to-end and sign-in tests.
if [[ ! -d tests/idp/node_modules || tests/idp/package-lock.json -nt tests/idp/node_modules ]]; then
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
fi
# Real SCIM clients: Microsoft's Entra ID collection through newman (npm), and
# scim-sanity / scim2-cli / scim2-filter-parser (PyPI) in a cached virtualenv.
if [[ ! -d tests/clients/node_modules || tests/clients/package-lock.json -nt tests/clients/node_modules ]]; then
  npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
fi
export IDSYNC_PY_VENV=${IDSYNC_PY_VENV:-$HOME/.cache/idsync/venv}
stamp="$IDSYNC_PY_VENV/.requirements"
if ! cmp -s tests/clients/requirements.txt "$stamp"; then
  python3 -m venv "$IDSYNC_PY_VENV"
  "$IDSYNC_PY_VENV/bin/pip" install -q --disable-pip-version-check -r tests/clients/requirements.txt
  cp tests/clients/requirements.txt "$stamp"
fi
# Build the control plane up front so its first, slow build reports progress here
# rather than inside a test.
tests/e2e/control-plane.sh build
# helm and promtool for the Helm chart's tests (tests/helm_chart.rs), built with
# `go install` at pinned versions and cached the same way (about 5 minutes cold).
tests/e2e/tools.sh build
cargo test --locked "$@"
