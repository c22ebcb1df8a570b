/*
 * jsonrpc.h - classifying one JSON-RPC 2.0 message from an HTTP body (pure:
 * no I/O), for /mcp.  What to answer to each kind is mcp.c's business.
 */
#ifndef ASYA_GW_JSONRPC_H
#define ASYA_GW_JSONRPC_H

#include <jansson.h>
#include <stddef.h>

#define RPC_PARSE_ERROR      (-32700)
#define RPC_INVALID_REQUEST  (-32600)
#define RPC_METHOD_NOT_FOUND (-32601)
#define RPC_INVALID_PARAMS   (-32602)
#define RPC_INTERNAL_ERROR   (-32603)
#define RPC_SESSION_UNKNOWN  (-32001)

enum rpc_kind {
    RPC_REQUEST,      /* method and id: answer it */
    RPC_NOTIFICATION, /* method, no id: 202 */
    RPC_RESPONSE,     /* result or error, no method: a client's answer, 202 */
    RPC_BAD,          /* not acceptable: answer error_code / error_text */
};

struct rpc_message {
    enum rpc_kind kind;
    json_t *root;         /* the parsed body (owned: rpc_message_clear), NULL on a parse error */
    const json_t *id;     /* borrowed from root; NULL when absent or unusable */
    const char *method;   /* borrowed from root */
    const json_t *params; /* borrowed; an object or NULL */
    int error_code;       /* RPC_BAD: the JSON-RPC error code */
    char error_text[160]; /* RPC_BAD: its message */
};

/* Classify body (len bytes).  Always fills *m; call rpc_message_clear after. */
void rpc_message_parse(const char *body, size_t len, struct rpc_message *m);
void rpc_message_clear(struct rpc_message *m);

/* {"jsonrpc":"2.0","id":id|null,"result":result} (takes result) and
 * {"jsonrpc":"2.0","id":id|null,"error":{"code","message"}} (new references). */
json_t *rpc_result(const json_t *id, json_t *result);
json_t *rpc_error(const json_t *id, int code, const char *message);

/* The protocol version to answer to a client's: its own when known
 * (2025-06-18, 2025-03-26, 2024-11-05), else the newest. */
const char *rpc_negotiate_version(const char *asked);

#endif /* ASYA_GW_JSONRPC_H */
