// The ruleset's events (NFNLGRP_NFTABLES). See include/CNodeGuardNFT.h.
#include "CNodeGuardNFT.h"
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

// The table's name is the first attribute of every message about a table's
// objects: NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
// NFTA_SET_ELEM_LIST_TABLE.
_Static_assert(NFTA_TABLE_NAME == 1 && NFTA_CHAIN_TABLE == 1 && NFTA_RULE_TABLE == 1 &&
               NFTA_SET_TABLE == 1 && NFTA_SET_ELEM_LIST_TABLE == 1,
               "every object message names its table in attribute 1");

struct ngnft_monitor {
    ngnft_socket *socket;   // its buffer takes the events
};

ngnft_monitor *ngnft_monitor_open(int *error) {
    ngnft_monitor *monitor = calloc(1, sizeof(*monitor));
    if (!monitor) { *error = ENOMEM; return NULL; }
    monitor->socket = ngnft_open_socket(1, 1u << (NFNLGRP_NFTABLES - 1), error);
    if (!monitor->socket) {
        free(monitor);
        return NULL;
    }
    return monitor;
}

void ngnft_monitor_close(ngnft_monitor *monitor) {
    if (!monitor) return;
    ngnft_close(monitor->socket);
    free(monitor);
}

int ngnft_monitor_fd(const ngnft_monitor *monitor) { return mnl_socket_get_fd(monitor->socket->nl); }

static int names_object(uint16_t message) {
    switch (message) {
    case NFT_MSG_NEWTABLE: case NFT_MSG_DELTABLE:
    case NFT_MSG_NEWCHAIN: case NFT_MSG_DELCHAIN:
    case NFT_MSG_NEWRULE: case NFT_MSG_DELRULE:
    case NFT_MSG_NEWSET: case NFT_MSG_DELSET:
    case NFT_MSG_NEWSETELEM: case NFT_MSG_DELSETELEM:
        return 1;
    default:
        return 0;
    }
}

// One event: a new generation, or a change that names `table` (family inet).
static void read_event(const struct nlmsghdr *nlh, const char *table, uint32_t *generation, uint8_t *concerns_table) {
    if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES) return;
    if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct nfgenmsg))) return;
    uint16_t message = NFNL_MSG_TYPE(nlh->nlmsg_type);
    const struct nfgenmsg *header = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *attr;
    if (message == NFT_MSG_NEWGEN) {
        mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg)) {
            if (mnl_attr_get_type(attr) == NFTA_GEN_ID && mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
                *generation = ntohl(mnl_attr_get_u32(attr));
        }
    } else if (names_object(message) && header->nfgen_family == NFPROTO_INET) {
        mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg)) {
            if (mnl_attr_get_type(attr) == 1 && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0 &&
                strcmp(mnl_attr_get_str(attr), table) == 0) {
                *concerns_table = 1;
            }
        }
    }
}

int ngnft_monitor_drain(ngnft_monitor *monitor, const char *table, uint32_t *generation,
                        uint8_t *concerns_table, int *error) {
    *concerns_table = 0;
    int messages = 0;
    for (;;) {
        ssize_t received = mnl_socket_recvfrom(monitor->socket->nl, monitor->socket->buffer, NGNFT_RECEIVE_SIZE);
        if (received < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return messages;
            if (errno == EINTR) continue;
            // Events were lost: anything may have changed.
            if (errno == ENOBUFS) { *concerns_table = 1; continue; }
            *error = errno;
            return -1;
        }
        int length = (int)received;
        for (const struct nlmsghdr *nlh = (const void *)monitor->socket->buffer; mnl_nlmsg_ok(nlh, length);
             nlh = mnl_nlmsg_next(nlh, &length)) {
            messages++;
            read_event(nlh, table, generation, concerns_table);
        }
    }
}
