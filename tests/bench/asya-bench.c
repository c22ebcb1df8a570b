/*
 * asya-bench - the C side of `make bench` (driven by tests/bench/run.py).
 *
 *   asya-bench declare  URL QUEUE...                  declare exchange asya + durable queues
 *                                                     bound by name, and purge them
 *   asya-bench preload  URL QUEUE N ACTORS [SIZE]     publish N envelopes of about SIZE bytes
 *                                                     (default 200; route ACTORS,
 *                                                     comma-separated, current 0),
 *                                                     persistent, confirms pipelined; each
 *                                                     with a job_id when BENCH_JOB_IDS is set,
 *                                                     payload.count = K when BENCH_PAYLOAD_COUNT=K
 *   asya-bench drain    URL IN SINK N TIMEOUT_S       poll both queues (passive declare);
 *                                                     time from the first message leaving IN
 *                                                     until SINK holds N; prints seconds
 *   asya-bench relay    URL IN OUT N MODE PREFETCH    bare relay consume -> publish -> ack,
 *                                                     MODE none | batch | pipe (see relay())
 *   asya-bench latency  URL IN OUT COUNT ACTORS       one message in flight: publish to IN,
 *                                                     wait for it on OUT; prints p50/p99 in us
 *   asya-bench verify   URL SINK N ORDERED [COPIES]   consume SINK (no-ack) and check that the
 *                                                     ids are exactly b-0..b-(N-1), each once
 *                                                     (COPIES times: a fan-out's children are
 *                                                     b-<i>-<k>), in order when ORDERED is 1
 *   asya-bench count    URL QUEUE                     print the queue's ready message count
 *
 * Every tool publishes like asya-sidecar does: exchange asya, routing key =
 * queue name, persistent, content type application/json.
 */
#define _GNU_SOURCE
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXCHANGE "asya"
#define CH       1

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, const char *detail)
{
    fprintf(stderr, "asya-bench: ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\n");
    exit(1);
}

static void check_reply(amqp_connection_state_t c, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        fprintf(stderr, "asya-bench: %s: %s\n", what, amqp_error_string2(r.library_error));
    else
        fprintf(stderr, "asya-bench: %s: server exception 0x%08x\n", what, r.reply.id);
    exit(1);
}

static void check_status(int st, const char *what)
{
    if (st != AMQP_STATUS_OK) {
        fprintf(stderr, "asya-bench: %s: %s\n", what, amqp_error_string2(st));
        exit(1);
    }
}

