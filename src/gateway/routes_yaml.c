/*
 * routes_yaml.c - reading the route config (GATEWAY.md "Route config") with
 * libyaml's document API, strictly: every mapping is checked for unknown and
 * duplicate keys, every value for its kind, and each error names the file and
 * the 1-based line of the node at fault.
 *
 * Several files (a directory) are read in two passes: first `defaults` and
 * `routes` of all files, merged (the same setting twice with different values
 * is an error naming both places), then the tools of each file in name
 * order, so a tool may use a route or a default from any file.
 *
 * Scalars: plain scalars are typed by what they fill in.  A string field, or
 * a default/option of a string parameter, takes the text as written (`yes`,
 * `10`); a boolean is true/false (True, TRUE...), an integer is decimal
 * [-+]?[0-9]+, a number is that or a decimal float; quoted and block scalars
 * are always strings.  Explicit tags (!!int ...) are refused rather than
 * half-honoured.  Inside a default object, members without a declared
 * property are typed like YAML 1.2's core schema (null, bool, int, float,
 * else string).
 */
#include "routes.h"
#include "routes_int.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define DEFAULT_PROGRESS false
#define DEFAULT_TIMEOUT  300L
#define MAX_TIMEOUT      ((long)INT_MAX) /* the job store keeps it in an int */
#define MAX_DEPTH        32     /* nesting of shapes and defaults; also stops alias loops */
#define NODE_BUDGET      100000 /* nodes visited per load; stops alias bombs */

/* Used when no path is configured (routes.h). */
static const char builtin_yaml[] = "tools:\n"
                                   "  - name: echo\n"
                                   "    description: Echo the message back\n"
                                   "    parameters:\n"
                                   "      message: {type: string, description: The message to echo,"
                                   " required: true}\n"
                                   "    route: [echo]\n";

struct source {
    char *file; /* as shown in messages */
    yaml_document_t doc;
    bool loaded;
};

struct named_route {
    char *name;
    char **steps;
    size_t nsteps;
    const char *file; /* borrowed from its source */
    size_t line;
};

struct origin {
    const char *file; /* borrowed from its source */
    size_t line;
};

/* A setting of `defaults`, with where it was first set. */
struct setting {
    bool set;
    long value;
    const char *file;
    size_t line;
};

struct loader {
    struct source *srcs;
    size_t nsrcs;
    struct source *src; /* the one being read, for messages and nodes */
    struct setting progress, timeout;
    struct named_route *routes;
    size_t nroutes;
    struct routes *out;
    struct origin *origins; /* where each of out->tools was defined */
    const char *tool;       /* name of the tool being read, for messages */
    size_t budget;
    char *err;
    size_t errlen;
    char scratch[1]; /* err when the caller gave none */
};

/* ---- small helpers --------------------------------------------------------- */

