#!/usr/bin/env bash
# Builds the testbed's real Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler) from
# Debian bookworm's `kubernetes` source package (the whole 1.20.2 tree with vendor/), twice: stamped v1.20.2 (the
# code as released) and v1.20.3 (the same code with another version stamp, for the testbed's second release).
# Recipe and measurements: docs/testbed.md "The control plane".
#
# Cached by content: the output folder is named after this script's sha256, and the script pins the upstream
# source's sha256, so a warm machine finds the binaries without network and any change of the recipe builds anew.
# The unpacked tree (with the build's own Go cache, ~1.4 GB) is kept per source digest, so a rebuild after a recipe
# change relinks in a minute or two instead of compiling for twelve.
#
# Also builds kubectl once (v1.20.2, within skew of both releases) for the `kubectl drain` cross-check.
#
# Usage: bash scripts/build-kubernetes.sh [--print-dir | --cached]
#   --print-dir   print the output folder (building first if needed) and nothing else on stdout
#   --cached      print the output folder if it is built, else say how to build it and exit 3 (never builds: for
#                 tests, which must not start a twelve-minute build)
# Environment: KISMATIC_TESTBED_DIR (default /var/lib/kismatic-testbed), as for the testbed.
set -euo pipefail

readonly ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
readonly UPSTREAM=1.20.2
readonly VERSIONS=(v1.20.2 v1.20.3)
readonly BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)
readonly KUBECTL_VERSION=v1.20.2
readonly GO=/usr/lib/go-1.19/bin
readonly REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

print_dir=false
cached_only=false
case "${1-}" in
  --print-dir) print_dir=true ;;
  --cached) print_dir=true cached_only=true ;;
  "") ;;
  *) echo "usage: bash scripts/build-kubernetes.sh [--print-dir | --cached]" >&2; exit 2 ;;
esac
say() { if $print_dir; then echo "build-kubernetes: $*" >&2; else echo "build-kubernetes: $*"; fi; }

state=${KISMATIC_TESTBED_DIR:-/var/lib/kismatic-testbed}
kdir=$state/kubernetes
recipe=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
out=$kdir/bin-$recipe
mkdir -p "$kdir"
chmod 0755 "$state" "$kdir"

verify_out() {
  [ -f "$out/manifest.sha256" ] && (cd "$out" && sha256sum --check --strict --quiet manifest.sha256) >/dev/null 2>&1
}

if verify_out; then
  $print_dir && echo "$out" || say "cached: $out (recipe $recipe)"
  exit 0
fi
if $cached_only; then
  say "the control plane of this recipe ($recipe) is not built in $out: run bash scripts/setup.sh" \
      "(or bash scripts/build-kubernetes.sh; about 13 min cold, 2 min after a recipe change)"
  exit 3
fi

exec 9>"$kdir/.lock"
flock 9
if verify_out; then   # built by a concurrent run while we waited for the lock
  $print_dir && echo "$out" || say "cached: $out (recipe $recipe)"
  exit 0
fi

log=$kdir/build.log
: >"$log"
step=start
started=$SECONDS
trap 'say "step \"$step\" failed after $((SECONDS - started)) s; the last lines of $log:"; tail -n 25 "$log" >&2;
      say "retry with: bash scripts/build-kubernetes.sh (finished steps are kept)"' ERR
begin() { step=$1; say "$step ... ($((SECONDS - started)) s)"; }

begin "install build packages"
pkgs=()
for p in golang-1.19-go rsync golang-github-modern-go-reflect2-dev dpkg-dev; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  apt-get update -qq >>"$log" 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1
fi

