// Direct reads of legacy tables (IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES) for
// cheap change detection and read-only snapshots. See ngiptc_reader in include/CNodeGuardIPTC.h.
#define _GNU_SOURCE   // qsort_r
#include "CNodeGuardIPTC.h"
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <linux/netfilter/x_tables.h>

_Static_assert(sizeof(struct ipt_getinfo) == sizeof(struct ip6t_getinfo),
               "IPv4 and IPv6 GET_INFO replies share one layout");
_Static_assert(offsetof(struct ipt_get_entries, entrytable) == offsetof(struct ip6t_get_entries, entrytable),
               "IPv4 and IPv6 GET_ENTRIES headers share one layout");
_Static_assert(NF_INET_NUMHOOKS == 5, "five netfilter hooks");

// A table's copy is as large as the table (megabytes) and lives for one
// read: it is mapped and unmapped on its own, never taken from malloc, which
// would serve it from any hole the heap has (a free region below live
// allocations, as libiptc's start-up copy leaves) and keep those pages
// resident after the free, where an unmap returns them at once.
static unsigned char *table_copy_map(size_t size) {
    void *pages = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return pages == MAP_FAILED ? NULL : pages;
}

static void table_copy_unmap(unsigned char *pages, size_t size) {
    if (pages) munmap(pages, size);
}

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
    table_copy_unmap(reader->buffer, reader->capacity);
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


// Reads the whole table into reader->buffer (the GET_ENTRIES header, then
// the entries). The buffer is zeroed first: the kernel copies match and
// target names only up to their NUL, and the rest of each name field must
// not be whatever the buffer held before.
static int fetch_entries(ngiptc_reader *reader, const char *table, ngiptc_table_info *info, int *error) {
    int level = reader->family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
    int option = reader->family == AF_INET6 ? IP6T_SO_GET_ENTRIES : IPT_SO_GET_ENTRIES;
    size_t header = offsetof(struct ipt_get_entries, entrytable);
    // The size can change between the two calls (EAGAIN): ask again.
    for (int attempt = 0; attempt < 5; attempt++) {
        if (ngiptc_reader_info(reader, table, info, error) != 0) return -1;
        size_t needed = header + info->size;
        if (needed > reader->capacity) {
            // Nothing in the old copy is kept: it is zeroed below anyway.
            table_copy_unmap(reader->buffer, reader->capacity);
            reader->buffer = table_copy_map(needed);
            reader->capacity = reader->buffer ? needed : 0;
            if (!reader->buffer) { *error = ENOMEM; return -1; }
        }
        struct ipt_get_entries *request = (struct ipt_get_entries *)reader->buffer;
        memset(reader->buffer, 0, needed);
        strncpy(request->name, table, sizeof(request->name) - 1);
        request->size = info->size;
        socklen_t length = (socklen_t)needed;
        if (getsockopt(reader->fd, level, option, request, &length) != 0) {
            if (errno == EAGAIN) continue;
            *error = errno;
            return -1;
        }
        // The kernel refuses a size that no longer matches (EAGAIN), but a
        // commit of a same-size table between the two calls would pair these
        // entries with the old hook offsets: ask again if the info moved.
        ngiptc_table_info after;
        if (ngiptc_reader_info(reader, table, &after, error) != 0) return -1;
        if (memcmp(&after, info, sizeof(after)) != 0) continue;
        return 0;
    }
    *error = EAGAIN;
    return -1;
}

// Hands the copy over (to a blob) or unmaps it: an idle daemon must not keep
// a table-sized copy resident between reads.
static unsigned char *take_buffer(ngiptc_reader *reader, size_t *size) {
    unsigned char *buffer = reader->buffer;
    *size = reader->capacity;
    reader->buffer = NULL;
    reader->capacity = 0;
    return buffer;
}

static void drop_buffer(ngiptc_reader *reader) {
    size_t size;
    unsigned char *buffer = take_buffer(reader, &size);
    table_copy_unmap(buffer, size);
}

static uint16_t next_offset_of(int family, const unsigned char *entry) {
    return family == AF_INET6 ? ((const struct ip6t_entry *)entry)->next_offset
                              : ((const struct ipt_entry *)entry)->next_offset;
}