static size_t line_of(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

__attribute__((format(printf, 3, 4))) static void failf(struct loader *l, const yaml_node_t *at,
                                                        const char *fmt, ...)
{
    int n = snprintf(l->err, l->errlen, "%s:%zu: ", l->src->file, line_of(at));
    if (n >= 0 && (size_t)n < l->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

/* The message into l->err, evaluating to -EINVAL (a macro, so the analyzer
 * sees the value: it does not follow variadic calls). */
#define FAIL(l, at, ...) (failf((l), (at), __VA_ARGS__), -EINVAL)

static int nomem(struct loader *l)
{
    snprintf(l->err, l->errlen, "out of memory");
    return -ENOMEM;
}

/* Makes room for one more zeroed element at (*arr)[n]. */
static int grow(struct loader *l, void *arr, size_t n, size_t size)
{
    void **p = arr;
    if (n >= SIZE_MAX / size - 1)
        return nomem(l);
    char *q = realloc(*p, (n + 1) * size);
    if (!q)
        return nomem(l);
    memset(q + n * size, 0, size);
    *p = q;
    return 0;
}

static yaml_node_t *node_at(struct loader *l, int index)
{
    return yaml_document_get_node(&l->src->doc, index);
}

static const char *kind_name(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE    ? "mapping"
           : n->type == YAML_SEQUENCE_NODE ? "list"
                                           : "scalar";
}

static const char *text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool is_plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_seq(const yaml_node_t *n)
{
    return n->type == YAML_SEQUENCE_NODE;
}

static bool is_map(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE;
}

/* Loops over a sequence's items and a mapping's pairs. */
static yaml_node_item_t *items_begin(const yaml_node_t *n)
{
    return n->data.sequence.items.start;
}

static yaml_node_item_t *items_end(const yaml_node_t *n)
{
    return n->data.sequence.items.top;
}

static yaml_node_pair_t *pairs_begin(const yaml_node_t *n)
{
    return n->data.mapping.pairs.start;
}

static yaml_node_pair_t *pairs_end(const yaml_node_t *n)
{
    return n->data.mapping.pairs.top;
}

/* Counts a visit of a recursive walk against the depth and node limits. */
static int spend(struct loader *l, const yaml_node_t *n, int depth)
{
    if (depth > MAX_DEPTH)
        return FAIL(l, n, "nested more than %d levels deep", MAX_DEPTH);
    if (l->budget == 0)
        return FAIL(l, n, "too many nodes (more than %d, with aliases)", NODE_BUDGET);
    l->budget--;
    return 0;
}

/* ---- scalars ------------------------------------------------------------- */

static bool plain_null(const char *s)
{
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static bool parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        *out = false;
    else
        return false;
    return true;
}

static bool all_digits(const char *s, const char **end)
{
    const char *p = s;
    while (*p >= '0' && *p <= '9')
        p++;
    *end = p;
    return p > s;
}

/* Decimal [-+]?[0-9]+ in range of json_int_t. */
static bool parse_int(const char *s, json_int_t *out)
{
    const char *p = s + (*s == '-' || *s == '+');
    const char *end;
    if (!all_digits(p, &end) || *end)
        return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return false;
    *out = (json_int_t)v;
    return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, finite (JSON has no inf). */
static bool parse_float(const char *s, double *out)
{
    const char *p = s + (*s == '-' || *s == '+');
    const char *end;
    bool whole = all_digits(p, &end);
    p = end;
    if (*p == '.') {
        bool frac = all_digits(p + 1, &end);
        if (!whole && !frac)
            return false;
        p = end;
    } else if (!whole) {
        return false;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        p += (*p == '-' || *p == '+');
        if (!all_digits(p, &end))
            return false;
        p = end;
    }
    if (*p)
        return false;
    errno = 0;
    double v = strtod(s, NULL);
    if (errno == ERANGE && (v > 1.0 || v < -1.0))
        return false; /* overflow; underflow to 0 or a subnormal is fine */
    *out = v;
    return true;
}

/* A scalar as a string; what names it in messages ("name of tool ..."). */
static int get_string(struct loader *l, const yaml_node_t *n, const char *what, bool nonempty,
                      char **out)
{
    if (n->type != YAML_SCALAR_NODE)
        return FAIL(l, n, "%s must be a string, not a %s", what, kind_name(n));
    if (strlen(text(n)) != n->data.scalar.length)
        return FAIL(l, n, "%s contains a NUL character", what);
    if (nonempty && !*text(n))
        return FAIL(l, n, "%s is empty", what);
    *out = strdup(text(n));
    return *out ? 0 : nomem(l);
}

static int get_bool(struct loader *l, const yaml_node_t *n, const char *what, bool *out)
{
    if (!is_plain(n) || !parse_bool(text(n), out))
        return FAIL(l, n, "%s must be true or false", what);
    return 0;
}

static int get_timeout(struct loader *l, const yaml_node_t *n, long *out)
{
    json_int_t v;
    if (!is_plain(n) || !parse_int(text(n), &v) || v < 0 || v > MAX_TIMEOUT)
        return FAIL(l, n, "timeout must be a whole number of seconds, 0 to %ld", MAX_TIMEOUT);
    *out = (long)v;
    return 0;
}

/* ---- mappings ------------------------------------------------------------ */

/* Keys are strings, each once. */
static int check_map(struct loader *l, const yaml_node_t *map)
{
    for (yaml_node_pair_t *pr = pairs_begin(map); pr < pairs_end(map); pr++) {
        const yaml_node_t *k = node_at(l, pr->key);
        if (k->type != YAML_SCALAR_NODE)
            return FAIL(l, k, "a key must be a string, not a %s", kind_name(k));
        if (strlen(text(k)) != k->data.scalar.length)
            return FAIL(l, k, "a key contains a NUL character");
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pr; q++)
            if (!strcmp(text(node_at(l, q->key)), text(k)))
                return FAIL(l, k, "duplicate key \"%s\"", text(k));
    }
    return 0;
}

/* check_map, and every key one of allowed (NULL-terminated); where is e.g.
 * "in tool \"x\"". */
static int check_keys(struct loader *l, const yaml_node_t *map, const char *const *allowed,
                      const char *where)
{
    int rc = check_map(l, map);
    if (rc < 0)
        return rc;
    for (yaml_node_pair_t *pr = pairs_begin(map); pr < pairs_end(map); pr++) {
        const yaml_node_t *k = node_at(l, pr->key);
        const char *const *a = allowed;
        while (*a && strcmp(*a, text(k)) != 0)
            a++;
        if (!*a)
            return FAIL(l, k, "unknown key \"%s\" %s", text(k), where);
    }
    return 0;
}

static yaml_node_t *map_get(struct loader *l, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *pr = pairs_begin(map); pr < pairs_end(map); pr++) {
        if (!strcmp(text(node_at(l, pr->key)), key))
            return node_at(l, pr->value);
    }
    return NULL;
}

/* ---- values of parameters ----------------------------------------------- */

/*
 * A YAML node as JSON, typed by p (NULL: YAML core schema).  what names the
 * value in messages ("default of parameter \"n\" in tool \"t\"").
 */
static int to_json(struct loader *l, const yaml_node_t *n, const struct param *p, const char *what,
                   int depth, json_t **out)
{
    int rc = spend(l, n, depth);
    if (rc < 0)
        return rc;
    const char *want = p ? routes_type_name(p->type) : NULL;
    bool scalar_type = p && p->type != PARAM_OBJECT && p->type != PARAM_ARRAY;
    if (n->type != YAML_SCALAR_NODE && scalar_type)
        return FAIL(l, n, "%s: expected %s, got a %s", what, want, kind_name(n));

    if (n->type == YAML_SCALAR_NODE) {
        const char *s = text(n);
        bool plain = is_plain(n);
        json_int_t i;
        double d;
        bool b = false;
        if (strlen(s) != n->data.scalar.length)
            return FAIL(l, n, "%s contains a NUL character", what);
        if (!p) {
            if (plain && plain_null(s))
                *out = json_null();
            else if (plain && parse_bool(s, &b))
                *out = json_boolean(b);
            else if (plain && parse_int(s, &i))
                *out = json_integer(i);
            else if (plain && parse_float(s, &d))
                *out = json_real(d);
            else
                *out = json_string(s);
        } else if (p->type == PARAM_STRING) {
            *out = json_string(s);
        } else if (p->type == PARAM_BOOLEAN && plain && parse_bool(s, &b)) {
            *out = json_boolean(b);
        } else if ((p->type == PARAM_INTEGER || p->type == PARAM_NUMBER) && plain &&
                   parse_int(s, &i)) {
            *out = json_integer(i);
        } else if (p->type == PARAM_NUMBER && plain && parse_float(s, &d)) {
            *out = json_real(d);
        } else {
            return FAIL(l, n, "%s: expected %s, got \"%s\"%s", what, want, s,
                        plain ? "" : " (a quoted string)");
        }
        return *out ? 0 : nomem(l);
    }

    if (n->type == YAML_MAPPING_NODE) {
        if (p && p->type != PARAM_OBJECT)
            return FAIL(l, n, "%s: expected %s, got a mapping", what, want);
        if ((rc = check_map(l, n)) < 0)
            return rc;
        json_t *o = json_object();
        if (!o)
            return nomem(l);
        for (yaml_node_pair_t *pr = pairs_begin(n); pr < pairs_end(n); pr++) {
            const char *key = text(node_at(l, pr->key));
            const struct param *sub = NULL;
            for (size_t k = 0; p && k < p->nproperties; k++)
                if (!strcmp(p->properties[k].name, key))
                    sub = &p->properties[k];
            json_t *v = NULL;
            rc = to_json(l, node_at(l, pr->value), sub, what, depth + 1, &v);
            if (rc == 0 && json_object_set_new(o, key, v) != 0)
                rc = nomem(l);
            if (rc < 0) {
                json_decref(o);
                return rc;
            }
        }
        *out = o;
        return 0;
    }

    if (p && p->type != PARAM_ARRAY)
        return FAIL(l, n, "%s: expected %s, got a list", what, want);
    json_t *a = json_array();
    if (!a)
        return nomem(l);
    for (yaml_node_item_t *it = items_begin(n); it < items_end(n); it++) {
        json_t *v = NULL;
        rc = to_json(l, node_at(l, *it), p ? p->items : NULL, what, depth + 1, &v);
        if (rc == 0 && json_array_append_new(a, v) != 0)
            rc = nomem(l);
        if (rc < 0) {
            json_decref(a);
            return rc;
        }
    }
    *out = a;
    return 0;
}

/* ---- parameters ---------------------------------------------------------- */

static const char *const param_keys[] = {
    "type", "description", "required", "default", "options", "properties", "items", NULL,
};

static int parse_param(struct loader *l, const yaml_node_t *n, const char *path, int depth,
                       struct param *p);

static int parse_properties(struct loader *l, const yaml_node_t *n, const char *path, int depth,
                            struct param **props, size_t *nprops)
{
    char what[320];
    int rc;
    if (!is_map(n)) {
        snprintf(what, sizeof what, "parameters of tool \"%s\"", l->tool);
        if (*path)
            snprintf(what, sizeof what, "properties of parameter \"%s\" in tool \"%s\"", path,
                     l->tool);
        return FAIL(l, n, "%s must be a mapping, not a %s", what, kind_name(n));
    }
    if ((rc = check_map(l, n)) < 0)
        return rc;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count == 0)
        return 0;
    *props = calloc(count, sizeof **props);
    if (!*props)
        return nomem(l);
    for (yaml_node_pair_t *pr = pairs_begin(n); pr < pairs_end(n); pr++) {
        const yaml_node_t *k = node_at(l, pr->key);
        struct param *p = &(*props)[(*nprops)++];
        char sub[256];
        if (!*text(k))
            return FAIL(l, k, "a parameter name is empty in tool \"%s\"", l->tool);
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", text(k));
        if (!(p->name = strdup(text(k))))
            return nomem(l);
        if ((rc = parse_param(l, node_at(l, pr->value), sub, depth + 1, p)) < 0)
            return rc;
    }
    return 0;
}

static int parse_options(struct loader *l, const yaml_node_t *n, const char *path, struct param *p)
{
    if (p->type == PARAM_OBJECT || p->type == PARAM_ARRAY)
        return FAIL(l, n,
                    "options of parameter \"%s\" in tool \"%s\": only a string, number, "
                    "integer or boolean parameter has options",
                    path, l->tool);
    if (!is_seq(n) || n->data.sequence.items.top == n->data.sequence.items.start)
        return FAIL(l, n, "options of parameter \"%s\" in tool \"%s\" must be a non-empty list",
                    path, l->tool);
    char what[320];
    snprintf(what, sizeof what, "option of parameter \"%s\" in tool \"%s\"", path, l->tool);
    if (!(p->options = json_array()))
        return nomem(l);
    for (yaml_node_item_t *it = items_begin(n); it < items_end(n); it++) {
        json_t *v = NULL;
        int rc = to_json(l, node_at(l, *it), p, what, 0, &v);
        if (rc < 0)
            return rc;
        if (json_array_append_new(p->options, v) != 0)
            return nomem(l);
    }
    return 0;
}

/* The default is checked like an argument, so it also meets options and the
 * nested shape; the stored one has nested defaults applied. */
static int parse_default(struct loader *l, const yaml_node_t *n, const char *path, struct param *p)
{
    char what[320];
    char why[256];
    json_t *v = NULL;
    snprintf(what, sizeof what, "default of parameter \"%s\" in tool \"%s\"", path, l->tool);
    int rc = to_json(l, n, p, what, 0, &v);
    if (rc < 0)
        return rc;
    rc = routes_check_value(p, v, path, &p->default_value, why, sizeof why);
    json_decref(v);
    if (rc == -ENOMEM)
        return nomem(l);
    if (rc < 0)
        return FAIL(l, n, "default in tool \"%s\": %s", l->tool, why);
    return 0;
}

/* path: "opts.depth", or "tags[]" for an array's items shape. */
static int parse_param(struct loader *l, const yaml_node_t *n, const char *path, int depth,
                       struct param *p)
{
    char where[320];
    char *type = NULL;
    int rc = spend(l, n, depth);
    if (rc < 0)
        return rc;
    if (!is_map(n))
        return FAIL(l, n, "parameter \"%s\" in tool \"%s\" must be a mapping, not a %s", path,
                    l->tool, kind_name(n));
    snprintf(where, sizeof where, "in parameter \"%s\" of tool \"%s\"", path, l->tool);
    if ((rc = check_keys(l, n, param_keys, where)) < 0)
        return rc;

    const yaml_node_t *v = map_get(l, n, "type");
    if (!v)
        return FAIL(l, n, "parameter \"%s\" in tool \"%s\" has no type", path, l->tool);
    if ((rc = get_string(l, v, "type", false, &type)) < 0)
        return rc;
    rc = routes_type_parse(type, &p->type);
    if (rc < 0)
        rc = FAIL(l, v, "unknown type \"%s\" %s (string, number, integer, boolean, object, array)",
                  type, where);
    free(type);
    if (rc < 0)
        return rc;

    if ((v = map_get(l, n, "description")) &&
        (rc = get_string(l, v, "description", false, &p->description)) < 0)
        return rc;
    if ((v = map_get(l, n, "required"))) {
        if (!p->name)
            return FAIL(l, v, "\"required\" has no meaning for the items %s", where);
        if ((rc = get_bool(l, v, "required", &p->required)) < 0)
            return rc;
    }
    if ((v = map_get(l, n, "properties"))) {
        if (p->type != PARAM_OBJECT)
            return FAIL(l, v, "properties are only for an object parameter (%s)", where + 3);
        rc = parse_properties(l, v, path, depth, &p->properties, &p->nproperties);
        if (rc < 0)
            return rc;
    }
    if ((v = map_get(l, n, "items"))) {
        char sub[256];
        if (p->type != PARAM_ARRAY)
            return FAIL(l, v, "items are only for an array parameter (%s)", where + 3);
        if (!(p->items = calloc(1, sizeof *p->items)))
            return nomem(l);
        snprintf(sub, sizeof sub, "%s[]", path);
        if ((rc = parse_param(l, v, sub, depth + 1, p->items)) < 0)
            return rc;
    }
    if ((v = map_get(l, n, "options")) && (rc = parse_options(l, v, path, p)) < 0)
        return rc;
    if ((v = map_get(l, n, "default")) && (rc = parse_default(l, v, path, p)) < 0)
        return rc;
    return 0;
}

/* ---- routes and defaults ------------------------------------------------- */

/* A non-empty list of non-empty queue names; what names it in messages. */
static int parse_steps(struct loader *l, const yaml_node_t *n, const char *what, char ***steps,
                       size_t *nsteps)
{
    if (!is_seq(n))
        return FAIL(l, n, "%s must be a list of queue names, not a %s", what, kind_name(n));
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        return FAIL(l, n, "%s is empty", what);
    if (!(*steps = calloc(count, sizeof **steps)))
        return nomem(l);
    for (yaml_node_item_t *it = items_begin(n); it < items_end(n); it++) {
        char name[320];
        snprintf(name, sizeof name, "a queue name in %s", what);
        int rc = get_string(l, node_at(l, *it), name, true, &(*steps)[*nsteps]);
        if (rc < 0)
            return rc;
        (*nsteps)++;
    }
    return 0;
}

static void free_steps(char **steps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(steps[i]);
    free(steps);
}

static bool same_steps(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static struct named_route *find_route(struct loader *l, const char *name)
{
    for (size_t i = 0; i < l->nroutes; i++)
        if (!strcmp(l->routes[i].name, name))
            return &l->routes[i];
    return NULL;
}

static int parse_routes(struct loader *l, const yaml_node_t *n)
{
    int rc;
    if (!is_map(n))
        return FAIL(l, n, "routes must be a mapping of names to lists, not a %s", kind_name(n));
    if ((rc = check_map(l, n)) < 0)
        return rc;
    for (yaml_node_pair_t *pr = pairs_begin(n); pr < pairs_end(n); pr++) {
        const yaml_node_t *k = node_at(l, pr->key);
        char what[320];
        char **steps = NULL;
        size_t nsteps = 0;
        if (!*text(k))
            return FAIL(l, k, "a route name is empty");
        snprintf(what, sizeof what, "route \"%s\"", text(k));
        if ((rc = parse_steps(l, node_at(l, pr->value), what, &steps, &nsteps)) < 0) {
            free_steps(steps, nsteps);
            return rc;
        }
        const struct named_route *old = find_route(l, text(k));
        if (old) {
            bool same = same_steps(old->steps, old->nsteps, steps, nsteps);
            free_steps(steps, nsteps);
            if (!same)
                return FAIL(l, k, "route \"%s\" differs from the one at %s:%zu", text(k), old->file,
                            old->line);
            continue; /* the same route in two files is fine */
        }
        if ((rc = grow(l, &l->routes, l->nroutes, sizeof *l->routes)) < 0) {
            free_steps(steps, nsteps);
            return rc;
        }
        struct named_route *r = &l->routes[l->nroutes++];
        r->steps = steps;
        r->nsteps = nsteps;
        r->file = l->src->file;
        r->line = line_of(k);
        if (!(r->name = strdup(text(k))))
            return nomem(l);
    }
    return 0;
}

/* Records one `defaults` setting; the same one elsewhere must agree. */
static int merge_setting(struct loader *l, struct setting *s, const char *key,
                         const yaml_node_t *at, long value)
{
    if (s->set && s->value != value)
        return FAIL(l, at, "defaults.%s differs from the one at %s:%zu", key, s->file, s->line);
    if (!s->set) {
        s->set = true;
        s->value = value;
        s->file = l->src->file;
        s->line = line_of(at);
    }
    return 0;
}

static int parse_defaults(struct loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"progress", "timeout", NULL};
    int rc;
    if (!is_map(n))
        return FAIL(l, n, "defaults must be a mapping, not a %s", kind_name(n));
    if ((rc = check_keys(l, n, keys, "in defaults")) < 0)
        return rc;
    const yaml_node_t *v;
    if ((v = map_get(l, n, "progress"))) {
        bool b = false;
        if ((rc = get_bool(l, v, "defaults.progress", &b)) < 0 ||
            (rc = merge_setting(l, &l->progress, "progress", v, b)) < 0)
            return rc;
    }
    if ((v = map_get(l, n, "timeout"))) {
        long t = 0;
        if ((rc = get_timeout(l, v, &t)) < 0 ||
            (rc = merge_setting(l, &l->timeout, "timeout", v, t)) < 0)
            return rc;
    }
    return 0;
}

/* ---- tools --------------------------------------------------------------- */

static const char *const tool_keys[] = {
    "name", "route", "description", "parameters", "progress", "timeout", "metadata", NULL,
};

static int parse_metadata(struct loader *l, const yaml_node_t *n, struct tool *t)
{
    int rc;
    if (!is_map(n))
        return FAIL(l, n, "metadata of tool \"%s\" must be a mapping, not a %s", l->tool,
                    kind_name(n));
    if ((rc = check_map(l, n)) < 0)
        return rc;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count == 0)
        return 0;
    t->meta_keys = calloc(count, sizeof *t->meta_keys);
    t->meta_values = calloc(count, sizeof *t->meta_values);
    if (!t->meta_keys || !t->meta_values)
        return nomem(l);
    for (yaml_node_pair_t *pr = pairs_begin(n); pr < pairs_end(n); pr++) {
        const yaml_node_t *k = node_at(l, pr->key);
        char what[320];
        snprintf(what, sizeof what, "metadata \"%s\" of tool \"%s\"", text(k), l->tool);
        size_t i = t->nmeta++;
        if ((rc = get_string(l, k, "a metadata key", true, &t->meta_keys[i])) < 0 ||
            (rc = get_string(l, node_at(l, pr->value), what, false, &t->meta_values[i])) < 0)
            return rc;
    }
    return 0;
}

