#!/usr/bin/env bash
# The demo: one local systemd test host, provisioned as a device by playbooks/site.yml the way
# inventory/demo.yml describes it (the sample video, the default model), then where to look.
#
#   molecule/demo.sh up      boot (or reuse) the host, provision it, print the URL and login
#   molecule/demo.sh down    remove the host (the generated passwords stay on the controller)
#   molecule/demo.sh status  the launcher's view of the host
#
# The host is a systemd-nspawn machine from molecule/launcher, so this needs root but no
# systemd on this machine. On a machine that runs systemd, `ansible-playbook -i
# inventory/demo.yml playbooks/site.yml` provisions the machine itself the same way.
# Environment: PC_DEMO_PREFIX (default demo), PC_DEMO_RELEASE (bookworm or trixie),
# PC_TEST_STATE_ROOT (default /var/tmp/people-counter-test), VENV (default .venv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PREFIX=${PC_DEMO_PREFIX:-demo}
RELEASE=${PC_DEMO_RELEASE:-bookworm}
STATE_DIR=${PC_TEST_STATE_ROOT:-/var/tmp/people-counter-test}/$PREFIX
LAUNCHER=(python3 "$ROOT/molecule/launcher/nspawn_hosts.py")
HOST=demo   # the inventory name in inventory/demo.yml: its credentials live in inventory/credentials/demo
CREDENTIALS=$ROOT/inventory/credentials/$HOST
export PATH="$VENV/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"

host_field() {  # host_field FIELD: a field of the demo host in the launcher's state file
    python3 -c 'import json, sys
state = json.load(open(sys.argv[1]))
print(next(h for h in state["hosts"] if h["name"] == sys.argv[2]).get(sys.argv[3], ""))' \
        "$STATE_DIR/state.json" "$HOST" "$1"
}

running() {
    [[ -f $STATE_DIR/state.json ]] && [[ $(host_field status 2>/dev/null) == running ]]
}

up() {
    if running; then
        echo "demo: reusing the running host ($STATE_DIR)"
    else
        if [[ -f $STATE_DIR/state.json ]]; then
            "${LAUNCHER[@]}" down --state-dir "$STATE_DIR" >/dev/null
        fi
        "${LAUNCHER[@]}" up --name "$PREFIX" --host "$HOST:$RELEASE" --state-dir "$STATE_DIR"
    fi
    local address key
    address=$(host_field address)
    key=$(host_field ssh_key)
    # inventory/demo.yml, with the connection to the test host instead of `local`: a second
    # inventory source overrides the connection only, so group_vars and the credentials
    # directory stay those of inventory/.
    cat >"$STATE_DIR/demo-connection.yml" <<EOF
# Written by molecule/demo.sh: how to reach the demo host.
all:
  hosts:
    $HOST:
      ansible_connection: ssh
      ansible_host: "$address"
      ansible_user: root
      ansible_ssh_private_key_file: "$key"
      ansible_ssh_common_args: "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
      # A new host key at every boot: Mitogen's ssh reads this, not the ssh options above.
      ansible_host_key_checking: false
      ansible_python_interpreter: /usr/bin/python3
EOF
    local started=$SECONDS
    (cd "$ROOT" && ansible-playbook -i inventory/demo.yml -i "$STATE_DIR/demo-connection.yml" playbooks/site.yml)
    local took=$((SECONDS - started))
    local ssh="ssh -i $key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@$address"
    local fingerprint
    fingerprint=$($ssh openssl x509 -noout -fingerprint -sha256 -in /etc/people-counter/tls/dashboard.crt | cut -d= -f2)
    cat <<EOF

The people counter runs on the demo host (provisioned in ${took} s).

  Dashboard   https://$address:8443/   (http://$address:8080/ redirects there)
              The certificate is the device's own, self-signed: accept it in the browser
              if its SHA-256 fingerprint is $fingerprint
  Login       password: $(cat "$CREDENTIALS/dashboard-password")
              (kept on this machine in inventory/credentials/$HOST/dashboard-password)
  Live state  $ssh \\
                mosquitto_sub -h 127.0.0.1 -u people-counter-web -P '$(cat "$CREDENTIALS/mqtt-people-counter-web")' \\
                -t 'people_counter/$HOST/#' -v
  Health      curl -sk https://$address:8443/healthz
  A shell     $ssh
  Remove it   molecule/demo.sh down   (make demo-down)
EOF
}

down() {
    if [[ -f $STATE_DIR/state.json ]]; then
        "${LAUNCHER[@]}" down --state-dir "$STATE_DIR"
        rm -f "$STATE_DIR/demo-connection.yml"
    else
        echo "demo: nothing to remove ($STATE_DIR has no state)"
    fi
}

case ${1:-up} in
    up) up ;;
    down) down ;;
    status) "${LAUNCHER[@]}" status --state-dir "$STATE_DIR" ;;
    *) echo "usage: $0 [up|down|status]" >&2; exit 2 ;;
esac