static uint16_t target_offset_of(int family, const unsigned char *entry) {
    return family == AF_INET6 ? ((const struct ip6t_entry *)entry)->target_offset
                              : ((const struct ipt_entry *)entry)->target_offset;
}

static size_t entry_header_size(int family) {
    return family == AF_INET6 ? sizeof(struct ip6t_entry) : sizeof(struct ipt_entry);
}

int ngiptc_reader_digest(ngiptc_reader *reader, const char *table, ngiptc_table_info *info,
                         uint64_t *digest, int *error) {
    if (fetch_entries(reader, table, info, error) != 0) return -1;
    // Zero the counters: traffic must not look like a change.
    unsigned char *entries = reader->buffer + offsetof(struct ipt_get_entries, entrytable);
    size_t offset = 0;
    while (offset + entry_header_size(reader->family) <= info->size) {
        unsigned char *e = entries + offset;
        if (reader->family == AF_INET6) memset(&((struct ip6t_entry *)e)->counters, 0, sizeof(struct xt_counters));
        else memset(&((struct ipt_entry *)e)->counters, 0, sizeof(struct xt_counters));
        uint16_t next = next_offset_of(reader->family, e);
        if (next == 0) break;
        offset += next;
    }
    uint64_t hash = 0xCBF29CE484222325ULL ^ info->size;
    size_t words = info->size / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t word;
        memcpy(&word, entries + i * 8, 8);
        hash = ngiptc_mix(hash, word);
    }
    for (size_t i = words * 8; i < info->size; i++) hash = ngiptc_mix(hash, entries[i]);
    *digest = hash;
    drop_buffer(reader);
    return 0;
}

// ---- read-only snapshots straight from the kernel's blob --------------------

typedef struct {
    char name[NGIPTC_TARGET_SIZE];
    uint32_t first;          // index of the chain's first rule
    uint32_t end;            // one past its last rule (its policy or RETURN tail is no rule)
    uint32_t jump_offset;    // the byte offset a jump to this chain carries
    uint8_t builtin;
} blob_chain;

struct ngiptc_blob {
    int family;
    ngiptc_table_info info;  // what GET_INFO said of the entries below
    unsigned char *buffer;   // GET_ENTRIES header + entries (mapped: table_copy_map)
    size_t buffer_size;
    const unsigned char *entries;
    uint32_t size;
    uint32_t count;
    uint32_t *offsets;       // byte offset of each entry, ascending
    blob_chain *chains;      // built-in chains in hook order, then user chains in table order
    uint32_t chain_count;
    uint32_t *by_jump;       // chain indices sorted by jump_offset
};

static const char *const hook_names[NF_INET_NUMHOOKS] = {
    "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING",
};

// The index of the entry at byte `offset`, or -1 when no entry starts there.
static long index_of_offset(const ngiptc_blob *blob, uint32_t offset) {
    uint32_t low = 0, high = blob->count;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        if (blob->offsets[middle] < offset) low = middle + 1; else high = middle;
    }
    return low < blob->count && blob->offsets[low] == offset ? (long)low : -1;
}

// A user chain starts with an ERROR entry that carries its name; the table
// ends with one named "ERROR".
static const char *error_entry_name(const ngiptc_blob *blob, uint32_t index) {
    const unsigned char *e = blob->entries + blob->offsets[index];
    uint16_t target_offset = target_offset_of(blob->family, e);
    uint16_t next = next_offset_of(blob->family, e);
    if ((size_t)target_offset + sizeof(struct xt_error_target) > next) return NULL;
    const struct xt_error_target *t = (const struct xt_error_target *)(e + target_offset);
    if (strcmp(t->target.u.user.name, XT_ERROR_TARGET) != 0) return NULL;
    return t->errorname;
}

static int compare_jump(const void *a, const void *b, void *context) {
    const ngiptc_blob *blob = context;
    uint32_t x = blob->chains[*(const uint32_t *)a].jump_offset;
    uint32_t y = blob->chains[*(const uint32_t *)b].jump_offset;
    return x < y ? -1 : x > y;
}

