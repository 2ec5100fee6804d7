#!/usr/bin/env bash
# Runs the whole idsync stack locally on its embedded defaults: a Kubernetes
# control plane (built once with `go build`, cached), the identity service on a
# SQLite file, a local OpenID Provider standing in for Okta and Google (this
# machine may have no internet), the operator, and the examples applied.
# Everything lives under .idsync/ and stops on Ctrl-C.
set -euo pipefail
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
"$bin" serve --listen "$listen" --database-url "sqlite://$state/idsync.db" \
  --admin-token-file "$state/admin-token" >"$state/logs/serve.log" 2>&1 &
pids+=($!)
until curl -sf "http://$listen/readyz" >/dev/null; do
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$state/logs/serve.log" >&2; exit 1; }
  sleep 0.2
done

idp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
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
  identity service:  http://$listen   (admin token in .idsync/admin-token)
  SCIM base URL:     http://$listen/scim/v2/octomil   (token: kubectl get secret okta-scim-token -n idsync-examples -o jsonpath='{.data.token}' | base64 -d)
  operator metrics:  http://127.0.0.1:9090/metrics
  look:              KUBECONFIG=$KUBECONFIG $kubectl_dir/kubectl get sso,scimtoken,rolemap -A
Ctrl-C stops everything.
EOT
wait "${pids[@]}"
