// Reading NodeGuard's table back, and every table's base chains. See
// include/CNodeGuardNFT.h.
//
// What is representable is decided by building again: each rule and set is
// decoded into NodeGuard's spec, built from that spec as batch.c would send
// it, and compared with what the kernel holds, so any edit, however small,
// makes it foreign.
#include "CNodeGuardNFT.h"
#include "internal.h"

#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

_Static_assert(NFTNL_UDATA_RULE_COMMENT == 0 && NFTNL_UDATA_SET_ELEM_COMMENT == 0,
               "rule and element comments are nft's TLV 0");

// A read that races a commit is done again, this many times at most; after
// that it reports the generation it started from, so the caller's next
// event (a newer generation) makes it read again.
#define NGNFT_READ_ATTEMPTS 3

typedef struct {
    ngnft_chain_info info;
    ngnft_rule_info *rules;
    size_t capacity;
} view_chain;

typedef struct {
    ngnft_set_info info;
    ngnft_element *elements;
    size_t capacity;
} view_set;

struct ngnft_view {
    ngnft_table_info table;
    view_chain *chains;
    size_t chain_count, chain_capacity;
    view_set *sets;
    size_t set_count, set_capacity;
};

static void clear_view(ngnft_view *view) {
    for (size_t i = 0; i < view->chain_count; i++) free(view->chains[i].rules);
    for (size_t i = 0; i < view->set_count; i++) free(view->sets[i].elements);
    free(view->chains);
    free(view->sets);
    memset(view, 0, sizeof(*view));
}

void ngnft_view_free(ngnft_view *view) {
    if (!view) return;
    clear_view(view);
    free(view);
}

// ---- rules ---------------------------------------------------------------------

// Reads the spec NodeGuard would have built this rule from; whether it did
// is for the caller to check by building it again.
static void decode_rule_spec(const struct nftnl_rule *rule, ngnft_rule_spec *spec) {
    struct nftnl_expr_iter *iter = nftnl_expr_iter_create(rule);
    if (!iter) return;
    int nfproto_loaded = 0;
    for (struct nftnl_expr *e = nftnl_expr_iter_next(iter); e; e = nftnl_expr_iter_next(iter)) {
        const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
        if (strcmp(name, "fib") == 0) {
            spec->match_local_destination = 1;
        } else if (strcmp(name, "ct") == 0) {
            spec->match_reply = 1;
        } else if (strcmp(name, "meta") == 0) {
            nfproto_loaded = nftnl_expr_get_u32(e, NFTNL_EXPR_META_KEY) == NFT_META_NFPROTO;
        } else if (strcmp(name, "cmp") == 0 && nfproto_loaded) {
            uint32_t length = 0;
            const uint8_t *data = nftnl_expr_get(e, NFTNL_EXPR_CMP_DATA, &length);
            if (data && length >= 1) spec->nfproto = data[0];
            nfproto_loaded = 0;
        } else if (strcmp(name, "payload") == 0 &&
                   nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_BASE) == NFT_PAYLOAD_NETWORK_HEADER) {
            uint32_t length = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_LEN);
            spec->lookup_source_family = length == 4 ? AF_INET : length == 16 ? AF_INET6 : 0;
        } else if (strcmp(name, "lookup") == 0) {
            ngnft_copy_text(spec->lookup_set, sizeof(spec->lookup_set), nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET));
        } else if (strcmp(name, "immediate") == 0 && nftnl_expr_is_set(e, NFTNL_EXPR_IMM_VERDICT)) {
            switch ((int)nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT)) {
            case NF_ACCEPT: spec->verdict = NGNFT_VERDICT_ACCEPT; break;
            case NF_DROP: spec->verdict = NGNFT_VERDICT_DROP; break;
            case NFT_RETURN: spec->verdict = NGNFT_VERDICT_RETURN; break;
            case NFT_JUMP:
                spec->verdict = NGNFT_VERDICT_JUMP;
                ngnft_copy_text(spec->jump_chain, sizeof(spec->jump_chain), nftnl_expr_get_str(e, NFTNL_EXPR_IMM_CHAIN));
                break;
            default: break;
            }
        }
    }
    nftnl_expr_iter_destroy(iter);
}

