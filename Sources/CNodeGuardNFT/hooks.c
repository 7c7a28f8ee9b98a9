// Every table's base chains on prerouting and output, and whether they
// rewrite a packet's destination. See include/CNodeGuardNFT.h.
//
// A DNAT seldom sits in the base chain itself: kube-proxy's iptables-nft
// rules jump from PREROUTING through KUBE-SERVICES to a KUBE-SEP chain, its
// nftables mode goes through verdict maps. So a base chain rewrites when a
// chain it reaches does: by jump or goto, or through a verdict map's
// elements (each map is read for them).
#include "CNodeGuardNFT.h"
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/set.h>

// The kernel refuses jumps deeper than 16: that many passes reach every chain.
#define NGNFT_JUMP_DEPTH 16

typedef struct {
    uint8_t family;
    char *table;
    char *name;
    int32_t hook;       // NGNFT_HOOK_NONE when not a base chain
    int32_t priority;
    char type[16];
    uint8_t rewrites;     // a rule of it DNATs or redirects
    uint8_t reached;
} chain_node;

typedef struct {
    size_t from, to;
} chain_edge;

// A verdict map a chain's rule looks up: its elements' chains are edges.
typedef struct {
    size_t from;
    char *set;
} map_lookup;

typedef struct {
    chain_node *nodes;
    size_t count, capacity;
    chain_edge *edges;
    size_t edge_count, edge_capacity;
    map_lookup *maps;
    size_t map_count, map_capacity;
    // The table whose rules are being read: its nodes are [first, first + size).
    size_t first, size;
} chain_graph;

static void forget_maps(chain_graph *graph) {
    for (size_t i = 0; i < graph->map_count; i++) free(graph->maps[i].set);
    graph->map_count = 0;
}

static void free_graph(chain_graph *graph) {
    for (size_t i = 0; i < graph->count; i++) {
        free(graph->nodes[i].table);
        free(graph->nodes[i].name);
    }
    forget_maps(graph);
    free(graph->nodes);
    free(graph->edges);
    free(graph->maps);
}

static int chain_callback(const struct nlmsghdr *nlh, void *data) {
    chain_graph *graph = data;
    struct nftnl_chain *chain = nftnl_chain_alloc();
    if (!chain) { errno = ENOMEM; return MNL_CB_ERROR; }
    int status = MNL_CB_OK;
    uint32_t family = 0;
    if (nftnl_chain_nlmsg_parse(nlh, chain) == 0) family = nftnl_chain_get_u32(chain, NFTNL_CHAIN_FAMILY);
    if (family == NFPROTO_INET || family == NFPROTO_IPV4 || family == NFPROTO_IPV6) {
        chain_node *grown = graph->count == graph->capacity ? ngnft_grow(graph->nodes, &graph->capacity, sizeof(*grown)) : graph->nodes;
        if (grown) {
            graph->nodes = grown;
            chain_node *node = &graph->nodes[graph->count];
            memset(node, 0, sizeof(*node));
            node->family = (uint8_t)family;
            node->table = strdup(nftnl_chain_get_str(chain, NFTNL_CHAIN_TABLE));
            node->name = strdup(nftnl_chain_get_str(chain, NFTNL_CHAIN_NAME));
            node->hook = NGNFT_HOOK_NONE;
            if (nftnl_chain_is_set(chain, NFTNL_CHAIN_HOOKNUM)) {
                node->hook = (int32_t)nftnl_chain_get_u32(chain, NFTNL_CHAIN_HOOKNUM);
                node->priority = nftnl_chain_get_s32(chain, NFTNL_CHAIN_PRIO);
                if (nftnl_chain_is_set(chain, NFTNL_CHAIN_TYPE))
                    ngnft_copy_text(node->type, sizeof(node->type), nftnl_chain_get_str(chain, NFTNL_CHAIN_TYPE));
            }
            graph->count++;
            if (!node->table || !node->name) { errno = ENOMEM; status = MNL_CB_ERROR; }
        } else {
            errno = ENOMEM;
            status = MNL_CB_ERROR;
        }
    }
    nftnl_chain_free(chain);
    return status;
}

// Tables together, each table's chains by name.
static int compare_nodes(const void *a, const void *b) {
    const chain_node *x = a, *y = b;
    if (x->family != y->family) return x->family < y->family ? -1 : 1;
    int table = strcmp(x->table, y->table);
    return table ? table : strcmp(x->name, y->name);
}

static int compare_name(const void *key, const void *node) {
    return strcmp(key, ((const chain_node *)node)->name);
}

static chain_node *find_in_table(chain_graph *graph, const char *name) {
    return bsearch(name, graph->nodes + graph->first, graph->size, sizeof(chain_node), compare_name);
}

