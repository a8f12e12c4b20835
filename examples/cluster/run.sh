#!/usr/bin/env bash
# Redis, 3 dispatcher replicas and HAProxy on this machine (docs/replicas.md). Ctrl-C stops them all.
#   Redis       127.0.0.1:6390   pins shared by the replicas
#   replicas    127.0.0.1:8081-8083 (r1, r2, r3), config examples/cluster/replica.yaml
#   HAProxy     127.0.0.1:8080   what clients call; examples/cluster/haproxy.cfg
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install redis-server" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "haproxy not found: apt-get install haproxy" >&2; exit 1; }
[ -d node_modules ] || npm ci
npm run build --silent

logs=$(mktemp -d)
pids=()
stop() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped; logs were in $logs"
}
trap stop EXIT INT TERM

declare -A replica
redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no >"$logs/redis.log" 2>&1 &
pids+=($!)
for i in 1 2 3; do
  REPLICA_ID="r$i" PORT="808$i" REDIS_URL=redis://127.0.0.1:6390 \
    node dist/src/main.js --config examples/cluster/replica.yaml >"$logs/r$i.log" 2>&1 &
  pids+=($!)
  replica[r$i]=$!
done
haproxy -db -f examples/cluster/haproxy.cfg >"$logs/haproxy.log" 2>&1 &
pids+=($!)

# Wait until HAProxy's health checks have let a replica in.
for _ in $(seq 100); do
  if curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d '{}' \
      http://127.0.0.1:8080/grpc.health.v1.Health/Check | grep -q 200; then ready=1; break; fi
  sleep 0.1
done
[ "${ready:-}" = 1 ] || { echo "HAProxy did not answer; logs in $logs" >&2; exit 1; }

cat <<MSG
Redis on :6390, replicas r1-r3 on :8081-8083, HAProxy on :8080 (logs in $logs). Try, in another terminal:

  # the same session lands on the same replica (the dispatcher-replica header) and worker (workerId)
  curl -si --http2-prior-knowledge -H 'content-type: application/json' -H 'dispatcher-session: user-42' \\
    -d '{"backend":"echo","json":{"prompt":"hello"}}' http://127.0.0.1:8080/dispatcher.v1.DispatcherService/Submit

  # kill the replica that answered (r1: pid ${replica[r1]}, r2: pid ${replica[r2]}, r3: pid ${replica[r3]}),
  # then call again: another replica answers, with the same workerId and "affinity":"hit" (the pin in Redis)
  kill -9 <pid>

Ctrl-C stops everything.
MSG
wait
