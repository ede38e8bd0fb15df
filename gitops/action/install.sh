#!/usr/bin/env bash
# action.yml's "Install nestbot" step: puts nestbot at $RUNNER_TEMP/nestbot.
#
# A release ref installs that release's binary:
#   @v1.2.3     the release v1.2.3
#   @v1, @v1.2  the release the moving tag names (release.yml moves v1 and
#               v1.2 to the newest release of each once its assets and
#               attestations are published: the newest matching release)
# checked three ways before it runs:
#   - its sha256 against the release's checksums.txt (integrity);
#   - its build provenance with gh attestation verify, where gh (2.49 or
#     newer) is on the runner: built by ducksnest/nestbot's release.yml
#     (authenticity). Without gh, say so and go on with the checksum only
#     (attestation: auto), or refuse (attestation: required);
#   - the commit the binary says it was built from against the commit the
#     tag names (a release's assets cannot be swapped for another's).
# Any other ref (a branch, a commit) builds nestbot from the action's source
# with the runner's Go.
#
# Inputs, from action.yml's env: NESTBOT_IN_VERSION, NESTBOT_IN_RELEASES_URL
# (else NESTBOT_RELEASES_URL),
# NESTBOT_IN_ATTESTATION, NESTBOT_ACTION_REF, NESTBOT_ACTION_REPOSITORY,
# GH_TOKEN (for gh attestation verify).
set -euo pipefail

fail() { echo "::error title=nestbot::$*"; exit 1; }

bin="$RUNNER_TEMP/nestbot"
repo="${NESTBOT_ACTION_REPOSITORY:-ducksnest/nestbot}"
# The releases-url input, else NESTBOT_RELEASES_URL in the job's environment
# (a self-hosted runner's .env can point every job at a mirror).
releases="${NESTBOT_IN_RELEASES_URL:-${NESTBOT_RELEASES_URL:-https://github.com/$repo}}"
releases="${releases%/}"
attestation="${NESTBOT_IN_ATTESTATION:-auto}"
case "$attestation" in
  auto | required | off) ;;
  *) fail "attestation: \"$attestation\": use auto, required or off" ;;
esac
ref="${NESTBOT_IN_VERSION:-$NESTBOT_ACTION_REF}"
if [[ -n "$NESTBOT_IN_VERSION" && ! "$NESTBOT_IN_VERSION" =~ ^v[0-9]+(\.[0-9]+){0,2}(-[0-9A-Za-z.]+)?$ ]]; then
  fail "version \"$NESTBOT_IN_VERSION\" is not a release: use vX.Y.Z, vX.Y or vX, or leave it empty"
fi

# tag_commit prints the commit a tag of the releases' repository names
# (peeled, for an annotated tag), from the tags listed in $tags.
tag_commit() {
  awk -v t="refs/tags/$1" '$2 == t "^{}" { peeled = $1 } $2 == t { direct = $1 }
    END { if (peeled != "") print peeled; else if (direct != "") print direct }' <<<"$tags"
}

