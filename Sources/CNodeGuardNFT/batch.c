// nftables shim for NodeGuard: the socket and the batch. See
// include/CNodeGuardNFT.h; the vocabulary's encoding is in encode.c, reading
// back in read.c and hooks.c, events in monitor.c.
#include "CNodeGuardNFT.h"
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/gen.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

_Static_assert(NGNFT_TABLE_F_DORMANT == NFT_TABLE_F_DORMANT, "dormant is the kernel's flag");
_Static_assert(NGNFT_TABLE_F_OWNER == NFT_TABLE_F_OWNER, "owner is the kernel's flag");
_Static_assert(NGNFT_HOOK_PREROUTING == NF_INET_PRE_ROUTING, "prerouting is the kernel's hook number");
_Static_assert(NGNFT_HOOK_OUTPUT == NF_INET_LOCAL_OUT, "output is the kernel's hook number");

// A batch is sent as pages; a message may run past its page's end by the
// overrun. The largest message is one of NGNFT_ELEMENTS_PER_MESSAGE elements,
// each at most NGNFT_ELEMENT_MAX_SIZE bytes: list entry 4, key and key end
// 2 * (4 + 4 + 24), user data 4 + 2 + 128, padding.
#define NGNFT_BATCH_PAGE_SIZE (128 * 1024)
#define NGNFT_BATCH_OVERRUN (64 * 1024)
#define NGNFT_ELEMENTS_PER_MESSAGE 128
#define NGNFT_ELEMENT_MAX_SIZE 256
_Static_assert(NGNFT_ELEMENTS_PER_MESSAGE * NGNFT_ELEMENT_MAX_SIZE + 1024 <= NGNFT_BATCH_OVERRUN,
               "one message of elements fits in a page's overrun");
// An ack is a small skb; the socket's buffer must hold one per message.
#define NGNFT_ACK_ROOM 1024

// ---- sockets --------------------------------------------------------------

static struct mnl_socket *open_netlink(int nonblocking, unsigned int groups, int *error) {
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0));
    if (!nl) { *error = errno ? errno : ENOMEM; return NULL; }
    if (mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0) {
        *error = errno ? errno : EINVAL;
        mnl_socket_close(nl);
        return NULL;
    }
    return nl;
}

ngnft_socket *ngnft_open_socket(int nonblocking, unsigned int groups, int *error) {
    ngnft_socket *socket = calloc(1, sizeof(*socket));
    if (socket) socket->buffer = malloc(NGNFT_RECEIVE_SIZE);
    if (!socket || !socket->buffer) {
        free(socket);
        *error = ENOMEM;
        return NULL;
    }
    socket->nl = open_netlink(nonblocking, groups, error);
    if (!socket->nl) {
        free(socket->buffer);
        free(socket);
        return NULL;
    }
    socket->portid = mnl_socket_get_portid(socket->nl);
    socket->seq = (uint32_t)rand() | 1;
    return socket;
}

ngnft_socket *ngnft_open(int *error) {
    ngnft_socket *socket = ngnft_open_socket(0, 0, error);
    if (!socket) return NULL;
    // Error acks carry only the header of the refused message, not all of it.
    int one = 1;
    (void)mnl_socket_setsockopt(socket->nl, NETLINK_CAP_ACK, &one, sizeof(one));
    return socket;
}

void ngnft_close(ngnft_socket *socket) {
    if (!socket) return;
    mnl_socket_close(socket->nl);
    free(socket->buffer);
    free(socket);
}

uint32_t ngnft_next_seq(ngnft_socket *socket) {
    socket->seq++;
    if (socket->seq == 0) socket->seq = 1;   // 0 would switch libmnl's sequence check off
    return socket->seq;
}

// Whatever an earlier, interrupted exchange left unread.
static void drain_stale(ngnft_socket *socket) {
    int fd = mnl_socket_get_fd(socket->nl);
    while (recv(fd, socket->buffer, NGNFT_RECEIVE_SIZE, MSG_DONTWAIT) > 0 || errno == EINTR) {}
}