static void decode_rule(const struct nftnl_rule *rule, ngnft_rule_info *out) {
    memset(out, 0, sizeof(*out));
    out->handle = nftnl_rule_get_u64(rule, NFTNL_RULE_HANDLE);
    uint32_t length = 0;
    const void *udata = nftnl_rule_is_set(rule, NFTNL_RULE_USERDATA) ? nftnl_rule_get_data(rule, NFTNL_RULE_USERDATA, &length) : NULL;
    ngnft_udata_comment(udata, length, NFTNL_UDATA_RULE_COMMENT, out->spec.comment);

    ngnft_rule_spec spec;
    memset(&spec, 0, sizeof(spec));
    memcpy(spec.comment, out->spec.comment, sizeof(spec.comment));
    decode_rule_spec(rule, &spec);
    int error = 0;
    struct nftnl_rule *rebuilt = ngnft_build_rule(&spec, &error);
    // iptables-nft's compat fields mark a rule of another tool.
    if (rebuilt && !nftnl_rule_is_set(rule, NFTNL_RULE_COMPAT_PROTO) && ngnft_same_rule(rebuilt, rule)) {
        out->spec = spec;
        out->representable = 1;
    }
    if (rebuilt) nftnl_rule_free(rebuilt);
}

// A rule libnftnl cannot parse (an expression it does not know): its chain,
// handle and comment, read from the attributes themselves. Never NodeGuard's.
static int rule_attribute(const struct nlattr *attr, void *data) {
    const struct nlattr **attributes = data;
    uint16_t type = mnl_attr_get_type(attr);
    if (type <= NFTA_RULE_MAX) attributes[type] = attr;
    return MNL_CB_OK;
}

static int decode_unparsed_rule(const struct nlmsghdr *nlh, const char **table, const char **chain,
                                ngnft_rule_info *out) {
    const struct nlattr *attributes[NFTA_RULE_MAX + 1];
    memset(attributes, 0, sizeof(attributes));
    memset(out, 0, sizeof(*out));
    if (mnl_attr_parse(nlh, sizeof(struct nfgenmsg), rule_attribute, attributes) < 0) return -1;
    const struct nlattr *t = attributes[NFTA_RULE_TABLE], *c = attributes[NFTA_RULE_CHAIN];
    if (!t || !c || mnl_attr_validate(t, MNL_TYPE_NUL_STRING) < 0 || mnl_attr_validate(c, MNL_TYPE_NUL_STRING) < 0) return -1;
    *table = mnl_attr_get_str(t);
    *chain = mnl_attr_get_str(c);
    const struct nlattr *handle = attributes[NFTA_RULE_HANDLE];
    if (handle && mnl_attr_validate(handle, MNL_TYPE_U64) == 0) out->handle = be64toh(mnl_attr_get_u64(handle));
    const struct nlattr *udata = attributes[NFTA_RULE_USERDATA];
    if (udata) ngnft_udata_comment(mnl_attr_get_payload(udata), mnl_attr_get_payload_len(udata),
                                   NFTNL_UDATA_RULE_COMMENT, out->spec.comment);
    return 0;
}

// ---- sets -------------------------------------------------------------------------

typedef struct {
    const struct nftnl_expr *items[4];
    size_t count;
} expr_list;

static int collect_expr(struct nftnl_expr *e, void *data) {
    expr_list *list = data;
    if (list->count < sizeof(list->items) / sizeof(list->items[0])) list->items[list->count] = e;
    list->count++;
    return 0;
}

static int same_u32(const struct nftnl_set *a, const struct nftnl_set *b, uint16_t attr) {
    uint32_t va = nftnl_set_is_set(a, attr) ? nftnl_set_get_u32(a, attr) : 0;
    uint32_t vb = nftnl_set_is_set(b, attr) ? nftnl_set_get_u32(b, attr) : 0;
    return va == vb;
}

