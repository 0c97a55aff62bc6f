#!/usr/bin/env bash
# Create (or reuse) the cached Python venv for the sales-history test setup.
#
# Usage:
#   scripts/venv.sh                 # prints the venv's python path as the LAST stdout line
#   PY="$(scripts/venv.sh | tail -n1)"
#   source scripts/venv.sh          # same, and also exports SALES_HISTORY_PYTHON and
#                                   # SALES_HISTORY_VENV into the calling shell
#
# The venv lives at
#   ${SALES_HISTORY_VENV_ROOT:-$HOME/.cache/sales-history}/venv-<sha256(python/requirements.txt)[:12]>
# and is reused when it holds the marker file `.installed` and its python runs.
# Otherwise it is (re)created with `python3 -m venv` and
# `pip install -r python/requirements.txt` (one retry), then the marker is written.
#
# Environment:
#   SALES_HISTORY_VENV_ROOT  parent directory of the venvs (default ~/.cache/sales-history)
#   SALES_HISTORY_PYTHON3    interpreter used to create the venv (default: python3)
#
# Concurrent callers (e.g. parallel cargo tests) are serialised with flock(1)
# when it is available. Progress goes to stderr; stdout carries only the path.
# Any failure exits (or, when sourced, returns) non-zero.

_sales_history_venv_main() (
    set -euo pipefail

    log() { printf '[venv.sh] %s\n' "$*" >&2; }
    die() { printf '[venv.sh] ERROR: %s\n' "$*" >&2; exit 1; }

    script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" || die "cannot locate script directory"
    repo_root="$(cd "$script_dir/.." && pwd)" || die "cannot locate repo root"
    req="$repo_root/python/requirements.txt"
    [[ -f "$req" ]] || die "missing $req"

    if command -v sha256sum >/dev/null 2>&1; then
        hash="$(sha256sum "$req" | cut -c1-12)"
    elif command -v shasum >/dev/null 2>&1; then
        hash="$(shasum -a 256 "$req" | cut -c1-12)"
    else
        die "need sha256sum or shasum"
    fi
    [[ "$hash" =~ ^[0-9a-f]{12}$ ]] || die "could not hash $req"

    root="${SALES_HISTORY_VENV_ROOT:-${HOME:?HOME is not set}/.cache/sales-history}"
    mkdir -p "$root" || die "cannot create $root"
    root="$(cd "$root" && pwd)"
    venv="$root/venv-$hash"
    py="$venv/bin/python"
    marker="$venv/.installed"

    venv_ok() {
        [[ -f "$marker" && -x "$py" ]] && "$py" -c 'import sys' >/dev/null 2>&1
    }

    if venv_ok; then
        log "reusing $venv"
        printf '%s\n' "$py"
        exit 0
    fi

    # Serialise builders: another process may be building the same venv.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$root/venv-$hash.lock" || die "cannot open lock file"
        log "waiting for lock $root/venv-$hash.lock"
        flock 9 || die "flock failed"
        if venv_ok; then
            log "reusing $venv (built by another process)"
            printf '%s\n' "$py"
            exit 0
        fi
    else
        log "flock not found; building without a lock"
    fi

    base_python="${SALES_HISTORY_PYTHON3:-python3}"
    command -v "$base_python" >/dev/null 2>&1 || die "$base_python not found"
    "$base_python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
        || die "$base_python is $("$base_python" -V 2>&1); need Python >= 3.10"

    log "building $venv with $("$base_python" -V 2>&1) (this takes about a minute)"
    start=$SECONDS
    rm -rf "$venv"
    "$base_python" -m venv "$venv" >&2 || die "python3 -m venv failed (is python3-venv installed?)"
    [[ -x "$py" ]] || die "venv has no $py"

    pip_install() {
        "$py" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" >&2
    }
    if ! pip_install; then
        log "pip install failed; retrying once in 5s"
        sleep 5
        pip_install || die "pip install -r $req failed twice"
    fi

    "$py" -c 'import pyiceberg, pyarrow, sqlalchemy, boto3, moto' >&2 \
        || die "installed venv cannot import its packages"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$marker" || die "cannot write $marker"
    log "venv ready in $((SECONDS - start))s"
    printf '%s\n' "$py"
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: never `exit` the caller's shell; export the result instead.
    if _sales_history_out="$(_sales_history_venv_main)" && [[ -n "$_sales_history_out" ]]; then
        SALES_HISTORY_PYTHON="$(printf '%s\n' "$_sales_history_out" | tail -n1)"
        SALES_HISTORY_VENV="$(dirname "$(dirname "$SALES_HISTORY_PYTHON")")"
        export SALES_HISTORY_PYTHON SALES_HISTORY_VENV
        unset _sales_history_out
        unset -f _sales_history_venv_main
        printf '%s\n' "$SALES_HISTORY_PYTHON"
        return 0
    else
        unset _sales_history_out
        unset -f _sales_history_venv_main
        printf '[venv.sh] ERROR: venv setup failed\n' >&2
        return 1
    fi
else
    _sales_history_venv_main
fi
