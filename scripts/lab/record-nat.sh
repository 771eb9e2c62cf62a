#!/usr/bin/env bash
# Record real drivers behind a real NAT, as on a container host: the applications run in a
# network namespace ("the container", 10.200.1.2) whose traffic the host masquerades
# (nftables) on its way to the test server in another namespace (10.200.2.11-13). Two
# captures are taken at once:
#   any.pcap  tcpdump -i any: each connection twice, before the NAT (veth of the app) and
#             after it (veth of the servers, source 10.200.2.1), same sequence numbers;
#   app.pcap  tcpdump -i ca-app-h: the app's side only, each connection once.
# tests/nat.rs asserts that conn-attrib reads any.pcap exactly as app.pcap.
#
# Needs root, iproute2 and nftables (installed when missing), and the lab's PyMongo and
# Node.js driver (scripts/lab/record-all.sh installs them). Everything it creates is
# removed on exit.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$HERE/../../testdata/nat}"
PY="$HERE/.venv/bin/python"
SECONDS_RUN=10
[ "$(id -u)" = 0 ] || { echo "record-nat.sh: run as root (network namespaces, nftables)" >&2; exit 2; }
command -v nft >/dev/null || apt-get install -y -q nftables >/dev/null
command -v tcpdump >/dev/null || apt-get install -y -q tcpdump >/dev/null
[ -x "$PY" ] && [ -d "$HERE/node/node_modules" ] || {
    echo "record-nat.sh: run scripts/lab/record-all.sh once first (it installs the drivers)" >&2; exit 2; }
mkdir -p "$OUT"
WORK="$(mktemp -d)"

cleanup() {
    set +e
    for p in $(jobs -p); do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    nft delete table ip ca_lab_nat 2>/dev/null
    ip link del ca-app-h 2>/dev/null
    ip link del ca-db-h 2>/dev/null
    ip netns del ca-app 2>/dev/null
    ip netns del ca-db 2>/dev/null
    echo "$FORWARD" > /proc/sys/net/ipv4/ip_forward
    rm -rf "$WORK"
}
FORWARD="$(cat /proc/sys/net/ipv4/ip_forward)"
trap cleanup EXIT

ip netns add ca-app
ip netns add ca-db
ip link add ca-app-h type veth peer name ca-app-n netns ca-app
ip link add ca-db-h type veth peer name ca-db-n netns ca-db
ip addr add 10.200.1.1/24 dev ca-app-h
ip addr add 10.200.2.1/24 dev ca-db-h
ip link set ca-app-h up
ip link set ca-db-h up
ip -n ca-app addr add 10.200.1.2/24 dev ca-app-n
ip -n ca-app link set ca-app-n up
ip -n ca-app link set lo up
ip -n ca-app route add default via 10.200.1.1
for n in 11 12 13; do ip -n ca-db addr add "10.200.2.$n/24" dev ca-db-n; done
ip -n ca-db link set ca-db-n up
ip -n ca-db link set lo up
ip -n ca-db route add default via 10.200.2.1
echo 1 > /proc/sys/net/ipv4/ip_forward
nft add table ip ca_lab_nat
nft 'add chain ip ca_lab_nat post { type nat hook postrouting priority 100 ; }'
nft add rule ip ca_lab_nat post ip saddr 10.200.1.0/24 oifname ca-db-h masquerade

HOSTS=10.200.2.11:27017,10.200.2.12:27017,10.200.2.13:27017
ip netns exec ca-db "$PY" "$HERE/mongo_test_server.py" --log "$WORK/server.log" --hosts "$HOSTS" \
    --max-seconds $((SECONDS_RUN + 10)) >"$WORK/server.out" 2>&1 &
sleep 2
grep -q listening "$WORK/server.out" || { cat "$WORK/server.out" >&2; exit 1; }
tcpdump -i any -U -w "$WORK/any.pcap" 'tcp portrange 27017-27019' 2>/dev/null &
tcpdump -i ca-app-h -U -w "$WORK/app.pcap" 'tcp portrange 27017-27019' 2>/dev/null &
sleep 1
URI="mongodb://$HOSTS/?replicaSet=rs0&heartbeatFrequencyMS=2000&minPoolSize=1"
ip netns exec ca-app timeout $((SECONDS_RUN + 5)) "$PY" "$HERE/clients/pymongo_client.py" \
    --uri "$URI&appName=py-in-container" --seconds "$SECONDS_RUN" --clients 1 --threads 2 \
    --pause 0.5 --events "$WORK/pymongo-events.json" &
PY_PID=$!
ip netns exec ca-app env NODE_PATH="$HERE/node/node_modules" timeout $((SECONDS_RUN + 5)) \
    node "$HERE/clients/node_client.js" "--uri=$URI&appName=node-in-container" \
    "--seconds=$SECONDS_RUN" --clients=1 --threads=2 "--events=$WORK/node-events.json" &
NODE_PID=$!
wait "$PY_PID" "$NODE_PID"
sleep 2
for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
cp "$WORK/any.pcap" "$WORK/app.pcap" "$OUT/"
echo "record-nat.sh: wrote $OUT/any.pcap and $OUT/app.pcap"
