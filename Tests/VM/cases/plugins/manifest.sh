# Plugins are what their manifests say: `virtioctl plugins --json` shows
# each manifest, executable, version, kind and devices; a broken manifest is
# reported with file:line and skipped, the service and the other plugins
# unaffected; an admin manifest in /etc/virtiod/plugins overrides the
# packaged one; Plugin= in a [Device] rule picks a plugin, and an unknown one
# is refused naming the rule.
source /payload/cases/lib.sh
cleanup() {
    rm -f /etc/virtiod/plugins/*.plugin /usr/local/libexec/virtiod-net-admin
    stop_virtiod
}
trap cleanup EXIT
start_virtiod
p=$(virtioctl plugins --json) || fail "virtioctl plugins failed"
echo "$p" | jq -e 'map(.name) == ["9p", "balloon", "block", "console", "net"]' >/dev/null \
    || fail "plugins are not the installed manifests: $(echo "$p" | jq -c 'map(.name)')"
echo "$p" | jq -e '.[] | select(.name == "net") | .manifest == "/usr/lib/virtiod/plugins/net.plugin"
    and .executable == "/usr/libexec/virtiod/virtiod-net" and .installed and .stub == false
    and (.version | length > 0) and .device_types == ["net"] and .endpoints == ["tap"] and .devices == [] and .pids == []' >/dev/null \
    || fail "net plugin report: $(echo "$p" | jq -c '.[] | select(.name == "net")')"
echo "$p" | jq -e '.[] | select(.name == "block") | .stub == false and .endpoints == ["ublk|nbd"]' >/dev/null \
    || fail "block plugin report: $(echo "$p" | jq -c '.[] | select(.name == "block")')"
echo "$p" | jq -e '.[] | select(.name == "console") | .stub == false and .endpoints == ["pty"]' >/dev/null \
    || fail "console plugin report: $(echo "$p" | jq -c '.[] | select(.name == "console")')"
echo "$p" | jq -e '.[] | select(.name == "balloon") | .stub == false and .endpoints == ["balloon"]' >/dev/null \
    || fail "balloon plugin report: $(echo "$p" | jq -c '.[] | select(.name == "balloon")')"
echo "$p" | jq -e '.[] | select(.name == "9p") | .stub == false and .endpoints == ["fuse"]' >/dev/null || fail "9p manifest: $(echo "$p" | jq -c '.[] | select(.name == "9p")')"

# A broken manifest: reported with file:line at reload, skipped; nothing else changes.
printf '[Plugin]\nExec=/usr/libexec/virtiod/virtiod-block\nColour=blue\nDeviceType=block\n' > /etc/virtiod/plugins/broken.plugin
t0=$(date +%s)
reload_virtiod
wait_for "journalctl -u virtiod --since @$t0 --no-pager -o cat | grep -q '/etc/virtiod/plugins/broken.plugin:3: unknown key .Colour.'" 10 \
    || fail "no error naming broken.plugin:3: $(journalctl -u virtiod --since @$t0 --no-pager -o cat | tail -n 3)"
journalctl -u virtiod --since @$t0 --no-pager -o cat | grep "broken.plugin:3" | head -n 1
[ "$(virtioctl plugins --json | jq length)" = 5 ] || fail "the broken manifest was not skipped: $(virtioctl plugins --json | jq -c 'map(.name)')"

# An admin manifest overrides the packaged one: the NIC is driven by its Exec=.
mkdir -p /usr/local/libexec
cat > /usr/local/libexec/virtiod-net-admin <<'SH'
#!/bin/sh
exec /usr/libexec/virtiod/virtiod-net "$@"
SH
chmod 755 /usr/local/libexec/virtiod-net-admin
sed 's|^Exec=.*|Exec=/usr/local/libexec/virtiod-net-admin|; s|^Description=.*|Description=net, as the admin wants it|' \
    /usr/lib/virtiod/plugins/net.plugin > /etc/virtiod/plugins/net.plugin
printf '[Device]\nMACAddress=52:54:00:12:34:01\nClaim=yes\nPlugin=net\n' > /etc/virtiod/virtiod.conf.d/50-test.conf
reload_virtiod
wait_for "[ -n \"\$(claimed_nic)\" ]" 30 || fail "the NIC was not claimed: $(virtioctl list)"
net=$(claimed_nic)
wait_state "$net" running 60
virtioctl status "$net" --json | jq -e '.plugin.executable == "/usr/local/libexec/virtiod-net-admin"' >/dev/null \
    || fail "the NIC runs $(virtioctl status "$net" --json | jq -r .plugin.executable), not the admin's plugin"
virtioctl plugins --json | jq -e '.[] | select(.name == "net") | .manifest == "/etc/virtiod/plugins/net.plugin"
    and .overrides == ["/usr/lib/virtiod/plugins/net.plugin"] and .description == "net, as the admin wants it"
    and (.pids | length) == 1 and (.units | length) == 1' >/dev/null \
    || fail "plugins after the override: $(virtioctl plugins --json | jq -c '.[] | select(.name == "net")')"
virtioctl plugins | grep -E "^net .*overrides /usr/lib/virtiod/plugins/net.plugin" >/dev/null || fail "the table does not show the override: $(virtioctl plugins)"

# Plugin= naming a plugin that does not exist: refused, naming the rule.
blk=$(virtio_functions 1042)
printf '[Device]\nSerial=virtiod-blk0\nClaim=yes\nPlugin=nosuch\n' > /etc/virtiod/virtiod.conf.d/60-test.conf
reload_virtiod
wait_for "[ \"\$(vstate $blk)\" = refused ]" 30 || fail "Plugin=nosuch: state $(vstate "$blk")"
virtioctl status "$blk" --json | jq -r .reason | grep -q "60-test.conf:1 asks for plugin 'nosuch'" \
    || fail "refusal text: $(virtioctl status "$blk" --json | jq -r .reason)"
[ "$(driver_of "$blk")" = virtio-pci ] || fail "the refused disk is on $(driver_of "$blk")"
rc=0; virtioctl reload nosuch >/dev/null 2>&1 || rc=$?
[ $rc -eq 4 ] || [ $rc -eq 1 ] || fail "reload of an unknown name exited $rc"
