#!/usr/bin/env bash
# `make run`: a local Mosquitto; the collector (SQLite store only, the IOC API on
# loopback); an agent for this machine; a simulated commune office whose router
# and Polycom (snmpsim recordings) are polled by a real agent; and a fleet of
# simulated communes. Everything lives in ./run; Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PORT=${COMMUNE_MQTT_PORT:-18830}
API_PORT=${COMMUNE_API_PORT:-18080}
SNMP_PORT=${COMMUNE_SNMP_PORT:-18161}
INVENTORY=$PWD/deploy/inventory/dong-nai.toml
RUN=${COMMUNE_RUN_DIR:-$PWD/run}

if ! command -v mosquitto >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing mosquitto (Debian packages)..."
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto mosquitto-clients >/dev/null
  else
    echo "make run needs Mosquitto: sudo apt-get install mosquitto mosquitto-clients" >&2
    exit 1
  fi
fi

for pair in "$PORT:COMMUNE_MQTT_PORT" "$API_PORT:COMMUNE_API_PORT"; do
  if (echo > /dev/tcp/127.0.0.1/${pair%%:*}) 2>/dev/null; then
    echo "port ${pair%%:*} is already in use: set ${pair#*:} to a free port" >&2
    exit 1
  fi
done

mkdir -p "$RUN/state"
cat > "$RUN/mosquitto.conf" <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root" )
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
# Keep what arrives while the collector is stopped (the default drops beyond 1,000).
max_queued_messages 100000
log_dest file $RUN/mosquitto.log
CONF

cat > "$RUN/collector.toml" <<CONF
# Written by make run: the collector with its SQLite store only.
[mqtt]
url = "mqtt://127.0.0.1:$PORT"

[store]
path = "$RUN/collector-state.sqlite"

[collector]
client_id = "commune-collector-local"
inventory = ["$INVENTORY"]

[api]
listen = "127.0.0.1:$API_PORT"
# Development only: no token needed on loopback.
open_on_loopback = true
CONF

cat > "$RUN/poller.toml" <<CONF
# Written by make run: the commune office's poller box, polling the simulated
# router and Polycom (snmpsim on udp $SNMP_PORT) like real ones.
[agent]
province = "dong-nai"
commune = "la-nga"
id = "poller"
interval = "15s"
state_dir = "$RUN/poller-state"

[mqtt]
url = "mqtt://127.0.0.1:$PORT"

[[checks.snmp]]
name = "router"
host = "127.0.0.1"
port = $SNMP_PORT
community = "router"

[[checks.polycom]]
name = "polycom"
host = "127.0.0.1"
port = $SNMP_PORT
community = "polycom"

[[checks.link]]
name = "tslcd-province"
network = "tslcd"
method = "tcp"
target = "127.0.0.1"
port = $PORT
CONF

cat > "$RUN/agent.toml" <<CONF
# Written by make run: an agent for this machine in a demo commune.
[agent]
province = "dong-nai"
commune = "la-nga"
interval = "15s"
state_dir = "$RUN/state"

[mqtt]
url = "mqtt://127.0.0.1:$PORT"

[[checks.host]]

[[checks.antivirus]]
interval = "1m"

[[checks.link]]
name = "lan-broker"
network = "lan"
method = "tcp"
target = "127.0.0.1"
port = $PORT

[[checks.link]]
name = "loopback-icmp"
network = "tslcd"
method = "icmp"
target = "127.0.0.1"
CONF

mosquitto -c "$RUN/mosquitto.conf" &
PIDS=$!
trap 'kill $PIDS 2>/dev/null; wait 2>/dev/null; echo; echo "stopped."' EXIT
trap 'exit 130' INT TERM
for _ in $(seq 50); do
  (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
  sleep 0.1
done

"$VENV/bin/commune-agent" check-config -c "$RUN/agent.toml"
"$VENV/bin/commune-collector" check-config -c "$RUN/collector.toml"
"$VENV/bin/commune-collector" run -c "$RUN/collector.toml" 2>> "$RUN/collector.log" &
PIDS="$! $PIDS"
"$VENV/bin/python" deploy/dev/simulated_devices.py --port "$SNMP_PORT" >> "$RUN/devices.log" 2>&1 &
PIDS="$! $PIDS"
for _ in $(seq 100); do
  grep -q "simulated router" "$RUN/devices.log" 2>/dev/null && break
  sleep 0.2
done
"$VENV/bin/commune-agent" run -c "$RUN/poller.toml" >> "$RUN/poller.log" 2>&1 &
PIDS="$! $PIDS"
"$VENV/bin/commune-fleet" --broker "mqtt://127.0.0.1:$PORT" --inventory "$INVENTORY" \
  --exclude la-nga --communes 5 --pcs 8 --interval 15 >> "$RUN/fleet.log" 2>&1 &
PIDS="$! $PIDS"
cat <<MSG

  Đồng Nai, 9 communes in the inventory:
    la-nga      this machine's agent + a poller box polling a simulated router and Polycom
    5 more      commune-fleet: 8 PCs and a poller each (anti-malware mix, line outages, meetings)
    3 more      nothing reporting: shown as no_data

  console    http://127.0.0.1:$API_PORT/          (technicians; no login on loopback)
  API (IOC)  http://127.0.0.1:$API_PORT/docs      (OpenAPI; no token needed on loopback)
             curl -s http://127.0.0.1:$API_PORT/api/v1/province
             curl -s http://127.0.0.1:$API_PORT/api/v1/communes/la-nga
  status     $VENV/bin/commune-collector status -c $RUN/collector.toml
  line       $VENV/bin/commune-collector availability -c $RUN/collector.toml --commune la-nga --from $(date +%F) --to $(date -d tomorrow +%F)
  broker     mqtt://127.0.0.1:$PORT   watch: mosquitto_sub -h 127.0.0.1 -p $PORT -t 'commune/#' -v
  logs       $RUN/*.log
  state      $RUN/collector-state.sqlite
  stop       Ctrl-C

  Data arrives within 15 s; the first status lines within a minute.

MSG
"$VENV/bin/commune-agent" run -c "$RUN/agent.toml" &
PIDS="$! $PIDS"
wait
