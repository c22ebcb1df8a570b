/*
 * envelope.h - parsing and validating Asya envelopes: on jansson, or, for
 * text already in canonical form (jscan.h) and with ENVELOPE_SCAN, by a
 * one-pass scan that keeps byte spans and builds the jansson tree only when
 * someone asks for it (envelope_json).
 *
 *   {"id": "...", "parent_id": "...", "headers": {...},
 *    "route": {"actors": ["a", "b"], "current": 0},   // "steps" is an alias
 *    "payload": <any JSON>, ...unknown fields kept...}
 */
#ifndef ASYA_ENVELOPE_H
#define ASYA_ENVELOPE_H

#include "jscan.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Flags for envelope_parse / envelope_from_json. */
enum envelope_flags {
    /* Accept route.current == number of actors (route finished), as end
     * actors see it; by default current must index an actor. */
    ENVELOPE_ALLOW_FINISHED = 1 << 0,
    /* Try the canonical scan first; the text must then outlive env. */
    ENVELOPE_SCAN = 1 << 1,
};

#define ENVELOPE_ROUTE_MEMBERS 8 /* a scanned route has at most this many members */

/* What the canonical scan found: spans into the scanned text. */
struct envelope_scan {
    struct jscan_member top[JSCAN_MAX_KEYS]; /* the envelope's members, in order */
    size_t top_count;
    size_t route_index; /* top[route_index] is "route" */
    struct jscan_member route[ENVELOPE_ROUTE_MEMBERS];
    size_t route_count;
    size_t actors_index;  /* route[actors_index] is "actors" (or "steps") */
    size_t current_index; /* route[current_index] is "current" */
    const char **names;   /* decoded actor names, actor_count of them */
    char strings[];       /* where names and the id are decoded to */
};

struct envelope {
    json_t *root;           /* owned reference to the whole object */
    json_t *route;          /* borrowed from root */
    json_t *actors;         /* borrowed from root: array of strings */
    const char *actors_key; /* "actors" or "steps" (static), as the input used */
    size_t actor_count;
    size_t current;
    const char *id; /* borrowed from root (or scan); NULL when absent or null */
    /* After a canonical scan (ENVELOPE_SCAN): root is NULL until
     * envelope_json, text is the scanned text (borrowed). */
    struct envelope_scan *scan; /* owned */
    const char *text;
    size_t text_len;
};

/*
 * Parse len bytes of JSON text and validate it as an envelope.  Returns 0 and
 * fills env (release with envelope_free), or -EINVAL with a one-line reason
 * in err ("route.current 3 is out of range for 2 actors"), leaving env empty.
 */
int envelope_parse(const char *data, size_t len, int flags, struct envelope *env, char *err,
                   size_t errlen) __attribute__((warn_unused_result));

/* Validate an already parsed value.  On success env holds a new reference to
 * root (the caller keeps its own); same errors as envelope_parse. */
int envelope_from_json(json_t *root, int flags, struct envelope *env, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* True when the scanned members m[0..n) have what envelope_from_json asks of
 * an envelope's top level: a payload, an object route, an id and parent_id
 * that are strings (or null, or absent), headers an object (or null, or
 * absent).  The route's own members are checked apart. */
bool envelope_members_valid(const struct jscan_member *m, size_t n);

/* True when env holds a valid envelope (parsed or scanned). */
bool envelope_valid(const struct envelope *env);

/* The envelope as a jansson tree (borrowed; env keeps it): parsed from the
 * scanned text on first use, so env's cache changes though env is const.
 * NULL when env is empty or memory ran out. */
json_t *envelope_json(const struct envelope *env);

/* Release env->root and clear env.  NULL or an empty env is fine. */
void envelope_free(struct envelope *env);

/* Name of actors[i] (borrowed), or NULL when i is out of range. */
const char *envelope_actor(const struct envelope *env, size_t i);

/* True when b's actors[0..a->current] equal a's (the part of the route that
 * has already run, which an envelope-mode handler must not rewrite). */
bool envelope_route_prefix_equal(const struct envelope *a, const struct envelope *b);

/* Serialise compactly (keys in insertion order).  Free with free(). */
char *envelope_dump(const json_t *value, size_t *len);

#endif /* ASYA_ENVELOPE_H */
