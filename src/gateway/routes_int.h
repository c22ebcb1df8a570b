/*
 * routes_int.h - private to routes.c (the model, the input schema, argument
 * checking) and routes_yaml.c (loading): what the loader needs from the
 * model to build it and to check a parameter's default the way a call's
 * argument is checked.
 */
#ifndef ASYA_GW_ROUTES_INT_H
#define ASYA_GW_ROUTES_INT_H

#include "routes.h"

/* "string", "number", ... (the JSON Schema names, also used in the YAML). */
const char *routes_type_name(enum param_type t);
/* 0, or -EINVAL when s names no type. */
int routes_type_parse(const char *s, enum param_type *out);

/* Frees what p owns (not p itself); p may be partly built (calloc'd). */
void routes_param_clear(struct param *p);
/* Frees what t owns (not t itself); t may be partly built. */
void routes_tool_clear(struct tool *t);

/*
 * Check v against p as a call's argument at path (e.g. "opts.depth") and
 * return in *out a new reference: the value with nested defaults applied and
 * integral reals of integer parameters made integers.  -EINVAL with one line
 * in err ("parameter opts.depth: expected number, got boolean"), or -ENOMEM.
 */
int routes_check_value(const struct param *p, const json_t *v, const char *path, json_t **out,
                       char *err, size_t errlen);

#endif /* ASYA_GW_ROUTES_INT_H */
