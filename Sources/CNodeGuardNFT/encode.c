// The vocabulary's encoding, shared by the batch (batch.c) and the read-back
// (read.c), and the comparison that decides what is NodeGuard's.
//
// Encodings follow what `nft --debug=netlink` shows for the same rules
// (nft 1.0.6): a concatenation's fields each take a 32-bit register slot,
// the first in NFT_REG_1, and a register is named as the kernel dumps it
// back (NFT_REG_n when 16-byte aligned, NFT_REG32_nn otherwise), so a rule
// read back compares equal to one built here. nft's no-op byteorder after
// `meta l4proto` in a concatenation is left out.
#include "CNodeGuardNFT.h"
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/rtnetlink.h>
#include <libnftnl/expr.h>
#include <libnftnl/udata.h>

_Static_assert(NGNFT_COMMENT_SIZE == NFTNL_UDATA_COMMENT_MAXLEN, "comments are as long as nft's");
_Static_assert(NFPROTO_IPV4 == AF_INET && NFPROTO_IPV6 == AF_INET6,
               "nfproto and source_family share the address family numbers");

// nft's datatypes (nftables' include/datatype.h), concatenated TYPE_BITS at a time.
#define NGNFT_TYPE_IPADDR 7
#define NGNFT_TYPE_IP6ADDR 8
#define NGNFT_TYPE_INET_PROTOCOL 12
#define NGNFT_TYPE_INET_SERVICE 13
#define NGNFT_TYPE_BITS 6

// ---- small helpers ----------------------------------------------------------

void *ngnft_grow(void *items, size_t *capacity, size_t size) {
    size_t more = *capacity ? *capacity * 2 : 16;
    void *grown = realloc(items, more * size);
    if (grown) *capacity = more;
    return grown;
}

void ngnft_copy_text(char *out, size_t size, const char *text) {
    size_t length = text ? strnlen(text, size - 1) : 0;
    if (length) memcpy(out, text, length);
    out[length] = '\0';
}

typedef struct {
    uint8_t type;   // the comment's NFTNL_UDATA_*_COMMENT
    char *out;
} comment_search;

static int comment_callback(const struct nftnl_udata *attr, void *data) {
    comment_search *search = data;
    if (nftnl_udata_type(attr) != search->type) return MNL_CB_OK;
    uint8_t length = nftnl_udata_len(attr);
    const char *text = nftnl_udata_get(attr);
    if (length == 0 || text[length - 1] != '\0') return MNL_CB_OK;   // nft's comments end with their NUL
    ngnft_copy_text(search->out, NGNFT_COMMENT_SIZE, text);
    return MNL_CB_OK;
}

void ngnft_udata_comment(const void *udata, uint32_t length, uint8_t type, char *out) {
    out[0] = '\0';
    if (!udata || length == 0) return;
    comment_search search = {type, out};
    nftnl_udata_parse(udata, length, comment_callback, &search);
}

// nft's user data: one TLV, the comment with its NUL. NULL for no comment.
struct nftnl_udata_buf *ngnft_comment_udata(const char *comment, uint8_t type) {
    if (comment[0] == '\0') return NULL;
    struct nftnl_udata_buf *udata = nftnl_udata_buf_alloc(NGNFT_COMMENT_SIZE + 8);
    if (!udata) return NULL;
    char text[NGNFT_COMMENT_SIZE];
    ngnft_copy_text(text, sizeof(text), comment);
    if (!nftnl_udata_put_strz(udata, type, text)) {
        nftnl_udata_buf_free(udata);
        return NULL;
    }
    return udata;
}

// ---- the vocabulary ---------------------------------------------------------

int ngnft_key_layout_of(uint8_t source_family, ngnft_key_layout *layout) {
    memset(layout, 0, sizeof(*layout));
    switch (source_family) {
    case 0: break;
    case AF_INET: layout->address_length = 4; break;
    case AF_INET6: layout->address_length = 16; break;
    default: return -1;
    }
    if (layout->address_length) {
        layout->field_lengths[layout->field_count++] = (uint8_t)layout->address_length;
        layout->type = source_family == AF_INET ? NGNFT_TYPE_IPADDR : NGNFT_TYPE_IP6ADDR;
    }
    layout->field_lengths[layout->field_count++] = 1;   // l4proto
    layout->field_lengths[layout->field_count++] = 2;   // th dport
    layout->type = (layout->type << NGNFT_TYPE_BITS) | NGNFT_TYPE_INET_PROTOCOL;
    layout->type = (layout->type << NGNFT_TYPE_BITS) | NGNFT_TYPE_INET_SERVICE;
    layout->length = layout->address_length + 4 + 4;
    return 0;
}

