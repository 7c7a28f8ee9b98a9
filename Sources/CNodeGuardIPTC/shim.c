// libiptc shim for NodeGuard. See include/CNodeGuardIPTC.h.
//
// Entry layout (NETFILTER.md): header (ipt_entry or ip6t_entry), then each
// match as an xt_entry_match header plus its XT_ALIGNed payload, then a
// standard target. All offset arithmetic lives here, none in Swift.
#include "CNodeGuardIPTC.h"
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libiptc/libiptc.h>
#include <libiptc/libip6tc.h>
#include <linux/netfilter/xt_addrtype.h>
#include <linux/netfilter/xt_comment.h>
#include <linux/netfilter/xt_conntrack.h>
#include <linux/netfilter/xt_CT.h>
#include <linux/netfilter/xt_sctp.h>
#include <linux/netfilter/xt_tcpudp.h>
#include <linux/netfilter/nf_nat.h>
#include <arpa/inet.h>

_Static_assert(sizeof(struct ipt_entry) == 112, "ipt_entry is 112 bytes (NETFILTER.md)");
_Static_assert(sizeof(struct ip6t_entry) == 168, "ip6t_entry is 168 bytes");
_Static_assert(sizeof(struct xt_entry_match) == 32, "xt_entry_match header is 32 bytes");
_Static_assert(XT_ALIGN(sizeof(struct xt_standard_target)) == 40, "a standard target is 40 bytes");
_Static_assert(sizeof(((struct xt_comment_info *)0)->comment) == NGIPTC_COMMENT_SIZE,
               "comment text size matches the kernel's");
_Static_assert(sizeof(xt_chainlabel) == NGIPTC_TARGET_SIZE, "chain label size matches libiptc's");

#define NGIPTC_MAX_ENTRY_SIZE 1024
// --syn: of FIN, SYN, RST and ACK only SYN is set (iptables' own definition).
#define NGIPTC_TCP_SYN_MASK 0x17
#define NGIPTC_TCP_SYN 0x02

struct ngiptc_table {
    int family;
    struct xtc_handle *handle;
};

static int is_ipv6(const ngiptc_table *table) { return table->family == AF_INET6; }

static size_t header_size(int family) {
    return family == AF_INET6 ? sizeof(struct ip6t_entry) : sizeof(struct ipt_entry);
}

// The fields every entry has at the same place relative to its own header.
typedef struct {
    uint16_t *target_offset;
    uint16_t *next_offset;
    struct xt_counters *counters;
    unsigned int *comefrom;
} entry_fields;

static entry_fields fields_of(int family, void *entry) {
    entry_fields f;
    if (family == AF_INET6) {
        struct ip6t_entry *e = entry;
        f.target_offset = &e->target_offset;
        f.next_offset = &e->next_offset;
        f.counters = &e->counters;
        f.comefrom = &e->comefrom;
    } else {
        struct ipt_entry *e = entry;
        f.target_offset = &e->target_offset;
        f.next_offset = &e->next_offset;
        f.counters = &e->counters;
        f.comefrom = &e->comefrom;
    }
    return f;
}

// ---- building -------------------------------------------------------------

static void *append_match(unsigned char *buffer, size_t *used, const char *name,
                          uint8_t revision, size_t payload_size) {
    struct xt_entry_match *m = (struct xt_entry_match *)(buffer + *used);
    size_t size = XT_ALIGN(sizeof(struct xt_entry_match)) + XT_ALIGN(payload_size);
    m->u.user.match_size = (uint16_t)size;
    strncpy(m->u.user.name, name, sizeof(m->u.user.name) - 1);
    m->u.user.revision = revision;
    *used += size;
    return m->data;
}

static void fill_prefix_mask(uint8_t *mask, size_t bytes, unsigned int prefix) {
    memset(mask, 0, bytes);
    for (size_t i = 0; i < bytes && prefix > 0; i++) {
        unsigned int bits = prefix >= 8 ? 8 : prefix;
        mask[i] = (uint8_t)(0xff << (8 - bits));
        prefix -= bits;
    }
}

