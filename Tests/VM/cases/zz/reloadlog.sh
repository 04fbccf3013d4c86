source /payload/cases/lib.sh
trap 'ip netns del twin 2>/dev/null || true; stop_virtiod' EXIT
start_nic_with_twin
for i in 1 2 3 4 5; do virtioctl reload net >/dev/null || fail "reload $i"; sleep 1; done
journalctl --no-pager -o cat | grep -E "hand-over record written|took over from|reloaded without" | tail -n 15 | sed -E 's/^.*(hand-over|took over|reloaded)/\1/'
