// libsystemd (sd-device, sd-daemon, sd-journal) as a Swift system library.
// Debian package: libsystemd-dev.
#include <systemd/sd-device.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
