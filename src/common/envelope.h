/*
 * envelope.h - parsing and validating Asya envelopes on jansson.
 *
 *   {"id": "...", "parent_id": "...", "headers": {...},
 *    "route": {"actors": ["a", "b"], "current": 0},   // "steps" is an alias
 *    "payload": <any JSON>, ...unknown fields kept...}
 */
#ifndef ASYA_ENVELOPE_H
#define ASYA_ENVELOPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Flags for envelope_parse / envelope_from_json. */
enum envelope_flags {
    /* Accept route.current == number of actors (route finished), as end
     * actors see it; by default current must index an actor. */
    ENVELOPE_ALLOW_FINISHED = 1 << 0,
};

struct envelope {
    json_t *root;           /* owned reference to the whole object */
    json_t *route;          /* borrowed from root */
    json_t *actors;         /* borrowed from root: array of strings */
    const char *actors_key; /* "actors" or "steps" (static), as the input used */
    size_t actor_count;
    size_t current;
    const char *id; /* borrowed from root; NULL when absent or null */
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
