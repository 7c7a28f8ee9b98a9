#define _GNU_SOURCE
#include "CNodeGuardLinux.h"

#include <sys/socket.h>
#include <sys/types.h>

_Static_assert(sizeof(pid_t) == sizeof(int32_t), "pid_t is 32 bits");
_Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t), "uid_t and gid_t are 32 bits");

int nglinux_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}
