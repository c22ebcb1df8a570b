#include "jsonrpc.h"

#include <stdio.h>
#include <string.h>

static const char *const protocol_versions[] = {"2025-06-18", "2025-03-26", "2024-11-05"};

static void bad(struct rpc_message *m, int code, const char *text)
{
    m->kind = RPC_BAD;
    m->error_code = code;
    snprintf(m->error_text, sizeof m->error_text, "%s", text);
}

static int valid_id(const json_t *id)
{
    return json_is_string(id) || json_is_integer(id);
}

void rpc_message_parse(const char *body, size_t len, struct rpc_message *m)
{
    memset(m, 0, sizeof *m);
    json_error_t e;
    m->root = json_loadb(body, len, JSON_DECODE_ANY, &e);
    if (!m->root) {
        char text[sizeof m->error_text];
        snprintf(text, sizeof text, "Parse error: %.120s", e.text);
        bad(m, RPC_PARSE_ERROR, text);
        return;
    }
    if (json_is_array(m->root)) {
        bad(m, RPC_INVALID_REQUEST, "Invalid Request: batch requests are not supported");
        return;
    }
    if (!json_is_object(m->root)) {
        bad(m, RPC_INVALID_REQUEST, "Invalid Request: expected a JSON object");
        return;
    }
    const json_t *id = json_object_get(m->root, "id");
    if (valid_id(id))
        m->id = id;
    const char *jsonrpc = json_string_value(json_object_get(m->root, "jsonrpc"));
    if (!jsonrpc || strcmp(jsonrpc, "2.0") != 0) {
        bad(m, RPC_INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"");
        return;
    }
    const json_t *method = json_object_get(m->root, "method");
    if (!method) {
        if (json_object_get(m->root, "result") || json_object_get(m->root, "error"))
            m->kind = RPC_RESPONSE;
        else
            bad(m, RPC_INVALID_REQUEST, "Invalid Request: method is required");
        return;
    }
    if (!json_is_string(method)) {
        bad(m, RPC_INVALID_REQUEST, "Invalid Request: method must be a string");
        return;
    }
    m->method = json_string_value(method);
    if (id && !json_is_null(id) && !valid_id(id)) {
        bad(m, RPC_INVALID_REQUEST, "Invalid Request: id must be a string or an integer");
        return;
    }
    const json_t *params = json_object_get(m->root, "params");
    if (params && !json_is_null(params) && !json_is_object(params)) {
        bad(m, RPC_INVALID_PARAMS, "Invalid params: params must be an object");
        return;
    }
    m->params = json_is_object(params) ? params : NULL;
    m->kind = m->id ? RPC_REQUEST : RPC_NOTIFICATION;
}

void rpc_message_clear(struct rpc_message *m)
{
    json_decref(m->root);
    memset(m, 0, sizeof *m);
}

json_t *rpc_result(const json_t *id, json_t *result)
{
    if (!result)
        return NULL;
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result",
                     result);
}

json_t *rpc_error(const json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                     "error", "code", code, "message", message);
}

const char *rpc_negotiate_version(const char *asked)
{
    for (size_t i = 0; asked && i < sizeof protocol_versions / sizeof protocol_versions[0]; i++)
        if (strcmp(asked, protocol_versions[i]) == 0)
            return protocol_versions[i];
    return protocol_versions[0];
}