int ngnft_element_keys(const ngnft_key_layout *layout, const ngnft_element *element,
                       uint8_t *first, uint8_t *last) {
    uint32_t address = layout->address_length;
    if (element->source_prefix_length > address * 8 || element->port_first > element->port_last) return -1;
    if (element->protocol != IPPROTO_TCP && element->protocol != IPPROTO_UDP && element->protocol != IPPROTO_SCTP) return -1;
    memset(first, 0, layout->length);
    memset(last, 0, layout->length);
    unsigned int prefix = element->source_prefix_length;
    for (uint32_t i = 0; i < address; i++) {
        unsigned int bits = prefix >= 8 ? 8 : prefix;
        uint8_t mask = (uint8_t)(0xff00 >> bits);
        prefix -= bits;
        first[i] = element->source_address[i] & mask;
        last[i] = (uint8_t)(first[i] | (uint8_t)~mask);
    }
    first[address] = last[address] = element->protocol;
    uint16_t port_first = htons(element->port_first), port_last = htons(element->port_last);
    memcpy(first + address + 4, &port_first, 2);
    memcpy(last + address + 4, &port_last, 2);
    return 0;
}

struct nftnl_set *ngnft_build_set(const char *table, const ngnft_set_spec *spec, int *error) {
    ngnft_key_layout layout;
    if (spec->name[0] == '\0' || ngnft_key_layout_of(spec->source_family, &layout) < 0 || spec->counters > 1) {
        *error = EINVAL;
        return NULL;
    }
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set) { *error = ENOMEM; return NULL; }
    nftnl_set_set_str(set, NFTNL_SET_TABLE, table);
    nftnl_set_set_str(set, NFTNL_SET_NAME, spec->name);
    nftnl_set_set_u32(set, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(set, NFTNL_SET_FLAGS, NFT_SET_INTERVAL | NFT_SET_CONCAT);
    nftnl_set_set_u32(set, NFTNL_SET_KEY_TYPE, layout.type);
    nftnl_set_set_u32(set, NFTNL_SET_KEY_LEN, layout.length);
    nftnl_set_set_data(set, NFTNL_SET_DESC_CONCAT, layout.field_lengths, layout.field_count);
    if (spec->counters) {
        struct nftnl_expr *counter = nftnl_expr_alloc("counter");
        if (!counter) { nftnl_set_free(set); *error = ENOMEM; return NULL; }
        nftnl_set_add_expr(set, counter);
    }
    if (spec->comment[0] != '\0') {
        struct nftnl_udata_buf *udata = ngnft_comment_udata(spec->comment, NFTNL_UDATA_SET_COMMENT);
        if (!udata) { nftnl_set_free(set); *error = ENOMEM; return NULL; }
        nftnl_set_set_data(set, NFTNL_SET_USERDATA, nftnl_udata_buf_data(udata), nftnl_udata_buf_len(udata));
        nftnl_udata_buf_free(udata);
    }
    return set;
}

// The register a value at `offset` bytes into the key is loaded to, named
// as the kernel dumps it back.
static uint32_t register_at(uint32_t offset) {
    return offset % 16 == 0 ? NFT_REG_1 + offset / 16 : NFT_REG32_00 + offset / 4;
}

static int add_expr(struct nftnl_rule *rule, struct nftnl_expr *expr) {
    if (!expr) return -1;
    nftnl_rule_add_expr(rule, expr);
    return 0;
}

static struct nftnl_expr *cmp_eq(const void *data, uint32_t length) {
    struct nftnl_expr *e = nftnl_expr_alloc("cmp");
    if (!e) return NULL;
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, length);
    return e;
}

static struct nftnl_expr *meta_load(uint32_t key, uint32_t reg) {
    struct nftnl_expr *e = nftnl_expr_alloc("meta");
    if (!e) return NULL;
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, reg);
    return e;
}

