#!/usr/bin/env bash
# `make run`: a local Mosquitto with the dynamic security plugin; the collector
# (SQLite store only, the IOC API on loopback, enrollment and check profiles);
# an agent for this machine and a poller box polling a simulated router and
# Polycom (snmpsim recordings), both enrolled with La Ngà's tokens and running
# the checks the collector's profiles give them; and a fleet of simulated
# communes, enrolled the same way. Everything lives in ./run; Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PORT=${COMMUNE_MQTT_PORT:-18830}
API_PORT=${COMMUNE_API_PORT:-18080}
SNMP_PORT=${COMMUNE_SNMP_PORT:-18161}
SYSTEMS_PORT=${COMMUNE_SYSTEMS_PORT:-18090}
PROVINCE_INVENTORY=$PWD/deploy/inventory/dong-nai.toml
RUN=${COMMUNE_RUN_DIR:-$PWD/run}
INVENTORY=$RUN/inventory.toml
FLEET_COMMUNES=5
FLEET_PCS=8

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

for pair in "$PORT:COMMUNE_MQTT_PORT" "$API_PORT:COMMUNE_API_PORT" "$SYSTEMS_PORT:COMMUNE_SYSTEMS_PORT"; do
  if (echo > /dev/tcp/127.0.0.1/${pair%%:*}) 2>/dev/null; then
    echo "port ${pair%%:*} is already in use: set ${pair#*:} to a free port" >&2
    exit 1
  fi
done

