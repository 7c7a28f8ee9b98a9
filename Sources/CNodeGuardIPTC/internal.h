// Shared between shim.c (libiptc) and reader.c (raw reads); not part of the
// module's public header.
#ifndef C_NODEGUARD_IPTC_INTERNAL_H
#define C_NODEGUARD_IPTC_INTERNAL_H

#include "CNodeGuardIPTC.h"

/// Decodes one ipt_entry or ip6t_entry (by `family`) whose target resolves
/// to `target` ("DROP", a chain name, "DNAT", ...) into `out`; its
/// `identity` only when `with_identity` (a copy and a hash per rule that only
/// the rules of built-in chains, where other programs displace NodeGuard's
/// jump, need; a 100,000-rule nat read does not).
void ngiptc_decode_entry(int family, const void *entry, const char *target, int with_identity, ngiptc_rule_info *out);

/// The multiply-xorshift step every digest here is built from.
uint64_t ngiptc_mix(uint64_t hash, uint64_t word);

/// Mixes one entry into `hash`: counters and comefrom (the kernel's
/// reachability bookkeeping) zeroed, and a jump by its target chain's name
/// (`target`) rather than its byte offset, which moves whenever a rule is
/// added earlier in the table. Equal for the same rule wherever it stands.
uint64_t ngiptc_entry_identity(int family, const void *entry, const char *target, uint64_t hash);

#endif