begin "fetch the source package"
# A private apt configuration: deb-src lines for the machine's own Debian mirrors, lists and caches of our own, so
# the system's apt state is not touched.
dl=$kdir/downloads
apt_dir=$kdir/apt
mkdir -p "$dl" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources"
orig=$(ls "$dl"/kubernetes_*really${UPSTREAM}.orig.tar.gz 2>/dev/null | head -n 1 || true)
if [ -z "$orig" ] || [ "$(sha256sum "$orig" | cut -d' ' -f1)" != "$ORIG_SHA256" ] || ! ls "$dl"/*.dsc >/dev/null 2>&1; then
  rm -f "$apt_dir"/sources/*
  # Debian's own archives only (third-party repositories often publish no sources).
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && grep -qE '^URIs:.*/debian(-security)?/?$' "$f" &&
      sed 's/^Types:.*$/Types: deb-src/' "$f" >"$apt_dir/sources/$(basename "$f")"
  done
  if [ -f /etc/apt/sources.list ]; then
    sed -n 's|^deb \([^ ]*/debian\(-security\)\?/\? .*\)$|deb-src \1|p' /etc/apt/sources.list \
      >"$apt_dir/sources/sources.list.list"
  fi
  opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update >>"$log" 2>&1
  rm -f "$dl"/*
  (cd "$dl" && apt-get "${opts[@]}" source --download-only kubernetes >>"$log" 2>&1)
  orig=$(ls "$dl"/kubernetes_*really${UPSTREAM}.orig.tar.gz 2>/dev/null | head -n 1 || true)
  if [ -z "$orig" ]; then
    say "the mirror's kubernetes source package is not Kubernetes $UPSTREAM: $(ls "$dl")" >&2
    false
  fi
fi

begin "verify the source"
got=$(sha256sum "$orig" | cut -d' ' -f1)
if [ "$got" != "$ORIG_SHA256" ]; then
  say "$orig has sha256 $got, expected $ORIG_SHA256" >&2
  false
fi
dsc=$(ls "$dl"/*.dsc | head -n 1)
# The .dsc came through apt from a signed index; dpkg-source re-checks every file against it when unpacking.
dsc_sha=$(sha256sum "$dsc" | cut -c1-16)
tree=$kdir/src-$dsc_sha

if [ ! -f "$tree/.kismatic-prepared" ]; then
  begin "unpack"
  rm -rf "$tree" "$tree.partial"
  dpkg-source --require-strong-checksums -x "$dsc" "$tree.partial" >>"$log" 2>&1

  begin "replace the vendored reflect2 1.0.1 with Debian's 1.0.2"
  # reflect2 1.0.1 built with Go >= 1.18 makes kube-apiserver fault in mapiternext whenever it pretty-prints JSON
  # or YAML (curl's User-Agent, ?pretty=true, Accept: application/yaml). 1.0.2 fixes it.
  v=$tree.partial/vendor/github.com/modern-go/reflect2
  find "$v" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  for f in "$REFLECT2_SRC"/*.go "$REFLECT2_SRC"/*.s; do
    case "$f" in *_test.go) continue ;; esac
    cp "$f" "$v/"
  done
  sed -i 's|^\(\s*github.com/modern-go/reflect2 => github.com/modern-go/reflect2\) v1.0.1$|\1 v1.0.2|' \
    "$tree.partial/go.mod"
  sed -i 's|^\(# github.com/modern-go/reflect2.* => github.com/modern-go/reflect2\) v1.0.1$|\1 v1.0.2|' \
    "$tree.partial/vendor/modules.txt"
  grep -q 'reflect2 => github.com/modern-go/reflect2 v1.0.2' "$tree.partial/go.mod"
  [ "$(grep -c '=> github.com/modern-go/reflect2 v1.0.2' "$tree.partial/vendor/modules.txt")" = 2 ]
  mkdir -p "$tree.partial/.go/src/k8s.io"
  ln -s ../../.. "$tree.partial/.go/src/k8s.io/kubernetes"
  touch "$tree.partial/.kismatic-prepared"
  mv "$tree.partial" "$tree"
fi

rm -rf "$out.partial"
mkdir -p "$out.partial" "$kdir/home"
for version in "${VERSIONS[@]}"; do
  begin "build $version"
  what="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler"
  [ "$version" = "$KUBECTL_VERSION" ] && what="$what cmd/kubectl"
  minor=${version#v1.}
  minor=${minor%%.*}
  # KUBE_GIT_VERSION is overridden by the archive's baked-in tag; a version file is honoured.
  cat >"$kdir/version-$version" <<EOF
KUBE_GIT_COMMIT='$dsc_sha'
KUBE_GIT_TREE_STATE='archive'
KUBE_GIT_VERSION='$version'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='$minor'
EOF
  (cd "$tree" && env GOPATH="$tree/.go" PATH="$GO:$PATH" CGO_ENABLED=0 HOME="$kdir/home" GOPROXY=off GOFLAGS=-mod=vendor \
     KUBE_GIT_VERSION_FILE="$kdir/version-$version" \
     make WHAT="$what" >>"$log" 2>&1)
  mkdir -p "$out.partial/$version"
  for b in "${BINARIES[@]}"; do
    cp "$tree/_output/bin/$b" "$out.partial/$version/$b"
    reported=$("$out.partial/$version/$b" --version 2>&1 | awk '{print $2}')
    if [ "$reported" != "$version" ]; then
      say "$b built for $version reports '$reported'" >&2
      false
    fi
  done
  if [ "$version" = "$KUBECTL_VERSION" ]; then
    cp "$tree/_output/bin/kubectl" "$out.partial/kubectl"
    reported=$("$out.partial/kubectl" version --client --short 2>&1 | awk '{print $3}')
    if [ "$reported" != "$version" ]; then
      say "kubectl built for $version reports '$reported'" >&2
      false
    fi
  fi
done

begin "record"
(cd "$out.partial" && find . -type f ! -name manifest.sha256 | sort | xargs sha256sum >manifest.sha256)
echo "source $(basename "$dsc") sha256 $(sha256sum "$dsc" | cut -d' ' -f1); orig $ORIG_SHA256; recipe $recipe" \
  >"$out.partial/SOURCE"
(cd "$out.partial" && sha256sum SOURCE >>manifest.sha256)
rm -rf "$out"
mv "$out.partial" "$out"
# Outputs of other recipes are kept: another checkout of another commit may use one (and would otherwise relink
# it). Each is ~0.5 GB; remove stale ones by hand.
step=done
say "built in $((SECONDS - started)) s: $out"
$print_dir && echo "$out"
exit 0