// Key, flags, field lengths, no data (not a map), no timeout, the same
// expressions: the set behaves as the one built.
static int same_set(const struct nftnl_set *built, const struct nftnl_set *kernel) {
    if (!same_u32(built, kernel, NFTNL_SET_FLAGS) || !same_u32(built, kernel, NFTNL_SET_KEY_TYPE) ||
        !same_u32(built, kernel, NFTNL_SET_KEY_LEN) || !same_u32(built, kernel, NFTNL_SET_DATA_TYPE) ||
        !same_u32(built, kernel, NFTNL_SET_DATA_LEN) || !same_u32(built, kernel, NFTNL_SET_OBJ_TYPE) ||
        (nftnl_set_is_set(kernel, NFTNL_SET_TIMEOUT) && nftnl_set_get_u64(kernel, NFTNL_SET_TIMEOUT) != 0)) {
        return 0;
    }
    uint32_t length_a = 0, length_b = 0;
    const void *fields_a = nftnl_set_get_data(built, NFTNL_SET_DESC_CONCAT, &length_a);
    const void *fields_b = nftnl_set_is_set(kernel, NFTNL_SET_DESC_CONCAT) ? nftnl_set_get_data(kernel, NFTNL_SET_DESC_CONCAT, &length_b) : NULL;
    if (!fields_a || !fields_b || length_a != length_b || memcmp(fields_a, fields_b, length_a) != 0) return 0;
    expr_list exprs_a = {{0}, 0}, exprs_b = {{0}, 0};
    nftnl_set_expr_foreach(built, collect_expr, &exprs_a);
    nftnl_set_expr_foreach(kernel, collect_expr, &exprs_b);
    if (exprs_a.count != exprs_b.count || exprs_a.count > 4) return 0;
    for (size_t i = 0; i < exprs_a.count; i++) {
        if (!ngnft_same_expr(exprs_a.items[i], exprs_b.items[i])) return 0;
    }
    return 1;
}

static void decode_set(const char *table, const struct nftnl_set *set, ngnft_set_info *out) {
    memset(out, 0, sizeof(*out));
    ngnft_set_spec spec;
    memset(&spec, 0, sizeof(spec));
    ngnft_copy_text(spec.name, sizeof(spec.name), nftnl_set_get_str(set, NFTNL_SET_NAME));
    memcpy(out->spec.name, spec.name, sizeof(spec.name));

    uint32_t fields = 0;
    const uint8_t *lengths = nftnl_set_is_set(set, NFTNL_SET_DESC_CONCAT) ? nftnl_set_get_data(set, NFTNL_SET_DESC_CONCAT, &fields) : NULL;
    if (lengths && fields == 3) spec.source_family = lengths[0] == 4 ? AF_INET : lengths[0] == 16 ? AF_INET6 : 0xff;
    expr_list exprs = {{0}, 0};
    nftnl_set_expr_foreach(set, collect_expr, &exprs);
    spec.counters = exprs.count == 1 && strcmp(nftnl_expr_get_str(exprs.items[0], NFTNL_EXPR_NAME), "counter") == 0;
    uint32_t length = 0;
    const void *udata = nftnl_set_is_set(set, NFTNL_SET_USERDATA) ? nftnl_set_get_data(set, NFTNL_SET_USERDATA, &length) : NULL;
    ngnft_udata_comment(udata, length, NFTNL_UDATA_SET_COMMENT, spec.comment);

    int error = 0;
    struct nftnl_set *rebuilt = ngnft_build_set(table, &spec, &error);
    if (rebuilt && same_set(rebuilt, set)) {
        out->spec = spec;
        out->representable = 1;
    }
    if (rebuilt) nftnl_set_free(rebuilt);
}

static int counter_of(struct nftnl_expr *e, void *data) {
    ngnft_element *out = data;
    if (strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "counter") == 0) {
        out->packets = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
        out->bytes = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
    }
    return 0;
}

