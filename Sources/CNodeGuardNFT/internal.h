// Shared between batch.c (building), read.c (reading back) and monitor.c;
// not part of the module's public header.
#ifndef C_NODEGUARD_NFT_INTERNAL_H
#define C_NODEGUARD_NFT_INTERNAL_H

#include "CNodeGuardNFT.h"

#include <libmnl/libmnl.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>

// Room for one receive: the kernel sizes dump messages up to 32 KiB.
#define NGNFT_RECEIVE_SIZE 65536

struct ngnft_socket {
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    unsigned char *buffer;   // NGNFT_RECEIVE_SIZE bytes, for every request's answers
};

/// A socket on NETLINK_NETFILTER, close-on-exec (and non-blocking when
/// `nonblocking`), bound to the multicast `groups`, with its receive buffer.
/// NULL with *error set on failure; ngnft_close frees it.
ngnft_socket *ngnft_open_socket(int nonblocking, unsigned int groups, int *error);

/// Sends the request in `request` (built by the caller with seq `seq`) and
/// runs `callback` on every answer until the kernel's ack or NLMSG_DONE.
/// Returns 0, or -1 with *error set (the kernel's errno for a refusal).
int ngnft_talk(ngnft_socket *socket, const struct nlmsghdr *request, uint32_t seq,
               mnl_cb_t callback, void *data, int *error);

/// The next sequence number of `socket`.
uint32_t ngnft_next_seq(ngnft_socket *socket);

// ---- the vocabulary's encoding, shared by the batch and the read-back ------

/// The key of a set whose key starts with a source of `source_family` (0,
/// AF_INET or AF_INET6): each field padded to 4 bytes.
typedef struct ngnft_key_layout {
    uint32_t address_length;  // 0, 4 or 16
    uint32_t length;          // the whole key, padded fields
    uint32_t type;            // nft's datatype concatenation (TYPE_BITS 6)
    uint8_t field_lengths[3]; // NFTNL_SET_DESC_CONCAT: unpadded
    uint32_t field_count;
} ngnft_key_layout;

/// 0, or -1 when `source_family` is not 0, AF_INET or AF_INET6.
int ngnft_key_layout_of(uint8_t source_family, ngnft_key_layout *layout);

/// A set as ngnft_batch_add_set sends it, or NULL (EINVAL, ENOMEM in *error).
struct nftnl_set *ngnft_build_set(const char *table, const ngnft_set_spec *spec, int *error);

/// The expressions and user data of a rule as ngnft_batch_add_rule sends it
/// (table and chain left unset), or NULL (EINVAL, ENOMEM in *error).
struct nftnl_rule *ngnft_build_rule(const ngnft_rule_spec *spec, int *error);

/// 1 when the two rules have the same expressions, attribute by attribute
/// (one left unset equals one of zero bytes: the kernel dumps some defaults),
/// and the same user data.
int ngnft_same_rule(const struct nftnl_rule *a, const struct nftnl_rule *b);

/// 1 when the two expressions have the same name and attributes (as above).
int ngnft_same_expr(const struct nftnl_expr *a, const struct nftnl_expr *b);

/// The first and last key of `element` in a set of `layout` (out of
/// `layout->length` bytes each). 0, or -1 for an element the set cannot hold.
int ngnft_element_keys(const ngnft_key_layout *layout, const ngnft_element *element,
                       uint8_t *first, uint8_t *last);

/// nft's user data for a comment: one TLV of `type`, the text with its NUL.
/// NULL when out of memory.
struct nftnl_udata_buf *ngnft_comment_udata(const char *comment, uint8_t type);

/// `items` (an array of `*capacity` items of `size` bytes) grown to room
/// for more, `*capacity` updated; NULL when out of memory (`items` stays).
void *ngnft_grow(void *items, size_t *capacity, size_t size);

/// Copies a NUL-terminated `text` into `out` of `size` bytes, cut to fit.
void ngnft_copy_text(char *out, size_t size, const char *text);

/// The comment (`type` NFTNL_UDATA_*_COMMENT) in nft's user data TLVs, into
/// `out` (NGNFT_COMMENT_SIZE bytes); empty when there is none.
void ngnft_udata_comment(const void *udata, uint32_t length, uint8_t type, char *out);

#endif