// Builds the entry for `spec` into `buffer` (NGIPTC_MAX_ENTRY_SIZE bytes,
// zeroed here). Returns its size, or 0 when the spec is not valid.
static size_t build_entry(int family, const ngiptc_rule_spec *spec, unsigned char *buffer) {
    memset(buffer, 0, NGIPTC_MAX_ENTRY_SIZE);
    size_t address_bytes = family == AF_INET6 ? 16 : 4;
    if (spec->source_prefix_length > address_bytes * 8) return 0;
    uint8_t mask[16], source[16];
    fill_prefix_mask(mask, address_bytes, spec->source_prefix_length);
    for (size_t i = 0; i < address_bytes; i++) source[i] = spec->source_address[i] & mask[i];

    if (family == AF_INET6) {
        struct ip6t_entry *e = (struct ip6t_entry *)buffer;
        memcpy(&e->ipv6.src, source, 16);
        memcpy(&e->ipv6.smsk, mask, 16);
        e->ipv6.proto = spec->protocol;
        if (spec->protocol != 0) e->ipv6.flags |= IP6T_F_PROTO;
    } else {
        struct ipt_entry *e = (struct ipt_entry *)buffer;
        memcpy(&e->ip.src, source, 4);
        memcpy(&e->ip.smsk, mask, 4);
        e->ip.proto = spec->protocol;
    }
    size_t used = header_size(family);

    if (spec->match_local_destination) {
        struct xt_addrtype_info_v1 *info =
            append_match(buffer, &used, "addrtype", 1, sizeof(struct xt_addrtype_info_v1));
        info->dest = XT_ADDRTYPE_LOCAL;
    }
    if (spec->match_direction == NGIPTC_CTDIR_ORIGINAL || spec->match_direction == NGIPTC_CTDIR_REPLY) {
        struct xt_conntrack_mtinfo3 *info =
            append_match(buffer, &used, "conntrack", 3, sizeof(struct xt_conntrack_mtinfo3));
        info->match_flags = XT_CONNTRACK_DIRECTION;
        // As iptables writes --ctdir: the invert flag set means REPLY.
        if (spec->match_direction == NGIPTC_CTDIR_REPLY) info->invert_flags = XT_CONNTRACK_DIRECTION;
    } else if (spec->match_direction != 0) {
        return 0;
    }
    if (spec->has_destination_ports) {
        if (spec->destination_port_first > spec->destination_port_last) return 0;
        switch (spec->protocol) {
        case IPPROTO_TCP: {
            struct xt_tcp *info = append_match(buffer, &used, "tcp", 0, sizeof(struct xt_tcp));
            info->spts[1] = 0xffff;
            info->dpts[0] = spec->destination_port_first;
            info->dpts[1] = spec->destination_port_last;
            if (spec->tcp_syn_only) {
                info->flg_mask = NGIPTC_TCP_SYN_MASK;
                info->flg_cmp = NGIPTC_TCP_SYN;
            }
            break;
        }
        case IPPROTO_UDP: {
            struct xt_udp *info = append_match(buffer, &used, "udp", 0, sizeof(struct xt_udp));
            info->spts[1] = 0xffff;
            info->dpts[0] = spec->destination_port_first;
            info->dpts[1] = spec->destination_port_last;
            break;
        }
        case IPPROTO_SCTP: {
            struct xt_sctp_info *info =
                append_match(buffer, &used, "sctp", 0, sizeof(struct xt_sctp_info));
            info->spts[1] = 0xffff;
            info->dpts[0] = spec->destination_port_first;
            info->dpts[1] = spec->destination_port_last;
            info->flags = XT_SCTP_DEST_PORTS;
            break;
        }
        default:
            return 0;   // ports need one of the three protocols
        }
    }
    if (spec->comment[0] != '\0') {
        struct xt_comment_info *info =
            append_match(buffer, &used, "comment", 0, sizeof(struct xt_comment_info));
        strncpy(info->comment, spec->comment, sizeof(info->comment) - 1);
    }

    entry_fields f = fields_of(family, buffer);
    *f.target_offset = (uint16_t)used;
    struct xt_standard_target *target = (struct xt_standard_target *)(buffer + used);
    target->target.u.user.target_size = XT_ALIGN(sizeof(struct xt_standard_target));
    strncpy(target->target.u.user.name, spec->target, sizeof(target->target.u.user.name) - 1);
    used += XT_ALIGN(sizeof(struct xt_standard_target));
    *f.next_offset = (uint16_t)used;
    return used;
}