static int same_bit(const uint8_t *a, const uint8_t *b, unsigned int bit) {
    uint8_t mask = (uint8_t)(0x80 >> (bit % 8));
    return (a[bit / 8] & mask) == (b[bit / 8] & mask);
}

// The element's key range as a prefix, protocol and ports: 0, or -1 when
// building those again does not give the same range (not NodeGuard's).
static int decode_element_keys(const ngnft_key_layout *layout, struct nftnl_set_elem *e, ngnft_element *out) {
    uint32_t length = 0, end_length = 0;
    const uint8_t *first = nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_KEY) ? nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &length) : NULL;
    const uint8_t *last = nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_KEY_END) ? nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY_END, &end_length) : NULL;
    if (!first || !last || length != layout->length || end_length != layout->length) return -1;
    uint32_t address = layout->address_length;
    unsigned int prefix = 0;
    while (prefix < address * 8 && same_bit(first, last, prefix)) prefix++;
    memcpy(out->source_address, first, address);
    out->source_prefix_length = (uint8_t)prefix;
    out->protocol = first[address];
    out->port_first = (uint16_t)(first[address + 4] << 8 | first[address + 5]);
    out->port_last = (uint16_t)(last[address + 4] << 8 | last[address + 5]);
    uint8_t rebuilt_first[32], rebuilt_last[32];
    if (ngnft_element_keys(layout, out, rebuilt_first, rebuilt_last) < 0 ||
        memcmp(rebuilt_first, first, length) != 0 || memcmp(rebuilt_last, last, length) != 0) {
        return -1;
    }
    return 0;
}

// ---- dumps ------------------------------------------------------------------------

typedef struct {
    ngnft_view *view;
    const char *table;
    int found;
    int failed;   // out of memory
} read_context;

static int table_callback(const struct nlmsghdr *nlh, void *data) {
    read_context *context = data;
    struct nftnl_table *table = nftnl_table_alloc();
    if (!table) { errno = ENOMEM; return MNL_CB_ERROR; }
    if (nftnl_table_nlmsg_parse(nlh, table) == 0) {
        ngnft_table_info *info = &context->view->table;
        info->flags = nftnl_table_get_u32(table, NFTNL_TABLE_FLAGS);
        if (nftnl_table_is_set(table, NFTNL_TABLE_OWNER)) {
            info->has_owner = 1;
            info->owner = nftnl_table_get_u32(table, NFTNL_TABLE_OWNER);
        }
        context->found = 1;
    }
    nftnl_table_free(table);
    return MNL_CB_OK;
}

static int chain_callback(const struct nlmsghdr *nlh, void *data) {
    read_context *context = data;
    ngnft_view *view = context->view;
    struct nftnl_chain *chain = nftnl_chain_alloc();
    if (!chain) { errno = ENOMEM; return MNL_CB_ERROR; }
    if (nftnl_chain_nlmsg_parse(nlh, chain) == 0 &&
        strcmp(nftnl_chain_get_str(chain, NFTNL_CHAIN_TABLE), context->table) == 0) {
        if (view->chain_count == view->chain_capacity) {
            view_chain *grown = ngnft_grow(view->chains, &view->chain_capacity, sizeof(*grown));
            if (!grown) { nftnl_chain_free(chain); errno = ENOMEM; return MNL_CB_ERROR; }
            view->chains = grown;
        }
        view_chain *c = &view->chains[view->chain_count++];
        memset(c, 0, sizeof(*c));
        ngnft_copy_text(c->info.spec.name, sizeof(c->info.spec.name), nftnl_chain_get_str(chain, NFTNL_CHAIN_NAME));
        c->info.spec.hook = NGNFT_HOOK_NONE;
        if (nftnl_chain_is_set(chain, NFTNL_CHAIN_HOOKNUM)) {
            c->info.is_base = 1;
            c->info.spec.hook = (int32_t)nftnl_chain_get_u32(chain, NFTNL_CHAIN_HOOKNUM);
            c->info.spec.priority = nftnl_chain_get_s32(chain, NFTNL_CHAIN_PRIO);
            c->info.policy = nftnl_chain_get_u32(chain, NFTNL_CHAIN_POLICY);
            if (nftnl_chain_is_set(chain, NFTNL_CHAIN_TYPE))
                ngnft_copy_text(c->info.type, sizeof(c->info.type), nftnl_chain_get_str(chain, NFTNL_CHAIN_TYPE));
        }
    }
    nftnl_chain_free(chain);
    return MNL_CB_OK;
}