static struct nftnl_expr *payload_load(uint32_t base, uint32_t offset, uint32_t length, uint32_t reg) {
    struct nftnl_expr *e = nftnl_expr_alloc("payload");
    if (!e) return NULL;
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, length);
    return e;
}

// fib daddr type local: the address type of the destination, as a host-order u32.
static int add_local_destination(struct nftnl_rule *rule) {
    struct nftnl_expr *fib = nftnl_expr_alloc("fib");
    if (!fib) return -1;
    nftnl_expr_set_u32(fib, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
    nftnl_expr_set_u32(fib, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
    nftnl_expr_set_u32(fib, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
    nftnl_rule_add_expr(rule, fib);
    uint32_t local = RTN_LOCAL;
    return add_expr(rule, cmp_eq(&local, sizeof(local)));
}

// ct direction reply: one byte, IP_CT_DIR_REPLY.
static int add_reply(struct nftnl_rule *rule) {
    struct nftnl_expr *ct = nftnl_expr_alloc("ct");
    if (!ct) return -1;
    nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_KEY, NFT_CT_DIRECTION);
    nftnl_rule_add_expr(rule, ct);
    uint8_t reply = 1;
    return add_expr(rule, cmp_eq(&reply, sizeof(reply)));
}

static int add_nfproto(struct nftnl_rule *rule, uint8_t nfproto) {
    if (add_expr(rule, meta_load(NFT_META_NFPROTO, NFT_REG_1)) < 0) return -1;
    return add_expr(rule, cmp_eq(&nfproto, sizeof(nfproto)));
}

// [ip|ip6 saddr .] meta l4proto . th dport @set
static int add_lookup(struct nftnl_rule *rule, const char *set, uint8_t source_family) {
    ngnft_key_layout layout;
    if (ngnft_key_layout_of(source_family, &layout) < 0) return -1;
    uint32_t offset = 0;
    if (layout.address_length) {
        // saddr: IPv4 at 12 of its header, IPv6 at 8.
        uint32_t at = source_family == AF_INET ? 12 : 8;
        if (add_expr(rule, payload_load(NFT_PAYLOAD_NETWORK_HEADER, at, layout.address_length, register_at(0))) < 0) return -1;
        offset = layout.address_length;
    }
    if (add_expr(rule, meta_load(NFT_META_L4PROTO, register_at(offset))) < 0) return -1;
    offset += 4;
    if (add_expr(rule, payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, register_at(offset))) < 0) return -1;
    struct nftnl_expr *lookup = nftnl_expr_alloc("lookup");
    if (!lookup) return -1;
    nftnl_expr_set_u32(lookup, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    nftnl_expr_set_str(lookup, NFTNL_EXPR_LOOKUP_SET, set);
    nftnl_rule_add_expr(rule, lookup);
    return 0;
}

static int add_verdict(struct nftnl_rule *rule, uint8_t verdict, const char *chain) {
    int code;
    switch (verdict) {
    case NGNFT_VERDICT_NONE: return 0;
    case NGNFT_VERDICT_ACCEPT: code = NF_ACCEPT; break;
    case NGNFT_VERDICT_DROP: code = NF_DROP; break;
    case NGNFT_VERDICT_RETURN: code = NFT_RETURN; break;
    case NGNFT_VERDICT_JUMP: code = NFT_JUMP; break;
    default: return -1;
    }
    struct nftnl_expr *e = nftnl_expr_alloc("immediate");
    if (!e) return -1;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)code);
    if (verdict == NGNFT_VERDICT_JUMP) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
    nftnl_rule_add_expr(rule, e);
    return 0;
}

static int valid_rule(const ngnft_rule_spec *spec) {
    int family_ok = spec->nfproto == 0 || spec->nfproto == NFPROTO_IPV4 || spec->nfproto == NFPROTO_IPV6;
    int has_lookup = spec->lookup_set[0] != '\0';
    // A source address is read from the family's header: the rule must
    // select that family first (nft adds the same dependency itself).
    int source_ok = spec->lookup_source_family == 0 ||
                    (has_lookup && spec->nfproto == spec->lookup_source_family);
    int jump_ok = spec->verdict != NGNFT_VERDICT_JUMP || spec->jump_chain[0] != '\0';
    return family_ok && source_ok && jump_ok && spec->match_local_destination <= 1 && spec->match_reply <= 1 &&
           spec->verdict <= NGNFT_VERDICT_JUMP;
}