int ngnft_talk(ngnft_socket *socket, const struct nlmsghdr *request, uint32_t seq,
               mnl_cb_t callback, void *data, int *error) {
    drain_stale(socket);
    if (mnl_socket_sendto(socket->nl, request, request->nlmsg_len) < 0) {
        *error = errno;
        return -1;
    }
    for (;;) {
        ssize_t received = mnl_socket_recvfrom(socket->nl, socket->buffer, NGNFT_RECEIVE_SIZE);
        if (received < 0) {
            if (errno == EINTR) continue;
            *error = errno;
            return -1;
        }
        errno = 0;
        int status = mnl_cb_run(socket->buffer, (size_t)received, seq, socket->portid, callback, data);
        if (status < 0) { *error = errno ? errno : EPROTO; return -1; }
        if (status == MNL_CB_STOP) return 0;
    }
}

static int generation_callback(const struct nlmsghdr *nlh, void *data) {
    uint32_t *generation = data;
    struct nftnl_gen *gen = nftnl_gen_alloc();
    if (!gen) { errno = ENOMEM; return MNL_CB_ERROR; }
    if (nftnl_gen_nlmsg_parse(nlh, gen) == 0 && nftnl_gen_is_set(gen, NFTNL_GEN_ID)) {
        generation[0] = nftnl_gen_get_u32(gen, NFTNL_GEN_ID);
        generation[1] = 1;
    }
    nftnl_gen_free(gen);
    return MNL_CB_OK;
}

int ngnft_generation(ngnft_socket *socket, uint32_t *generation, int *error) {
    char buffer[256];
    uint32_t seq = ngnft_next_seq(socket);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buffer, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, seq);
    uint32_t answer[2] = {0, 0};   // the id, and whether one came
    if (ngnft_talk(socket, nlh, seq, generation_callback, answer, error) < 0) return -1;
    if (!answer[1]) { *error = EPROTO; return -1; }
    *generation = answer[0];
    return 0;
}

// ---- the batch ----------------------------------------------------------------

struct ngnft_batch {
    ngnft_socket *socket;
    struct nftnl_batch *pages;
    uint32_t begin_seq;       // the messages of operations follow it, one seq each
    long *operation_of;       // per message: its operation's index
    size_t messages;
    size_t capacity;
    long operations;
};

static int note_message(ngnft_batch *batch, uint32_t seq) {
    if (batch->messages == batch->capacity) {
        long *grown = ngnft_grow(batch->operation_of, &batch->capacity, sizeof(*grown));
        if (!grown) return -1;
        batch->operation_of = grown;
    }
    // Consecutive: every seq after BEGIN is this batch's.
    if (seq != batch->begin_seq + 1 + batch->messages) return -1;
    batch->operation_of[batch->messages++] = batch->operations;
    return 0;
}

ngnft_batch *ngnft_batch_begin(ngnft_socket *socket, int *error) {
    ngnft_batch *batch = calloc(1, sizeof(*batch));
    if (batch) batch->pages = nftnl_batch_alloc(NGNFT_BATCH_PAGE_SIZE, NGNFT_BATCH_OVERRUN);
    if (!batch || !batch->pages) {
        free(batch);
        *error = ENOMEM;
        return NULL;
    }
    batch->socket = socket;
    batch->begin_seq = ngnft_next_seq(socket);
    nftnl_batch_begin(nftnl_batch_buffer(batch->pages), batch->begin_seq);
    if (nftnl_batch_update(batch->pages) < 0) {
        ngnft_batch_free(batch);
        *error = ENOMEM;
        return NULL;
    }
    return batch;
}

void ngnft_batch_free(ngnft_batch *batch) {
    if (!batch) return;
    nftnl_batch_free(batch->pages);
    free(batch->operation_of);
    free(batch);
}

// The next message's header in the batch, with its own seq and an ack asked for.
static struct nlmsghdr *next_message(ngnft_batch *batch, uint16_t type, uint16_t flags) {
    uint32_t seq = ngnft_next_seq(batch->socket);
    if (note_message(batch, seq) < 0) return NULL;
    return nftnl_nlmsg_build_hdr(nftnl_batch_buffer(batch->pages), type, NFPROTO_INET, flags | NLM_F_ACK, seq);
}

static int message_done(ngnft_batch *batch, int *error) {
    if (nftnl_batch_update(batch->pages) < 0) { *error = ENOMEM; return -1; }
    return 0;
}

// Ends the message just built and, with it, the operation.
static int operation_done(ngnft_batch *batch, int *error) {
    if (message_done(batch, error) < 0) return -1;
    batch->operations++;
    return 0;
}

