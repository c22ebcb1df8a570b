/*
 * mcp.c - MCP over Streamable HTTP at /mcp (JSON-RPC 2.0, one JSON reply per
 * POST).  initialize opens a session (Mcp-Session-Id); every later request
 * must carry it (400 without, 404 for an unknown or ended one).  Methods:
 * initialize, ping, tools/list, tools/call; notifications and client
 * responses are accepted with 202.  Batches are refused with a JSON-RPC
 * error (MCP 2025-06-18 has none).  Sessions live in this process: behind a
 * load balancer, MCP clients need sticky sessions (the REST API does not).
 */
#include "gateway_int.h"
#include "jsonrpc.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#define SESSION_BUCKETS 4096

struct session {
    TAILQ_ENTRY(session) bucket_link;
    TAILQ_ENTRY(session) age_link; /* oldest first: evicted when the table is full */
    char id[JOB_ID_LEN + 1];
};

TAILQ_HEAD(session_list, session);

struct mcp_sessions {
    struct session_list buckets[SESSION_BUCKETS];
    struct session_list by_age;
    long count;
    long max;
};

static unsigned session_bucket(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % SESSION_BUCKETS;
}

struct mcp_sessions *mcp_sessions_new(long max_sessions)
{
    struct mcp_sessions *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    for (unsigned i = 0; i < SESSION_BUCKETS; i++)
        TAILQ_INIT(&s->buckets[i]);
    TAILQ_INIT(&s->by_age);
    s->max = max_sessions;
    return s;
}

static void session_remove(struct mcp_sessions *s, struct session *se)
{
    TAILQ_REMOVE(&s->buckets[session_bucket(se->id)], se, bucket_link);
    TAILQ_REMOVE(&s->by_age, se, age_link);
    s->count--;
    free(se);
}

void mcp_sessions_free(struct mcp_sessions *s)
{
    if (!s)
        return;
    /* Everything goes: no need to unlink one by one. */
    struct session *se = TAILQ_FIRST(&s->by_age);
    while (se) {
        struct session *next = TAILQ_NEXT(se, age_link);
        free(se);
        se = next;
    }
    free(s);
}

static struct session *session_find(struct mcp_sessions *s, const char *id)
{
    if (!id || strlen(id) != JOB_ID_LEN)
        return NULL;
    struct session *se;
    for (se = TAILQ_FIRST(&s->buckets[session_bucket(id)]); se; se = TAILQ_NEXT(se, bucket_link)) {
        if (strcmp(se->id, id) == 0)
            return se;
    }
    return NULL;
}

static struct session *session_open(struct mcp_sessions *s)
{
    struct session *se = calloc(1, sizeof *se);
    if (!se || job_id_new(se->id) != 0) {
        free(se);
        return NULL;
    }
    /* A full table forgets its oldest session: that client starts over. */
    if (s->count >= s->max)
        session_remove(s, TAILQ_FIRST(&s->by_age));
    TAILQ_INSERT_TAIL(&s->buckets[session_bucket(se->id)], se, bucket_link);
    TAILQ_INSERT_TAIL(&s->by_age, se, age_link);
    s->count++;
    return se;
}

/* ---- replies ---------------------------------------------------------------- */

static void rpc_reply(struct gwreq *req, unsigned status, const json_t *id, json_t *result)
{
    gwreq_reply_json(req, status, rpc_result(id, result));
}

static void send_error(struct gwreq *req, unsigned status, const json_t *id, int code,
                       const char *message)
{
    gwreq_reply_json(req, status, rpc_error(id, code, message));
}

/* ---- methods ---------------------------------------------------------------- */

