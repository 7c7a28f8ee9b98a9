#define _GNU_SOURCE
#include "CNodeGuardLinux.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

_Static_assert(sizeof(pid_t) == sizeof(int32_t), "pid_t is 32 bits");
_Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t), "uid_t and gid_t are 32 bits");

int nglinux_accept_closing_on_exec(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
}

int nglinux_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int nglinux_peer_groups(int fd, uint32_t *groups, int capacity) {
    socklen_t length = (socklen_t)(capacity * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &length) != 0) {
        if (errno == ERANGE) return (int)(length / sizeof(gid_t));
        return -1;
    }
    return (int)(length / sizeof(gid_t));
}

int nglinux_nftables_generation(uint32_t *generation) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) return -1;
    struct timeval timeout = { .tv_sec = 1, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    struct {
        struct nlmsghdr header;
        struct nfgenmsg body;
    } request;
    memset(&request, 0, sizeof(request));
    request.header.nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
    request.header.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
    request.header.nlmsg_flags = NLM_F_REQUEST;
    request.header.nlmsg_seq = 1;
    request.body.nfgen_family = AF_UNSPEC;
    request.body.version = NFNETLINK_V0;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(fd, &request, request.header.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    uint32_t buffer[1024];
    ssize_t length = recv(fd, buffer, sizeof(buffer), 0);
    int saved = errno;
    close(fd);
    if (length < 0) { errno = saved; return -1; }
    for (struct nlmsghdr *m = (struct nlmsghdr *)buffer; NLMSG_OK(m, (size_t)length); m = NLMSG_NEXT(m, length)) {
        if (m->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *failure = NLMSG_DATA(m);
            errno = failure->error ? -failure->error : EPROTO;
            return -1;
        }
        if (m->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) continue;
        int room = (int)m->nlmsg_len - NLMSG_SPACE(sizeof(struct nfgenmsg));
        struct nlattr *a = (struct nlattr *)((char *)NLMSG_DATA(m) + NLMSG_ALIGN(sizeof(struct nfgenmsg)));
        while (room >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= room) {
            if ((a->nla_type & NLA_TYPE_MASK) == NFTA_GEN_ID && a->nla_len >= NLA_HDRLEN + sizeof(uint32_t)) {
                uint32_t value;
                memcpy(&value, (char *)a + NLA_HDRLEN, sizeof(value));
                *generation = ntohl(value);
                return 0;
            }
            room -= NLA_ALIGN(a->nla_len);
            a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len));
        }
    }
    errno = EPROTO;
    return -1;
}

void nglinux_release_free_memory(void) { malloc_trim(0); }

void nglinux_tune_heap_for_daemon(void) {
    (void)mallopt(M_ARENA_MAX, 1);
    (void)mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    (void)mallopt(M_TRIM_THRESHOLD, 128 * 1024);
}

void nglinux_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof(truncated) - 1);
    truncated[sizeof(truncated) - 1] = 0;
    (void)pthread_setname_np(pthread_self(), truncated);
}