// The message just built (NULL when it could not be) ends its operation.
static int finish(ngnft_batch *batch, const struct nlmsghdr *nlh, int *error) {
    if (!nlh) { *error = ENOMEM; return -1; }
    return operation_done(batch, error);
}

// Each sends its object (freed here; NULL when its allocation failed) as
// one operation.

static int send_table(ngnft_batch *batch, uint16_t type, uint16_t flags, struct nftnl_table *t, int *error) {
    struct nlmsghdr *nlh = t ? next_message(batch, type, flags) : NULL;
    if (nlh) nftnl_table_nlmsg_build_payload(nlh, t);
    if (t) nftnl_table_free(t);
    return finish(batch, nlh, error);
}

static int send_set(ngnft_batch *batch, uint16_t type, uint16_t flags, struct nftnl_set *s, int *error) {
    struct nlmsghdr *nlh = s ? next_message(batch, type, flags) : NULL;
    // The kernel wants a new set's id within the transaction; lookups here
    // name the set instead, so any unique number does: the seq.
    if (nlh && type == NFT_MSG_NEWSET) nftnl_set_set_u32(s, NFTNL_SET_ID, nlh->nlmsg_seq);
    if (nlh) nftnl_set_nlmsg_build_payload(nlh, s);
    if (s) nftnl_set_free(s);
    return finish(batch, nlh, error);
}

static int send_chain(ngnft_batch *batch, uint16_t type, uint16_t flags, struct nftnl_chain *c, int *error) {
    struct nlmsghdr *nlh = c ? next_message(batch, type, flags) : NULL;
    if (nlh) nftnl_chain_nlmsg_build_payload(nlh, c);
    if (c) nftnl_chain_free(c);
    return finish(batch, nlh, error);
}

static int send_rule(ngnft_batch *batch, uint16_t type, uint16_t flags, struct nftnl_rule *r, int *error) {
    struct nlmsghdr *nlh = r ? next_message(batch, type, flags) : NULL;
    if (nlh) nftnl_rule_nlmsg_build_payload(nlh, r);
    if (r) nftnl_rule_free(r);
    return finish(batch, nlh, error);
}

static struct nftnl_table *table_named(const char *table) {
    struct nftnl_table *t = nftnl_table_alloc();
    if (!t) return NULL;
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, table);
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    return t;
}

static struct nftnl_set *set_named(const char *table, const char *set) {
    struct nftnl_set *s = nftnl_set_alloc();
    if (!s) return NULL;
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
    nftnl_set_set_str(s, NFTNL_SET_NAME, set);
    return s;
}

static struct nftnl_chain *chain_named(const char *table, const char *chain) {
    struct nftnl_chain *c = nftnl_chain_alloc();
    if (!c) return NULL;
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, chain);
    nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    return c;
}

int ngnft_batch_add_table(ngnft_batch *batch, const char *table, uint32_t flags, int *error) {
    struct nftnl_table *t = table_named(table);
    if (t) nftnl_table_set_u32(t, NFTNL_TABLE_FLAGS, flags);
    // No NLM_F_EXCL: an existing table takes the flags (an orphan is adopted).
    return send_table(batch, NFT_MSG_NEWTABLE, NLM_F_CREATE, t, error);
}

int ngnft_batch_delete_table(ngnft_batch *batch, const char *table, int *error) {
    return send_table(batch, NFT_MSG_DELTABLE, 0, table_named(table), error);
}

int ngnft_batch_add_set(ngnft_batch *batch, const char *table, const ngnft_set_spec *set, int *error) {
    struct nftnl_set *s = ngnft_build_set(table, set, error);
    if (!s) return -1;
    return send_set(batch, NFT_MSG_NEWSET, NLM_F_CREATE, s, error);
}

int ngnft_batch_delete_set(ngnft_batch *batch, const char *table, const char *set, int *error) {
    return send_set(batch, NFT_MSG_DELSET, 0, set_named(table, set), error);
}

