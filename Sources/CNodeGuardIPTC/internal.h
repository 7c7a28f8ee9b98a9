// Shared between shim.c (libiptc) and reader.c (raw reads); not part of the
// module's public header.
#ifndef C_NODEGUARD_IPTC_INTERNAL_H
#define C_NODEGUARD_IPTC_INTERNAL_H

#include "CNodeGuardIPTC.h"

/// Decodes one ipt_entry or ip6t_entry (by `family`) whose target resolves
/// to `target` ("DROP", a chain name, "DNAT", ...) into `out`.
void ngiptc_decode_entry(int family, const void *entry, const char *target, ngiptc_rule_info *out);

#endif
