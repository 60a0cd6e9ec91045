#!/usr/bin/env bash
# `make run`: a local Mosquitto, the collector (SQLite store only) and an agent for
# this machine, in the foreground. Everything lives in ./run; Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PORT=${COMMUNE_MQTT_PORT:-18830}
RUN=$PWD/run

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

if (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
  echo "port $PORT is already in use (another broker?): set COMMUNE_MQTT_PORT to a free port" >&2
  exit 1
fi

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
BROKER=$!
COLLECTOR=
trap 'kill $COLLECTOR $BROKER 2>/dev/null; wait 2>/dev/null; echo; echo "stopped."' EXIT
for _ in $(seq 50); do
  (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
  sleep 0.1
done

"$VENV/bin/commune-agent" check-config -c "$RUN/agent.toml"
"$VENV/bin/commune-collector" check-config -c "$RUN/collector.toml"
"$VENV/bin/commune-collector" run -c "$RUN/collector.toml" 2>> "$RUN/collector.log" &
COLLECTOR=$!
cat <<MSG

  broker     mqtt://127.0.0.1:$PORT        (log: run/mosquitto.log)
  collector  store run/collector-state.sqlite   (log: run/collector.log)
  agent      config run/agent.toml, outbox run/state/outbox.sqlite
  status     $VENV/bin/commune-collector status -c run/collector.toml
  line       $VENV/bin/commune-collector availability -c run/collector.toml --commune la-nga --from $(date +%F) --to $(date -d tomorrow +%F)
  watch      mosquitto_sub -h 127.0.0.1 -p $PORT -t 'commune/#' -v
  one run    $VENV/bin/commune-agent once -c run/agent.toml
  stop       Ctrl-C

MSG
"$VENV/bin/commune-agent" run -c "$RUN/agent.toml"
