// A small C shim over libnftnl + libmnl for NodeGuard's nftables backend.
//
// Swift never sees a netlink message or an nftnl object: it describes the
// table's sets, elements, chains and rules with the structs below, and this
// shim builds the messages (to commit) and decodes what the kernel holds
// back into the same structs (to compare). A rule read back is
// `representable` only when re-encoding the decoded struct gives exactly the
// kernel's rule (expression by expression, attribute by attribute, and the
// user data: libnftnl 1.2.4 does not export nftnl_rule_cmp): the rule is one
// NodeGuard could have written, unedited. Every function is prefixed
// `ngnft_`; a failing call returns -1 (or NULL) and stores an errno value in
// *error.
//
// The vocabulary is NodeGuard's and nothing more:
//   one table of family inet; sets keyed by [source address .] l4proto . port
//   (interval sets, so a key is a range; optionally a counter per element);
//   base chains on prerouting/output; rules made of, in this order,
//     fib daddr type local         (match_local_destination)
//     ct direction reply           (match_reply)
//     meta nfproto ipv4|ipv6       (nfproto)
//     [ip|ip6 saddr .] meta l4proto . th dport @set   (lookup_set)
//     a verdict: accept, drop, return, or jump CHAIN
//   and a comment (nft's rule comment, in the rule's user data).
//
// Not thread-safe: callers serialise every call on a socket (NodeGuard makes
// them from its reconcile thread).
#ifndef C_NODEGUARD_NFT_H
#define C_NODEGUARD_NFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NGNFT_NAME_SIZE 64        // tables, chains and sets (the kernel's NFT_NAME_MAXLEN 256 is more than NodeGuard uses)
#define NGNFT_COMMENT_SIZE 128    // nft's NFTNL_UDATA_COMMENT_MAXLEN

/// Table flags (linux/netfilter/nf_tables.h; persist is 0x4 from kernel 6.9,
/// defined here as older headers lack it).
#define NGNFT_TABLE_F_DORMANT 0x1
#define NGNFT_TABLE_F_OWNER 0x2
#define NGNFT_TABLE_F_PERSIST 0x4

/// Hooks a base chain can take; NGNFT_HOOK_NONE for a regular chain.
#define NGNFT_HOOK_NONE (-1)
#define NGNFT_HOOK_PREROUTING 0   // NF_INET_PRE_ROUTING
#define NGNFT_HOOK_OUTPUT 3       // NF_INET_LOCAL_OUT

/// Verdicts of a rule.
#define NGNFT_VERDICT_NONE 0
#define NGNFT_VERDICT_ACCEPT 1
#define NGNFT_VERDICT_DROP 2
#define NGNFT_VERDICT_RETURN 3
#define NGNFT_VERDICT_JUMP 4

/// The netlink socket NodeGuard keeps for every transaction: the table's
/// owner, when it carries NGNFT_TABLE_F_OWNER, is this socket.
typedef struct ngnft_socket ngnft_socket;

ngnft_socket *ngnft_open(int *error);
void ngnft_close(ngnft_socket *socket);
/// The ruleset's generation id now (NFT_MSG_GETGEN).
int ngnft_generation(ngnft_socket *socket, uint32_t *generation, int *error);

/// A set: its key is `[source address .] l4proto . destination port`, with
/// the source present when source_family is 2 (AF_INET) or 10 (AF_INET6).
typedef struct ngnft_set_spec {
    char name[NGNFT_NAME_SIZE];
    uint8_t source_family;       // 0: no source in the key
    uint8_t counters;            // 1: a counter on every element
    char comment[NGNFT_COMMENT_SIZE];
} ngnft_set_spec;

/// One element of such a set: a source prefix (if the set has one), a
/// protocol and a port range (first == last for one port).
typedef struct ngnft_element {
    uint8_t source_address[16];  // network byte order; IPv4 in the first 4 bytes
    uint8_t source_prefix_length;
    uint8_t protocol;            // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP
    uint16_t port_first;         // host byte order
    uint16_t port_last;
    char comment[NGNFT_COMMENT_SIZE];
    /// Read back only (sets with counters).
    uint64_t packets;
    uint64_t bytes;
} ngnft_element;

typedef struct ngnft_chain_spec {
    char name[NGNFT_NAME_SIZE];
    int32_t hook;                // NGNFT_HOOK_*; NONE: a regular chain
    int32_t priority;            // base chains only
} ngnft_chain_spec;

typedef struct ngnft_rule_spec {
    uint8_t match_local_destination;   // fib daddr type local
    uint8_t match_reply;               // ct direction reply
    uint8_t nfproto;                   // 0: any; 2 (NFPROTO_IPV4) or 10 (NFPROTO_IPV6)
    uint8_t lookup_source_family;      // the looked-up set's source_family (the key's layout);
                                       // when set, nfproto must be the same family (EINVAL otherwise:
                                       // the address is read from that family's header)
    char lookup_set[NGNFT_NAME_SIZE];  // empty: no lookup
    uint8_t verdict;                   // NGNFT_VERDICT_*
    char jump_chain[NGNFT_NAME_SIZE];  // for NGNFT_VERDICT_JUMP
    char comment[NGNFT_COMMENT_SIZE];
} ngnft_rule_spec;

// ---- a transaction: one netlink batch, all or nothing ----------------------

typedef struct ngnft_batch ngnft_batch;
// An add that fails with EINVAL (not NodeGuard's vocabulary) leaves the batch
// as it was; after any other failure, free the batch.

ngnft_batch *ngnft_batch_begin(ngnft_socket *socket, int *error);
void ngnft_batch_free(ngnft_batch *batch);

