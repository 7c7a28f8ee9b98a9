// Linux calls Swift's Glibc module does not expose (they need _GNU_SOURCE).
// Functions are prefixed `nglinux_`.
#ifndef C_NODEGUARD_LINUX_H
#define C_NODEGUARD_LINUX_H

#include <stdint.h>

/// accept4(fd, NULL, NULL, SOCK_CLOEXEC): the connection is closed on exec
/// from its creation. Returns it, or -1 with errno set.
int nglinux_accept_closing_on_exec(int fd);

/// The peer of a connected Unix socket as the kernel recorded it at connect()
/// (SO_PEERCRED). Returns 0, or -1 with errno set.
int nglinux_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

/// The peer's supplementary groups as the kernel recorded them at connect()
/// (SO_PEERGROUPS, Linux 4.13+). Fills up to `capacity` gids and returns how
/// many the peer has (which may exceed `capacity`), or -1 with errno set.
int nglinux_peer_groups(int fd, uint32_t *groups, int capacity);

/// The nf_tables ruleset generation (NFT_MSG_GETGEN over netlink): the
/// kernel bumps it on every nftables transaction, in any table, so an
/// unchanged value means nothing in nftables (nor in iptables-nft) changed.
/// One request and reply; waits at most a second. Returns 0, or -1 with
/// errno set (EPROTONOSUPPORT or ENOENT-like errors where nf_tables is absent).
int nglinux_nftables_generation(uint32_t *generation);

/// Returns the heap's free memory to the system (glibc's malloc_trim(0)),
/// after reading a big table in many small allocations.
void nglinux_release_free_memory(void);

/// Sets glibc's heap up for a small long-running daemon: one arena (its work
/// is serial, and per-thread arenas each keep their own free memory), big
/// buffers such as whole-table blobs mmapped so freeing them gives the pages
/// back, and free memory at the heap's top returned beyond 128 KiB.
void nglinux_tune_heap_for_daemon(void);

/// Names the calling thread for ps -L and top -H (the kernel keeps 15 bytes).
void nglinux_set_thread_name(const char *name);

#endif
