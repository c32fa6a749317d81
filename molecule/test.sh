#!/usr/bin/env bash
# The molecule part of `make test`: a scenario's steps one by one (what `molecule test` runs),
# timed, with the hosts always torn down at the end. Prints and saves the timings:
#   fresh provision = converge on fresh hosts (the whole fleet in parallel);
#   second run      = the idempotence step (the same play again; it must change nothing).
#
#   molecule/test.sh [SCENARIO]        default: default
# Environment: VENV (default .venv), PC_TIMINGS (default molecule/.timings),
# PC_KEEP=1 keeps the hosts after a failure (then: molecule destroy).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
SCENARIO=${1:-default}
TIMINGS=${PC_TIMINGS:-$ROOT/molecule/.timings}
export PATH="$VENV/bin:$PATH" ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
cd "$ROOT"

declare -A took=()
order=()
step() {  # step NAME: run `molecule NAME -s SCENARIO`, timed
    local name=$1 started=$SECONDS
    echo "=== molecule $name -s $SCENARIO ($(date -u +%H:%M:%S) UTC)"
    molecule "$name" -s "$SCENARIO"
    took[$name]=$((SECONDS - started))
    order+=("$name")
}

report() {
    local rc=$? line
    if [[ $rc -ne 0 && ${PC_KEEP:-0} == 1 ]]; then
        echo "molecule/test.sh: failed; hosts kept (PC_KEEP=1): molecule destroy -s $SCENARIO removes them" >&2
    else
        molecule destroy -s "$SCENARIO" >/dev/null 2>&1 || molecule destroy -s "$SCENARIO"
    fi
    {
        echo "# molecule scenario '$SCENARIO' on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), exit $rc"
        for name in "${order[@]}"; do
            printf '%-12s %5d s\n' "$name" "${took[$name]}"
        done
        [[ -n ${took[converge]:-} ]] && printf 'fresh provision (converge, %s): %d s (target < 300 s)\n' \
            "all hosts in parallel" "${took[converge]}"
        [[ -n ${took[idempotence]:-} ]] && printf 'second run (idempotence, changed=0): %d s (target < 60 s)\n' \
            "${took[idempotence]}"
        printf 'whole molecule run (with the final destroy): %d s\n' "$SECONDS"
    } >"$TIMINGS"
    echo
    while IFS= read -r line; do echo "$line"; done <"$TIMINGS"
    echo "(saved in ${TIMINGS#"$ROOT"/})"
    exit "$rc"
}

trap report EXIT
step destroy
step syntax
step create
step prepare
step converge
step idempotence
step verify