static view_chain *find_chain(ngnft_view *view, const char *name) {
    for (size_t i = 0; i < view->chain_count; i++) {
        if (strncmp(view->chains[i].info.spec.name, name, NGNFT_NAME_SIZE) == 0) return &view->chains[i];
    }
    return NULL;
}

static int add_rule(view_chain *chain, const ngnft_rule_info *info) {
    if (chain->info.rule_count == chain->capacity) {
        ngnft_rule_info *grown = ngnft_grow(chain->rules, &chain->capacity, sizeof(*grown));
        if (!grown) return -1;
        chain->rules = grown;
    }
    chain->rules[chain->info.rule_count++] = *info;
    return 0;
}

static int rule_callback(const struct nlmsghdr *nlh, void *data) {
    read_context *context = data;
    struct nftnl_rule *rule = nftnl_rule_alloc();
    if (!rule) { errno = ENOMEM; return MNL_CB_ERROR; }
    ngnft_rule_info info;
    const char *table = NULL, *chain = NULL;
    if (nftnl_rule_nlmsg_parse(nlh, rule) == 0) {
        table = nftnl_rule_get_str(rule, NFTNL_RULE_TABLE);
        chain = nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN);
        decode_rule(rule, &info);
    } else if (decode_unparsed_rule(nlh, &table, &chain, &info) < 0) {
        table = NULL;
    }
    // A rule of a chain created after the chains were read waits for the next read.
    view_chain *owner = table && chain && strcmp(table, context->table) == 0 ? find_chain(context->view, chain) : NULL;
    int status = MNL_CB_OK;
    if (owner && add_rule(owner, &info) < 0) { errno = ENOMEM; status = MNL_CB_ERROR; }
    nftnl_rule_free(rule);
    return status;
}

typedef struct {
    read_context *context;
    struct nftnl_set_list *sets;
} set_dump;

static int set_callback(const struct nlmsghdr *nlh, void *data) {
    set_dump *dump = data;
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set) { errno = ENOMEM; return MNL_CB_ERROR; }
    if (nftnl_set_nlmsg_parse(nlh, set) == 0 &&
        strcmp(nftnl_set_get_str(set, NFTNL_SET_TABLE), dump->context->table) == 0) {
        nftnl_set_list_add_tail(set, dump->sets);
        return MNL_CB_OK;
    }
    nftnl_set_free(set);
    return MNL_CB_OK;
}

static int element_callback(const struct nlmsghdr *nlh, void *data) {
    struct nftnl_set *set = data;
    // Adds the message's elements to `set`.
    if (nftnl_set_elems_nlmsg_parse(nlh, set) < 0) { errno = EPROTO; return MNL_CB_ERROR; }
    return MNL_CB_OK;
}

