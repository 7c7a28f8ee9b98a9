// A small C shim over libiptc (libip4tc + libip6tc) for NodeGuard.
//
// Swift never sees `ipt_entry` or `ip6t_entry`: it describes a rule with
// `ngiptc_rule_spec`, and this shim builds the entry bytes (to insert) and
// decodes them back (to compare). Every function is prefixed `ngiptc_`.
//
// libiptc has global state and its handles are not thread-safe: callers must
// serialise every call (NodeGuard makes them from one reconcile thread).
#ifndef C_NODEGUARD_IPTC_H
#define C_NODEGUARD_IPTC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NGIPTC_COMMENT_SIZE 256
#define NGIPTC_TARGET_SIZE 32

/// An open table of one address family (AF_INET or AF_INET6): a snapshot
/// taken by `iptc_init` that is edited in memory and committed at once.
typedef struct ngiptc_table ngiptc_table;

/// One rule as NodeGuard writes it. Matches appear in the entry in this
/// order: addrtype, conntrack, tcp/udp/sctp, comment.
typedef struct ngiptc_rule_spec {
    uint8_t source_address[16];     // network byte order; IPv4 uses the first 4 bytes
    uint8_t source_prefix_length;   // 0 means any source
    uint8_t protocol;               // IPPROTO_TCP/UDP/SCTP, 0 means any
    uint8_t match_local_destination;    // -m addrtype --dst-type LOCAL
    uint8_t match_direction;            // -m conntrack --ctdir: NGIPTC_CTDIR_ORIGINAL or _REPLY, 0 for none
    uint8_t has_destination_ports;      // -m tcp|udp|sctp --dport first[:last]
    uint8_t tcp_syn_only;               // with tcp ports: --syn (SYN set; ACK, RST, FIN clear)
    uint16_t destination_port_first;
    uint16_t destination_port_last;
    char comment[NGIPTC_COMMENT_SIZE];  // empty means no comment match
    char target[NGIPTC_TARGET_SIZE];    // "DROP", "RETURN", "ACCEPT" or a chain name
} ngiptc_rule_spec;

#define NGIPTC_CTDIR_ORIGINAL 1
#define NGIPTC_CTDIR_REPLY 2

/// A rule read from the kernel.
typedef struct ngiptc_rule_info {
    /// Decoded fields. `target` and `comment` are always filled; the rest is
    /// meaningful only when `representable` is 1.
    ngiptc_rule_spec spec;
    /// 1 when re-encoding `spec` gives back exactly the entry in the kernel,
    /// i.e. the rule is one NodeGuard could have written, unedited.
    uint8_t representable;
    uint64_t packets;
    uint64_t bytes;
    /// For a DNAT target (any revision): where it sends the packet. Ports
    /// are in host byte order; the address is IPv4 in the first 4 bytes.
    uint8_t nat_has_address;
    uint8_t nat_has_ports;
    uint8_t nat_address[16];
    uint16_t nat_port_first;
    uint16_t nat_port_last;
    /// The protocol match is inverted (`! -p tcp`), read even from foreign rules.
    uint8_t protocol_inverted;
    /// A CT target with --notrack, or the old NOTRACK target: the packet is
    /// exempted from connection tracking.
    uint8_t untracks;
    /// The rule's bytes, counters zeroed and jumps by name, hashed: the same
    /// rule has the same identity wherever it stands and whenever it is read.
    /// Filled for the rules of built-in chains only (0 elsewhere).
    uint64_t identity;
} ngiptc_rule_info;

/// Opens `table` for `family`. On failure returns NULL and sets `*error` to errno.
ngiptc_table *ngiptc_open(int family, const char *table, int *error);
/// Frees the snapshot without committing.
void ngiptc_close(ngiptc_table *table);
/// Commits every change made to the snapshot in one replace. Returns 0, or
/// -1 with `*error` set. The table stays open either way; close it after.
int ngiptc_commit(ngiptc_table *table, int *error);
/// The library's text for an errno from the last failing call.
const char *ngiptc_strerror(int family, int error);

/// Chains: iterate all names (user and built-in) in the snapshot.
const char *ngiptc_first_chain(ngiptc_table *table);
const char *ngiptc_next_chain(ngiptc_table *table);
int ngiptc_create_chain(ngiptc_table *table, const char *chain, int *error);
int ngiptc_flush_chain(ngiptc_table *table, const char *chain, int *error);
int ngiptc_delete_chain(ngiptc_table *table, const char *chain, int *error);