static amqp_connection_state_t connect_url(const char *url)
{
    struct amqp_connection_info ci;
    char *u = strdup(url);
    amqp_default_connection_info(&ci);
    if (!u || amqp_parse_url(u, &ci) != AMQP_STATUS_OK)
        die("cannot parse %s", url);
    if (!ci.vhost || !*ci.vhost)
        ci.vhost = "/";
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (!s)
        die("%s", "cannot create socket");
    check_status(amqp_socket_open(s, ci.host, ci.port), "connect");
    amqp_rpc_reply_t r =
        amqp_login(c, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        die("%s", "login failed");
    amqp_channel_open(c, CH);
    check_reply(c, "channel.open");
    free(u); /* ci points into u only during login */
    return c;
}

static void disconnect(amqp_connection_state_t c)
{
    amqp_channel_close(c, CH, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

static int publish(amqp_connection_state_t c, const char *queue, const char *body, size_t len,
                   int mandatory)
{
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;
    amqp_bytes_t b = {len, (void *)body};
    return amqp_basic_publish(c, CH, amqp_cstring_bytes(EXCHANGE), amqp_cstring_bytes(queue),
                              mandatory, 0, &props, b);
}

/* Passive declare: ready message count of a queue. */
static long queue_count(amqp_connection_state_t c, const char *queue)
{
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(c, CH, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    check_reply(c, "queue.declare passive");
    return ok ? (long)ok->message_count : -1;
}

/* Envelope number i of about `size` bytes (at least ~150: the fields come first,
 * then payload.data is padded with 'x'); buf holds at least size + 1024. */
static size_t make_envelope(char *buf, size_t cap, long i, const char *actors_csv, size_t size)
{
    char actors[512];
    size_t a = 0;
    actors[a++] = '"';
    for (const char *p = actors_csv; *p && a < sizeof actors - 4; p++) {
        if (*p == ',') {
            actors[a++] = '"';
            actors[a++] = ',';
            actors[a++] = '"';
        } else {
            actors[a++] = *p;
        }
    }
    actors[a++] = '"';
    actors[a] = '\0';
    /* BENCH_JOB_IDS=1: each envelope is its own gateway job (top-level job_id),
     * so a sidecar with ASYA_GATEWAY_URL reports its progress (bench rows h). */
    char job[48] = "";
    if (getenv("BENCH_JOB_IDS"))
        snprintf(job, sizeof job, "\"job_id\":\"bench-job-%ld\",", i);
    /* BENCH_PAYLOAD_COUNT=K: fanout_handler's result count (bench row o). */
    char fan[40] = "";
    const char *k = getenv("BENCH_PAYLOAD_COUNT");
    if (k && *k)
        snprintf(fan, sizeof fan, "\"count\":%ld,", atol(k));
    int n = snprintf(buf, cap,
                     "{\"id\":\"b-%ld\",%s\"route\":{\"actors\":[%s],\"current\":0},"
                     "\"headers\":{\"trace_id\":\"bench-%08ld\"},"
                     "\"payload\":{\"seq\":%ld,%s\"data\":\"",
                     i, job, actors, i, i, fan);
    size_t len = (size_t)n;
    size_t pad = size > 8 ? size - 8 : 0; /* 200 -> 192, as before sizes existed */
    if (len < pad && pad < cap - 8) {
        memset(buf + len, 'x', pad - len);
        len = pad;
    }
    len += (size_t)snprintf(buf + len, cap - len, "\"}}");
    return len;
}

/* ---- declare -------------------------------------------------------------- */

static int cmd_declare(const char *url, int nq, char **queues)
{
    amqp_connection_state_t c = connect_url(url);
    amqp_exchange_declare(c, CH, amqp_cstring_bytes(EXCHANGE), amqp_cstring_bytes("topic"), 0, 1, 0,
                          0, amqp_empty_table);
    check_reply(c, "exchange.declare");
    for (int i = 0; i < nq; i++) {
        amqp_queue_declare(c, CH, amqp_cstring_bytes(queues[i]), 0, 1, 0, 0, amqp_empty_table);
        check_reply(c, "queue.declare");
        amqp_queue_bind(c, CH, amqp_cstring_bytes(queues[i]), amqp_cstring_bytes(EXCHANGE),
                        amqp_cstring_bytes(queues[i]), amqp_empty_table);
        check_reply(c, "queue.bind");
        amqp_queue_purge(c, CH, amqp_cstring_bytes(queues[i]));
        check_reply(c, "queue.purge");
    }
    disconnect(c);
    return 0;
}

/* ---- confirms ------------------------------------------------------------- */

/* Read frames until every publish up to seq is confirmed. */
static void wait_confirms(amqp_connection_state_t c, uint64_t seq, uint64_t *confirmed)
{
    while (*confirmed < seq) {
        amqp_frame_t f;
        amqp_maybe_release_buffers(c);
        check_status(amqp_simple_wait_frame(c, &f), "wait confirm");
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *a = f.payload.method.decoded;
            if (a->delivery_tag > *confirmed)
                *confirmed = a->delivery_tag; /* one publisher, in-order confirms */
        } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            die("%s", "the broker nacked a publish");
        } else if (f.payload.method.id == AMQP_BASIC_RETURN_METHOD) {
            die("%s", "a publish was returned (unroutable)");
        }
    }
}

static int cmd_preload(const char *url, const char *queue, long n, const char *actors, size_t size)
{
    amqp_connection_state_t c = connect_url(url);
    amqp_confirm_select(c, CH);
    check_reply(c, "confirm.select");
    size_t cap = size + 1024;
    char *buf = malloc(cap);
    if (!buf)
        die("%s", "out of memory");
    /* Pipelined: at most ~2000 (or ~64 MiB) unconfirmed. */
    uint64_t window = 2000;
    if (size > 32768)
        window = (uint64_t)(64u << 20) / size + 1;
    uint64_t confirmed = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        size_t len = make_envelope(buf, cap, i, actors, size);
        check_status(publish(c, queue, buf, len, 1), "publish");
        if ((uint64_t)(i + 1) > confirmed + window)
            wait_confirms(c, (uint64_t)(i + 1) - window / 2, &confirmed);
    }
    free(buf);
    wait_confirms(c, (uint64_t)n, &confirmed);
    double t = now_s() - t0;
    printf("preloaded %ld in %.3f s (%.0f msg/s)\n", n, t, (double)n / t);
    disconnect(c);
    return 0;
}

/* ---- drain ---------------------------------------------------------------- */

static int cmd_drain(const char *url, const char *in, const char *sink, long n, double timeout)
{
    amqp_connection_state_t c = connect_url(url);
    long in0 = queue_count(c, in);
    long sink0 = queue_count(c, sink);
    double start = now_s(), t0 = 0, t1 = 0;
    struct timespec pause = {0, 2000000}; /* 2 ms between polls */
    long last_sink = sink0;
    for (;;) {
        double t = now_s();
        if (t0 == 0) {
            long ic = queue_count(c, in);
            if (ic < in0 || ic == 0) /* the consumer has started */
                t0 = t;
        }
        last_sink = queue_count(c, sink);
        if (last_sink - sink0 >= n) {
            t1 = now_s();
            if (t0 == 0)
                t0 = t;
            break;
        }
        if (t - start > timeout) {
            /* Too slow for the time budget: report the partial rate. */
            printf("%.6f %ld timeout\n", t - (t0 ? t0 : start), last_sink - sink0);
            disconnect(c);
            return 0;
        }
        nanosleep(&pause, NULL);
    }
    /* Reported: elapsed seconds, then the sink count. */
    printf("%.6f %ld\n", t1 - t0, last_sink - sink0);
    disconnect(c);
    return 0;
}

static int cmd_count(const char *url, const char *queue)
{
    amqp_connection_state_t c = connect_url(url);
    printf("%ld\n", queue_count(c, queue));
    disconnect(c);
    return 0;
}

/* ---- relay ---------------------------------------------------------------- */

/*
 * The broker's own limit for an actor-shaped process: one connection, one
 * channel, basic.qos PREFETCH, consume IN, publish each body to OUT
 * (persistent, mandatory), ack.
 *   none   no publisher confirms; ack each message right after its publish;
 *   batch  confirms, awaited every 100 messages: ack (multiple) once the
 *          100 publishes of a batch are confirmed (with prefetch 100 the
 *          broker waits for that ack before delivering more);
 *   pipe   confirms, pipelined: every confirm acks (multiple) all consumed
 *          messages up to the highest contiguously confirmed publish.
 * One publish per delivery, in order, so publish seq k belongs to tag k.
 */
static int cmd_relay(const char *url, const char *in, const char *out, long n, const char *mode,
                     int prefetch)
{
    /* burst: no confirms, acks batched like asya-sidecar's (one multiple=true
     * ack once the frames already read are handled). */
    bool burst = strcmp(mode, "burst") == 0;
    int m = strcmp(mode, "none") == 0 || burst ? 0 : strcmp(mode, "batch") == 0 ? 1 : 2;
    uint64_t pending_ack = 0;
    amqp_connection_state_t c = connect_url(url);
    amqp_basic_qos(c, CH, 0, (uint16_t)prefetch, 0);
    check_reply(c, "basic.qos");
    if (m)
        amqp_confirm_select(c, CH), check_reply(c, "confirm.select");
    amqp_basic_consume(c, CH, amqp_cstring_bytes(in), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    check_reply(c, "basic.consume");
    unsigned char *done = calloc((size_t)n + 2, 1); /* confirmed seqs (non-multiple confirms) */
    uint64_t published = 0, contiguous = 0, acked = 0;
    double t0 = 0;
    while (acked < (uint64_t)n) {
        amqp_frame_t f;
        if (!amqp_frames_enqueued(c))
            amqp_maybe_release_buffers(c);
        check_status(amqp_simple_wait_frame(c, &f), "wait frame");
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (f.payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD: {
            uint64_t tag = ((amqp_basic_deliver_t *)f.payload.method.decoded)->delivery_tag;
            amqp_message_t msg;
            amqp_rpc_reply_t r = amqp_read_message(c, f.channel, &msg, 0);
            if (r.reply_type != AMQP_RESPONSE_NORMAL)
                die("%s", "read message");
            if (t0 == 0)
                t0 = now_s();
            check_status(publish(c, out, msg.body.bytes, msg.body.len, 1), "publish");
            amqp_destroy_message(&msg);
            published++;
            if (tag != published)
                die("%s", "delivery tags out of step with publishes");
            if (burst) {
                pending_ack = tag;
                if (!amqp_frames_enqueued(c) && !amqp_data_in_buffer(c)) {
                    check_status(amqp_basic_ack(c, CH, tag, 1), "ack");
                    acked = tag;
                }
            } else if (m == 0) {
                check_status(amqp_basic_ack(c, CH, tag, 0), "ack");
                acked = tag;
            }
            break;
        }
        case AMQP_BASIC_ACK_METHOD: {
            amqp_basic_ack_t *a = f.payload.method.decoded;
            if (a->multiple) {
                for (uint64_t s = contiguous + 1; s <= a->delivery_tag && s <= (uint64_t)n; s++)
                    done[s] = 1;
            } else if (a->delivery_tag <= (uint64_t)n) {
                done[a->delivery_tag] = 1;
            }
            while (contiguous < (uint64_t)n && done[contiguous + 1])
                contiguous++;
            uint64_t upto = contiguous;
            if (m == 1 && upto != (uint64_t)n)
                upto -= upto % 100; /* only whole batches of 100 */
            if (upto > acked) {
                check_status(amqp_basic_ack(c, CH, upto, 1), "ack");
                acked = upto;
            }
            break;
        }
        case AMQP_BASIC_NACK_METHOD:
            die("%s", "the broker nacked a publish");
            break;
        case AMQP_BASIC_RETURN_METHOD:
            die("%s", "a publish was returned (unroutable)");
            break;
        default:
            break;
        }
    }
    (void)pending_ack;
    double t = now_s() - t0;
    printf("relay %s: %ld in %.3f s (%.0f msg/s)\n", mode, n, t, (double)n / t);
    free(done);
    disconnect(c);
    return 0;
}

/* ---- latency -------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmd_latency(const char *url, const char *in, const char *out, long count,
                       const char *actors)
{
    /* Publisher and consumer on separate connections, like two processes. */
    amqp_connection_state_t pc = connect_url(url);
    amqp_connection_state_t c = connect_url(url);
    amqp_basic_consume(c, CH, amqp_cstring_bytes(out), amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    check_reply(c, "basic.consume");
    long warm = count / 10 + 10;
    double *lat = calloc((size_t)count, sizeof *lat);
    char buf[1024];
    for (long i = 0; i < warm + count; i++) {
        size_t len = make_envelope(buf, sizeof buf, i, actors, 200);
        double t0 = now_s();
        check_status(publish(pc, in, buf, len, 0), "publish");
        amqp_envelope_t env;
        amqp_maybe_release_buffers(c);
        struct timeval tv = {10, 0};
        amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            die("%s", "no answer within 10 s (is the actor still running?)");
        double t = now_s() - t0;
        amqp_destroy_envelope(&env);
        if (i >= warm)
            lat[i - warm] = t * 1e6;
    }
    qsort(lat, (size_t)count, sizeof *lat, cmp_double);
    double sum = 0;
    for (long i = 0; i < count; i++)
        sum += lat[i];
    printf("%.0f %.0f %.0f\n", lat[count / 2], lat[(count * 99) / 100], sum / (double)count);
    free(lat);
    disconnect(pc);
    disconnect(c);
    return 0;
}

/* ---- verify --------------------------------------------------------------- */

static int cmd_verify(const char *url, const char *sink, long n, int ordered, long copies)
{
    amqp_connection_state_t c = connect_url(url);
    amqp_basic_qos(c, CH, 0, 1000, 0);
    check_reply(c, "basic.qos");
    amqp_basic_consume(c, CH, amqp_cstring_bytes(sink), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    check_reply(c, "basic.consume");
    if (copies < 1 || copies > 65535)
        die("%s", "COPIES must be 1..65535");
    unsigned short *seen = calloc((size_t)n, sizeof *seen);
    long got = 0, dup = 0, bad = 0, reordered = 0, last = -1;
    while (got < n * copies) {
        amqp_envelope_t env;
        amqp_maybe_release_buffers(c);
        struct timeval tv = {5, 0};
        amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            break;
        got++;
        const char *b = env.message.body.bytes;
        size_t len = env.message.body.len;
        const char *p = memmem(b, len, "\"id\":\"b-", 8);
        long id = p ? strtol(p + 8, NULL, 10) : -1;
        if (id < 0 || id >= n)
            bad++;
        else if (seen[id]++ >= copies)
            dup++;
        if (id >= 0 && id < last)
            reordered++;
        if (id > last)
            last = id;
        if (got % 500 == 0 || got == n * copies)
            amqp_basic_ack(c, CH, env.delivery_tag, 1);
        amqp_destroy_envelope(&env);
    }
    long missing = 0;
    for (long i = 0; i < n; i++)
        missing += seen[i] < copies ? copies - seen[i] : 0;
    printf("got=%ld missing=%ld duplicates=%ld bad=%ld reordered=%ld\n", got, missing, dup, bad,
           reordered);
    free(seen);
    disconnect(c);
    return (missing || dup || bad || (ordered && reordered)) ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && strcmp(argv[1], "declare") == 0)
        return cmd_declare(argv[2], argc - 3, argv + 3);
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "preload") == 0)
        return cmd_preload(argv[2], argv[3], atol(argv[4]), argv[5],
                           argc == 7 ? (size_t)atol(argv[6]) : 200);
    if (argc == 7 && strcmp(argv[1], "drain") == 0)
        return cmd_drain(argv[2], argv[3], argv[4], atol(argv[5]), atof(argv[6]));
    if (argc == 8 && strcmp(argv[1], "relay") == 0)
        return cmd_relay(argv[2], argv[3], argv[4], atol(argv[5]), argv[6], atoi(argv[7]));
    if (argc == 7 && strcmp(argv[1], "latency") == 0)
        return cmd_latency(argv[2], argv[3], argv[4], atol(argv[5]), argv[6]);
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "verify") == 0)
        return cmd_verify(argv[2], argv[3], atol(argv[4]), atoi(argv[5]),
                          argc == 7 ? atol(argv[6]) : 1);
    if (argc == 4 && strcmp(argv[1], "count") == 0)
        return cmd_count(argv[2], argv[3]);
    fprintf(stderr, "usage: see the comment at the top of tests/bench/asya-bench.c\n");
    return 2;
}