version=""
if [[ "$ref" =~ ^v[0-9]+(\.[0-9]+){0,2}(-[0-9A-Za-z.]+)?$ ]]; then
  if ! command -v git >/dev/null; then
    fail "nestbot@$ref is a release, but this runner has no git to look its tag up: install git"
  fi
  if ! tags=$(GIT_TERMINAL_PROMPT=0 git ls-remote --tags "$releases" 2>&1); then
    fail "cannot list the tags of $releases: $(tail -n 1 <<<"$tags")"
  fi
  commit=$(tag_commit "$ref")
  if [[ "$ref" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then
    version="$ref"
    [[ -n "$commit" ]] || fail "$releases has no tag $ref: no such release"
  elif [[ -n "$commit" ]]; then
    # @v1 or @v1.2: the newest release vX.Y.Z at the commit the tag names.
    version=$(awk -v p="refs/tags/$ref." -v c="$commit" 'index($2, p) == 1 && $2 !~ /\^\{\}$/ { print substr($2, 11) }' <<<"$tags" |
      while read -r t; do
        if [[ "$t" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ && "$(tag_commit "$t")" == "$commit" ]]; then echo "$t"; fi
      done | sort -V | tail -n 1)
    if [[ -z "$version" ]]; then
      echo "::notice title=nestbot::$ref is at ${commit:0:12}, which no release vX.Y.Z names: building from source"
    fi
  else
    echo "::notice title=nestbot::$releases has no tag $ref (a branch?): building from source"
  fi
fi

if [[ -n "$version" ]]; then
  case "$RUNNER_OS" in
    Linux) os=linux ;;
    macOS) os=darwin ;;
    *) fail "no nestbot release for $RUNNER_OS runners: use a branch or commit ref (built from source)" ;;
  esac
  case "$RUNNER_ARCH" in
    X64) arch=amd64 ;;
    ARM64) arch=arm64 ;;
    *) fail "no nestbot release for $RUNNER_ARCH runners: use a branch or commit ref (built from source)" ;;
  esac
  asset="nestbot_${os}_${arch}.tar.gz"
  dl="$(mktemp -d)"
  trap 'rm -rf "$dl"' EXIT
  echo "Installing nestbot $version ($asset) from $releases, tag at ${commit:0:12}"
  for f in "$asset" checksums.txt; do
    curl -fsSL --retry 3 -o "$dl/$f" "$releases/releases/download/$version/$f" ||
      fail "cannot download $f of nestbot $version from $releases/releases/download/$version/"
  done

  # Integrity: the archive is the one checksums.txt lists.
  want=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1 }' "$dl/checksums.txt")
  [[ -n "$want" ]] || fail "checksums.txt of nestbot $version does not list $asset"
  if command -v sha256sum >/dev/null; then
    got=$(sha256sum "$dl/$asset" | cut -d' ' -f1)
  else
    got=$(shasum -a 256 "$dl/$asset" | cut -d' ' -f1)
  fi
  if [[ "$got" != "$want" ]]; then
    fail "$asset of nestbot $version does not match checksums.txt (sha256 $got, want $want): refusing to install it"
  fi
  echo "sha256 $got matches checksums.txt"

  # Authenticity: built by the release workflow of $repo.
  if [[ "$attestation" != off ]]; then
    if command -v gh >/dev/null && gh attestation verify --help >/dev/null 2>&1; then
      if ! out=$(gh attestation verify "$dl/$asset" --repo "$repo" --signer-workflow "$repo/.github/workflows/release.yml" 2>&1); then
        echo "$out"
        fail "$asset of nestbot $version has no valid build provenance from $repo's release workflow (gh attestation verify): refusing to install it"
      fi
      echo "gh attestation verify: $asset was built by $repo/.github/workflows/release.yml"
    elif [[ "$attestation" == required ]]; then
      fail "attestation: required, but gh attestation verify is not available on this runner (install gh 2.49 or newer)"
    else
      echo "::notice title=nestbot::gh attestation verify is not available on this runner: $asset is checked against checksums.txt only (integrity, not who built it); install gh 2.49 or newer, or set attestation: required to refuse such runners"
    fi
  fi

  tar -xzf "$dl/$asset" -C "$dl" nestbot
  # The binary was built from the commit the tag names.
  built=$("$dl/nestbot" version --json | sed -n 's/^ *"commit": *"\([0-9a-f]*\)".*/\1/p')
  if [[ "$built" != "$commit" ]]; then
    fail "nestbot $version says it was built from commit ${built:-unknown}, but $version is at $commit: refusing to install it"
  fi
  install -m 0755 "$dl/nestbot" "$bin"
else
  if ! command -v go >/dev/null; then
    fail "the action's ref (${ref:-unknown}) is not a release, so nestbot is built from source, but this runner has no Go: set setup-go: true, or use a release (@v1)"
  fi
  echo "Building nestbot from source (${ref:-unknown ref}) with $(go version)"
  stamp="-X github.com/ducksnest/nestbot/internal/buildinfo.version=devel-${ref//[^0-9A-Za-z._-]/-}"
  if [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then
    stamp+=" -X github.com/ducksnest/nestbot/internal/buildinfo.commit=$ref"
  fi
  (cd "$GITHUB_ACTION_PATH" && GOFLAGS="-buildvcs=false ${GOFLAGS:-}" go build -trimpath -ldflags "$stamp" -o "$bin" ./cmd/nestbot)
fi
"$bin" version