static void initialize(struct gateway *g, struct gwreq *req, const json_t *id, const json_t *params)
{
    const char *version =
        rpc_negotiate_version(json_string_value(json_object_get(params, "protocolVersion")));
    struct session *se = session_open(g->sessions);
    if (!se) {
        send_error(req, 500, id, RPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    gwreq_add_header(req, "Mcp-Session-Id", se->id);
    json_t *result =
        json_pack("{s:s, s:{s:{}}, s:{s:s, s:s}}", "protocolVersion", version, "capabilities",
                  "tools", "serverInfo", "name", "asya-gateway", "version", ASYA_BUILD_VERSION);
    rpc_reply(req, 200, id, result);
}

static void tools_list(struct gateway *g, struct gwreq *req, const json_t *id)
{
    json_t *tools = json_array();
    for (size_t i = 0; i < g->routes->ntools; i++) {
        const struct tool *t = &g->routes->tools[i];
        json_array_append_new(tools, json_pack("{s:s, s:s, s:o}", "name", t->name, "description",
                                               t->description ? t->description : "", "inputSchema",
                                               tool_input_schema(t)));
    }
    rpc_reply(req, 200, id, json_pack("{s:o}", "tools", tools));
}

struct mcp_call {
    struct gwreq *req;
    json_t *id;
};

static void on_tool_done(void *arg, json_t *result)
{
    struct mcp_call *mc = arg;
    if (gwreq_release(mc->req))
        rpc_reply(mc->req, 200, mc->id, result);
    else
        json_decref(result);
    json_decref(mc->id);
    free(mc);
}

static void tools_call(struct gateway *g, struct gwreq *req, const json_t *id, const json_t *params)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    const json_t *args = json_object_get(params, "arguments");
    if (!name || !*name) {
        send_error(req, 200, id, RPC_INVALID_PARAMS, "tools/call needs params.name");
        return;
    }
    if (args && !json_is_object(args) && !json_is_null(args)) {
        send_error(req, 200, id, RPC_INVALID_PARAMS, "params.arguments must be an object");
        return;
    }
    const struct tool *t = routes_find(g->routes, name);
    if (!t) {
        char msg[300];
        snprintf(msg, sizeof msg, "Tool \"%.200s\" not found", name);
        gw_metrics_toolcall(&g->metrics, (size_t)-1, TC_UNKNOWN_TOOL);
        send_error(req, 200, id, RPC_INVALID_PARAMS, msg);
        return;
    }
    struct mcp_call *mc = calloc(1, sizeof *mc);
    if (!mc) {
        send_error(req, 500, id, RPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    mc->req = req;
    mc->id = json_incref((json_t *)id);
    gwreq_hold(req);
    toolcall_start(g, t, json_is_object(args) ? args : NULL, on_tool_done, mc);
}

/* ---- entry ------------------------------------------------------------------ */

static void post(struct gateway *g, struct gwreq *req)
{
    const char *ctype = gwreq_header(req, "Content-Type");
    if (!ctype || strncasecmp(ctype, "application/json", 16) != 0) {
        send_error(req, 400, NULL, RPC_INVALID_REQUEST, "Content-Type must be application/json");
        return;
    }
    size_t len;
    const char *body = gwreq_body(req, &len);
    struct rpc_message m;
    rpc_message_parse(body, len, &m);
    const char *sid = gwreq_header(req, "Mcp-Session-Id");
    bool has_sid = sid && *sid;
    bool known = has_sid && session_find(g->sessions, sid);
    bool init = (m.kind == RPC_REQUEST || m.kind == RPC_NOTIFICATION) &&
                strcmp(m.method, "initialize") == 0;
    if (m.kind == RPC_BAD) {
        /* Parse errors and malformed requests are the client's: 400, as the SDK servers do. */
        send_error(req, m.error_code == RPC_INVALID_PARAMS ? 200 : 400, m.id, m.error_code,
                   m.error_text);
    } else if (m.kind == RPC_RESPONSE || (m.kind == RPC_NOTIFICATION && (init || known))) {
        gwreq_reply(req, 202, NULL, "", 0); /* nothing to answer */
    } else if (init) {
        initialize(g, req, m.id, m.params);
    } else if (!has_sid) {
        send_error(req, 400, m.id, RPC_INVALID_REQUEST,
                   "Bad Request: Mcp-Session-Id header is required");
    } else if (!known) {
        send_error(req, 404, m.id, RPC_SESSION_UNKNOWN, "Session not found");
    } else if (strcmp(m.method, "ping") == 0) {
        rpc_reply(req, 200, m.id, json_object());
    } else if (strcmp(m.method, "tools/list") == 0) {
        tools_list(g, req, m.id);
    } else if (strcmp(m.method, "tools/call") == 0) {
        tools_call(g, req, m.id, m.params);
    } else {
        char text[300];
        snprintf(text, sizeof text, "Method not found: %.200s", m.method);
        send_error(req, 200, m.id, RPC_METHOD_NOT_FOUND, text);
    }
    rpc_message_clear(&m);
}

void mcp_handle(struct gateway *g, struct gwreq *req)
{
    const char *method = gwreq_method(req);
    if (strcmp(method, "POST") == 0) {
        post(g, req);
    } else if (strcmp(method, "DELETE") == 0) {
        const char *sid = gwreq_header(req, "Mcp-Session-Id");
        struct session *se = session_find(g->sessions, sid);
        if (!sid || !*sid)
            gwreq_reply_text(req, 400, "Mcp-Session-Id header is required\n");
        else if (!se)
            gwreq_reply_text(req, 404, "Session not found\n");
        else {
            session_remove(g->sessions, se);
            gwreq_reply(req, 200, NULL, "", 0);
        }
    } else {
        /* No server-to-client stream: the spec allows 405 for GET. */
        gwreq_add_header(req, "Allow", "POST, DELETE");
        gwreq_reply_text(req, 405, "method not allowed\n");
    }
}
