#!/bin/sh
# Issue 14's benchmark matrix: every scenario through `moverctl bench
# --json`, one line each with the medians, the engine's predicted
# suspension against the measured one (and in how many runs they agree
# within 20 % or 0.5 ms), and the load the machine was under.
#
#   benches/matrix/bench-matrix.sh [RUNS] [MOVERCTL]
#
# RUNS defaults to 5. The --netns rows need root (they are skipped
# otherwise). TLS=0 in the environment adds --insecure-plaintext to every
# row, so the encryption's share shows against a TLS run of the matrix.
set -eu
runs=${1:-5}
moverctl=${2:-target/debug/moverctl}
extra=""
[ "${TLS:-1}" = 0 ] && extra="--insecure-plaintext"
hot="hot:256MiB,content=random"

row() {
    name=$1
    shift
    load=$(cut -d' ' -f1 /proc/loadavg)
    if ! out=$("$moverctl" bench --runs "$runs" --json $extra "$@" 2>/dev/null); then
        printf '%-34s failed (load %s)\n' "$name" "$load"
        return
    fi
    printf '%s' "$out" | python3 "$(dirname "$0")/row.py" "$name" "$load"
}

printf '%-34s %s\n' scenario "medians of $runs runs"
row "loopback 4GiB rate=60000" --memory 4GiB --workload "$hot,rate=60000"
row "loopback 4GiB rate=30000" --memory 4GiB --workload "$hot,rate=30000"
row "loopback 2GiB incompressible ref" --memory 2GiB --workload "hot:2GiB,content=random,writes=524288" --reference
# 4 GiB populated (a 1 GiB working set and 3 GiB loaded once) in LPARs 4x
# apart: the totals should match. On demand, so two agents on one host
# hold twice the populated memory, not twice the LPAR.
big="hot:1GiB,content=random,rate=60000,resident=3GiB"
row "loopback 4GiB LPAR 4GiB populated" --memory 4GiB --workload "$big" --memory-backing on-demand
row "loopback 16GiB LPAR 4GiB populated" --memory 16GiB --workload "$big" --memory-backing on-demand
if [ "$(id -u)" = 0 ]; then
    row "netns 1Gbit/s 4GiB rate=60000" --netns 1Gbit/s --memory 4GiB --workload "$hot,rate=60000"
    row "netns 1Gbit/s 4GiB rate=30000" --netns 1Gbit/s --memory 4GiB --workload "$hot,rate=30000"
else
    echo "netns rows skipped: --netns needs root"
fi
