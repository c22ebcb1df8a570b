/*
 * routes.c - the tool model (lookup, freeing), the MCP input schema of a
 * tool, and the checking of a call's arguments.  Loading the YAML lives in
 * routes_yaml.c.
 *
 * Argument rules, beyond "required names are present":
 *   - string: a JSON string; boolean: true or false only.
 *   - number: any JSON number (integer or real), kept as given.
 *   - integer: a JSON integer, or a real with an integral value in the range
 *     of json_int_t (3.0, which some JSON encoders emit for 3); the payload
 *     then carries the integer 3, so actors see one representation.  2.5 is
 *     "expected integer, got number".
 *   - null is a value of its own type: "expected string, got null", also
 *     for an optional parameter (the schema does not allow null).
 *   - options compare numbers by value (an option 2 matches 2.0).
 *   - a parameter with a default is never missing: the default fills it in,
 *     even when the parameter is also marked required.
 *   - unknown names, at the top and inside objects, are kept as given.
 */
#include "routes.h"
#include "routes_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the model ----------------------------------------------------------- */

static const char *const type_names[] = {
    [PARAM_STRING] = "string",   [PARAM_NUMBER] = "number", [PARAM_INTEGER] = "integer",
    [PARAM_BOOLEAN] = "boolean", [PARAM_OBJECT] = "object", [PARAM_ARRAY] = "array",
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

const char *routes_type_name(enum param_type t)
{
    if ((size_t)t >= NTYPES)
        return "?";
    return type_names[t];
}

int routes_type_parse(const char *s, enum param_type *out)
{
    for (size_t i = 0; i < NTYPES; i++) {
        if (strcmp(s, type_names[i]) == 0) {
            *out = (enum param_type)i;
            return 0;
        }
    }
    return -EINVAL;
}

void routes_param_clear(struct param *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->description);
    json_decref(p->default_value);
    json_decref(p->options);
    for (size_t i = 0; i < p->nproperties; i++)
        routes_param_clear(&p->properties[i]);
    free(p->properties);
    routes_param_clear(p->items);
    free(p->items);
    memset(p, 0, sizeof *p);
}

void routes_tool_clear(struct tool *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->description);
    for (size_t i = 0; i < t->nparams; i++)
        routes_param_clear(&t->params[i]);
    free(t->params);
    for (size_t i = 0; i < t->nsteps; i++)
        free(t->steps[i]);
    free(t->steps);
    for (size_t i = 0; i < t->nmeta; i++) {
        free(t->meta_keys[i]);
        free(t->meta_values ? t->meta_values[i] : NULL);
    }
    free(t->meta_keys);
    free(t->meta_values);
    memset(t, 0, sizeof *t);
}

void routes_free(struct routes *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->ntools; i++)
        routes_tool_clear(&r->tools[i]);
    free(r->tools);
    free(r);
}

const struct tool *routes_find(const struct routes *r, const char *name)
{
    if (!r || !name)
        return NULL;
    for (size_t i = 0; i < r->ntools; i++)
        if (strcmp(r->tools[i].name, name) == 0)
            return &r->tools[i];
    return NULL;
}

/* ---- input schema -------------------------------------------------------- */

/* Sets key to v (stolen, may be NULL after a failed allocation); false once
 * anything failed, so a builder checks once at the end. */
static bool schema_set(json_t *o, const char *key, json_t *v, bool ok)
{
    if (!v)
        return false;
    return json_object_set_new(o, key, v) == 0 && ok;
}

static json_t *param_schema(const struct param *p);

/* "properties" and (when non-empty) "required" of an object shape into o. */
static bool schema_properties(json_t *o, const struct param *props, size_t n, bool ok)
{
    json_t *pr = json_object();
    json_t *req = json_array();
    if (!pr || !req) {
        json_decref(pr);
        json_decref(req);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        ok = schema_set(pr, props[i].name, param_schema(&props[i]), ok);
        if (props[i].required && json_array_append_new(req, json_string(props[i].name)) != 0)
            ok = false;
    }
    ok = schema_set(o, "properties", pr, ok);
    if (json_array_size(req) > 0)
        return schema_set(o, "required", req, ok);
    json_decref(req);
    return ok;
}