static int is_rewrite(const struct nftnl_expr *e, const char *name) {
    if (strcmp(name, "nat") == 0) return nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_TYPE) == NFT_NAT_DNAT;
    if (strcmp(name, "redir") == 0) return 1;
    // A filter chain can rewrite without NAT: `tcp dport set ...`, `ip daddr set ...` (a payload
    // write of the destination port, or of the IPv4 (16..19) or IPv6 (24..39) destination address).
    if (strcmp(name, "payload") == 0 && nftnl_expr_is_set(e, NFTNL_EXPR_PAYLOAD_SREG)) {
        uint32_t base = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_BASE);
        uint32_t first = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET);
        uint32_t end = first + nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_LEN);
        if (base == NFT_PAYLOAD_TRANSPORT_HEADER) return first < 4 && end > 2;
        if (base == NFT_PAYLOAD_NETWORK_HEADER) return (first < 20 && end > 16) || (first < 40 && end > 24);
    }
    // iptables-nft keeps -j DNAT and -j REDIRECT as xtables targets.
    if (strcmp(name, "target") == 0) {
        const char *target = nftnl_expr_get_str(e, NFTNL_EXPR_TG_NAME);
        return target && (strcmp(target, "DNAT") == 0 || strcmp(target, "REDIRECT") == 0);
    }
    return 0;
}

static int add_edge(chain_graph *graph, const chain_node *from, const chain_node *to) {
    if (graph->edge_count == graph->edge_capacity) {
        chain_edge *grown = ngnft_grow(graph->edges, &graph->edge_capacity, sizeof(*grown));
        if (!grown) return -1;
        graph->edges = grown;
    }
    graph->edges[graph->edge_count++] = (chain_edge){(size_t)(from - graph->nodes), (size_t)(to - graph->nodes)};
    return 0;
}

static int add_map(chain_graph *graph, const chain_node *from, const char *set) {
    if (graph->map_count == graph->map_capacity) {
        map_lookup *grown = ngnft_grow(graph->maps, &graph->map_capacity, sizeof(*grown));
        if (!grown) return -1;
        graph->maps = grown;
    }
    char *name = strdup(set);
    if (!name) return -1;
    graph->maps[graph->map_count++] = (map_lookup){(size_t)(from - graph->nodes), name};
    return 0;
}

static int rule_callback(const struct nlmsghdr *nlh, void *data) {
    chain_graph *graph = data;
    struct nftnl_rule *rule = nftnl_rule_alloc();
    if (!rule) { errno = ENOMEM; return MNL_CB_ERROR; }
    chain_node *node = NULL;
    // A rule libnftnl cannot parse is passed over: nothing is known of it.
    if (nftnl_rule_nlmsg_parse(nlh, rule) == 0 && nftnl_rule_is_set(rule, NFTNL_RULE_CHAIN))
        node = find_in_table(graph, nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN));
    struct nftnl_expr_iter *iter = node ? nftnl_expr_iter_create(rule) : NULL;
    int status = MNL_CB_OK;
    for (struct nftnl_expr *e = iter ? nftnl_expr_iter_next(iter) : NULL; e; e = nftnl_expr_iter_next(iter)) {
        const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
        int failed = 0;
        if (is_rewrite(e, name)) node->rewrites = 1;
        if (strcmp(name, "lookup") == 0 && nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_DREG) &&
            nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_DREG) == NFT_REG_VERDICT &&
            nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_SET)) {
            failed = add_map(graph, node, nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET)) < 0;
        }
        if (strcmp(name, "immediate") == 0 && nftnl_expr_is_set(e, NFTNL_EXPR_IMM_CHAIN)) {
            chain_node *target = find_in_table(graph, nftnl_expr_get_str(e, NFTNL_EXPR_IMM_CHAIN));
            failed = target && add_edge(graph, node, target) < 0;
        }
        if (failed) { errno = ENOMEM; status = MNL_CB_ERROR; break; }
    }
    if (iter) nftnl_expr_iter_destroy(iter);
    nftnl_rule_free(rule);
    return status;
}

// Reads the rules of the table of nodes [first, first + size).
static int read_table_rules(ngnft_socket *socket, chain_graph *graph, int *error) {
    const chain_node *any = &graph->nodes[graph->first];
    struct nftnl_rule *filter = nftnl_rule_alloc();
    if (!filter) { *error = ENOMEM; return -1; }
    char buffer[1024];
    uint32_t seq = ngnft_next_seq(socket);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buffer, NFT_MSG_GETRULE, any->family, NLM_F_DUMP, seq);
    nftnl_rule_set_str(filter, NFTNL_RULE_TABLE, any->table);
    nftnl_rule_nlmsg_build_payload(nlh, filter);
    nftnl_rule_free(filter);
    return ngnft_talk(socket, nlh, seq, rule_callback, graph, error);
}

static int element_callback(const struct nlmsghdr *nlh, void *data) {
    if (nftnl_set_elems_nlmsg_parse(nlh, data) < 0) { errno = EPROTO; return MNL_CB_ERROR; }
    return MNL_CB_OK;
}