DYNSEC_PLUGIN=$(ls /usr/lib/*/mosquitto_dynamic_security.so /usr/lib/mosquitto_dynamic_security.so 2>/dev/null | head -1 || true)
if [ -z "$DYNSEC_PLUGIN" ]; then
  echo "make run needs Mosquitto 2's dynamic security plugin (Debian: package mosquitto)" >&2
  exit 1
fi

mkdir -p "$RUN/pc/state" "$RUN/poller/state"
# The province's inventory with the PCs each simulated commune expects, as a province
# fills them in from its asset register: "% protected" is then of the expected PCs and
# pcs_expected is given. La Ngà: this machine (the poller box is no PC of the count);
# the fleet's communes (the inventory's first ones but La Ngà, as commune-fleet picks).
FLEET=$(grep '^slug = ' "$PROVINCE_INVENTORY" | cut -d'"' -f2 | head -$((FLEET_COMMUNES + 1)) \
  | grep -vx la-nga | head -$FLEET_COMMUNES | tr '\n' ' ')
awk -v fleet=" $FLEET" -v pcs="$FLEET_PCS" '
  /^slug = / { slug = $3; gsub(/"/, "", slug) }
  /^# pcs = *$/ {
    if (slug == "la-nga") { print "pcs = 1"; next }
    if (index(fleet, " " slug " ")) { print "pcs = " pcs; next }
  }
  { print }' "$PROVINCE_INVENTORY" > "$INVENTORY"
umask 077
# The broker's accounts: its admin (the collector makes the agents' through it) and
# the collector's own; made once, kept in ./run.
[ -s "$RUN/dynsec-admin-password" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$RUN/dynsec-admin-password"
[ -s "$RUN/collector-password" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$RUN/collector-password"
if [ ! -s "$RUN/dynamic-security.json" ]; then
  mosquitto_ctrl dynsec init "$RUN/dynamic-security.json" commune-admin "$(cat "$RUN/dynsec-admin-password")" >/dev/null
fi
umask 022
cat > "$RUN/mosquitto.conf" <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root" )
listener $PORT 127.0.0.1
# As the shipped configs: a session is its account (no PC can take the collector's).
use_username_as_clientid true
allow_anonymous false
plugin $DYNSEC_PLUGIN
plugin_opt_config_file $RUN/dynamic-security.json
persistence false
# Keep what arrives while the collector is stopped (the default drops beyond 1,000).
max_queued_messages 100000
log_dest file $RUN/mosquitto.log
CONF

# The province's shared systems, served here by a small web server standing for them
# (La Ngà's poller probes them for real; the fleet's pollers play theirs). The land
# system's page does not hold the text it should: a login page answering 200.
mkdir -p "$RUN/systems/mot-cua" "$RUN/systems/qlvb" "$RUN/systems/lis" "$RUN/systems/la-nga"
echo '<html><body>Hệ thống Một cửa điện tử tỉnh Đồng Nai</body></html>' > "$RUN/systems/mot-cua/index.html"
echo '<html><body>Quản lý văn bản và điều hành</body></html>' > "$RUN/systems/qlvb/index.html"
echo '<html><body>Đăng nhập</body></html>' > "$RUN/systems/lis/index.html"
echo '<html><body>Xã La Ngà — Trang thông tin điện tử</body></html>' > "$RUN/systems/la-nga/index.html"
cat > "$RUN/systems.toml" <<CONF
# Written by make run: the shared systems (deploy/inventory/dong-nai.systems.toml is
# the annotated example), here at a local web server.
province = "dong-nai"

[[systems]]
id = "mot-cua"
name = "Hệ thống thông tin giải quyết thủ tục hành chính (Một cửa điện tử)"
kind = "one-stop"
url = "http://127.0.0.1:$SYSTEMS_PORT/mot-cua/"
network = "tslcd"
expect_text = "Một cửa điện tử"

[[systems]]
id = "qlvb"
name = "Hệ thống quản lý văn bản và điều hành"
kind = "documents"
url = "http://127.0.0.1:$SYSTEMS_PORT/qlvb/"
network = "tslcd"
expect_text = "văn bản"

[[systems]]
id = "dongnai-lis"
name = "Hệ thống thông tin đất đai (DongNai.LIS)"
kind = "land"
url = "http://127.0.0.1:$SYSTEMS_PORT/lis/"
network = "tslcd"
expect_text = "DongNai.LIS"
slow_ms = 5000

[[websites]]
commune = "la-nga"
url = "http://127.0.0.1:$SYSTEMS_PORT/la-nga/"
expect_text = "La Ngà"
CONF

cat > "$RUN/collector.toml" <<CONF
# Written by make run: the collector with its SQLite store only, enrollment on.
[mqtt]
url = "mqtt://127.0.0.1:$PORT"
username = "commune-collector"
password_file = "$RUN/collector-password"

[store]
path = "$RUN/collector-state.sqlite"

[collector]
client_id = "commune-collector-local"
inventory = ["$INVENTORY"]
systems = ["$RUN/systems.toml"]

[api]
listen = "127.0.0.1:$API_PORT"
# Development only: no token needed on loopback.
open_on_loopback = true

[dynsec]
url = "mqtt://127.0.0.1:$PORT"
username = "commune-admin"
password_file = "$RUN/dynsec-admin-password"

[enrollment]
broker_url = "mqtt://127.0.0.1:$PORT"
profiles = ["$RUN/profiles.toml"]
collector_url = "http://127.0.0.1:$API_PORT"
CONF

cat > "$RUN/profiles.toml" <<CONF
# Written by make run: what every enrolled agent of Đồng Nai runs. Change a value
# here (an interval, a target) and the agents it concerns run it within a cycle.
province = "dong-nai"

[vars]
gateway = "127.0.0.1"
broker_port = $PORT
snmp_port = $SNMP_PORT

[profiles.office]
interval = "15s"
[[profiles.office.checks.host]]
[[profiles.office.checks.antivirus]]
interval = "1m"
[[profiles.office.checks.link]]
name = "lan-broker"
network = "lan"
method = "tcp"
target = "\${gateway}"
port = "\${broker_port}"
[[profiles.office.checks.link]]
name = "tslcd-province"
network = "tslcd"
method = "icmp"
target = "\${gateway}"

# The commune office's poller box: the router and the Polycom (simulated by
# snmpsim on udp $SNMP_PORT), and its own probe of the line.
[profiles.poller]
interval = "15s"
# Each shared system of the commune, and its website, probed from here.
systems = true
[[profiles.poller.checks.snmp]]
name = "router"
host = "\${gateway}"
port = "\${snmp_port}"
community = "router"
[[profiles.poller.checks.polycom]]
name = "polycom"
host = "\${gateway}"
port = "\${snmp_port}"
community = "polycom"
[[profiles.poller.checks.link]]
name = "tslcd-province"
network = "tslcd"
method = "tcp"
target = "\${gateway}"
port = "\${broker_port}"
CONF

mosquitto -c "$RUN/mosquitto.conf" &
PIDS=$!
"$VENV/bin/python" -m http.server --bind 127.0.0.1 --directory "$RUN/systems" "$SYSTEMS_PORT" \
  >> "$RUN/systems.log" 2>&1 &
PIDS="$! $PIDS"
# Stopped with SIGTERM; whatever has not left 10 s later is killed, so that Ctrl-C always
# ends the script. (The systems' web server, a background job of a shell without job
# control, ignores SIGINT: only this stops it.)
stop_all() {
  kill $PIDS 2>/dev/null || true
  for _ in $(seq 50); do
    local alive=""
    for pid in $PIDS; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ -z "$alive" ]] && break
    sleep 0.2
  done
  kill -9 $PIDS 2>/dev/null || true
  wait 2>/dev/null
  echo; echo "stopped."
}
trap stop_all EXIT
trap 'exit 130' INT TERM
for _ in $(seq 50); do
  (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
  sleep 0.1
done

"$VENV/bin/commune-collector" check-config -c "$RUN/collector.toml"
"$VENV/bin/commune-collector" run -c "$RUN/collector.toml" 2>> "$RUN/collector.log" &
PIDS="$! $PIDS"
for _ in $(seq 100); do
  (echo > /dev/tcp/127.0.0.1/$API_PORT) 2>/dev/null && break
  sleep 0.2
done
"$VENV/bin/python" deploy/dev/simulated_devices.py --port "$SNMP_PORT" >> "$RUN/devices.log" 2>&1 &
PIDS="$! $PIDS"
for _ in $(seq 100); do
  grep -q "simulated router" "$RUN/devices.log" 2>/dev/null && break
  sleep 0.2
done

# La Ngà's tokens, as a technician makes them, and the two PCs enrolled with them.
token() {
  "$VENV/bin/commune-collector" enroll-token create -c "$RUN/collector.toml" --province dong-nai \
    --commune la-nga --profile "$1" --uses "$2" --ttl 1d --allow-replace --by "make run" 2>> "$RUN/tokens.log"
}
OFFICE_TOKEN=$(token office 5)
POLLER_TOKEN=$(token poller 1)
enroll() {
  "$VENV/bin/commune-agent" enroll --collector "http://127.0.0.1:$API_PORT" --token "$1" \
    --id "$2" --commune la-nga --config "$3" --replace --force >> "$RUN/enroll.log"
}  # its "next: install-service" is for a real PC: here the script runs the agents
THIS_PC=$("$VENV/bin/python" -c "from agent.config import default_agent_id; print(default_agent_id())")
# Each in its own folder, as on its own PC: agent.toml, mqtt-password, the state.
enroll "$OFFICE_TOKEN" "$THIS_PC" "$RUN/pc/agent.toml"
enroll "$POLLER_TOKEN" poller "$RUN/poller/agent.toml"
STATE_DIRECTORY="$RUN/poller/state" "$VENV/bin/commune-agent" run -c "$RUN/poller/agent.toml" >> "$RUN/poller.log" 2>&1 &
PIDS="$! $PIDS"
"$VENV/bin/commune-fleet" --broker "mqtt://127.0.0.1:$PORT" --collector "http://127.0.0.1:$API_PORT" \
  --inventory "$INVENTORY" --exclude la-nga --communes $FLEET_COMMUNES --pcs $FLEET_PCS --interval 15 >> "$RUN/fleet.log" 2>&1 &
PIDS="$! $PIDS"
# The collector reads a date as Vietnam's day (+07:00): today is Vietnam's today, not
# this host's (a laptop in another zone asked for the wrong day and saw "no data").
VN_TODAY=$(TZ=ICT-7 date +%F)
VN_TOMORROW=$(TZ=ICT-7 date -d tomorrow +%F)
cat <<MSG

  Đồng Nai, its 95 communes from the official register (deploy/inventory/dong-nai.toml):
    la-nga      this machine's agent ($THIS_PC) + a poller box polling a simulated router and
                Polycom: enrolled with La Ngà's tokens, running the checks of $RUN/profiles.toml
    5 more      commune-fleet: 8 PCs and a poller each, enrolled the same way (anti-malware
                mix, line outages, meetings)
    89 more     nothing reporting yet: shown as no_data

  console    http://127.0.0.1:$API_PORT/          (technicians; no login on loopback)
  rollout    http://127.0.0.1:$API_PORT/rollout   (PCs enrolled, reporting, on the current config)
  systems    http://127.0.0.1:$API_PORT/systems   (the shared systems from every commune;
                 served at http://127.0.0.1:$SYSTEMS_PORT/, listed in $RUN/systems.toml)
  tokens     $VENV/bin/commune-collector enroll-token list -c $RUN/collector.toml
  API (IOC)  http://127.0.0.1:$API_PORT/docs      (OpenAPI; no token needed on loopback)
             curl -s http://127.0.0.1:$API_PORT/api/v1/province
             curl -s http://127.0.0.1:$API_PORT/api/v1/communes/la-nga
  status     $VENV/bin/commune-collector status -c $RUN/collector.toml
  line       $VENV/bin/commune-collector availability -c $RUN/collector.toml --commune la-nga --from $VN_TODAY --to $VN_TOMORROW
  broker     mqtt://127.0.0.1:$PORT   watch: mosquitto_sub -h 127.0.0.1 -p $PORT -t 'commune/#' -v \\
                 -u commune-collector -P "\$(cat $RUN/collector-password)"
  logs       $RUN/*.log
  state      $RUN/collector-state.sqlite
  stop       Ctrl-C

  Data arrives within 15 s; the first status lines within a minute.

MSG
"$VENV/bin/commune-agent" check-config -c "$RUN/pc/agent.toml"
STATE_DIRECTORY="$RUN/pc/state" "$VENV/bin/commune-agent" run -c "$RUN/pc/agent.toml" &
PIDS="$! $PIDS"
wait
