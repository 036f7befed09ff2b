# Shared by .ci/run (CI) and .ci/serve (the playground): installs what is missing, leaves what is
# present at the right version alone. Source it from the repository root after setting ROOT.

# Tool versions. wasm-bindgen-cli must equal the wasm-bindgen crate in Cargo.lock exactly.
TRUNK_REQ="~0.21"   # trunk 0.22 needs rustc >= 1.96.1
TRUNK_SERIES="0.21."
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock" 2>/dev/null || true)"
WASM_BINDGEN_VERSION="${WASM_BINDGEN_VERSION:-0.2.130}"

export PATH="$HOME/.cargo/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"
# lavapipe and Chromium warn without it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

if [[ -t 1 ]]; then BOLD=$'\e[1m'; RESET=$'\e[0m'; else BOLD=""; RESET=""; fi
banner() {
  printf '\n%s==== %s ====%s\n' "$BOLD" "$*" "$RESET"
}

sudo_if_needed() {
  if [[ "$(id -u)" != 0 ]]; then sudo "$@"; else "$@"; fi
}

# need_apt PKG...: installs the Debian packages that are missing.
need_apt() {
  banner "setup: system packages ($*)"
  local missing=() pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    sudo_if_needed apt-get update
    sudo_if_needed apt-get install -y "${missing[@]}"
  else
    echo "all present"
  fi
}

# need_wasm_tools: the wasm32 target, trunk and wasm-bindgen-cli at the pinned versions.
need_wasm_tools() {
  banner "setup: rust target wasm32-unknown-unknown"
  if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "present"
  else
    rustup target add wasm32-unknown-unknown
  fi

  banner "setup: trunk ${TRUNK_REQ}, wasm-bindgen-cli ${WASM_BINDGEN_VERSION}"
  local trunk_have wb_have wbr_have
  trunk_have="$(trunk --version 2>/dev/null | awk '{print $2}' || true)"
  if [[ "$trunk_have" == "$TRUNK_SERIES"* ]]; then
    echo "trunk $trunk_have present"
  else
    cargo install trunk --version "$TRUNK_REQ" --locked --force
  fi
  wb_have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
  wbr_have="$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)"
  if [[ "$wb_have" == "$WASM_BINDGEN_VERSION" && "$wbr_have" == "$WASM_BINDGEN_VERSION" ]]; then
    echo "wasm-bindgen $wb_have present"
  else
    # No --locked: its lock file names a webpki-roots version the registry may not serve.
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
  fi
}

# need_npm DIR: Node and DIR's npm packages (page tests: playwright-core driving
# /usr/bin/chromium). Never `npx playwright install`: it downloads a browser.
need_npm() {
  banner "setup: npm packages for $1"
  if ! command -v npm >/dev/null; then
    sudo_if_needed apt-get update && sudo_if_needed apt-get install -y nodejs npm
  fi
  if [[ -f "$1/package-lock.json" ]]; then
    (cd "$1" && npm ci --no-audit --no-fund)
  else
    (cd "$1" && npm install --no-audit --no-fund)
  fi
}