static int parse_route(struct loader *l, const yaml_node_t *n, struct tool *t)
{
    char what[320];
    snprintf(what, sizeof what, "route of tool \"%s\"", l->tool);
    if (n->type != YAML_SCALAR_NODE)
        return parse_steps(l, n, what, &t->steps, &t->nsteps);
    /* A name from `routes:` (of any file). */
    const struct named_route *r = find_route(l, text(n));
    if (!r)
        return FAIL(l, n, "tool \"%s\": unknown route \"%s\" (not in routes)", l->tool, text(n));
    if (!(t->steps = calloc(r->nsteps, sizeof *t->steps)))
        return nomem(l);
    for (; t->nsteps < r->nsteps; t->nsteps++)
        if (!(t->steps[t->nsteps] = strdup(r->steps[t->nsteps])))
            return nomem(l);
    return 0;
}

static int parse_tool(struct loader *l, const yaml_node_t *n)
{
    int rc;
    if (!is_map(n))
        return FAIL(l, n, "a tool must be a mapping, not a %s", kind_name(n));
    if ((rc = check_map(l, n)) < 0)
        return rc;
    const yaml_node_t *name = map_get(l, n, "name");
    if (!name)
        return FAIL(l, n, "a tool has no name");

    /* Counted before it is filled in, so routes_free frees a half-read tool. */
    if ((rc = grow(l, &l->out->tools, l->out->ntools, sizeof *l->out->tools)) < 0 ||
        (rc = grow(l, &l->origins, l->out->ntools, sizeof *l->origins)) < 0)
        return rc;
    size_t idx = l->out->ntools++;
    struct tool *t = &l->out->tools[idx];
    if ((rc = get_string(l, name, "a tool name", true, &t->name)) < 0)
        return rc;
    l->tool = t->name;
    for (size_t i = 0; i < idx; i++)
        if (!strcmp(l->out->tools[i].name, t->name))
            return FAIL(l, name, "duplicate tool \"%s\" (first defined at %s:%zu)", t->name,
                        l->origins[i].file, l->origins[i].line);
    l->origins[idx].file = l->src->file;
    l->origins[idx].line = line_of(name);

    char where[320];
    snprintf(where, sizeof where, "in tool \"%s\"", t->name);
    if ((rc = check_keys(l, n, tool_keys, where)) < 0)
        return rc;

    const yaml_node_t *v = map_get(l, n, "description");
    if (!v)
        t->description = strdup("");
    else if ((rc = get_string(l, v, "description", false, &t->description)) < 0)
        return rc;
    if (!t->description)
        return nomem(l);
    if ((v = map_get(l, n, "parameters")) &&
        (rc = parse_properties(l, v, "", 0, &t->params, &t->nparams)) < 0)
        return rc;
    if (!(v = map_get(l, n, "route")))
        return FAIL(l, n, "tool \"%s\" has no route", t->name);
    if ((rc = parse_route(l, v, t)) < 0)
        return rc;

    t->progress = l->progress.set ? l->progress.value != 0 : DEFAULT_PROGRESS;
    if ((v = map_get(l, n, "progress")) && (rc = get_bool(l, v, "progress", &t->progress)) < 0)
        return rc;
    t->timeout_sec = l->timeout.set ? l->timeout.value : DEFAULT_TIMEOUT;
    if ((v = map_get(l, n, "timeout")) && (rc = get_timeout(l, v, &t->timeout_sec)) < 0)
        return rc;
    if ((v = map_get(l, n, "metadata")) && (rc = parse_metadata(l, v, t)) < 0)
        return rc;
    l->tool = NULL;
    return 0;
}