// ---- decoding -------------------------------------------------------------

static int prefix_of_mask(const uint8_t *mask, size_t bytes) {
    int prefix = 0;
    size_t i = 0;
    for (; i < bytes && mask[i] == 0xff; i++) prefix += 8;
    if (i < bytes) {
        uint8_t b = mask[i];
        while (b & 0x80) { prefix++; b = (uint8_t)(b << 1); }
        if (b != 0) return -1;   // not a contiguous prefix
        for (i++; i < bytes; i++) if (mask[i] != 0) return -1;
    }
    return prefix;
}

// libiptc's iptc_get_target() aborts on a standard verdict it does not know;
// a foreign writer could leave one, so look at the verdict first.
static const char *safe_target_name(const ngiptc_table *table, const void *entry) {
    entry_fields f = fields_of(table->family, (void *)entry);
    const struct xt_standard_target *t =
        (const struct xt_standard_target *)((const unsigned char *)entry + *f.target_offset);
    if (t->target.u.user.name[0] == '\0' &&
        t->target.u.user.target_size == XT_ALIGN(sizeof(struct xt_standard_target)) &&
        t->verdict < 0) {
        switch (t->verdict) {
        case -NF_ACCEPT - 1: case -NF_DROP - 1: case -NF_QUEUE - 1: case XT_RETURN: break;
        default: return "?unknown-verdict";
        }
    }
    return is_ipv6(table) ? ip6tc_get_target(entry, table->handle)
                          : iptc_get_target(entry, table->handle);
}

// Compares the matches in [start, end) of two entries whose offsets agree.
static int same_matches(const unsigned char *a, const unsigned char *b, size_t start, size_t end) {
    for (size_t offset = start; offset < end;) {
        const struct xt_entry_match *ma = (const struct xt_entry_match *)(a + offset);
        const struct xt_entry_match *mb = (const struct xt_entry_match *)(b + offset);
        size_t size = ma->u.match_size;
        if (size < sizeof(struct xt_entry_match) || offset + size > end ||
            size != mb->u.match_size || ma->u.user.revision != mb->u.user.revision ||
            strncmp(ma->u.user.name, mb->u.user.name, sizeof(ma->u.user.name)) != 0 ||
            memcmp(ma->data, mb->data, size - sizeof(struct xt_entry_match)) != 0) {
            return 0;
        }
        offset += size;
    }
    return 1;
}