// One element with its key range (and, when adding, its comment).
static struct nftnl_set_elem *build_element(const ngnft_key_layout *layout, const ngnft_element *element,
                                            int with_comment) {
    uint8_t first[32], last[32];
    if (ngnft_element_keys(layout, element, first, last) < 0) return NULL;
    struct nftnl_set_elem *e = nftnl_set_elem_alloc();
    if (!e) return NULL;
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, first, layout->length);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY_END, last, layout->length);
    if (with_comment && element->comment[0] != '\0') {
        struct nftnl_udata_buf *udata = ngnft_comment_udata(element->comment, NFTNL_UDATA_SET_ELEM_COMMENT);
        if (!udata) { nftnl_set_elem_free(e); return NULL; }
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(udata), nftnl_udata_buf_len(udata));
        nftnl_udata_buf_free(udata);
    }
    return e;
}

// Elements go in messages of at most NGNFT_ELEMENTS_PER_MESSAGE; all of them
// are one operation.
static int batch_elements(ngnft_batch *batch, uint16_t type, uint16_t flags, const char *table,
                          const ngnft_set_spec *set, const ngnft_element *elements, size_t count, int *error) {
    ngnft_key_layout layout;
    if (ngnft_key_layout_of(set->source_family, &layout) < 0) { *error = EINVAL; return -1; }
    for (size_t i = 0; i < count; i++) {
        uint8_t first[32], last[32];
        if (ngnft_element_keys(&layout, &elements[i], first, last) < 0) { *error = EINVAL; return -1; }
    }
    for (size_t start = 0; start < count; start += NGNFT_ELEMENTS_PER_MESSAGE) {
        struct nftnl_set *s = set_named(table, set->name);
        if (!s) { *error = ENOMEM; return -1; }
        size_t end = count - start > NGNFT_ELEMENTS_PER_MESSAGE ? start + NGNFT_ELEMENTS_PER_MESSAGE : count;
        for (size_t i = start; i < end; i++) {
            struct nftnl_set_elem *e = build_element(&layout, &elements[i], type == NFT_MSG_NEWSETELEM);
            if (!e) { nftnl_set_free(s); *error = ENOMEM; return -1; }
            nftnl_set_elem_add(s, e);
        }
        struct nlmsghdr *nlh = next_message(batch, type, flags);
        if (nlh) nftnl_set_elems_nlmsg_build_payload(nlh, s);
        nftnl_set_free(s);
        if (!nlh) { *error = ENOMEM; return -1; }
        if (message_done(batch, error) < 0) return -1;
    }
    batch->operations++;
    return 0;
}

int ngnft_batch_add_elements(ngnft_batch *batch, const char *table, const ngnft_set_spec *set,
                             const ngnft_element *elements, size_t count, int *error) {
    return batch_elements(batch, NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, set, elements, count, error);
}

int ngnft_batch_delete_elements(ngnft_batch *batch, const char *table, const ngnft_set_spec *set,
                                const ngnft_element *elements, size_t count, int *error) {
    return batch_elements(batch, NFT_MSG_DELSETELEM, 0, table, set, elements, count, error);
}

int ngnft_batch_add_chain(ngnft_batch *batch, const char *table, const ngnft_chain_spec *chain, int *error) {
    if (chain->name[0] == '\0' || (chain->hook != NGNFT_HOOK_NONE && chain->hook != NGNFT_HOOK_PREROUTING &&
                                   chain->hook != NGNFT_HOOK_OUTPUT)) {
        *error = EINVAL;
        return -1;
    }
    char name[NGNFT_NAME_SIZE];
    ngnft_copy_text(name, sizeof(name), chain->name);
    struct nftnl_chain *c = chain_named(table, name);
    if (c && chain->hook != NGNFT_HOOK_NONE) {
        nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, (uint32_t)chain->hook);
        nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, chain->priority);
        nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
        nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
    }
    return send_chain(batch, NFT_MSG_NEWCHAIN, NLM_F_CREATE, c, error);
}

int ngnft_batch_flush_chain(ngnft_batch *batch, const char *table, const char *chain, int *error) {
    // DELRULE naming only the chain flushes it.
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (r) {
        nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
        nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    }
    return send_rule(batch, NFT_MSG_DELRULE, 0, r, error);
}

int ngnft_batch_delete_chain(ngnft_batch *batch, const char *table, const char *chain, int *error) {
    return send_chain(batch, NFT_MSG_DELCHAIN, 0, chain_named(table, chain), error);
}