/* ---- documents ----------------------------------------------------------- */

/* The top-level mapping, or NULL for an empty file (rc 0). */
static int top_of(struct loader *l, yaml_node_t **top)
{
    static const char *const keys[] = {"defaults", "routes", "tools", NULL};
    *top = yaml_document_get_root_node(&l->src->doc);
    if (!*top)
        return 0;
    if (!is_map(*top))
        return FAIL(l, *top, "the top level must be a mapping, not a %s", kind_name(*top));
    return check_keys(l, *top, keys, "at the top level");
}

/* Explicit tags would change what a scalar means; refuse them once for all
 * nodes (the document API gives untagged nodes the default tags). */
static int check_tags(struct loader *l)
{
    yaml_document_t *d = &l->src->doc;
    for (yaml_node_t *n = d->nodes.start; n < d->nodes.top; n++) {
        const char *want = n->type == YAML_SCALAR_NODE     ? YAML_DEFAULT_SCALAR_TAG
                           : n->type == YAML_SEQUENCE_NODE ? YAML_DEFAULT_SEQUENCE_TAG
                                                           : YAML_DEFAULT_MAPPING_TAG;
        if (n->tag && strcmp((const char *)n->tag, want) != 0)
            return FAIL(l, n, "YAML tags are not supported (%s)", (const char *)n->tag);
    }
    return 0;
}

