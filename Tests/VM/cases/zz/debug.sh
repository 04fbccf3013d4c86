source /payload/cases/lib.sh
trap 'ip netns del twin 2>/dev/null || true; stop_virtiod' EXIT
start_virtiod_with_nic
twin_and_local vtnet0
ping -c 3 -i 0.2 -W 1 10.77.0.2 || true
virtioctl status "$net" --json | jq -c '.driver.queues[] | {name, size, layout, interrupts, counters}'
virtioctl status "$net" --json | jq -c '.driver | {interrupt_mode, negotiated: .negotiated.names}'
ip -s link show vtnet0
ip netns exec twin ip -s link
journalctl -u 'virtiod-net-*' --no-pager -o cat | tail -n 20
dmesg | tail -n 15
cat /proc/interrupts | grep -i uio
fail "debug end"
