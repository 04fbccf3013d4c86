# 20 reloads in a row leak nothing: virtiod's fds and memory, the number of
# plugin processes and the plugin's fds are counted before and after.
source /payload/cases/lib.sh
start_nic_with_twin
main=$(systemctl show -P MainPID virtiod)
virtioctl reload net >/dev/null || fail "first reload failed"  # settle allocations made once
counts() {
    local p
    p=$(virtioctl status "$net" --json | jq .plugin.pid)
    echo "$(ls /proc/$main/fd | wc -l) $(awk '/^VmRSS/ { print $2 }' /proc/$main/status)" \
         "$(pgrep -c -f '^/usr/libexec/virtiod/') $(ls /proc/$p/fd | wc -l)"
}
read -r fd0 rss0 procs0 pfd0 < <(counts)
start=$(date +%s%N)
for i in $(seq 20); do
    virtioctl reload net > /tmp/leak-reload 2>&1 || fail "reload $i failed: $(cat /tmp/leak-reload)"
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
read -r fd1 rss1 procs1 pfd1 < <(counts)
echo "20 reloads in $ms ms; virtiod fds $fd0 → $fd1, RSS $rss0 → $rss1 kB, plugin processes $procs0 → $procs1, plugin fds $pfd0 → $pfd1"
[ "$fd1" = "$fd0" ] || fail "virtiod fds grew: $fd0 → $fd1"
[ "$procs1" = "$procs0" ] || fail "plugin processes: $procs0 → $procs1"
[ "$pfd1" = "$pfd0" ] || fail "plugin fds: $pfd0 → $pfd1"
[ $((rss1 - rss0)) -le 1024 ] || fail "virtiod RSS grew by $((rss1 - rss0)) kB over 20 reloads"
[ "$(virtioctl status "$net" --json | jq .plugin.reloads)" = 21 ] || fail "reload count is not 21"
ping -c 2 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "no traffic after 20 reloads"