static int parser_error(struct loader *l, const yaml_parser_t *p)
{
    const char *file = l->src->file;
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_MEMORY_ERROR)
        return nomem(l);
    if (p->error == YAML_READER_ERROR)
        snprintf(l->err, l->errlen, "%s: %s at byte %zu", file, problem, p->problem_offset);
    else if (p->context)
        snprintf(l->err, l->errlen, "%s:%zu: %s %s (line %zu)", file, p->problem_mark.line + 1,
                 problem, p->context, p->context_mark.line + 1);
    else
        snprintf(l->err, l->errlen, "%s:%zu: %s", file, p->problem_mark.line + 1, problem);
    return -EINVAL;
}

/* Parses one source from fp or (fp NULL) yaml; a second document is refused. */
static int load_doc(struct loader *l, FILE *fp, const char *yaml)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    int rc = 0;
    if (!yaml_parser_initialize(&parser))
        return nomem(l);
    if (fp)
        yaml_parser_set_input_file(&parser, fp);
    else
        yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
    if (!yaml_parser_load(&parser, &l->src->doc)) {
        rc = parser_error(l, &parser);
    } else {
        l->src->loaded = true;
        if (!yaml_parser_load(&parser, &extra)) {
            rc = parser_error(l, &parser);
        } else {
            yaml_node_t *root = yaml_document_get_root_node(&extra);
            if (root)
                rc = FAIL(l, root, "more than one YAML document");
            yaml_document_delete(&extra);
        }
    }
    yaml_parser_delete(&parser);
    if (rc == 0)
        rc = check_tags(l);
    return rc;
}