struct nftnl_rule *ngnft_build_rule(const ngnft_rule_spec *spec, int *error) {
    if (!valid_rule(spec)) { *error = EINVAL; return NULL; }
    struct nftnl_rule *rule = nftnl_rule_alloc();
    if (!rule) { *error = ENOMEM; return NULL; }
    char set[NGNFT_NAME_SIZE], chain[NGNFT_NAME_SIZE];
    ngnft_copy_text(set, sizeof(set), spec->lookup_set);
    ngnft_copy_text(chain, sizeof(chain), spec->jump_chain);
    int failed = (spec->match_local_destination && add_local_destination(rule) < 0) ||
                 (spec->match_reply && add_reply(rule) < 0) ||
                 (spec->nfproto && add_nfproto(rule, spec->nfproto) < 0) ||
                 (set[0] && add_lookup(rule, set, spec->lookup_source_family) < 0) ||
                 add_verdict(rule, spec->verdict, chain) < 0;
    struct nftnl_udata_buf *udata = NULL;
    if (!failed && spec->comment[0] != '\0') {
        udata = ngnft_comment_udata(spec->comment, NFTNL_UDATA_RULE_COMMENT);
        if (!udata) failed = 1;
        else nftnl_rule_set_data(rule, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(udata), nftnl_udata_buf_len(udata));
        nftnl_udata_buf_free(udata);
    }
    if (failed) {
        nftnl_rule_free(rule);
        *error = ENOMEM;
        return NULL;
    }
    return rule;
}

// ---- comparing (the read-back's "could NodeGuard have written this") --------

static int all_zero(const void *data, uint32_t length) {
    const uint8_t *bytes = data;
    for (uint32_t i = 0; i < length; i++) if (bytes[i]) return 0;
    return 1;
}

int ngnft_same_expr(const struct nftnl_expr *a, const struct nftnl_expr *b) {
    if (strcmp(nftnl_expr_get_str(a, NFTNL_EXPR_NAME), nftnl_expr_get_str(b, NFTNL_EXPR_NAME)) != 0) return 0;
    // libnftnl keeps an expression's attributes in a 32-bit mask.
    for (uint16_t type = NFTNL_EXPR_BASE; type < 32; type++) {
        uint32_t length_a = 0, length_b = 0;
        const void *data_a = nftnl_expr_is_set(a, type) ? nftnl_expr_get(a, type, &length_a) : NULL;
        const void *data_b = nftnl_expr_is_set(b, type) ? nftnl_expr_get(b, type, &length_b) : NULL;
        if (data_a && data_b) {
            if (length_a != length_b || memcmp(data_a, data_b, length_a) != 0) return 0;
        } else if (data_a && !all_zero(data_a, length_a)) {
            return 0;
        } else if (data_b && !all_zero(data_b, length_b)) {
            return 0;
        }
    }
    return 1;
}

int ngnft_same_rule(const struct nftnl_rule *a, const struct nftnl_rule *b) {
    uint32_t length_a = 0, length_b = 0;
    const void *udata_a = nftnl_rule_is_set(a, NFTNL_RULE_USERDATA) ? nftnl_rule_get_data(a, NFTNL_RULE_USERDATA, &length_a) : NULL;
    const void *udata_b = nftnl_rule_is_set(b, NFTNL_RULE_USERDATA) ? nftnl_rule_get_data(b, NFTNL_RULE_USERDATA, &length_b) : NULL;
    if (!udata_a) length_a = 0;
    if (!udata_b) length_b = 0;
    if (length_a != length_b || (length_a && memcmp(udata_a, udata_b, length_a) != 0)) return 0;
    struct nftnl_expr_iter *iter_a = nftnl_expr_iter_create(a);
    struct nftnl_expr_iter *iter_b = nftnl_expr_iter_create(b);
    int same = iter_a && iter_b;
    while (same) {
        struct nftnl_expr *ea = nftnl_expr_iter_next(iter_a);
        struct nftnl_expr *eb = nftnl_expr_iter_next(iter_b);
        if (!ea || !eb) { same = !ea && !eb; break; }
        same = ngnft_same_expr(ea, eb);
    }
    if (iter_a) nftnl_expr_iter_destroy(iter_a);
    if (iter_b) nftnl_expr_iter_destroy(iter_b);
    return same;
}