// DNAT's target data, by revision: 0 is IPv4 only (a one-range compat
// struct), 1 is nf_nat_range, 2 is nf_nat_range2 (1 plus a base port).
static void decode_nat_target(int family, const struct xt_entry_target *t, size_t room,
                              ngiptc_rule_info *out) {
    if (room < sizeof(*t) || t->u.target_size > room || strcmp(t->u.user.name, "DNAT") != 0) return;
    size_t data = t->u.target_size - sizeof(*t);
    unsigned int flags;
    uint16_t first, last;
    if (t->u.user.revision == 0 && family == AF_INET) {
        const struct nf_nat_ipv4_multi_range_compat *m = (const void *)t->data;
        if (data < sizeof(*m) || m->rangesize < 1) return;
        flags = m->range[0].flags;
        memcpy(out->nat_address, &m->range[0].min_ip, 4);
        first = ntohs(m->range[0].min.all);
        last = ntohs(m->range[0].max.all);
    } else if (t->u.user.revision == 1 || t->u.user.revision == 2) {
        const struct nf_nat_range *r = (const void *)t->data;
        if (data < sizeof(*r)) return;
        flags = r->flags;
        memcpy(out->nat_address, &r->min_addr, family == AF_INET6 ? 16 : 4);
        first = ntohs(r->min_proto.all);
        last = ntohs(r->max_proto.all);
    } else {
        return;
    }
    out->nat_has_address = (flags & NF_NAT_RANGE_MAP_IPS) ? 1 : 0;
    if (flags & NF_NAT_RANGE_PROTO_SPECIFIED) {
        out->nat_has_ports = 1;
        out->nat_port_first = first;
        out->nat_port_last = last;
    }
}

// 64-bit multiply-xorshift over whole words: fast, and any changed byte
// changes the result with overwhelming likelihood (this detects edits, it
// does not resist an attacker, who would need root anyway).
uint64_t ngiptc_mix(uint64_t hash, uint64_t word) {
    hash ^= word;
    hash *= 0x9E3779B97F4A7C15ULL;
    return hash ^ (hash >> 29);
}

uint64_t ngiptc_entry_identity(int family, const void *entry, const char *target, uint64_t hash) {
    // Entries are at most 65535 bytes long (next_offset is 16 bits).
    static _Thread_local unsigned char scratch[65536] __attribute__((aligned(8)));
    entry_fields f = fields_of(family, (void *)entry);
    uint16_t size = *f.next_offset;
    memcpy(scratch, entry, size);
    entry_fields g = fields_of(family, scratch);
    memset(g.counters, 0, sizeof(*g.counters));
    *g.comefrom = 0;
    // The kernel copies extension names only up to their NUL; a copy held by
    // libiptc has whatever its buffer held after it. Canonical: zeros.
    size_t offset = header_size(family);
    while (offset + sizeof(struct xt_entry_match) <= *g.target_offset) {
        struct xt_entry_match *m = (struct xt_entry_match *)(scratch + offset);
        size_t length = strnlen(m->u.user.name, sizeof(m->u.user.name));
        memset(m->u.user.name + length, 0, sizeof(m->u.user.name) - length);
        if (m->u.match_size < sizeof(*m)) break;
        offset += m->u.match_size;
    }
    struct xt_entry_target *t = (struct xt_entry_target *)(scratch + *g.target_offset);
    if (*g.target_offset + sizeof(*t) <= size) {
        size_t length = strnlen(t->u.user.name, sizeof(t->u.user.name));
        memset(t->u.user.name + length, 0, sizeof(t->u.user.name) - length);
    }
    if (*g.target_offset + sizeof(struct xt_standard_target) <= size && t->u.user.name[0] == '\0' &&
        t->u.target_size >= sizeof(struct xt_standard_target) && ((struct xt_standard_target *)t)->verdict >= 0) {
        for (const char *c = target ? target : ""; *c; c++) hash = ngiptc_mix(hash, (unsigned char)*c);
        ((struct xt_standard_target *)t)->verdict = 0;
    }
    size_t words = size / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t word;
        memcpy(&word, scratch + i * 8, 8);
        hash = ngiptc_mix(hash, word);
    }
    for (size_t i = words * 8; i < size; i++) hash = ngiptc_mix(hash, scratch[i]);
    return hash;
}