static int add_source(struct loader *l, const char *file)
{
    int rc = grow(l, &l->srcs, l->nsrcs, sizeof *l->srcs);
    if (rc < 0)
        return rc;
    struct source *s = &l->srcs[l->nsrcs++];
    if (!(s->file = strdup(file)))
        return nomem(l);
    return 0;
}

/* Reads every source, then merges: defaults and routes of all, then tools. */
static int build(struct loader *l)
{
    int rc;
    yaml_node_t *top;
    for (size_t i = 0; i < l->nsrcs; i++) {
        l->src = &l->srcs[i];
        if ((rc = top_of(l, &top)) < 0)
            return rc;
        const yaml_node_t *v;
        if (top && (v = map_get(l, top, "defaults")) && (rc = parse_defaults(l, v)) < 0)
            return rc;
        if (top && (v = map_get(l, top, "routes")) && (rc = parse_routes(l, v)) < 0)
            return rc;
    }
    for (size_t i = 0; i < l->nsrcs; i++) {
        l->src = &l->srcs[i];
        top = yaml_document_get_root_node(&l->src->doc);
        const yaml_node_t *v = top ? map_get(l, top, "tools") : NULL;
        if (!v)
            continue;
        if (!is_seq(v))
            return FAIL(l, v, "tools must be a list, not a %s", kind_name(v));
        for (yaml_node_item_t *it = items_begin(v); it < items_end(v); it++) {
            if ((rc = parse_tool(l, node_at(l, *it))) < 0)
                return rc;
        }
    }
    return 0;
}

