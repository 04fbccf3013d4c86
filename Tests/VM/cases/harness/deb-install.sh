# The Debian package as users get it: the runner installed
# /payload/debs/virtiod_*.deb with apt before the cases. Enabled as designed
# (virtiod.service and the metrics timer), man pages open, /etc/virtiod is
# conffiles, the default configuration claims nothing, and `apt purge`
# removes every file it installed (and the metrics file it wrote). The
# package is installed again at the end, as the runner left it.
source /payload/cases/lib.sh
deb=$(ls /payload/debs/virtiod_*_amd64.deb | head -n1)
# Whatever happens below, the next cases find the package installed and virtiod stopped.
reinstall() {
    if ! dpkg-query -W -f='${Status}' virtiod 2>/dev/null | grep -q "install ok installed"; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb" > /tmp/deb-reinstall 2>&1 \
            || echo "reinstall failed: $(tail -n 3 /tmp/deb-reinstall)"
    fi
    systemctl stop virtiod || true
    rm -rf /var/lib/prometheus
    rm -f /etc/virtiod/virtiod.conf.d/*.conf
    [ -z "${FAIL_REASON:-}" ] || echo "$FAIL_REASON"
}
trap reinstall EXIT
dpkg-query -W -f='${Status}' virtiod | grep -q "install ok installed" || fail "virtiod is not installed: $(dpkg-query -W -f='${Status}' virtiod 2>&1)"
[ "$(systemctl is-enabled virtiod.service)" = enabled ] || fail "virtiod.service is $(systemctl is-enabled virtiod.service), not enabled"
[ "$(systemctl is-enabled virtiod-metrics.timer)" = enabled ] || fail "virtiod-metrics.timer is not enabled"
getent group virtiod >/dev/null || fail "no virtiod group (sysusers)"
for page in virtiod:8 virtioctl:8 virtiod.conf:5 virtiod.plugin:5; do
    text=$(MANPAGER=cat MANWIDTH=80 man "${page#*:}" "${page%:*}" 2>&1) || fail "man ${page#*:} ${page%:*}: $text"
    echo "$text" | grep -q "^NAME" || fail "man ${page%:*} has no NAME section"
done
MANPAGER=cat man 8 virtioctl | grep -q "reload --all" || fail "virtioctl(8) does not document reload --all"
dpkg-query -W -f='${Conffiles}\n' virtiod | grep -q "^ /etc/virtiod/virtiod.conf " || fail "virtiod.conf is not a conffile: $(dpkg-query -W -f='${Conffiles}' virtiod)"
# Installed and started by the package (the runner stopped it): the default config claims nothing.
start_virtiod
virtioctl wait --timeout 60 >/dev/null || fail "devices did not settle"
claimed=$(virtioctl list --json | jq '[.[] | select(.state != "unclaimed")] | length')
[ "$claimed" = 0 ] || fail "the default configuration claimed $claimed device(s): $(virtioctl list)"
# The metrics timer's service writes where the node exporter reads, once the folder exists.
mkdir -p /var/lib/prometheus/node-exporter
systemctl start virtiod-metrics.service || fail "virtiod-metrics.service failed: $(journalctl -u virtiod-metrics --no-pager | tail -n 5)"
grep -q '^virtiod_up 1' /var/lib/prometheus/node-exporter/virtiod.prom || fail "no virtiod.prom written"
stop_virtiod

# Purge: every file the package installed goes, and so does /etc/virtiod.
dpkg -L virtiod | while read -r f; do if [ -f "$f" ]; then echo "$f"; fi; done > /tmp/deb-files
[ "$(wc -l < /tmp/deb-files)" -gt 20 ] || fail "dpkg -L lists only $(wc -l < /tmp/deb-files) files"
apt-get purge -y -q virtiod > /tmp/deb-purge 2>&1 || fail "apt purge failed: $(tail -n 3 /tmp/deb-purge)"
left=$(while read -r f; do if [ -e "$f" ]; then echo "$f"; fi; done < /tmp/deb-files)
[ -z "$left" ] || fail "left after purge: $(echo "$left" | head -n 5 | tr '\n' ' ')"
[ ! -e /etc/virtiod ] || fail "/etc/virtiod left after purge: $(find /etc/virtiod | head -n 5 | tr '\n' ' ')"
[ ! -e /var/lib/prometheus/node-exporter/virtiod.prom ] || fail "virtiod.prom left after purge"
! systemctl is-active -q virtiod.service virtiod-metrics.timer || fail "a unit still runs after purge"
[ "$(systemctl is-enabled virtiod.service 2>/dev/null)" != enabled ] || fail "virtiod.service still enabled after purge"
echo "purged: $(wc -l < /tmp/deb-files) files gone"
# As it was: installed, virtiod stopped (and enabled again).
reinstall
trap - EXIT
[ "$(systemctl is-enabled virtiod.service)" = enabled ] || fail "not enabled after reinstalling"
echo "package $(dpkg-query -W virtiod): enabled, 4 man pages, conffiles, purge clean"
