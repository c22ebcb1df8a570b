#!/usr/bin/env bash
# gateway-check.sh - call the demo's MCP tool through the gateway and follow the
# job to its end, with curl only:
#
#   1. waits (up to ASYA_CHECK_WAIT s, default 120) until GET /readyz answers 200;
#   2. POST /tools/call {"name": "demo_pipeline", "arguments": {"name": ..., "value": ...}}
#      and takes the job id from the answer ("Job created successfully with ID: ...");
#   3. follows GET /jobs/{id}/stream (SSE) until the gateway ends it after the
#      final event, printing every event;
#   4. checks the job: the stream's last update and GET /jobs/{id} say Succeeded
#      with the result value * 2 + 5.
#
#   compose/gateway-check.sh [NAME [VALUE]]     (defaults: Ada 1 -> value 7)
#
# Environment: ASYA_GATEWAY_URL (default http://127.0.0.1:${ASYA_GATEWAY_PORT:-8080},
# the port docker-compose.yml publishes), ASYA_CHECK_WAIT.  Needs curl.
# Exit status: 0 when the job succeeded with the expected result, 1 otherwise.
set -euo pipefail

GW=${ASYA_GATEWAY_URL:-http://127.0.0.1:${ASYA_GATEWAY_PORT:-8080}}
NAME=${1:-Ada}
VALUE=${2:-1}
WANT=$((VALUE * 2 + 5))
say() { echo "gateway-check: $*" >&2; }
command -v curl >/dev/null || { say "needs curl"; exit 1; }

deadline=$((SECONDS + ${ASYA_CHECK_WAIT:-120}))
until curl -fsS -o /dev/null -m 2 "$GW/readyz" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { say "$GW/readyz did not answer 200"; exit 1; }
    sleep 1
done

args=$(printf '{"name":"demo_pipeline","arguments":{"name":"%s","value":%d}}' "$NAME" "$VALUE")
echo "\$ curl -sS -X POST $GW/tools/call -H 'Content-Type: application/json' -d '$args'"
answer=$(curl -sS -m 15 -X POST "$GW/tools/call" -H 'Content-Type: application/json' -d "$args")
echo "$answer"
job=$(grep -o 'Job created successfully with ID: [0-9a-f-]*' <<<"$answer" | awk '{print $NF}')
[ -n "$job" ] || { say "no job id in the answer"; exit 1; }

echo
echo "\$ curl -sS -N $GW/jobs/$job/stream"
stream=$(curl -sS -N -m 90 "$GW/jobs/$job/stream") || { say "the stream did not end within 90 s"; echo "$stream"; exit 1; }
echo "$stream"
# shellcheck disable=SC2034 # read below as ${!what}
final=$(grep '^data:' <<<"$stream" | tail -n 1)

echo
echo "\$ curl -sS $GW/jobs/$job"
record=$(curl -sS -m 10 "$GW/jobs/$job")
echo "$record"

ok=yes
for what in final record; do
    text=${!what}
    if ! grep -Eq '"status": ?"Succeeded"' <<<"$text"; then
        say "the $what is not Succeeded"
        ok=
    fi
    if ! grep -Eq "\"result\": ?\{[^}]*\"value\": ?${WANT}[,}]" <<<"$text"; then
        say "the $what has no result with value $WANT"
        ok=
    fi
done
[ -n "$ok" ] || exit 1
echo
say "job $job Succeeded with value $WANT"