/// The number of rules in `chain`, or -1 with `*error` set.
int ngiptc_rule_count(ngiptc_table *table, const char *chain, int *error);
/// Reads up to `capacity` rules of `chain` into `rules`; returns how many, or -1.
int ngiptc_read_rules(ngiptc_table *table, const char *chain,
                      ngiptc_rule_info *rules, int capacity, int *error);
/// Inserts the rule built from `spec` at 0-based `index` of `chain`.
int ngiptc_insert_rule(ngiptc_table *table, const char *chain, unsigned int index,
                       const ngiptc_rule_spec *spec, int *error);
/// Deletes the rule at 0-based `index` of `chain`.
int ngiptc_delete_rule(ngiptc_table *table, const char *chain, unsigned int index, int *error);

/// What IPT_SO_GET_INFO says of a legacy table. It copies no rule, so it costs
/// the same for any table size, and any change that adds, removes or resizes
/// a rule changes it. A change that keeps every size (a rule replaced by one
/// of the same size, two rules swapped) needs the digest.
typedef struct ngiptc_table_info {
    uint32_t valid_hooks;
    uint32_t hook_entry[5];
    uint32_t underflow[5];
    uint32_t num_entries;
    uint32_t size;
} ngiptc_table_info;

/// Reads tables straight from the kernel (getsockopt), without libiptc, to
/// notice changes cheaply. Owns a raw socket and a reusable buffer; one
/// reader per thread. Like libiptc, asking for a table that does not exist
/// creates it: check /proc/net/ip*_tables_names first.
typedef struct ngiptc_reader ngiptc_reader;

/// Opens a reader for AF_INET or AF_INET6. NULL with `*error` set on failure.
ngiptc_reader *ngiptc_reader_open(int family, int *error);
void ngiptc_reader_close(ngiptc_reader *reader);
/// Fills `info` for `table`. Returns 0, or -1 with `*error` set.
int ngiptc_reader_info(ngiptc_reader *reader, const char *table, ngiptc_table_info *info, int *error);
/// Fills `info` and a 64-bit digest of every entry with its counters zeroed,
/// so traffic does not change it but any edit to a rule does. Returns 0, or
/// -1 with `*error` set.
int ngiptc_reader_digest(ngiptc_reader *reader, const char *table, ngiptc_table_info *info,
                         uint64_t *digest, int *error);

/// A read-only snapshot of a table taken straight from the kernel: one buffer
/// of the table's size and an index, where libiptc also copies every rule
/// (about three times the table's size in all). For reads that change
/// nothing: NodeGuard's periodic full check, status, and other agents' nat
/// tables. Edits still go through libiptc (ngiptc_open).
typedef struct ngiptc_blob ngiptc_blob;

/// Reads `table` through `reader` (which keeps no copy). NULL with `*error`
/// set on failure (EINVAL if the kernel's blob does not parse).
ngiptc_blob *ngiptc_reader_snapshot(ngiptc_reader *reader, const char *table, int *error);
void ngiptc_snapshot_free(ngiptc_blob *snapshot);
/// Chains by index: built-in chains in hook order, then user chains in the
/// kernel's order.
unsigned int ngiptc_snapshot_chain_count(const ngiptc_blob *snapshot);
const char *ngiptc_snapshot_chain_name(const ngiptc_blob *snapshot, unsigned int chain);
/// The number of rules in a chain (its policy or RETURN tail is not one), or -1.
int ngiptc_snapshot_rule_count(const ngiptc_blob *snapshot, unsigned int chain);
/// Decodes up to `capacity` rules of a chain, from its 0-based rule `start`,
/// as ngiptc_read_rules does; returns how many, or -1 for a chain out of range.
int ngiptc_snapshot_read_rules_from(const ngiptc_blob *snapshot, unsigned int chain, int start,
                                    ngiptc_rule_info *rules, int capacity);

/// What GET_INFO said of the snapshot's entries (read together with them).
void ngiptc_snapshot_info(const ngiptc_blob *snapshot, ngiptc_table_info *info);
/// A digest of the part of the table that is NodeGuard's: in each hook chain
/// named by `hooks` (bit 1 << NF_INET_* per hook), the rules up to and including
/// the first jump to a chain named `prefix` or `prefix-...`; and every rule of
/// those chains. Counters are zeroed and jumps count by their target's name, so
/// traffic and other programs' rules elsewhere in the table leave it alone and
/// its cost does not grow with them; any edit of NodeGuard's rules, or a rule
/// put above its jump, changes it.
uint64_t ngiptc_snapshot_owned_digest(const ngiptc_blob *snapshot, const char *prefix, uint32_t hooks);

#ifdef __cplusplus
}
#endif

#endif
