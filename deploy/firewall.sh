#!/usr/bin/env bash
# binderq's own firewall chain: containers on Docker bridges reach no service of this host.
#
#   deploy/firewall.sh install|remove|status [INSTANCE]     (INSTANCE: BINDERQ_INSTANCE or binderq)
#
# install: creates the chain BINDERQ-<INSTANCE> (cut to iptables' 28 characters), which
#   RETURNs replies to connections the host made (ESTABLISHED,RELATED: the proxy's and
#   docker-proxy's connections to published ports) and DROPs everything else; jumps to it
#   from the top of INPUT for packets that come in on `br-+` (binderq's per-server bridges)
#   and `docker0` (build steps) only. Idempotent.
# remove: deletes exactly those jumps and that chain, nothing else.
# status: prints the chain and its jumps; exit 0 if installed, 3 if not.
#
# Only INPUT is touched: with dockerd's --ip-forward=false nothing is routed off the bridges,
# and Docker's embedded DNS answers inside each container's own network namespace, so no
# container traffic the chain drops is traffic a notebook needs. ip6tables gets the same rules
# where the kernel has IPv6 (Docker disables it inside containers unless --ipv6, but a bridge
# still has a link-local address). Other chains' rules are never flushed, reordered or added
# to, and no rule matches any other interface.
set -euo pipefail

action="${1:-}"
instance="${2:-${BINDERQ_INSTANCE:-binderq}}"
if [[ ! "$instance" =~ ^[A-Za-z0-9_.-]+$ ]]; then
  echo "firewall: instance name '$instance' must be letters, digits, '_', '.', '-'" >&2
  exit 2
fi
chain="BINDERQ-${instance}"
chain="${chain:0:28}"
interfaces=("br-+" "docker0")

tools=()
if command -v iptables >/dev/null; then
  tools+=(iptables)
else
  echo "firewall: iptables is missing (apt-get install -y iptables); containers are not" \
       "sealed from host services bound to all addresses" >&2
  exit 4
fi
if [ -e /proc/net/if_inet6 ] && command -v ip6tables >/dev/null; then
  tools+=(ip6tables)
fi

has_chain() { "$1" -w -n -L "$chain" >/dev/null 2>&1; }
has_jump() { "$1" -w -C INPUT -i "$2" -j "$chain" >/dev/null 2>&1; }

install_one() {
  local tool=$1 interface
  if ! has_chain "$tool"; then
    "$tool" -w -N "$chain"
  fi
  # Our own chain only: rewrite its two rules, so that a half-made chain is made whole.
  "$tool" -w -F "$chain"
  "$tool" -w -A "$chain" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  "$tool" -w -A "$chain" -j DROP
  for interface in "${interfaces[@]}"; do
    if ! has_jump "$tool" "$interface"; then
      # First in INPUT, so that no earlier ACCEPT lets a container's packet through.
      "$tool" -w -I INPUT 1 -i "$interface" -j "$chain"
    fi
  done
}

remove_one() {
  local tool=$1 interface
  for interface in "${interfaces[@]}"; do
    while has_jump "$tool" "$interface"; do
      "$tool" -w -D INPUT -i "$interface" -j "$chain"
    done
  done
  if has_chain "$tool"; then
    "$tool" -w -F "$chain"
    "$tool" -w -X "$chain"
  fi
}

status_one() {
  local tool=$1 interface installed=0
  if has_chain "$tool"; then
    "$tool" -w -S "$chain"
  else
    echo "$tool: no chain $chain"
    installed=3
  fi
  for interface in "${interfaces[@]}"; do
    if has_jump "$tool" "$interface"; then
      echo "$tool: INPUT -i $interface -j $chain"
    else
      echo "$tool: no jump from INPUT -i $interface"
      installed=3
    fi
  done
  return "$installed"
}

case "$action" in
  install)
    for tool in "${tools[@]}"; do install_one "$tool"; done
    echo "firewall: $chain installed (${tools[*]})"
    ;;
  remove)
    for tool in "${tools[@]}"; do remove_one "$tool"; done
    echo "firewall: $chain removed (${tools[*]})"
    ;;
  status)
    rc=0
    for tool in "${tools[@]}"; do status_one "$tool" || rc=3; done
    exit "$rc"
    ;;
  *)
    echo "usage: $0 install|remove|status [INSTANCE]" >&2
    exit 2
    ;;
esac
