/*
 * routes.h - the gateway's tool configuration: MCP tools, each with typed
 * parameters and a route of actor queues, read from YAML (libyaml) strictly:
 * an unknown key, a wrong type or a duplicate tool is an error naming the
 * file and line.  Also the two things a tool call needs from it: the MCP
 * input schema of a tool, and the checking of a call's arguments (types,
 * options, nested shapes, required names) with defaults applied.
 *
 * The YAML shape (GATEWAY.md "Route config"):
 *   defaults: {progress: bool, timeout: seconds}    built-in: false, 300
 *   routes:   {name: [queue, ...]}
 *   tools:    [{name, description, parameters: {p: {type, description,
 *              required, default, options, properties, items}}, route: [..] or
 *              a routes name, progress, timeout (0 = none), metadata: {k: v}}]
 */
#ifndef ASYA_GW_ROUTES_H
#define ASYA_GW_ROUTES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum param_type {
    PARAM_STRING = 0,
    PARAM_NUMBER,
    PARAM_INTEGER,
    PARAM_BOOLEAN,
    PARAM_OBJECT,
    PARAM_ARRAY,
};

/* One parameter (or nested property / array item shape). */
struct param {
    char *name; /* NULL for an array's items */
    enum param_type type;
    char *description; /* may be NULL */
    bool required;
    json_t *default_value;    /* may be NULL; already checked against the type */
    json_t *options;          /* JSON array of allowed values, or NULL */
    struct param *properties; /* PARAM_OBJECT: nproperties of them */
    size_t nproperties;
    struct param *items; /* PARAM_ARRAY: the shape of each item, or NULL (any) */
};

struct tool {
    char *name;
    char *description; /* "" when absent */
    struct param *params;
    size_t nparams;
    char **steps; /* the route: at least one queue name */
    size_t nsteps;
    bool progress;
    long timeout_sec; /* 0 = no deadline */
    char **meta_keys; /* metadata, nmeta pairs, in file order */
    char **meta_values;
    size_t nmeta;
};

struct routes {
    struct tool *tools;
    size_t ntools;
};

/*
 * Load path: a YAML file, or a directory whose *.yaml / *.yml files are
 * merged in name order.  path NULL or "" gives the built-in example (one tool
 * "echo": parameter message (string, required), route [echo]).  On error
 * returns -EINVAL (or -ENOENT, -ENOMEM) with "file:line: what" in err.
 */
int routes_load(const char *path, struct routes **out, char *err, size_t errlen);

/* The same from YAML text; name is used in error messages as the file. */
int routes_load_string(const char *yaml, const char *name, struct routes **out, char *err,
                       size_t errlen);

void routes_free(struct routes *r);

/* Borrowed; NULL when no tool has that name. */
const struct tool *routes_find(const struct routes *r, const char *name);

/* The MCP inputSchema: {"type":"object","properties":{...},"required":[...]}
 * with description, enum (options), default, properties and items (new
 * reference). */
json_t *tool_input_schema(const struct tool *t);

/*
 * Check a call's arguments (NULL or a JSON object) against the tool and
 * return in *payload a new object: the arguments with defaults applied
 * (nested too).  Unknown argument names are kept as given.  On a problem
 * returns -EINVAL with one line in err, e.g.
 *   missing required parameter: value
 *   parameter value: expected integer, got string
 *   parameter mode: "turbo" is not one of [fast, slow]
 *   parameter opts.depth: expected number, got boolean
 */
int tool_check_args(const struct tool *t, const json_t *args, json_t **payload, char *err,
                    size_t errlen);

#endif /* ASYA_GW_ROUTES_H */
