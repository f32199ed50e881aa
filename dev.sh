#!/usr/bin/env bash
# One entry point for a fresh clone: sets up .venv (CPU PyTorch pinned), then runs what you ask.
#   bash dev.sh demo   -> set up, then run the offline demo (prefgate demo)
#   bash dev.sh test   -> set up, then run ruff and the whole test suite (slow tests included; with CI=true
#                         as root it also apt-installs chromium and tmux for the e2e tests)
#   bash dev.sh setup  -> set up only
# Set PREFGATE_TORCH to install another torch build (default: torch==2.13.0, the CPU wheel on this machine).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${PREFGATE_VENV:-.venv}
TORCH=${PREFGATE_TORCH:-torch==2.13.0}

pip_install() {
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" > "$VENV/pip.log" 2>&1 \
        || { grep -v "is ignored" "$VENV/pip.log" >&2; echo "set-up failed: pip install $*" >&2; exit 2; }
}

setup() {
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || { echo "prefgate needs Python >= 3.10 (python3 is $(python3 -V))" >&2; exit 2; }
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    local stamp="$VENV/.prefgate-setup" want
    want="$(cat pyproject.toml dev.sh | sha256sum | cut -c1-16) $TORCH"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "setting up $VENV (about a minute) ..." >&2
        pip_install "$TORCH"
        pip_install -e '.[test]'
        echo "$want" > "$stamp"
    fi
}

system_test_deps() {
    # Browser and terminal for the end-to-end tests (they skip, with a reason, when these are absent; under
    # CI=true they fail instead, so a green CI means they ran).
    # Installed only in CI (CI=true) as root with apt-get: never touch a developer's system unasked.
    [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
    command -v chromium >/dev/null && command -v tmux >/dev/null && return 0
    echo "installing chromium, fonts-dejavu-core and tmux for the e2e tests ..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core tmux) \
        >/tmp/prefgate-apt.log 2>&1 || echo "apt-get failed (see /tmp/prefgate-apt.log); the e2e browser and terminal tests will fail under CI=true" >&2
}

cmd=${1:-}
shift || true
case "$cmd" in
    setup) setup ;;
    demo) setup; exec "$VENV/bin/prefgate" demo "$@" ;;
    test)
        setup
        system_test_deps
        "$VENV/bin/ruff" check src tests benchmarks
        exec "$VENV/bin/python" -m pytest "$@" ;;
    *) echo "usage: bash dev.sh {demo|test|setup} [args...]" >&2; exit 2 ;;
esac