// CT --notrack (every revision starts with its u16 flags) and the old NOTRACK
// target exempt a packet from connection tracking.
static void decode_untracking(const char *target, const struct xt_entry_target *t, size_t room,
                              ngiptc_rule_info *out) {
    if (target && strcmp(target, "NOTRACK") == 0) { out->untracks = 1; return; }
    if (!target || strcmp(target, "CT") != 0 || room < sizeof(*t) + sizeof(uint16_t) || t->u.target_size > room) return;
    uint16_t flags;
    memcpy(&flags, t->data, sizeof(flags));
    out->untracks = (flags & XT_CT_NOTRACK) != 0;
}

void ngiptc_decode_entry(int family, const void *entry, const char *target, int with_identity, ngiptc_rule_info *out) {
    memset(out, 0, sizeof(*out));
    const unsigned char *bytes = entry;
    entry_fields f = fields_of(family, (void *)entry);
    ngiptc_rule_spec *spec = &out->spec;
    out->packets = f.counters->pcnt;
    out->bytes = f.counters->bcnt;
    int representable = 1;

    int prefix;
    if (family == AF_INET6) {
        const struct ip6t_entry *e = entry;
        memcpy(spec->source_address, &e->ipv6.src, 16);
        prefix = prefix_of_mask((const uint8_t *)&e->ipv6.smsk, 16);
        spec->protocol = (uint8_t)e->ipv6.proto;
        if (e->ipv6.proto > 255) representable = 0;
    } else {
        const struct ipt_entry *e = entry;
        memcpy(spec->source_address, &e->ip.src, 4);
        prefix = prefix_of_mask((const uint8_t *)&e->ip.smsk, 4);
        spec->protocol = (uint8_t)e->ip.proto;
        if (e->ip.proto > 255) representable = 0;
    }
    if (prefix < 0) representable = 0; else spec->source_prefix_length = (uint8_t)prefix;

    size_t offset = header_size(family);
    while (offset + sizeof(struct xt_entry_match) <= *f.target_offset) {
        const struct xt_entry_match *m = (const struct xt_entry_match *)(bytes + offset);
        if (m->u.match_size < sizeof(struct xt_entry_match) ||
            offset + m->u.match_size > *f.target_offset) {
            representable = 0;
            break;
        }
        const char *name = m->u.user.name;
        if (strcmp(name, "addrtype") == 0) {
            spec->match_local_destination = 1;
        } else if (strcmp(name, "conntrack") == 0) {
            const struct xt_conntrack_mtinfo3 *info = (const struct xt_conntrack_mtinfo3 *)m->data;
            spec->match_direction = (m->u.match_size >= sizeof(*m) + sizeof(*info) &&
                                     (info->invert_flags & XT_CONNTRACK_DIRECTION)) ? NGIPTC_CTDIR_REPLY
                                                                                   : NGIPTC_CTDIR_ORIGINAL;
        } else if (strcmp(name, "tcp") == 0 || strcmp(name, "udp") == 0) {
            // xt_tcp and xt_udp both start with spts[2], dpts[2].
            const struct xt_udp *info = (const struct xt_udp *)m->data;
            spec->has_destination_ports = 1;
            spec->destination_port_first = info->dpts[0];
            spec->destination_port_last = info->dpts[1];
            uint8_t inverted;
            if (strcmp(name, "tcp") == 0) {
                const struct xt_tcp *tcp = (const struct xt_tcp *)m->data;
                if (tcp->flg_mask == NGIPTC_TCP_SYN_MASK && tcp->flg_cmp == NGIPTC_TCP_SYN) spec->tcp_syn_only = 1;
                inverted = tcp->invflags & XT_TCP_INV_DSTPT;
            } else {
                inverted = info->invflags & XT_UDP_INV_DSTPT;
            }
            // `! --dport P` matches every port but P: say nothing of its ports
            // rather than the opposite of what it matches (NodeGuard writes none).
            if (inverted) { spec->has_destination_ports = 0; representable = 0; }
        } else if (strcmp(name, "sctp") == 0) {
            const struct xt_sctp_info *info = (const struct xt_sctp_info *)m->data;
            spec->has_destination_ports = 1;
            spec->destination_port_first = info->dpts[0];
            spec->destination_port_last = info->dpts[1];
            if (!(info->flags & XT_SCTP_DEST_PORTS) || (info->invflags & XT_SCTP_DEST_PORTS)) {
                spec->has_destination_ports = 0;
                representable = 0;
            }
        } else if (strcmp(name, "comment") == 0) {
            const struct xt_comment_info *info = (const struct xt_comment_info *)m->data;
            memcpy(spec->comment, info->comment, sizeof(spec->comment) - 1);
        } else {
            representable = 0;
        }
        offset += m->u.match_size;
    }

    strncpy(spec->target, target ? target : "", sizeof(spec->target) - 1);
    decode_nat_target(family, (const struct xt_entry_target *)(bytes + *f.target_offset),
                      *f.next_offset - *f.target_offset, out);
    if (with_identity) out->identity = ngiptc_entry_identity(family, entry, target, 0xCBF29CE484222325ULL);
    decode_untracking(target, (const struct xt_entry_target *)(bytes + *f.target_offset),
                      *f.next_offset - *f.target_offset, out);
    out->protocol_inverted = family == AF_INET6 ? (((const struct ip6t_entry *)entry)->ipv6.invflags & IP6T_INV_PROTO) != 0
                                                : (((const struct ipt_entry *)entry)->ip.invflags & IPT_INV_PROTO) != 0;

    // Strictness for free: the rule is NodeGuard's shape only if building the
    // decoded spec gives back the same header and matches. Matches are
    // compared field by field: the kernel copies a match's name only up to
    // its NUL, so the bytes after it are whatever the reader's buffer held.
    if (representable) {
        unsigned char rebuilt[NGIPTC_MAX_ENTRY_SIZE] __attribute__((aligned(8)));
        size_t size = build_entry(family, spec, rebuilt);
        entry_fields g = fields_of(family, rebuilt);
        const struct xt_entry_target *t = (const struct xt_entry_target *)(bytes + *f.target_offset);
        size_t ip_size = family == AF_INET6 ? sizeof(struct ip6t_ip6) : sizeof(struct ipt_ip);
        if (size == 0 || *g.target_offset != *f.target_offset || *g.next_offset != *f.next_offset ||
            memcmp(rebuilt, bytes, ip_size) != 0 ||
            !same_matches(rebuilt, bytes, header_size(family), *f.target_offset) ||
            t->u.user.name[0] != '\0' ||
            t->u.user.target_size != XT_ALIGN(sizeof(struct xt_standard_target))) {
            representable = 0;
        }
    }
    out->representable = (uint8_t)representable;
}