/* New reference, NULL on allocation failure. */
static json_t *param_schema(const struct param *p)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool ok = schema_set(o, "type", json_string(routes_type_name(p->type)), true);
    if (p->description)
        ok = schema_set(o, "description", json_string(p->description), ok);
    if (p->options)
        ok = schema_set(o, "enum", json_deep_copy(p->options), ok);
    if (p->default_value)
        ok = schema_set(o, "default", json_deep_copy(p->default_value), ok);
    /* An object without declared properties takes any members. */
    if (p->type == PARAM_OBJECT && p->nproperties > 0)
        ok = schema_properties(o, p->properties, p->nproperties, ok);
    if (p->type == PARAM_ARRAY && p->items)
        ok = schema_set(o, "items", param_schema(p->items), ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *tool_input_schema(const struct tool *t)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool ok = schema_set(o, "type", json_string("object"), true);
    /* The top level always has "properties", even with no parameters. */
    ok = schema_properties(o, t->params, t->nparams, ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- argument checking --------------------------------------------------- */

/* The dotted path of the value being checked: "opts.depth", "items[2]". */
struct argpath {
    char buf[256];
    size_t len;
};

static size_t path_add(struct argpath *p, int n)
{
    size_t old = p->len;
    if (n > 0)
        p->len += (size_t)n;
    if (p->len >= sizeof p->buf)
        p->len = sizeof p->buf - 1; /* truncated; the message stays readable */
    return old;
}

static size_t path_push_name(struct argpath *p, const char *name)
{
    return path_add(
        p, snprintf(p->buf + p->len, sizeof p->buf - p->len, "%s%s", p->len ? "." : "", name));
}

static size_t path_push_index(struct argpath *p, size_t i)
{
    return path_add(p, snprintf(p->buf + p->len, sizeof p->buf - p->len, "[%zu]", i));
}

static void path_pop(struct argpath *p, size_t old)
{
    p->len = old;
    p->buf[old] = '\0';
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

/* Numbers by value (2 == 2.0), everything else as JSON. */
static bool values_equal(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

#define DUMP_FLAGS (JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Appends "fast, slow" (strings as written, others as JSON) to buf. */
static void format_options(const json_t *options, char *buf, size_t len)
{
    size_t used = 0;
    size_t i;
    json_t *o;
    buf[0] = '\0';
    json_array_foreach(options, i, o)
    {
        char *dump = json_is_string(o) ? NULL : json_dumps(o, DUMP_FLAGS);
        const char *text = json_is_string(o) ? json_string_value(o) : dump ? dump : "?";
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", text);
        free(dump);
        if (n < 0 || (size_t)n >= len - used)
            return; /* truncated */
        used += (size_t)n;
    }
}

static int options_error(const json_t *v, const json_t *options, const struct argpath *path,
                         char *err, size_t errlen)
{
    char list[192];
    char *dump = json_dumps(v, DUMP_FLAGS);
    format_options(options, list, sizeof list);
    snprintf(err, errlen, "parameter %s: %s is not one of [%s]", path->buf, dump ? dump : "value",
             list);
    free(dump);
    return -EINVAL;
}

static int type_error(const struct param *p, const json_t *v, const struct argpath *path, char *err,
                      size_t errlen)
{
    snprintf(err, errlen, "parameter %s: expected %s, got %s", path->buf, routes_type_name(p->type),
             json_kind(v));
    return -EINVAL;
}

static int nomem(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

/* The range of json_int_t as doubles: [-2^63, 2^63). */
#define INT_LO (-9223372036854775808.0)
#define INT_HI (9223372036854775808.0)

static int check_value(const struct param *p, const json_t *v, struct argpath *path, json_t **out,
                       char *err, size_t errlen);

/*
 * The members of obj against props: a deep copy of obj (unknown members
 * kept) with each declared member checked and missing ones defaulted.
 */
static int check_members(const struct param *props, size_t n, const json_t *obj,
                         struct argpath *path, json_t **out, char *err, size_t errlen)
{
    json_t *copy = json_deep_copy(obj);
    if (!copy)
        return nomem(err, errlen);
    for (size_t i = 0; i < n; i++) {
        const struct param *p = &props[i];
        const json_t *v = json_object_get(obj, p->name);
        size_t old = path_push_name(path, p->name);
        json_t *checked = NULL;
        int rc = 0;
        if (v) {
            rc = check_value(p, v, path, &checked, err, errlen);
        } else if (p->default_value) {
            checked = json_deep_copy(p->default_value);
            if (!checked)
                rc = nomem(err, errlen);
        } else if (p->required) {
            snprintf(err, errlen, "missing required parameter: %s", path->buf);
            rc = -EINVAL;
        }
        path_pop(path, old);
        if (rc == 0 && checked && json_object_set_new(copy, p->name, checked) != 0)
            rc = nomem(err, errlen);
        if (rc < 0) {
            json_decref(copy);
            return rc;
        }
    }
    *out = copy;
    return 0;
}

static int check_items(const struct param *items, const json_t *arr, struct argpath *path,
                       json_t **out, char *err, size_t errlen)
{
    json_t *copy = json_array();
    if (!copy)
        return nomem(err, errlen);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        json_t *checked = NULL;
        int rc = 0;
        if (items) {
            size_t old = path_push_index(path, i);
            rc = check_value(items, v, path, &checked, err, errlen);
            path_pop(path, old);
        } else if (!(checked = json_deep_copy(v))) {
            rc = nomem(err, errlen);
        }
        if (rc == 0 && json_array_append_new(copy, checked) != 0)
            rc = nomem(err, errlen);
        if (rc < 0) {
            json_decref(copy);
            return rc;
        }
    }
    *out = copy;
    return 0;
}

static int check_value(const struct param *p, const json_t *v, struct argpath *path, json_t **out,
                       char *err, size_t errlen)
{
    json_t *res = NULL;
    switch (p->type) {
    case PARAM_STRING:
        if (!json_is_string(v))
            return type_error(p, v, path, err, errlen);
        res = json_deep_copy(v);
        break;
    case PARAM_NUMBER:
        if (!json_is_number(v))
            return type_error(p, v, path, err, errlen);
        res = json_deep_copy(v);
        break;
    case PARAM_INTEGER:
        if (json_is_integer(v)) {
            res = json_deep_copy(v);
        } else if (json_is_real(v)) {
            double d = json_real_value(v);
            /* In range first: the cast of an out-of-range double is undefined. */
            if (!(d >= INT_LO && d < INT_HI) || (double)(json_int_t)d != d)
                return type_error(p, v, path, err, errlen);
            res = json_integer((json_int_t)d);
        } else {
            return type_error(p, v, path, err, errlen);
        }
        break;
    case PARAM_BOOLEAN:
        if (!json_is_boolean(v))
            return type_error(p, v, path, err, errlen);
        res = json_deep_copy(v);
        break;
    case PARAM_OBJECT:
        if (!json_is_object(v))
            return type_error(p, v, path, err, errlen);
        return check_members(p->properties, p->nproperties, v, path, out, err, errlen);
    case PARAM_ARRAY:
        if (!json_is_array(v))
            return type_error(p, v, path, err, errlen);
        return check_items(p->items, v, path, out, err, errlen);
    default:
        return type_error(p, v, path, err, errlen);
    }
    if (!res)
        return nomem(err, errlen);
    if (p->options) {
        size_t i;
        json_t *o;
        bool found = false;
        json_array_foreach(p->options, i, o)
        {
            if (values_equal(res, o)) {
                found = true;
                break;
            }
        }
        if (!found) {
            json_decref(res);
            return options_error(v, p->options, path, err, errlen);
        }
    }
    *out = res;
    return 0;
}

int routes_check_value(const struct param *p, const json_t *v, const char *path, json_t **out,
                       char *err, size_t errlen)
{
    struct argpath ap = {.len = 0};
    ap.buf[0] = '\0';
    path_push_name(&ap, path);
    return check_value(p, v, &ap, out, err, errlen);
}

int tool_check_args(const struct tool *t, const json_t *args, json_t **payload, char *err,
                    size_t errlen)
{
    *payload = NULL;
    json_t *empty = NULL;
    if (!args) {
        empty = json_object();
        if (!empty)
            return nomem(err, errlen);
        args = empty;
    }
    if (!json_is_object(args)) {
        snprintf(err, errlen, "arguments: expected object, got %s", json_kind(args));
        return -EINVAL;
    }
    struct argpath ap = {.len = 0};
    ap.buf[0] = '\0';
    int rc = check_members(t->params, t->nparams, args, &ap, payload, err, errlen);
    json_decref(empty);
    return rc;
}
