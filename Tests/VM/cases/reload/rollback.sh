# A reload to a broken plugin rolls back and traffic continues: a binary that
# dies at start costs no pause (the old process was never quiesced); one that
# refuses the hand-over record makes the quiesced old process resume. Either
# way `virtioctl reload` says why and exits non-zero, with 0 lost pings.
# (The good binary is parked under /usr/local: the service has a private /tmp.)
source /payload/cases/lib.sh
plugin=/usr/libexec/virtiod/virtiod-net
cleanup() {
    [ -f /usr/local/lib/virtiod-net.good ] && mv -f /usr/local/lib/virtiod-net.good "$plugin"
    ip netns del twin 2>/dev/null || true
    stop_virtiod
}
trap cleanup EXIT
start_virtiod_with_nic
twin_and_local vtnet0
ping -c 2 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "no ping before the reload"
old=$(virtioctl status "$net" --json | jq .plugin.pid)
cp -p "$plugin" /usr/local/lib/virtiod-net.good

# 1. A binary that cannot even start.
# Installed the way packages do it: a new file renamed over the old one.
install_plugin() { printf '%s\n' "$1" > "$plugin.new"; chmod 755 "$plugin.new"; mv -f "$plugin.new" "$plugin"; }
install_plugin $'#!/bin/sh\necho "this plugin is deliberately broken" >&2\nexit 1'
under_traffic '! virtioctl reload net > /tmp/rollback-1 2>&1' "reload to a binary that exits at once" 11 until-done
grep -q "rolled back" /tmp/rollback-1 || fail "virtioctl did not say it rolled back: $(cat /tmp/rollback-1)"
[ "$(virtioctl status "$net" --json | jq .plugin.pid)" = "$old" ] || fail "the old plugin was replaced"

# 2. A plugin that starts but refuses the hand-over record (after the old one
# quiesced): the net plugin built with fault injection (test builds only).
cp -a /payload/extra/faults/. /
install_plugin $'#!/bin/sh\nVIRTIOD_PLUGIN_FAULT=refuse-handover exec /usr/local/lib/virtiod-test/virtiod-net-faults "$@"'
under_traffic '! virtioctl reload net > /tmp/rollback-2 2>&1' "reload to a plugin that refuses the hand-over" 12 until-done
grep -q "refused the hand-over.*rolled back" /tmp/rollback-2 || fail "virtioctl did not report the refusal: $(cat /tmp/rollback-2)"
s=$(virtioctl status "$net" --json)
echo "$s" | jq -e --argjson old "$old" '.state == "running" and .plugin.pid == $old and .plugin.restarts == 0' >/dev/null \
    || fail "after the roll-back: $(echo "$s" | jq -c '{state, plugin}')"
cat /tmp/rollback-1 /tmp/rollback-2 | sed 's/^/virtioctl: /'

# 3. The real binary again: the reload goes through.
mv -f /usr/local/lib/virtiod-net.good "$plugin"
virtioctl reload net >/dev/null || fail "reload with the good binary failed after the roll-backs"
ping -c 2 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "no traffic after the final reload"