static int loader_init(struct loader *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    /* Messages always have somewhere to go. */
    l->err = err && errlen ? err : l->scratch;
    l->errlen = err && errlen ? errlen : sizeof l->scratch;
    l->err[0] = '\0';
    l->budget = NODE_BUDGET;
    l->out = calloc(1, sizeof *l->out);
    return l->out ? 0 : nomem(l);
}

/* Hands over the result on success, frees everything else. */
static int loader_finish(struct loader *l, int rc, struct routes **out)
{
    for (size_t i = 0; i < l->nsrcs; i++) {
        if (l->srcs[i].loaded)
            yaml_document_delete(&l->srcs[i].doc);
        free(l->srcs[i].file);
    }
    free(l->srcs);
    for (size_t i = 0; i < l->nroutes; i++) {
        free(l->routes[i].name);
        free_steps(l->routes[i].steps, l->routes[i].nsteps);
    }
    free(l->routes);
    free(l->origins);
    if (rc < 0) {
        routes_free(l->out);
        *out = NULL;
    } else {
        *out = l->out;
    }
    return rc;
}

int routes_load_string(const char *yaml, const char *name, struct routes **out, char *err,
                       size_t errlen)
{
    struct loader l;
    int rc = loader_init(&l, err, errlen);
    if (rc == 0)
        rc = add_source(&l, name ? name : "<string>");
    if (rc == 0) {
        l.src = &l.srcs[0];
        rc = load_doc(&l, NULL, yaml ? yaml : "");
    }
    if (rc == 0)
        rc = build(&l);
    return loader_finish(&l, rc, out);
}

