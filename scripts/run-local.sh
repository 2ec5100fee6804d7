#!/usr/bin/env bash
# Runs idsync locally on its embedded defaults: the identity service on a SQLite
# file under .idsync/, with the examples loaded into it. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idsync/target}
cargo build --locked --quiet
bin=$CARGO_TARGET_DIR/debug/idsync
state=.idsync
mkdir -p "$state"
listen=${IDSYNC_LISTEN:-127.0.0.1:8080}

"$bin" serve --listen "$listen" --database-url "sqlite://$state/idsync.db" &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null' EXIT INT TERM
until curl -sf "http://$listen/readyz" >/dev/null; do
  kill -0 $serve_pid 2>/dev/null || { echo "idsync serve exited" >&2; exit 1; }
  sleep 0.2
done

export IDSYNC_URL=http://$listen IDSYNC_ADMIN_TOKEN_FILE=$state/admin-token
"$bin" admin apply -f examples/ --token-dir "$state/scim-tokens"
cat <<EOT

idsync is running on http://$listen (SQLite: $state/idsync.db)
  admin token:   $state/admin-token
  SCIM tokens:   $state/scim-tokens/
  look inside:   $bin admin get workspaces; $bin admin audit
Ctrl-C stops it.
EOT
wait $serve_pid