/// Creates the inet table or, if it exists, sets its flags (adopting an
/// orphaned persistent table by setting OWNER again).
int ngnft_batch_add_table(ngnft_batch *batch, const char *table, uint32_t flags, int *error);
int ngnft_batch_delete_table(ngnft_batch *batch, const char *table, int *error);
int ngnft_batch_add_set(ngnft_batch *batch, const char *table, const ngnft_set_spec *set, int *error);
int ngnft_batch_delete_set(ngnft_batch *batch, const char *table, const char *set, int *error);
int ngnft_batch_add_elements(ngnft_batch *batch, const char *table, const ngnft_set_spec *set,
                             const ngnft_element *elements, size_t count, int *error);
int ngnft_batch_delete_elements(ngnft_batch *batch, const char *table, const ngnft_set_spec *set,
                                const ngnft_element *elements, size_t count, int *error);
int ngnft_batch_add_chain(ngnft_batch *batch, const char *table, const ngnft_chain_spec *chain, int *error);
int ngnft_batch_flush_chain(ngnft_batch *batch, const char *table, const char *chain, int *error);
int ngnft_batch_delete_chain(ngnft_batch *batch, const char *table, const char *chain, int *error);
/// Appends the rule at the end of `chain`.
int ngnft_batch_add_rule(ngnft_batch *batch, const char *table, const char *chain,
                         const ngnft_rule_spec *rule, int *error);
/// Sends the batch and waits for every answer. On failure *failed_index is
/// the 0-based index of the first refused operation in the order they were
/// added (or -1 when the failure is not one operation's), and nothing of the
/// batch took effect.
int ngnft_batch_commit(ngnft_batch *batch, long *failed_index, int *error);

// ---- reading the table back ------------------------------------------------

/// What the kernel holds of one table, read in one go (tables, chains, rules,
/// sets and their elements). ENOENT when the table does not exist; EAGAIN
/// when the ruleset kept changing through three reads (read again later).
typedef struct ngnft_view ngnft_view;

typedef struct ngnft_table_info {
    uint32_t flags;
    uint8_t has_owner;        // the kernel reported an owner port id
    uint32_t owner;           // that netlink port id
    uint8_t owned_by_socket;  // the owner is the socket the view was read through
    uint32_t generation;      // the generation the read saw
} ngnft_table_info;

typedef struct ngnft_chain_info {
    ngnft_chain_spec spec;
    uint8_t is_base;
    uint32_t policy;          // NF_ACCEPT / NF_DROP for base chains
    char type[16];            // "filter", "nat", "route" for base chains
    size_t rule_count;
} ngnft_chain_info;

typedef struct ngnft_rule_info {
    ngnft_rule_spec spec;     // comment always filled; the rest only when representable
    uint8_t representable;
    uint64_t handle;
} ngnft_rule_info;

typedef struct ngnft_set_info {
    ngnft_set_spec spec;      // name always filled; the rest only when representable
    uint8_t representable;    // key layout, flags and expressions are NodeGuard's, and every
                              // element is one ngnft_batch_add_elements could have added
                              // (of a foreign set, elements hold only comments and counters)
    size_t element_count;
} ngnft_set_info;

ngnft_view *ngnft_read_table(ngnft_socket *socket, const char *table, int *error);
void ngnft_view_free(ngnft_view *view);
void ngnft_view_table(const ngnft_view *view, ngnft_table_info *info);
size_t ngnft_view_chain_count(const ngnft_view *view);
void ngnft_view_chain(const ngnft_view *view, size_t chain, ngnft_chain_info *info);
void ngnft_view_rule(const ngnft_view *view, size_t chain, size_t rule, ngnft_rule_info *info);
size_t ngnft_view_set_count(const ngnft_view *view);
void ngnft_view_set(const ngnft_view *view, size_t set, ngnft_set_info *info);
void ngnft_view_element(const ngnft_view *view, size_t set, size_t element, ngnft_element *out);

// ---- base chains of every table (foreign ones included) --------------------

/// A base chain on a hook of families inet/ip/ip6, as `explain` needs them:
/// which table, its hook and priority, and whether any of its rules, or of
/// the chains it reaches by jump, goto or a verdict map's elements, DNATs (a
/// nat expression of type DNAT, a redirect, or iptables-nft's xtables target
/// DNAT or REDIRECT). Names longer than NGNFT_NAME_SIZE - 1 are cut.
typedef struct ngnft_hook_chain {
    uint8_t family;           // NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6
    char table[NGNFT_NAME_SIZE];
    char chain[NGNFT_NAME_SIZE];
    int32_t hook;
    int32_t priority;
    char type[16];
    uint8_t rewrites_destination;
} ngnft_hook_chain;

/// Every base chain on prerouting and output, of every table and family.
/// *count receives their number; free the result with free().
ngnft_hook_chain *ngnft_list_hook_chains(ngnft_socket *socket, size_t *count, int *error);

// ---- events ----------------------------------------------------------------

/// A socket subscribed to NFNLGRP_NFTABLES: every commit by anyone sends the
/// new generation. Non-blocking, close-on-exec; poll its fd for POLLIN.
typedef struct ngnft_monitor ngnft_monitor;

ngnft_monitor *ngnft_monitor_open(int *error);
void ngnft_monitor_close(ngnft_monitor *monitor);
int ngnft_monitor_fd(const ngnft_monitor *monitor);
/// Reads every pending message. *generation: the last NEWGEN seen (unchanged
/// if none); *concerns_table: 1 if a message named `table` (family inet) or
/// the socket overran (ENOBUFS: anything may have happened). Returns the
/// number of messages read, 0 when none was pending.
int ngnft_monitor_drain(ngnft_monitor *monitor, const char *table, uint32_t *generation,
                        uint8_t *concerns_table, int *error);

#ifdef __cplusplus
}
#endif

#endif