// One set of the view: decoded, with its elements.
static int read_set(ngnft_socket *socket, read_context *context, struct nftnl_set *set, int *error) {
    ngnft_view *view = context->view;
    if (view->set_count == view->set_capacity) {
        view_set *grown = ngnft_grow(view->sets, &view->set_capacity, sizeof(*grown));
        if (!grown) { *error = ENOMEM; return -1; }
        view->sets = grown;
    }
    view_set *out = &view->sets[view->set_count++];
    memset(out, 0, sizeof(*out));
    decode_set(context->table, set, &out->info);

    char buffer[1024];
    uint32_t seq = ngnft_next_seq(socket);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buffer, NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, seq);
    nftnl_set_elems_nlmsg_build_payload(nlh, set);
    if (ngnft_talk(socket, nlh, seq, element_callback, set, error) < 0) return -1;

    ngnft_key_layout layout;
    int decodable = out->info.representable && ngnft_key_layout_of(out->info.spec.source_family, &layout) == 0;
    struct nftnl_set_elems_iter *iter = nftnl_set_elems_iter_create(set);
    if (!iter) { *error = ENOMEM; return -1; }
    // _next returns the current element and moves on (from the first).
    for (struct nftnl_set_elem *e = nftnl_set_elems_iter_next(iter); e; e = nftnl_set_elems_iter_next(iter)) {
        if (out->info.element_count == out->capacity) {
            ngnft_element *grown = ngnft_grow(out->elements, &out->capacity, sizeof(*grown));
            if (!grown) { nftnl_set_elems_iter_destroy(iter); *error = ENOMEM; return -1; }
            out->elements = grown;
        }
        ngnft_element *element = &out->elements[out->info.element_count++];
        memset(element, 0, sizeof(*element));
        uint32_t length = 0;
        const void *udata = nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_USERDATA) ? nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &length) : NULL;
        ngnft_udata_comment(udata, length, NFTNL_UDATA_SET_ELEM_COMMENT, element->comment);
        nftnl_set_elem_expr_foreach(e, counter_of, element);
        // An element NodeGuard could not have added makes the set foreign:
        // it can only be put right by making the set again.
        if (decodable && decode_element_keys(&layout, e, element) < 0) {
            out->info.representable = 0;
            decodable = 0;
        }
    }
    nftnl_set_elems_iter_destroy(iter);
    if (!out->info.representable) {
        // Only the name is known of a foreign set, and of its elements only comments and counters.
        ngnft_set_spec name_only;
        memset(&name_only, 0, sizeof(name_only));
        memcpy(name_only.name, out->info.spec.name, sizeof(name_only.name));
        out->info.spec = name_only;
        for (size_t i = 0; i < out->info.element_count; i++) {
            ngnft_element *element = &out->elements[i];
            memset(element->source_address, 0, sizeof(element->source_address));
            element->source_prefix_length = element->protocol = 0;
            element->port_first = element->port_last = 0;
        }
    }
    return 0;
}

static int read_sets(ngnft_socket *socket, read_context *context, int *error) {
    set_dump dump = {context, nftnl_set_list_alloc()};
    if (!dump.sets) { *error = ENOMEM; return -1; }
    char buffer[1024];
    uint32_t seq = ngnft_next_seq(socket);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buffer, NFT_MSG_GETSET, NFPROTO_INET, NLM_F_DUMP, seq);
    struct nftnl_set *filter = nftnl_set_alloc();
    if (!filter) { nftnl_set_list_free(dump.sets); *error = ENOMEM; return -1; }
    nftnl_set_set_str(filter, NFTNL_SET_TABLE, context->table);
    nftnl_set_nlmsg_build_payload(nlh, filter);
    nftnl_set_free(filter);
    int status = ngnft_talk(socket, nlh, seq, set_callback, &dump, error);
    struct nftnl_set_list_iter *iter = status == 0 ? nftnl_set_list_iter_create(dump.sets) : NULL;
    if (status == 0 && !iter) { *error = ENOMEM; status = -1; }
    for (struct nftnl_set *set = iter ? nftnl_set_list_iter_next(iter) : NULL; set && status == 0;
         set = nftnl_set_list_iter_next(iter)) {
        status = read_set(socket, context, set, error);
    }
    if (iter) nftnl_set_list_iter_destroy(iter);
    nftnl_set_list_free(dump.sets);
    return status;
}

