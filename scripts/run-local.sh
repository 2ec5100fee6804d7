#!/usr/bin/env bash
# Runs the whole idsync stack locally on its embedded defaults: a Kubernetes
# control plane (built once with `go build`, cached), the identity service on a
# SQLite file, a local OpenID Provider standing in for Okta and Google (this
# machine may have no internet), the operator, and the examples applied.
# Everything lives under .idsync/ and stops on Ctrl-C.
#
# --replicas N (N > 1): the identity service as N replicas on a PostgreSQL of
# its own (Debian's binaries, data in .idsync/pg) behind HAProxy on the same
# address, round-robin without stickiness, as a deployment past one replica runs.
set -euo pipefail
replicas=1
while (($#)); do
  case $1 in
    --replicas) replicas=${2:?--replicas takes a number}; shift 2 ;;
    *) echo "usage: $0 [--replicas N]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idsync/target}
state=$PWD/.idsync
listen=${IDSYNC_LISTEN:-127.0.0.1:8080}
mkdir -p "$state/logs"

scripts/install-deps.sh
if [[ ! -d tests/idp/node_modules || tests/idp/package-lock.json -nt tests/idp/node_modules ]]; then
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
fi
echo "building idsync..." >&2
cargo build --locked --quiet
bin=$CARGO_TARGET_DIR/debug/idsync
kubectl_dir=$(tests/e2e/control-plane.sh bin)
kubectl() { "$kubectl_dir/kubectl" "$@"; }

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping..." >&2
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  tests/e2e/control-plane.sh stop "$state/cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

tests/e2e/control-plane.sh stop "$state/cluster" >/dev/null 2>&1 || true
rm -rf "$state/cluster"
export KUBECONFIG
KUBECONFIG=$(IDSYNC_CONTROL_PLANE_OWNER_PID=$$ tests/e2e/control-plane.sh start "$state/cluster" | tail -n 1)

[[ -s $state/admin-token ]] || (umask 077 && openssl rand -hex 32 >"$state/admin-token")
# Starts `idsync serve` on $1 over database $2 (log $3) and waits until it is ready.
serve() {
  "$bin" serve --listen "$1" --database-url "$2" --public-url "http://$listen" \
    --admin-token-file "$state/admin-token" >"$state/logs/$3.log" 2>&1 &
  pids+=($!)
  local pid=$!
  until curl -sf "http://$1/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$state/logs/$3.log" >&2; exit 1; }
    sleep 0.2
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if ((replicas > 1)); then
  as_postgres() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [[ ! -d $state/pg/data ]]; then
    mkdir -p "$state/pg"
    [[ $(id -u) != 0 ]] || chown postgres "$state/pg"
    as_postgres "$pgbin/initdb" -D "$state/pg/data" -U idsync --auth=trust >"$state/logs/initdb.log" 2>&1
  fi
  pg_port=$(free_port)
  as_postgres "$pgbin/postgres" -D "$state/pg/data" -h 127.0.0.1 -p "$pg_port" -k "$state/pg" \
    >"$state/logs/postgres.log" 2>&1 &
  pids+=($!)
  until "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; do sleep 0.2; done
  "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U idsync idsync 2>/dev/null || true
  servers=""
  for i in $(seq 1 "$replicas"); do
    port=$(free_port)
    serve "127.0.0.1:$port" "postgres://idsync@127.0.0.1:$pg_port/idsync" "serve-$i"
    servers+="  server r$i 127.0.0.1:$port check"$'\n'
  done
  cat >"$state/haproxy.cfg" <<EOF_CFG
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch 1
frontend idsync
  bind $listen
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 500ms fall 2 rise 1
$servers
EOF_CFG
  /usr/sbin/haproxy -db -f "$state/haproxy.cfg" >"$state/logs/haproxy.log" 2>&1 &
  pids+=($!)
  until curl -sf "http://$listen/readyz" >/dev/null; do sleep 0.2; done
  shape="$replicas replicas on PostgreSQL behind HAProxy, logs serve-N.log"
else
  serve "$listen" "sqlite://$state/idsync.db" serve
  shape="one replica on SQLite"
fi

idp_port=$(free_port)
IDP_CLIENTS='[{"client_id":"octomil-idsync","client_secret":"okta-example-secret","redirect_uris":["http://'"$listen"'/sso/octomil/oidc/okta/callback"]},{"client_id":"brightpath-idsync","client_secret":"google-example-secret","redirect_uris":["http://'"$listen"'/sso/brightpath/oidc/google/callback"],"token_endpoint_auth_method":"client_secret_post"}]' \
IDSYNC_OWNER_PID=$$ node tests/idp/oidc-provider.mjs "$idp_port" >"$state/logs/oidc-provider.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$idp_port/.well-known/openid-configuration" >/dev/null; do sleep 0.2; done

kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
"$bin" operator --metrics-addr 127.0.0.1:9090 --lease-namespace default >"$state/logs/operator.log" 2>&1 &
pids+=($!)

# The examples, pointed at this stack: the admin token, the service URL, and the
# local OpenID Provider in place of Okta and Google.
for f in examples/*.yaml; do cat "$f"; echo "---"; done | sed \
  -e "s#REPLACE-WITH-THE-ADMIN-TOKEN-OF-YOUR-IDENTITY-SERVICE#$(cat "$state/admin-token")#" \
  -e "s#http://127.0.0.1:8080#http://$listen#" \
  -e "s#https://octomil.okta.com#http://127.0.0.1:$idp_port#" \
  -e "s#https://tecton.okta.com#http://127.0.0.1:$idp_port#" \
  -e "s#https://accounts.google.com#http://127.0.0.1:$idp_port#" \
  -e "s#0oa8f5j3ecb5w3dF35d7#octomil-idsync#" \
  -e "s#1234567890-brightpath.apps.googleusercontent.com#brightpath-idsync#" |
  kubectl apply -f - >"$state/logs/apply.log"
for kind in workspaces ssoconnections scimtokens rolemappings; do
  kubectl wait --for=condition=Ready "$kind" --all -n idsync-examples --timeout=90s >/dev/null
done
kubectl get ws,sso,scimtoken,rolemap -n idsync-examples

cat <<EOT

idsync is running locally (state and logs in .idsync/):
  kubeconfig:        $KUBECONFIG
  identity service:  http://$listen   ($shape; admin token in .idsync/admin-token)
  SCIM base URL:     http://$listen/scim/v2/octomil   (token: kubectl get secret okta-scim-token -n idsync-examples -o jsonpath='{.data.token}' | base64 -d)
  operator metrics:  http://127.0.0.1:9090/metrics
  look:              KUBECONFIG=$KUBECONFIG $kubectl_dir/kubectl get sso,scimtoken,rolemap -A
Ctrl-C stops everything.
EOT
wait "${pids[@]}"