// ---- table handles --------------------------------------------------------

ngiptc_table *ngiptc_open(int family, const char *name, int *error) {
    if (family != AF_INET && family != AF_INET6) { *error = EAFNOSUPPORT; return NULL; }
    ngiptc_table *table = calloc(1, sizeof(*table));
    if (!table) { *error = ENOMEM; return NULL; }
    table->family = family;
    errno = 0;
    table->handle = family == AF_INET6 ? ip6tc_init(name) : iptc_init(name);
    if (!table->handle) {
        *error = errno ? errno : EINVAL;
        free(table);
        return NULL;
    }
    return table;
}

void ngiptc_close(ngiptc_table *table) {
    if (!table) return;
    if (table->handle) {
        if (is_ipv6(table)) ip6tc_free(table->handle); else iptc_free(table->handle);
    }
    free(table);
}

#define NGIPTC_CALL(table, call4, call6, error)                             \
    do {                                                                    \
        errno = 0;                                                          \
        int ok_ = is_ipv6(table) ? (call6) : (call4);                       \
        if (!ok_) { *(error) = errno ? errno : EINVAL; return -1; }         \
        return 0;                                                           \
    } while (0)

int ngiptc_commit(ngiptc_table *table, int *error) {
    NGIPTC_CALL(table, iptc_commit(table->handle), ip6tc_commit(table->handle), error);
}