static int io_error(struct loader *l, const char *path, int e)
{
    snprintf(l->err, l->errlen, "%s: %s", path, strerror(e));
    return -e;
}

static bool yaml_name(const char *name)
{
    size_t n = strlen(name);
    /* Hidden files are skipped: editors' and Kubernetes' (..data) leftovers. */
    if (name[0] == '.')
        return false;
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds dir's regular *.yaml / *.yml files as sources, in name order. */
static int add_dir(struct loader *l, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return io_error(l, dir, errno);
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    const struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char *full = NULL;
        struct stat st;
        if (!yaml_name(e->d_name))
            continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(full = malloc(len))) {
            rc = nomem(l);
            break;
        }
        snprintf(full, len, "%s/%s", dir, e->d_name);
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(full); /* a dangling link or a directory named x.yaml */
            continue;
        }
        if ((rc = grow(l, &names, n, sizeof *names)) < 0)
            free(full);
        else
            names[n++] = full;
    }
    closedir(d);
    if (rc == 0 && n == 0) {
        snprintf(l->err, l->errlen, "%s: no *.yaml or *.yml files", dir);
        rc = -ENOENT;
    }
    if (rc == 0)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = add_source(l, names[i]);
        free(names[i]);
    }
    free(names);
    return rc;
}

int routes_load(const char *path, struct routes **out, char *err, size_t errlen)
{
    if (!path || !*path)
        return routes_load_string(builtin_yaml, "<built-in>", out, err, errlen);
    struct loader l;
    struct stat st;
    int rc = loader_init(&l, err, errlen);
    if (rc == 0 && stat(path, &st) != 0)
        rc = io_error(&l, path, errno);
    if (rc == 0)
        rc = S_ISDIR(st.st_mode) ? add_dir(&l, path) : add_source(&l, path);
    for (size_t i = 0; rc == 0 && i < l.nsrcs; i++) {
        l.src = &l.srcs[i];
        FILE *fp = fopen(l.src->file, "rb");
        if (!fp) {
            rc = io_error(&l, l.src->file, errno);
            break;
        }
        rc = load_doc(&l, fp, NULL);
        fclose(fp);
    }
    if (rc == 0)
        rc = build(&l);
    return loader_finish(&l, rc, out);
}