int ngnft_batch_add_rule(ngnft_batch *batch, const char *table, const char *chain,
                         const ngnft_rule_spec *rule, int *error) {
    struct nftnl_rule *r = ngnft_build_rule(rule, error);
    if (!r) return -1;
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    return send_rule(batch, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, r, error);
}

// What the acks said: how many came, and the earliest refusal.
typedef struct {
    size_t answered;
    uint32_t failed_seq;
    int failed_error;
} batch_acks;

static int ack_callback(const struct nlmsghdr *nlh, void *data) {
    batch_acks *acks = data;
    if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr))) { errno = EBADMSG; return MNL_CB_ERROR; }
    const struct nlmsgerr *ack = mnl_nlmsg_get_payload(nlh);
    acks->answered++;
    if (ack->error != 0 && (acks->failed_error == 0 || nlh->nlmsg_seq < acks->failed_seq)) {
        acks->failed_seq = nlh->nlmsg_seq;
        acks->failed_error = -ack->error;
    }
    return MNL_CB_OK;
}

// Room for a large batch going out and for one ack per message coming back;
// the defaults (about 200 KiB each) hold what NodeGuard usually sends.
static void size_buffers(int fd, size_t send, size_t messages) {
    if (send > NGNFT_BATCH_PAGE_SIZE) {
        int size = (int)(send + 4096);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
            (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
    if (messages * NGNFT_ACK_ROOM > NGNFT_BATCH_PAGE_SIZE) {
        int size = (int)(messages * NGNFT_ACK_ROOM);
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
            (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
}

int ngnft_batch_commit(ngnft_batch *batch, long *failed_index, int *error) {
    *failed_index = -1;
    ngnft_socket *socket = batch->socket;
    nftnl_batch_end(nftnl_batch_buffer(batch->pages), ngnft_next_seq(socket));
    if (nftnl_batch_update(batch->pages) < 0) { *error = ENOMEM; return -1; }
    if (batch->messages == 0) return 0;   // nothing to do: the kernel would not answer an empty batch

    int count = nftnl_batch_iovec_len(batch->pages);
    struct iovec *iov = calloc((size_t)count, sizeof(*iov));
    if (!iov) { *error = ENOMEM; return -1; }
    nftnl_batch_iovec(batch->pages, iov, (uint32_t)count);
    size_t total = 0;
    for (int i = 0; i < count; i++) total += iov[i].iov_len;

    int fd = mnl_socket_get_fd(socket->nl);
    size_buffers(fd, total, batch->messages);
    drain_stale(socket);
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    struct msghdr message = {.msg_name = &kernel, .msg_namelen = sizeof(kernel), .msg_iov = iov,
                             .msg_iovlen = (size_t)count};
    ssize_t sent = sendmsg(fd, &message, 0);
    int send_error = errno;
    free(iov);
    if (sent < 0) { *error = send_error; return -1; }

    // The kernel runs the batch inside sendmsg: its acks are queued by now.
    // One that refused the batch as a whole may leave others unanswered.
    mnl_cb_t control[NLMSG_MIN_TYPE] = {[NLMSG_ERROR] = ack_callback};   // libmnl 1.0.4 takes it non-const
    batch_acks acks = {0, 0, 0};
    while (acks.answered < batch->messages) {
        ssize_t received = recv(fd, socket->buffer, NGNFT_RECEIVE_SIZE, MSG_DONTWAIT);
        if (received < 0 && errno == EINTR) continue;
        if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (acks.failed_error) break;
            struct pollfd ready = {.fd = fd, .events = POLLIN};
            if (poll(&ready, 1, 5000) == 0) { *error = ETIMEDOUT; return -1; }
            continue;
        }
        if (received < 0) { *error = errno; return -1; }   // ENOBUFS: acks lost, the outcome unknown
        errno = 0;
        if (mnl_cb_run2(socket->buffer, (size_t)received, 0, socket->portid, NULL, &acks, control,
                        NLMSG_MIN_TYPE) < 0 && !acks.failed_error) {
            *error = errno ? errno : EPROTO;
            return -1;
        }
    }
    if (!acks.failed_error) return 0;
    uint32_t index = acks.failed_seq - batch->begin_seq - 1;   // past the messages for BEGIN and END
    if (index < batch->messages) *failed_index = batch->operation_of[index];
    *error = acks.failed_error;
    return -1;
}