// One dump of `type` for the table (or one get, for the table itself).
static int read_objects(ngnft_socket *socket, uint16_t type, read_context *context, mnl_cb_t callback, int *error) {
    char buffer[1024];
    uint32_t seq = ngnft_next_seq(socket);
    uint16_t flags = type == NFT_MSG_GETTABLE ? NLM_F_ACK : NLM_F_DUMP;
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buffer, type, NFPROTO_INET, flags, seq);
    if (type == NFT_MSG_GETTABLE) {
        struct nftnl_table *t = nftnl_table_alloc();
        if (!t) { *error = ENOMEM; return -1; }
        nftnl_table_set_str(t, NFTNL_TABLE_NAME, context->table);
        nftnl_table_nlmsg_build_payload(nlh, t);
        nftnl_table_free(t);
    } else if (type == NFT_MSG_GETRULE) {
        struct nftnl_rule *r = nftnl_rule_alloc();
        if (!r) { *error = ENOMEM; return -1; }
        nftnl_rule_set_str(r, NFTNL_RULE_TABLE, context->table);
        nftnl_rule_nlmsg_build_payload(nlh, r);
        nftnl_rule_free(r);
    }
    return ngnft_talk(socket, nlh, seq, callback, context, error);
}

static int read_once(ngnft_socket *socket, const char *table, ngnft_view *view, int *error) {
    read_context context = {view, table, 0, 0};
    if (ngnft_generation(socket, &view->table.generation, error) < 0) return -1;
    if (read_objects(socket, NFT_MSG_GETTABLE, &context, table_callback, error) < 0) return -1;
    if (!context.found) { *error = ENOENT; return -1; }
    view->table.owned_by_socket = view->table.has_owner && view->table.owner == socket->portid;
    if (read_objects(socket, NFT_MSG_GETCHAIN, &context, chain_callback, error) < 0 ||
        read_objects(socket, NFT_MSG_GETRULE, &context, rule_callback, error) < 0 ||
        read_sets(socket, &context, error) < 0) {
        // Something found a moment ago is gone (a set deleted between its
        // listing and its elements): the ruleset changed under the read.
        if (*error == ENOENT) *error = EAGAIN;
        return -1;
    }
    return 0;
}

ngnft_view *ngnft_read_table(ngnft_socket *socket, const char *table, int *error) {
    ngnft_view *view = calloc(1, sizeof(*view));
    if (!view) { *error = ENOMEM; return NULL; }
    for (int attempt = 1;; attempt++) {
        if (read_once(socket, table, view, error) < 0) {
            if (*error == EAGAIN && attempt < NGNFT_READ_ATTEMPTS) {
                clear_view(view);
                continue;
            }
            ngnft_view_free(view);
            return NULL;
        }
        uint32_t after = 0;
        if (ngnft_generation(socket, &after, error) < 0) {
            ngnft_view_free(view);
            return NULL;
        }
        if (after == view->table.generation || attempt == NGNFT_READ_ATTEMPTS) return view;
        clear_view(view);
    }
}

void ngnft_view_table(const ngnft_view *view, ngnft_table_info *info) { *info = view->table; }

size_t ngnft_view_chain_count(const ngnft_view *view) { return view->chain_count; }

void ngnft_view_chain(const ngnft_view *view, size_t chain, ngnft_chain_info *info) {
    if (chain < view->chain_count) *info = view->chains[chain].info;
    else memset(info, 0, sizeof(*info));
}

void ngnft_view_rule(const ngnft_view *view, size_t chain, size_t rule, ngnft_rule_info *info) {
    if (chain < view->chain_count && rule < view->chains[chain].info.rule_count) *info = view->chains[chain].rules[rule];
    else memset(info, 0, sizeof(*info));
}

size_t ngnft_view_set_count(const ngnft_view *view) { return view->set_count; }

void ngnft_view_set(const ngnft_view *view, size_t set, ngnft_set_info *info) {
    if (set < view->set_count) *info = view->sets[set].info;
    else memset(info, 0, sizeof(*info));
}

void ngnft_view_element(const ngnft_view *view, size_t set, size_t element, ngnft_element *out) {
    if (set < view->set_count && element < view->sets[set].info.element_count) *out = view->sets[set].elements[element];
    else memset(out, 0, sizeof(*out));
}
