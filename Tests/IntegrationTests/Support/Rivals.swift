/// Another agent that insists on rule 1 of mangle PREROUTING and whose chain
/// accepts everything (as Calico's accepts established flows first): a shell
/// script, run inside a test node or a container, until it is killed.
let rivalForMangleRuleOne = """
    iptables-legacy -w -t mangle -N RIVAL-PRE && iptables-legacy -w -t mangle -A RIVAL-PRE -j ACCEPT || exit 1
    while true; do
      if [ "$(iptables-legacy -w -t mangle -S PREROUTING | sed -n 2p)" != "-A PREROUTING -j RIVAL-PRE" ]; then
        iptables-legacy -w -t mangle -D PREROUTING -j RIVAL-PRE 2>/dev/null
        iptables-legacy -w -t mangle -I PREROUTING 1 -j RIVAL-PRE
      fi
      sleep 0.1
    done
    """
