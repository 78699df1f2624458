# shellcheck shell=bash
# scripts/bench-common.sh: what scripts/loadtest and scripts/instructions share, sourced by
# both from the repository's root: Debian installs, the work directory and its cleanup, ports,
# the mock upstream, the bench configuration of the example gateway and wrk's request scripts.

BIN=target/release/examples
KEY=sk-llmaai-demo-0123456789abcdef0123456789abcdef

# install COMMAND PACKAGE: installs PACKAGE from Debian when COMMAND is missing.
install() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "installing $2 from Debian" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
    fi
}

# build EXAMPLE...: the examples in release, with every feature.
build() {
    echo "building (release)" >&2
    local examples=()
    for example in "$@"; do examples+=(--example "$example"); done
    cargo build --release --quiet --features full "${examples[@]}"
}

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A loopback port nothing listens on, below the ephemeral range (where an outgoing
# connection's port would refuse the bind).
free_port() {
    local port
    while :; do
        port=$((10000 + RANDOM % 22000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# wait_port PORT [TRIES]: waits until something accepts on PORT, TRIES times 50 ms at most
# (default 300).
wait_port() {
    for _ in $(seq 1 "${2:-300}"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# start NAME PORT COMMAND...: runs a server in the background; its pid in PID_<NAME>.
# WAIT_TRIES overrides wait_port's patience (a server under valgrind starts slowly).
start() {
    local name=$1 port=$2
    shift 2
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    printf -v "PID_$name" '%s' "$!"
    wait_port "$port" "${WAIT_TRIES:-300}" || { cat "$WORK/$name.log" >&2; exit 1; }
}

# start_upstream: the testkit's mock upstream (zero delay; streams paced per request by its
# x-mock header); sets UP (its port) and PID_upstream.
start_upstream() {
    "$BIN/mock_upstream" >"$WORK/upstream.log" 2>&1 &
    PIDS+=($!)
    # shellcheck disable=SC2034 # read by scripts/loadtest
    PID_upstream=$!
    UP=
    for _ in $(seq 1 300); do
        UP=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$WORK/upstream.log")
        if [ -n "$UP" ]; then return; fi
        sleep 0.05
    done
    cat "$WORK/upstream.log" >&2
    exit 1
}

# gateway_config FILE [EXTRA]: the example's configuration with limits and a balance no
# request reaches (every layer works, none rejects), logging off, EXTRA appended.
gateway_config() {
    sed -e 's/^requests_per_minute = 60$/requests_per_minute = 1000000000/' \
        -e 's/^tokens_per_minute = .*/tokens_per_minute = 1000000000000/' \
        -e 's/^model_requests_per_minute = .*/model_requests_per_minute = 1000000000/' \
        -e 's/^balance = 5000000$/balance = 1000000000000000/' \
        -e '/^\[admin\]/,/^key = /d' \
        examples/gateway/gateway.toml >"$1"
    printf '%s\n' "${2:-}" >>"$1"
}

# wrk_scripts: json.lua (the 1 KB chat body with the demo key) and stream.lua (the same as a
# stream of 20 chunks) in WORK, each ending with done(), which prints
# `LOADTEST requests=N errors=N p50=US p99=US`.
wrk_scripts() {
    wrk_script json '"max_tokens":16'
    wrk_script stream '"stream":true' 'wrk.headers["x-mock"] = "chunks=20"'
}

# wrk_script NAME MEMBER [LINE]: WORK/NAME.lua, the chat body with MEMBER after its model, LINE
# (another header) after the usual ones.
wrk_script() {
    {
        echo 'wrk.method = "POST"'
        echo "wrk.headers[\"Authorization\"] = \"Bearer $KEY\""
        echo 'wrk.headers["Content-Type"] = "application/json"'
        if [ -n "${3:-}" ]; then echo "$3"; fi
        echo 'local filler = string.rep("lorem ipsum dolor sit amet ", 34)'
        echo "wrk.body = '{\"model\":\"gpt-5.4\",$2,\"messages\":[{\"role\":\"user\",\"content\":\"' .. filler .. '\"}]}'"
        cat <<'EOF'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("LOADTEST requests=%d errors=%d p50=%d p99=%d\n", summary.requests,
        e.connect + e.read + e.write + e.status + e.timeout,
        latency:percentile(50), latency:percentile(99)))
end
EOF
    } >"$WORK/$1.lua"
}

# requests_of FILE: the request count of a wrk run's output, failing on any error.
requests_of() {
    local count
    count=$(sed -n 's/^LOADTEST requests=\([0-9]*\) errors=0 .*/\1/p' "$1")
    if [ -z "$count" ]; then
        cat "$1" >&2
        return 1
    fi
    echo "$count"
}
