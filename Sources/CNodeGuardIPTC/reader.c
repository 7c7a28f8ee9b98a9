// Direct reads of legacy tables (IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES) for
// cheap change detection. See ngiptc_reader in include/CNodeGuardIPTC.h.
#include "CNodeGuardIPTC.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

_Static_assert(sizeof(struct ipt_getinfo) == sizeof(struct ip6t_getinfo),
               "IPv4 and IPv6 GET_INFO replies share one layout");
_Static_assert(offsetof(struct ipt_get_entries, entrytable) == offsetof(struct ip6t_get_entries, entrytable),
               "IPv4 and IPv6 GET_ENTRIES headers share one layout");
_Static_assert(NF_INET_NUMHOOKS == 5, "five netfilter hooks");

struct ngiptc_reader {
    int family;
    int fd;
    unsigned char *buffer;   // struct ipt_get_entries / ip6t_get_entries, during a read only
    size_t capacity;
};

ngiptc_reader *ngiptc_reader_open(int family, int *error) {
    if (family != AF_INET && family != AF_INET6) { *error = EAFNOSUPPORT; return NULL; }
    ngiptc_reader *reader = calloc(1, sizeof(*reader));
    if (!reader) { *error = ENOMEM; return NULL; }
    reader->family = family;
    reader->fd = socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (reader->fd < 0) { *error = errno; free(reader); return NULL; }
    return reader;
}

void ngiptc_reader_close(ngiptc_reader *reader) {
    if (!reader) return;
    close(reader->fd);
    free(reader->buffer);
    free(reader);
}

int ngiptc_reader_info(ngiptc_reader *reader, const char *table, ngiptc_table_info *info, int *error) {
    struct ipt_getinfo reply;
    memset(&reply, 0, sizeof(reply));
    strncpy(reply.name, table, sizeof(reply.name) - 1);
    socklen_t length = sizeof(reply);
    int level = reader->family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
    int option = reader->family == AF_INET6 ? IP6T_SO_GET_INFO : IPT_SO_GET_INFO;
    if (getsockopt(reader->fd, level, option, &reply, &length) != 0) { *error = errno; return -1; }
    memset(info, 0, sizeof(*info));
    info->valid_hooks = reply.valid_hooks;
    memcpy(info->hook_entry, reply.hook_entry, sizeof(info->hook_entry));
    memcpy(info->underflow, reply.underflow, sizeof(info->underflow));
    info->num_entries = reply.num_entries;
    info->size = reply.size;
    return 0;
}

// 64-bit multiply-xorshift over whole words: fast, and any changed byte
// changes the result with overwhelming likelihood (this detects edits, it
// does not resist an attacker, who would need root anyway).
static uint64_t mix(uint64_t hash, uint64_t word) {
    hash ^= word;
    hash *= 0x9E3779B97F4A7C15ULL;
    return hash ^ (hash >> 29);
}

int ngiptc_reader_digest(ngiptc_reader *reader, const char *table, ngiptc_table_info *info,
                         uint64_t *digest, int *error) {
    int level = reader->family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
    int option = reader->family == AF_INET6 ? IP6T_SO_GET_ENTRIES : IPT_SO_GET_ENTRIES;
    size_t header = offsetof(struct ipt_get_entries, entrytable);
    // The size can change between the two calls (EAGAIN): ask again.
    for (int attempt = 0; attempt < 5; attempt++) {
        if (ngiptc_reader_info(reader, table, info, error) != 0) return -1;
        size_t needed = header + info->size;
        if (needed > reader->capacity) {
            unsigned char *grown = realloc(reader->buffer, needed);
            if (!grown) { *error = ENOMEM; return -1; }
            reader->buffer = grown;
            reader->capacity = needed;
        }
        struct ipt_get_entries *request = (struct ipt_get_entries *)reader->buffer;
        // The kernel copies match and target names only up to their NUL: the
        // rest of each name field is whatever the buffer held. Zero it all so
        // the digest depends on the rules alone.
        memset(reader->buffer, 0, needed);
        strncpy(request->name, table, sizeof(request->name) - 1);
        request->size = info->size;
        socklen_t length = (socklen_t)needed;
        if (getsockopt(reader->fd, level, option, request, &length) != 0) {
            if (errno == EAGAIN) continue;
            *error = errno;
            return -1;
        }
        // Zero the counters: traffic must not look like a change.
        unsigned char *entries = reader->buffer + header;
        size_t offset = 0;
        while (offset < info->size) {
            uint16_t next;
            if (reader->family == AF_INET6) {
                struct ip6t_entry *e = (struct ip6t_entry *)(entries + offset);
                if (offset + sizeof(*e) > info->size) break;
                memset(&e->counters, 0, sizeof(e->counters));
                next = e->next_offset;
            } else {
                struct ipt_entry *e = (struct ipt_entry *)(entries + offset);
                if (offset + sizeof(*e) > info->size) break;
                memset(&e->counters, 0, sizeof(e->counters));
                next = e->next_offset;
            }
            if (next == 0) break;
            offset += next;
        }
        uint64_t hash = 0xCBF29CE484222325ULL ^ info->size;
        size_t words = info->size / 8;
        const unsigned char *p = entries;
        for (size_t i = 0; i < words; i++) {
            uint64_t word;
            memcpy(&word, p + i * 8, 8);
            hash = mix(hash, word);
        }
        for (size_t i = words * 8; i < info->size; i++) hash = mix(hash, entries[i]);
        *digest = hash;
        // Do not keep the copy resident between reads: a few page faults per
        // read cost less than megabytes held by an idle daemon.
        free(reader->buffer);
        reader->buffer = NULL;
        reader->capacity = 0;
        return 0;
    }
    *error = EAGAIN;
    return -1;
}
