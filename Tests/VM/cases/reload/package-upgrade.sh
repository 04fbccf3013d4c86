# Upgrading the package while the net plugin carries traffic: `apt install`
# of a newer version (the same build repacked as VERSION+upgrade1, see
# scripts/repack-deb) restarts virtiod, which keeps every device and plugin
# (fd store), and its postinst hot-reloads the plugins (`virtioctl reload
# --all`): 0 lost pings, 0 TCP resets, new plugin and virtiod processes, no
# device reset.
# case-timeout: 360
source /payload/cases/lib.sh
newer=$(ls /payload/debs/upgrade/virtiod_*_amd64.deb | head -n1)
[ -n "$newer" ] || fail "no newer package in /payload/debs/upgrade"
old_version=$(dpkg-query -W -f='${Version}' virtiod)
start_nic_with_twin
old_plugin=$(virtioctl status "$net" --json | jq .plugin.pid)
old_main=$(systemctl show -p MainPID --value virtiod)
used_before=$(virtioctl status "$net" --json | jq '.plugin.reloads // 0')

# dpkg under TCG takes one to two minutes (64–121 s seen) (unpacking ~110 MB, the man-db
# trigger): the traffic window may last 180 s, and ends 4 s after apt does.
t0=$(date '+%Y-%m-%d %H:%M:%S')
# Where the time went (dpkg.log has seconds), also when the case fails.
timing() {
    awk -v t="$t0" '($1 " " $2) >= t && / (status (unpacked|half-configured|installed) virtiod|trigproc)/ { print $2, $3, $4, $5 }' \
        /var/log/dpkg.log | tr '\n' ';'
    echo
    tail -n 4 /tmp/upgrade-out
}
trap 'timing; ip netns del twin 2>/dev/null || true; stop_virtiod; [ -z "${FAIL_REASON:-}" ] || echo "$FAIL_REASON"' EXIT
under_traffic "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $newer > /tmp/upgrade-out 2>&1" \
    "package upgrade" 180 until-done
[ "$(dpkg-query -W -f='${Version}' virtiod)" != "$old_version" ] || fail "the version did not change ($old_version)"
grep -q "net: " /tmp/upgrade-out || fail "the postinst did not reload net: $(grep -i reload /tmp/upgrade-out)"
s=$(virtioctl status "$net" --json)
new_plugin=$(echo "$s" | jq .plugin.pid)
new_main=$(systemctl show -p MainPID --value virtiod)
[ "$new_main" != "$old_main" ] || fail "virtiod was not restarted (pid $old_main)"
[ "$new_plugin" != "$old_plugin" ] && [ "$new_plugin" != null ] || fail "the net plugin was not replaced ($old_plugin → $new_plugin)"
echo "$s" | jq -e --argjson r "$used_before" '.state == "running" and .plugin.reloads == $r + 1 and .plugin.restarts == 0' >/dev/null \
    || fail "after the upgrade: $(echo "$s" | jq -c '{state, plugin}')"
echo "upgraded $old_version → $(dpkg-query -W -f='${Version}' virtiod): virtiod $old_main → $new_main, net plugin $old_plugin → $new_plugin"
