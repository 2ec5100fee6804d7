#!/usr/bin/env bash
# Builds the idsync container image without a container engine or a base image,
# then runs `idsync --version` inside it: buildah (Debian package) with the vfs
# storage driver and chroot isolation, from scratch, holding the binary, exactly
# the shared libraries `ldd` says it links, CA certificates and a non-root user.
# The Dockerfile builds the same layout on a Debian base where an engine exists.
#
#   scripts/build-image.sh [BINARY]   (default: the debug binary cargo test built)
#
# Prints the image name (localhost/idsync:<version>). Storage lives under
# ~/.cache/idsync/buildah; each run replaces the previous image. Needs root
# (chroot isolation), as CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idsync/target}
BINARY=${1:-$CARGO_TARGET_DIR/debug/idsync}
CACHE_ROOT=${IDSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idsync}
STORE=$CACHE_ROOT/buildah

log() { echo "build-image: $*" >&2; }

if ! command -v buildah >/dev/null; then
  log "installing buildah from Debian"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends buildah >&2
fi
[[ -x $BINARY ]] || cargo build --locked --bin idsync >&2

version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
image=localhost/idsync:$version
bah() { buildah --root "$STORE/storage" --runroot "$STORE/run" --storage-driver vfs "$@"; }

started=$SECONDS
bah rm --all >/dev/null
ctr=$(bah from scratch)
trap 'bah umount "$ctr" >/dev/null 2>&1 || true; bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
root=$(bah mount "$ctr")

# The binary without debug sections, and every library it loads.
install -D -m 0755 "$BINARY" "$root/usr/local/bin/idsync"
objcopy --strip-debug "$root/usr/local/bin/idsync"
for lib in $(ldd "$BINARY" | grep -oE '/[^ ]+'); do
  install -D -m "$(stat -Lc %a "$lib")" "$(readlink -f "$lib")" "$root$lib"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0::/root:/sbin/nologin\nnonroot:x:65532:65532::/var/lib/idsync:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
install -d -m 1777 "$root/tmp"
install -d -o 65532 -g 65532 "$root/var/lib/idsync"

bah config --user 65532:65532 --workingdir /var/lib/idsync \
  --entrypoint '["/usr/local/bin/idsync"]' --cmd 'serve --listen 0.0.0.0:8080' \
  --port 8080 --port 9090 --label "org.opencontainers.image.version=$version" "$ctr"
bah umount "$ctr" >/dev/null
bah commit --quiet --rm "$ctr" "$image" >/dev/null
trap - EXIT

# Run the image as built: a fresh container from it, as its non-root user.
check=$(bah from "$image")
said=$(bah run --isolation chroot "$check" -- /usr/local/bin/idsync --version)
subcommand=$(bah run --isolation chroot "$check" -- /usr/local/bin/idsync roles --help >/dev/null && echo ok)
user=$(bah inspect --format '{{.OCIv1.Config.User}}' "$image")
bah rm "$check" >/dev/null
[[ $said == "idsync $version" ]] || { log "error: the image answered '$said' to --version"; exit 1; }
[[ $subcommand == ok ]] || { log "error: the image could not run a subcommand"; exit 1; }
[[ $user == 65532:65532 ]] || { log "error: the image runs as '$user', not the non-root 65532"; exit 1; }
size=$(bah images --format '{{.Size}}' "$image")
log "built $image ($size) in $((SECONDS - started))s; \`idsync --version\` in it: $said"
echo "$image"