static int parse_blob(ngiptc_blob *blob, const ngiptc_table_info *info) {
    size_t header = entry_header_size(blob->family);
    // Count and index the entries, checking each stays inside the table.
    uint32_t capacity = info->num_entries ? info->num_entries : 1;
    blob->offsets = malloc(sizeof(uint32_t) * capacity);
    if (!blob->offsets) return ENOMEM;
    uint32_t offset = 0;
    while (offset < blob->size) {
        const unsigned char *e = blob->entries + offset;
        if (offset + header > blob->size || blob->count == capacity) return EINVAL;
        uint16_t next = next_offset_of(blob->family, e);
        uint16_t target = target_offset_of(blob->family, e);
        if (next < header || target < header || (size_t)target + sizeof(struct xt_entry_target) > next ||
            offset + next > blob->size) {
            return EINVAL;
        }
        blob->offsets[blob->count++] = offset;
        offset += next;
    }
    uint32_t user_chains = 0;
    for (uint32_t i = 0; i < blob->count; i++) {
        const char *name = error_entry_name(blob, i);
        if (name && strcmp(name, XT_ERROR_TARGET) != 0) user_chains++;
    }
    blob->chains = calloc(NF_INET_NUMHOOKS + user_chains, sizeof(blob_chain));
    blob->by_jump = calloc(NF_INET_NUMHOOKS + user_chains, sizeof(uint32_t));
    if (!blob->chains || !blob->by_jump) return ENOMEM;
    for (int hook = 0; hook < NF_INET_NUMHOOKS; hook++) {
        if (!(info->valid_hooks & (1u << hook))) continue;
        long first = index_of_offset(blob, info->hook_entry[hook]);
        long policy = index_of_offset(blob, info->underflow[hook]);
        if (first < 0 || policy < first) return EINVAL;
        blob_chain *chain = &blob->chains[blob->chain_count++];
        strncpy(chain->name, hook_names[hook], sizeof(chain->name) - 1);
        chain->first = (uint32_t)first;
        chain->end = (uint32_t)policy;
        chain->jump_offset = info->hook_entry[hook];
        chain->builtin = 1;
    }
    for (uint32_t i = 0; i < blob->count; i++) {
        const char *name = error_entry_name(blob, i);
        if (!name || strcmp(name, XT_ERROR_TARGET) == 0) continue;
        // Rules run from after the head to before the RETURN tail, which is
        // the entry before the next ERROR entry (another chain, or the end).
        uint32_t next_head = i + 1;
        while (next_head < blob->count && !error_entry_name(blob, next_head)) next_head++;
        if (next_head == i + 1 || next_head >= blob->count) return EINVAL;
        blob_chain *chain = &blob->chains[blob->chain_count++];
        strncpy(chain->name, name, sizeof(chain->name) - 1);
        chain->first = i + 1;
        chain->end = next_head - 1;
        chain->jump_offset = blob->offsets[i + 1];
    }
    for (uint32_t c = 0; c < blob->chain_count; c++) blob->by_jump[c] = c;
    qsort_r(blob->by_jump, blob->chain_count, sizeof(uint32_t), compare_jump, blob);
    return 0;
}

ngiptc_blob *ngiptc_reader_snapshot(ngiptc_reader *reader, const char *table, int *error) {
    ngiptc_table_info info;
    if (fetch_entries(reader, table, &info, error) != 0) return NULL;
    ngiptc_blob *blob = calloc(1, sizeof(*blob));
    if (!blob) { drop_buffer(reader); *error = ENOMEM; return NULL; }
    blob->family = reader->family;
    blob->buffer = take_buffer(reader, &blob->buffer_size);
    blob->entries = blob->buffer + offsetof(struct ipt_get_entries, entrytable);
    blob->size = info.size;
    blob->info = info;
    int problem = parse_blob(blob, &info);
    if (problem) {
        ngiptc_snapshot_free(blob);
        *error = problem;
        return NULL;
    }
    return blob;
}

void ngiptc_snapshot_free(ngiptc_blob *blob) {
    if (!blob) return;
    table_copy_unmap(blob->buffer, blob->buffer_size);
    free(blob->offsets);
    free(blob->chains);
    free(blob->by_jump);
    free(blob);
}

unsigned int ngiptc_snapshot_chain_count(const ngiptc_blob *blob) { return blob->chain_count; }

const char *ngiptc_snapshot_chain_name(const ngiptc_blob *blob, unsigned int chain) {
    return chain < blob->chain_count ? blob->chains[chain].name : NULL;
}

