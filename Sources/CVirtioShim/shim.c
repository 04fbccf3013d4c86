// Definitions for include/CVirtioShim.h. _GNU_SOURCE is defined here only,
// never in the header (see the rule there).
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <fcntl.h>
#include <spawn.h>
#include "CVirtioShim.h"

int cvirtio_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }
int cvirtio_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
int cvirtio_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int low) {
    return posix_spawn_file_actions_addclosefrom_np(actions, low);
}
int cvirtio_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }
unsigned int cvirtio_MFD_CLOEXEC(void) { return MFD_CLOEXEC; }
unsigned int cvirtio_MFD_ALLOW_SEALING(void) { return MFD_ALLOW_SEALING; }
int cvirtio_EFD_CLOEXEC(void) { return EFD_CLOEXEC; }
int cvirtio_EFD_NONBLOCK(void) { return EFD_NONBLOCK; }
