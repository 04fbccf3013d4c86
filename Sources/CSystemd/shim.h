// libsystemd (sd-device, sd-daemon, sd-journal) as a Swift system library.
// Debian package: libsystemd-dev.
#include <systemd/sd-device.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <systemd/sd-bus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The type of the job systemd is running on this process's unit ("stop",
 * "restart", …; "" when there is none), asked over the manager's private
 * socket so no D-Bus daemon is needed. sd_bus_message_read is variadic,
 * hence C. Returns 0 or a negative errno. */
static inline int virtiod_unit_job_type(char *out, size_t size) {
    sd_bus *bus = NULL;
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    const char *path = NULL;
    char *unit = NULL, *job = NULL, *type = NULL;
    uint32_t id = 0;
    int r;
    out[0] = 0;
    r = sd_bus_new(&bus);
    if (r < 0) return r;
    r = sd_bus_set_address(bus, "unix:path=/run/systemd/private");
    if (r >= 0) r = sd_bus_start(bus);
    if (r >= 0) r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                       "org.freedesktop.systemd1.Manager", "GetUnitByPID", &error, &reply,
                                       "u", (uint32_t)getpid());
    if (r >= 0) r = sd_bus_message_read(reply, "o", &path);
    if (r >= 0) unit = strdup(path);
    reply = sd_bus_message_unref(reply);
    if (r >= 0) r = sd_bus_get_property(bus, "org.freedesktop.systemd1", unit, "org.freedesktop.systemd1.Unit",
                                        "Job", &error, &reply, "(uo)");
    if (r >= 0) r = sd_bus_message_read(reply, "(uo)", &id, &path);
    if (r >= 0 && id != 0) {
        job = strdup(path);
        r = sd_bus_get_property_string(bus, "org.freedesktop.systemd1", job, "org.freedesktop.systemd1.Job",
                                       "JobType", &error, &type);
        if (r >= 0) snprintf(out, size, "%s", type);
    }
    sd_bus_message_unref(reply);
    sd_bus_error_free(&error);
    sd_bus_flush_close_unref(bus);
    free(unit);
    free(job);
    free(type);
    return r < 0 ? r : 0;
}