int ngiptc_snapshot_rule_count(const ngiptc_blob *blob, unsigned int chain) {
    if (chain >= blob->chain_count) return -1;
    return (int)(blob->chains[chain].end - blob->chains[chain].first);
}

// What libiptc's iptc_get_target says: a verdict, a chain name for a jump, or
// the extension's name ("DNAT", "MARK").
static const char *target_name(const ngiptc_blob *blob, uint32_t index) {
    const unsigned char *e = blob->entries + blob->offsets[index];
    const struct xt_entry_target *t = (const struct xt_entry_target *)(e + target_offset_of(blob->family, e));
    if (t->u.user.name[0] != '\0') return t->u.user.name;
    if (t->u.target_size < sizeof(struct xt_standard_target)) return "?bad-target";
    int verdict = ((const struct xt_standard_target *)t)->verdict;
    if (verdict < 0) {
        switch (verdict) {
        case -NF_DROP - 1: return "DROP";
        case -NF_ACCEPT - 1: return "ACCEPT";
        case -NF_QUEUE - 1: return "QUEUE";
        case XT_RETURN: return "RETURN";
        default: return "?unknown-verdict";
        }
    }
    uint32_t low = 0, high = blob->chain_count;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        if (blob->chains[blob->by_jump[middle]].jump_offset < (uint32_t)verdict) low = middle + 1; else high = middle;
    }
    if (low < blob->chain_count && blob->chains[blob->by_jump[low]].jump_offset == (uint32_t)verdict) {
        return blob->chains[blob->by_jump[low]].name;
    }
    return "?bad-jump";
}

int ngiptc_snapshot_read_rules_from(const ngiptc_blob *blob, unsigned int chain, int start,
                                    ngiptc_rule_info *rules, int capacity) {
    if (chain >= blob->chain_count || start < 0) return -1;
    const blob_chain *c = &blob->chains[chain];
    int count = 0;
    for (uint32_t i = c->first + (uint32_t)start; i < c->end && count < capacity; i++) {
        ngiptc_decode_entry(blob->family, blob->entries + blob->offsets[i], target_name(blob, i), c->builtin, &rules[count++]);
    }
    return count;
}

void ngiptc_snapshot_info(const ngiptc_blob *blob, ngiptc_table_info *info) { *info = blob->info; }

static int is_owned_chain(const char *name, const char *prefix, size_t prefix_length) {
    return strncmp(name, prefix, prefix_length) == 0 && (name[prefix_length] == '\0' || name[prefix_length] == '-');
}

uint64_t ngiptc_snapshot_owned_digest(const ngiptc_blob *blob, const char *prefix, uint32_t hooks) {
    size_t prefix_length = strlen(prefix);
    uint64_t hash = 0xCBF29CE484222325ULL;
    for (uint32_t c = 0; c < blob->chain_count; c++) {
        const blob_chain *chain = &blob->chains[c];
        int hook = -1;
        for (int h = 0; h < NF_INET_NUMHOOKS; h++) {
            if (chain->builtin && strcmp(chain->name, hook_names[h]) == 0) hook = h;
        }
        if (hook >= 0) {
            if (!(hooks & (1u << hook))) continue;
            // The hook chain up to and including NodeGuard's first jump: what
            // stands above the jump decides whether it runs.
            hash = ngiptc_mix(hash, 0x100u + (uint64_t)hook);
            uint32_t i = chain->first;
            for (; i < chain->end; i++) {
                hash = ngiptc_entry_identity(blob->family, blob->entries + blob->offsets[i], target_name(blob, i), hash);
                if (is_owned_chain(target_name(blob, i), prefix, prefix_length)) break;
            }
            // No jump at all: only that, not every other rule, is what counts.
            if (i == chain->end) hash = ngiptc_mix(hash, 0xDEADu);
        } else if (is_owned_chain(chain->name, prefix, prefix_length)) {
            for (const char *n = chain->name; *n; n++) hash = ngiptc_mix(hash, (unsigned char)*n);
            hash = ngiptc_mix(hash, chain->end - chain->first);
            for (uint32_t i = chain->first; i < chain->end; i++) {
                hash = ngiptc_entry_identity(blob->family, blob->entries + blob->offsets[i], target_name(blob, i), hash);
            }
        }
    }
    return hash;
}
