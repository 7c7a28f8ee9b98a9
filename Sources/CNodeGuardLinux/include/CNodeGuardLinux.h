// Linux calls Swift's Glibc module does not expose (they need _GNU_SOURCE).
// Functions are prefixed `nglinux_`.
#ifndef C_NODEGUARD_LINUX_H
#define C_NODEGUARD_LINUX_H

#include <stdint.h>

/// The peer of a connected Unix socket as the kernel recorded it at connect()
/// (SO_PEERCRED). Returns 0, or -1 with errno set.
int nglinux_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

#endif