const char *ngiptc_strerror(int family, int error) {
    return family == AF_INET6 ? ip6tc_strerror(error) : iptc_strerror(error);
}

const char *ngiptc_first_chain(ngiptc_table *table) {
    return is_ipv6(table) ? ip6tc_first_chain(table->handle) : iptc_first_chain(table->handle);
}

const char *ngiptc_next_chain(ngiptc_table *table) {
    return is_ipv6(table) ? ip6tc_next_chain(table->handle) : iptc_next_chain(table->handle);
}

static int is_chain(ngiptc_table *table, const char *chain) {
    return is_ipv6(table) ? ip6tc_is_chain(chain, table->handle)
                          : iptc_is_chain(chain, table->handle);
}

static int is_builtin(ngiptc_table *table, const char *chain) {
    return is_ipv6(table) ? ip6tc_builtin(chain, table->handle)
                          : iptc_builtin(chain, table->handle);
}

int ngiptc_create_chain(ngiptc_table *table, const char *chain, int *error) {
    NGIPTC_CALL(table, iptc_create_chain(chain, table->handle),
                ip6tc_create_chain(chain, table->handle), error);
}

int ngiptc_flush_chain(ngiptc_table *table, const char *chain, int *error) {
    NGIPTC_CALL(table, iptc_flush_entries(chain, table->handle),
                ip6tc_flush_entries(chain, table->handle), error);
}

int ngiptc_delete_chain(ngiptc_table *table, const char *chain, int *error) {
    NGIPTC_CALL(table, iptc_delete_chain(chain, table->handle),
                ip6tc_delete_chain(chain, table->handle), error);
}

static const void *first_rule(ngiptc_table *table, const char *chain) {
    return is_ipv6(table) ? (const void *)ip6tc_first_rule(chain, table->handle)
                          : (const void *)iptc_first_rule(chain, table->handle);
}

static const void *next_rule(ngiptc_table *table, const void *previous) {
    return is_ipv6(table) ? (const void *)ip6tc_next_rule(previous, table->handle)
                          : (const void *)iptc_next_rule(previous, table->handle);
}

int ngiptc_rule_count(ngiptc_table *table, const char *chain, int *error) {
    if (!is_chain(table, chain)) { *error = ENOENT; return -1; }
    int count = 0;
    for (const void *e = first_rule(table, chain); e; e = next_rule(table, e)) count++;
    return count;
}

int ngiptc_read_rules(ngiptc_table *table, const char *chain, ngiptc_rule_info *rules,
                      int capacity, int *error) {
    if (!is_chain(table, chain)) { *error = ENOENT; return -1; }
    int count = 0;
    int builtin = is_builtin(table, chain);
    for (const void *e = first_rule(table, chain); e && count < capacity; e = next_rule(table, e)) {
        ngiptc_decode_entry(table->family, e, safe_target_name(table, e), builtin, &rules[count++]);
    }
    return count;
}

int ngiptc_insert_rule(ngiptc_table *table, const char *chain, unsigned int index,
                       const ngiptc_rule_spec *spec, int *error) {
    unsigned char buffer[NGIPTC_MAX_ENTRY_SIZE] __attribute__((aligned(8)));
    if (build_entry(table->family, spec, buffer) == 0) { *error = EINVAL; return -1; }
    NGIPTC_CALL(table,
                iptc_insert_entry(chain, (const struct ipt_entry *)buffer, index, table->handle),
                ip6tc_insert_entry(chain, (const struct ip6t_entry *)buffer, index, table->handle),
                error);
}

int ngiptc_delete_rule(ngiptc_table *table, const char *chain, unsigned int index, int *error) {
    NGIPTC_CALL(table, iptc_delete_num_entry(chain, index, table->handle),
                ip6tc_delete_num_entry(chain, index, table->handle), error);
}