// The chains a verdict map sends packets to become edges from its user.
static int read_map(ngnft_socket *socket, chain_graph *graph, const map_lookup *map, int *error) {
    const chain_node *from = &graph->nodes[map->from];
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set) { *error = ENOMEM; return -1; }
    nftnl_set_set_str(set, NFTNL_SET_TABLE, from->table);
    nftnl_set_set_str(set, NFTNL_SET_NAME, map->set);
    char buffer[1024];
    uint32_t seq = ngnft_next_seq(socket);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buffer, NFT_MSG_GETSETELEM, from->family, NLM_F_DUMP, seq);
    nftnl_set_elems_nlmsg_build_payload(nlh, set);
    int status = ngnft_talk(socket, nlh, seq, element_callback, set, error);
    if (status < 0 && *error == ENOENT) status = 0;   // gone since the rule was read
    struct nftnl_set_elems_iter *iter = status == 0 ? nftnl_set_elems_iter_create(set) : NULL;
    // _next returns the current element and moves on (from the first).
    for (struct nftnl_set_elem *e = iter ? nftnl_set_elems_iter_next(iter) : NULL; e; e = nftnl_set_elems_iter_next(iter)) {
        if (!nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN)) continue;
        const chain_node *to = find_in_table(graph, nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN));
        if (to && add_edge(graph, from, to) < 0) { *error = ENOMEM; status = -1; break; }
    }
    if (iter) nftnl_set_elems_iter_destroy(iter);
    nftnl_set_free(set);
    return status;
}

static int is_hook_chain(const chain_node *node) {
    return node->hook == NGNFT_HOOK_PREROUTING || node->hook == NGNFT_HOOK_OUTPUT;
}

// Whether `start`, or a chain it reaches, rewrites the destination.
static int reaches_rewrite(chain_graph *graph, size_t start) {
    for (size_t i = graph->first; i < graph->first + graph->size; i++) graph->nodes[i].reached = 0;
    graph->nodes[start].reached = 1;
    for (int pass = 0; pass < NGNFT_JUMP_DEPTH; pass++) {
        int more = 0;
        for (size_t i = 0; i < graph->edge_count; i++) {
            chain_edge edge = graph->edges[i];
            if (graph->nodes[edge.from].reached && !graph->nodes[edge.to].reached) {
                graph->nodes[edge.to].reached = 1;
                more = 1;
            }
        }
        if (!more) break;
    }
    for (size_t i = graph->first; i < graph->first + graph->size; i++) {
        const chain_node *node = &graph->nodes[i];
        if (node->reached && node->rewrites) return 1;
    }
    return 0;
}

// Appends the table's hook chains to `out` (room for all of graph->count).
static int list_table(ngnft_socket *socket, chain_graph *graph, ngnft_hook_chain *out, size_t *found, int *error) {
    int has_hook_chain = 0;
    for (size_t i = graph->first; i < graph->first + graph->size; i++) has_hook_chain |= is_hook_chain(&graph->nodes[i]);
    if (!has_hook_chain) return 0;
    graph->edge_count = 0;
    forget_maps(graph);
    if (read_table_rules(socket, graph, error) < 0) return -1;
    for (size_t i = 0; i < graph->map_count; i++) {
        if (read_map(socket, graph, &graph->maps[i], error) < 0) return -1;
    }
    for (size_t i = graph->first; i < graph->first + graph->size; i++) {
        const chain_node *node = &graph->nodes[i];
        if (!is_hook_chain(node)) continue;
        ngnft_hook_chain *chain = &out[(*found)++];
        memset(chain, 0, sizeof(*chain));
        chain->family = node->family;
        ngnft_copy_text(chain->table, sizeof(chain->table), node->table);
        ngnft_copy_text(chain->chain, sizeof(chain->chain), node->name);
        chain->hook = node->hook;
        chain->priority = node->priority;
        memcpy(chain->type, node->type, sizeof(chain->type));
        chain->rewrites_destination = (uint8_t)reaches_rewrite(graph, i);
    }
    return 0;
}

ngnft_hook_chain *ngnft_list_hook_chains(ngnft_socket *socket, size_t *count, int *error) {
    *count = 0;
    chain_graph graph;
    memset(&graph, 0, sizeof(graph));
    char buffer[256];
    uint32_t seq = ngnft_next_seq(socket);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buffer, NFT_MSG_GETCHAIN, NFPROTO_UNSPEC, NLM_F_DUMP, seq);
    if (ngnft_talk(socket, nlh, seq, chain_callback, &graph, error) < 0) {
        free_graph(&graph);
        return NULL;
    }
    qsort(graph.nodes, graph.count, sizeof(chain_node), compare_nodes);
    ngnft_hook_chain *out = calloc(graph.count ? graph.count : 1, sizeof(*out));
    if (!out) { free_graph(&graph); *error = ENOMEM; return NULL; }
    size_t found = 0;
    for (size_t first = 0; first < graph.count;) {
        size_t end = first + 1;
        while (end < graph.count && graph.nodes[end].family == graph.nodes[first].family &&
               strcmp(graph.nodes[end].table, graph.nodes[first].table) == 0) {
            end++;
        }
        graph.first = first;
        graph.size = end - first;
        if (list_table(socket, &graph, out, &found, error) < 0) {
            free(out);
            free_graph(&graph);
            return NULL;
        }
        first = end;
    }
    free_graph(&graph);
    *count = found;
    return out;
}
