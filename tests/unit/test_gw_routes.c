/* Unit tests for src/gateway/routes*.c: route config loading, input schema, argument checks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "routes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERRLEN 512

/* ---- helpers -------------------------------------------------------------- */

static struct routes *load_ok(const char *yaml)
{
    char err[ERRLEN] = "";
    struct routes *r = NULL;
    int rc = routes_load_string(yaml, "t.yaml", &r, err, sizeof err);
    if (rc != 0)
        fail_msg("unexpected error %d: %s", rc, err);
    assert_non_null(r);
    return r;
}

static void load_err(const char *yaml, const char *want)
{
    char err[ERRLEN] = "";
    struct routes *r = (struct routes *)1;
    assert_int_equal(routes_load_string(yaml, "t.yaml", &r, err, sizeof err), -EINVAL);
    assert_null(r);
    assert_string_equal(err, want);
}

static void assert_json(json_t *got, const char *want_text)
{
    json_error_t jerr;
    json_t *want = json_loads(want_text, JSON_DECODE_ANY, &jerr);
    if (!want)
        fail_msg("bad expected JSON %s: %s", want_text, jerr.text);
    assert_non_null(got);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
        print_error("got  %s\nwant %s\n", g, w);
        free(g);
        free(w);
        json_decref(want);
        fail();
    }
    json_decref(want);
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad JSON %s: %s", text, jerr.text);
    return v;
}

/* args_text NULL passes args NULL. */
static void args_ok(const struct tool *t, const char *args_text, const char *want)
{
    char err[ERRLEN] = "";
    json_t *args = args_text ? parse(args_text) : NULL;
    json_t *payload = NULL;
    int rc = tool_check_args(t, args, &payload, err, sizeof err);
    if (rc != 0)
        fail_msg("unexpected error %d for %s: %s", rc, args_text, err);
    assert_json(payload, want);
    assert_true(payload != args); /* a new object */
    json_decref(payload);
    json_decref(args);
}

static void args_err(const struct tool *t, const char *args_text, const char *want)
{
    char err[ERRLEN] = "";
    json_t *args = args_text ? parse(args_text) : NULL;
    json_t *payload = (json_t *)1;
    assert_int_equal(tool_check_args(t, args, &payload, err, sizeof err), -EINVAL);
    assert_null(payload);
    assert_string_equal(err, want);
    json_decref(args);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void remove_dir(const char *dir, const char *const *names)
{
    char path[512];
    for (; *names; names++) {
        snprintf(path, sizeof path, "%s/%s", dir, *names);
        unlink(path);
        rmdir(path);
    }
    assert_int_equal(rmdir(dir), 0);
}

/* ---- loading: valid files ------------------------------------------------ */

static void test_builtin(void **state)
{
    (void)state;
    char err[ERRLEN];
    const char *paths[] = {NULL, ""};
    for (int i = 0; i < 2; i++) {
        struct routes *r = NULL;
        assert_int_equal(routes_load(paths[i], &r, err, sizeof err), 0);
        assert_int_equal(r->ntools, 1);
        const struct tool *t = routes_find(r, "echo");
        assert_non_null(t);
        assert_int_equal(t->nparams, 1);
        assert_string_equal(t->params[0].name, "message");
        assert_int_equal(t->params[0].type, PARAM_STRING);
        assert_true(t->params[0].required);
        assert_int_equal(t->nsteps, 1);
        assert_string_equal(t->steps[0], "echo");
        assert_false(t->progress);
        assert_int_equal(t->timeout_sec, 300);
        assert_int_equal(t->nmeta, 0);
        routes_free(r);
    }
}

static const char full_yaml[] =
    "# every key\n"
    "defaults: {progress: true, timeout: 30}\n"
    "routes:\n"
    "  pipeline: [a, b]\n"
    "tools:\n"
    "  - name: test_pipeline\n"
    "    description: Test multi-step pipeline processing\n"
    "    parameters:\n"
    "      value: {type: integer, description: The value, required: true}\n"
    "      mode:  {type: string, options: [fast, slow], default: fast}\n"
    "      ratio: {type: number, default: 0.5}\n"
    "      dry: {type: boolean, default: false}\n"
    "      opts:\n"
    "        type: object\n"
    "        description: Options\n"
    "        properties:\n"
    "          depth: {type: number, required: true}\n"
    "          label: {type: string, default: none}\n"
    "      tags:\n"
    "        type: array\n"
    "        items: {type: string, options: [x, y]}\n"
    "    route: [test-doubler-queue, test-incrementer-queue]\n"
    "    progress: false\n"
    "    timeout: 10\n"
    "    metadata: {owner: team-x, count: 10, on: yes}\n"
    "  - name: by_name\n"
    "    route: pipeline\n";

static void test_full(void **state)
{
    (void)state;
    struct routes *r = load_ok(full_yaml);
    assert_int_equal(r->ntools, 2);
    const struct tool *t = &r->tools[0];
    assert_ptr_equal(routes_find(r, "test_pipeline"), t);
    assert_null(routes_find(r, "nope"));
    assert_null(routes_find(NULL, "echo"));
    assert_string_equal(t->description, "Test multi-step pipeline processing");
    assert_int_equal(t->nsteps, 2);
    assert_string_equal(t->steps[0], "test-doubler-queue");
    assert_string_equal(t->steps[1], "test-incrementer-queue");
    assert_false(t->progress);
    assert_int_equal(t->timeout_sec, 10);
    assert_int_equal(t->nmeta, 3);
    assert_string_equal(t->meta_keys[0], "owner");
    assert_string_equal(t->meta_values[0], "team-x");
    assert_string_equal(t->meta_keys[1], "count");
    assert_string_equal(t->meta_values[1], "10");
    assert_string_equal(t->meta_keys[2], "on");
    assert_string_equal(t->meta_values[2], "yes"); /* as written, not a YAML 1.1 boolean */

    assert_int_equal(t->nparams, 6);
    const struct param *p = t->params;
    assert_string_equal(p[0].name, "value");
    assert_int_equal(p[0].type, PARAM_INTEGER);
    assert_string_equal(p[0].description, "The value");
    assert_true(p[0].required);
    assert_null(p[0].default_value);
    assert_null(p[0].options);
    assert_string_equal(p[1].name, "mode");
    assert_null(p[1].description);
    assert_false(p[1].required);
    assert_json(p[1].options, "[\"fast\", \"slow\"]");
    assert_json(p[1].default_value, "\"fast\"");
    assert_int_equal(p[2].type, PARAM_NUMBER);
    assert_json(p[2].default_value, "0.5");
    assert_int_equal(p[3].type, PARAM_BOOLEAN);
    assert_json(p[3].default_value, "false");
    assert_int_equal(p[4].type, PARAM_OBJECT);
    assert_int_equal(p[4].nproperties, 2);
    assert_string_equal(p[4].properties[0].name, "depth");
    assert_true(p[4].properties[0].required);
    assert_json(p[4].properties[1].default_value, "\"none\"");
    assert_int_equal(p[5].type, PARAM_ARRAY);
    assert_non_null(p[5].items);
    assert_null(p[5].items->name);
    assert_int_equal(p[5].items->type, PARAM_STRING);

    /* Route by name, and the file's defaults. */
    t = &r->tools[1];
    assert_string_equal(t->name, "by_name");
    assert_string_equal(t->description, "");
    assert_int_equal(t->nparams, 0);
    assert_int_equal(t->nsteps, 2);
    assert_string_equal(t->steps[0], "a");
    assert_string_equal(t->steps[1], "b");
    assert_true(t->progress);
    assert_int_equal(t->timeout_sec, 30);
    routes_free(r);
}

static void test_defaults(void **state)
{
    (void)state;
    /* Built-in defaults. */
    struct routes *r = load_ok("tools: [{name: a, route: [q]}]\n");
    assert_false(r->tools[0].progress);
    assert_int_equal(r->tools[0].timeout_sec, 300);
    routes_free(r);

    /* Only one default set; the other stays built in.  0 = no deadline. */
    r = load_ok("defaults: {timeout: 0}\n"
                "tools:\n"
                "  - {name: a, route: [q]}\n"
                "  - {name: b, route: [q], progress: true, timeout: 7}\n");
    assert_false(r->tools[0].progress);
    assert_int_equal(r->tools[0].timeout_sec, 0);
    assert_true(r->tools[1].progress);
    assert_int_equal(r->tools[1].timeout_sec, 7);
    routes_free(r);

    /* Defaults after the tools in the file still apply. */
    r = load_ok("tools: [{name: a, route: [q]}]\n"
                "defaults: {progress: True}\n");
    assert_true(r->tools[0].progress);
    routes_free(r);
}

static void test_empty(void **state)
{
    (void)state;
    struct routes *r = load_ok("");
    assert_int_equal(r->ntools, 0);
    routes_free(r);
    r = load_ok("# only a comment\n");
    assert_int_equal(r->ntools, 0);
    routes_free(r);
    r = load_ok("tools: []\nroutes: {}\n");
    assert_int_equal(r->ntools, 0);
    routes_free(r);
    routes_free(NULL);
}

static void test_scalars(void **state)
{
    (void)state;
    struct routes *r = load_ok("tools:\n"
                               "  - name: s\n"
                               "    route: [q]\n"
                               "    parameters:\n"
                               "      a: {type: string, default: yes}\n"
                               "      b: {type: string, default: 10}\n"
                               "      c: {type: string, options: [10, on, null], default: null}\n"
                               "      d: {type: integer, default: -42, options: [-42, 7]}\n"
                               "      e: {type: number, default: 3}\n"
                               "      f: {type: number, default: -1.5e3}\n"
                               "      g: {type: boolean, default: TRUE}\n"
                               "      h: {type: string, default: '3.5'}\n"
                               "      i: {type: number, options: [.5, 2.]}\n");
    const struct param *p = r->tools[0].params;
    assert_json(p[0].default_value, "\"yes\"");
    assert_json(p[1].default_value, "\"10\"");
    assert_json(p[2].options, "[\"10\", \"on\", \"null\"]");
    assert_json(p[2].default_value, "\"null\"");
    assert_json(p[3].default_value, "-42");
    assert_true(json_is_integer(p[3].default_value));
    assert_json(p[3].options, "[-42, 7]");
    assert_true(json_is_integer(p[4].default_value));
    assert_json(p[4].default_value, "3");
    assert_json(p[5].default_value, "-1500.0");
    assert_json(p[6].default_value, "true");
    assert_json(p[7].default_value, "\"3.5\"");
    assert_json(p[8].options, "[0.5, 2.0]");
    routes_free(r);
}

static void test_nested_defaults_at_load(void **state)
{
    (void)state;
    struct routes *r =
        load_ok("tools:\n"
                "  - name: n\n"
                "    route: [q]\n"
                "    parameters:\n"
                "      opts:\n"
                "        type: object\n"
                "        properties:\n"
                "          depth: {type: integer}\n"
                "          name: {type: string}\n"
                "          mode: {type: string, default: fast}\n"
                "        default: {depth: 2, name: 10, extra: [1, x, true, ~, 1.5]}\n"
                "      list:\n"
                "        type: array\n"
                "        items: {type: string}\n"
                "        default: [1, yes]\n");
    const struct param *p = r->tools[0].params;
    /* Typed by the declared properties; the nested default is filled in; an
     * undeclared member is read as plain YAML. */
    assert_json(p[0].default_value, "{\"depth\": 2, \"name\": \"10\", \"mode\": \"fast\","
                                    " \"extra\": [1, \"x\", true, null, 1.5]}");
    assert_json(p[1].default_value, "[\"1\", \"yes\"]");
    routes_free(r);
}

static void test_file_path(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_gw_routes.XXXXXX";
    char path[600];
    char err[ERRLEN];
    struct routes *r = NULL;
    assert_non_null(mkdtemp(dir));
    write_file(dir, "one.conf", "tools:\n  - {name: x, route: [q]}\n  - {name: x, route: [q]}\n");
    snprintf(path, sizeof path, "%s/one.conf", dir);
    /* A file path is read whatever its name. */
    assert_int_equal(routes_load(path, &r, err, sizeof err), -EINVAL);
    char want[1400];
    snprintf(want, sizeof want, "%s:3: duplicate tool \"x\" (first defined at %s:2)", path, path);
    assert_string_equal(err, want);
    write_file(dir, "one.conf", "tools:\n  - {name: x, route: [q]}\n");
    assert_int_equal(routes_load(path, &r, err, sizeof err), 0);
    assert_int_equal(r->ntools, 1);
    routes_free(r);

    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    r = (struct routes *)1;
    assert_int_equal(routes_load(path, &r, err, sizeof err), -ENOENT);
    assert_null(r);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    assert_string_equal(err, want);
    const char *const names[] = {"one.conf", NULL};
    remove_dir(dir, names);
}

/* ---- loading: directories -------------------------------------------------- */

static void test_dir_merge(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_gw_routes.XXXXXX";
    char err[ERRLEN];
    struct routes *r = NULL;
    assert_non_null(mkdtemp(dir));
    /* b uses a's default and c's route; the names give the order. */
    write_file(dir, "b.yml",
               "tools:\n  - {name: two, route: shared}\n  - {name: three, route: [z]}\n");
    write_file(dir, "a.yaml", "defaults: {timeout: 5}\ntools: [{name: one, route: [y]}]\n");
    write_file(dir, "c.yaml", "routes: {shared: [s1, s2]}\ndefaults: {progress: true}\n");
    write_file(dir, "notes.txt", "not: [yaml\n");
    write_file(dir, ".hidden.yaml", "not: [yaml\n");
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub.yaml", dir);
    assert_int_equal(mkdir(sub, 0700), 0); /* a directory named *.yaml is skipped */

    assert_int_equal(routes_load(dir, &r, err, sizeof err), 0);
    assert_int_equal(r->ntools, 3);
    assert_string_equal(r->tools[0].name, "one");
    assert_string_equal(r->tools[1].name, "two");
    assert_string_equal(r->tools[2].name, "three");
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(r->tools[i].timeout_sec, 5);
        assert_true(r->tools[i].progress);
    }
    assert_int_equal(r->tools[1].nsteps, 2);
    assert_string_equal(r->tools[1].steps[1], "s2");
    routes_free(r);

    /* The same defaults and routes twice are fine. */
    write_file(dir, "d.yaml", "routes: {shared: [s1, s2]}\ndefaults: {timeout: 5}\n");
    assert_int_equal(routes_load(dir, &r, err, sizeof err), 0);
    routes_free(r);

    char want[1400];
    write_file(dir, "d.yaml", "\ndefaults: {timeout: 6}\n");
    r = (struct routes *)1;
    assert_int_equal(routes_load(dir, &r, err, sizeof err), -EINVAL);
    assert_null(r);
    snprintf(want, sizeof want, "%s/d.yaml:2: defaults.timeout differs from the one at %s/a.yaml:1",
             dir, dir);
    assert_string_equal(err, want);

    write_file(dir, "d.yaml", "defaults:\n  progress: false\n");
    assert_int_equal(routes_load(dir, &r, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want,
             "%s/d.yaml:2: defaults.progress differs from the one at %s/c.yaml:2", dir, dir);
    assert_string_equal(err, want);

    write_file(dir, "d.yaml", "routes:\n  shared: [s1]\n");
    assert_int_equal(routes_load(dir, &r, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "%s/d.yaml:2: route \"shared\" differs from the one at %s/c.yaml:1",
             dir, dir);
    assert_string_equal(err, want);

    /* The same tool in two files names both places. */
    write_file(dir, "d.yaml", "tools:\n  - route: [q]\n    name: two\n");
    assert_int_equal(routes_load(dir, &r, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "%s/d.yaml:3: duplicate tool \"two\" (first defined at %s/b.yml:2)",
             dir, dir);
    assert_string_equal(err, want);

    /* A syntax error in any file. */
    write_file(dir, "d.yaml", "tools:\n  - {name: x\n");
    assert_int_equal(routes_load(dir, &r, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want,
             "%s/d.yaml:3: did not find expected ',' or '}' while parsing a flow "
             "mapping (line 2)",
             dir);
    assert_string_equal(err, want);

    const char *const names[] = {"a.yaml",    "b.yml",        "c.yaml",   "d.yaml",
                                 "notes.txt", ".hidden.yaml", "sub.yaml", NULL};
    remove_dir(dir, names);
}

static void test_dir_empty(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_gw_routes.XXXXXX";
    char err[ERRLEN];
    char want[600];
    struct routes *r = (struct routes *)1;
    assert_non_null(mkdtemp(dir));
    write_file(dir, "x.json", "{}");
    assert_int_equal(routes_load(dir, &r, err, sizeof err), -ENOENT);
    assert_null(r);
    snprintf(want, sizeof want, "%s: no *.yaml or *.yml files", dir);
    assert_string_equal(err, want);
    const char *const names[] = {"x.json", NULL};
    remove_dir(dir, names);
}

/* ---- loading: errors with their lines --------------------------------------- */

static void test_unknown_keys(void **state)
{
    (void)state;
    load_err("tools: []\nextra: 1\n", "t.yaml:2: unknown key \"extra\" at the top level");
    load_err("defaults:\n  progress: true\n  retries: 3\n",
             "t.yaml:3: unknown key \"retries\" in defaults");
    /* The name comes after the unknown key and still names the tool. */
    load_err("tools:\n  - route: [q]\n    colour: red\n    name: paint\n",
             "t.yaml:3: unknown key \"colour\" in tool \"paint\"");
    load_err("tools:\n"
             "  - name: t\n"
             "    route: [q]\n"
             "    parameters:\n"
             "      v: {type: string,\n"
             "          optional: true}\n",
             "t.yaml:6: unknown key \"optional\" in parameter \"v\" of tool \"t\"");
    load_err("tools:\n"
             "  - name: t\n"
             "    route: [q]\n"
             "    parameters:\n"
             "      opts:\n"
             "        type: object\n"
             "        properties:\n"
             "          depth: {type: integer, min: 0}\n",
             "t.yaml:8: unknown key \"min\" in parameter \"opts.depth\" of tool \"t\"");
    load_err("tools:\n"
             "  - name: t\n"
             "    route: [q]\n"
             "    parameters:\n"
             "      l: {type: array, items: {type: string, format: x}}\n",
             "t.yaml:5: unknown key \"format\" in parameter \"l[]\" of tool \"t\"");
}

static void test_tool_errors(void **state)
{
    (void)state;
    load_err("tools:\n  - route: [q]\n", "t.yaml:2: a tool has no name");
    load_err("tools:\n  - name: ''\n    route: [q]\n", "t.yaml:2: a tool name is empty");
    load_err("tools:\n  - name: [a]\n", "t.yaml:2: a tool name must be a string, not a list");
    load_err("tools:\n  - {name: a, route: [q]}\n  - {name: b, route: [q]}\n"
             "  - {name: a, route: [r]}\n",
             "t.yaml:4: duplicate tool \"a\" (first defined at t.yaml:2)");
    load_err("tools:\n  - name: a\n", "t.yaml:2: tool \"a\" has no route");
    load_err("tools:\n  - name: a\n    route: []\n", "t.yaml:3: route of tool \"a\" is empty");
    load_err("tools:\n  - name: a\n    route: [q, '']\n",
             "t.yaml:3: a queue name in route of tool \"a\" is empty");
    load_err("tools:\n  - name: a\n    route: [q, [r]]\n",
             "t.yaml:3: a queue name in route of tool \"a\" must be a string, not a list");
    load_err("tools:\n  - name: a\n    route: {q: 1}\n",
             "t.yaml:3: route of tool \"a\" must be a list of queue names, not a mapping");
    load_err("routes: {p: [x]}\ntools:\n  - name: a\n    route: pipeline\n",
             "t.yaml:4: tool \"a\": unknown route \"pipeline\" (not in routes)");
    load_err("tools: {name: a}\n", "t.yaml:1: tools must be a list, not a mapping");
    load_err("tools:\n  - just-a-name\n", "t.yaml:2: a tool must be a mapping, not a scalar");
    load_err("tools:\n  - name: a\n    route: [q]\n    description: [x]\n",
             "t.yaml:4: description must be a string, not a list");
    load_err("tools:\n  - name: a\n    route: [q]\n    metadata: [x]\n",
             "t.yaml:4: metadata of tool \"a\" must be a mapping, not a list");
    load_err("tools:\n  - name: a\n    route: [q]\n    metadata:\n      k: {x: 1}\n",
             "t.yaml:5: metadata \"k\" of tool \"a\" must be a string, not a mapping");
    load_err("tools:\n  - name: a\n    route: [q]\n    parameters: [x]\n",
             "t.yaml:4: parameters of tool \"a\" must be a mapping, not a list");
}

static void test_setting_errors(void **state)
{
    (void)state;
    const char *timeout_msg = "timeout must be a whole number of seconds, 0 to 2147483647";
    const char *bad_timeouts[] = {"-1", "'10'", "1.5", "soon", "2147483648", "~"};
    for (size_t i = 0; i < sizeof bad_timeouts / sizeof bad_timeouts[0]; i++) {
        char yaml[200];
        char want[200];
        snprintf(yaml, sizeof yaml, "tools:\n  - name: a\n    route: [q]\n    timeout: %s\n",
                 bad_timeouts[i]);
        snprintf(want, sizeof want, "t.yaml:4: %s", timeout_msg);
        load_err(yaml, want);
        snprintf(yaml, sizeof yaml, "\n\ndefaults: {timeout: %s}\n", bad_timeouts[i]);
        snprintf(want, sizeof want, "t.yaml:3: %s", timeout_msg);
        load_err(yaml, want);
    }
    load_err("tools:\n  - name: a\n    route: [q]\n    progress: yes\n",
             "t.yaml:4: progress must be true or false");
    load_err("tools:\n  - name: a\n    route: [q]\n    progress: 'true'\n",
             "t.yaml:4: progress must be true or false");
    load_err("defaults: {progress: 1}\n", "t.yaml:1: defaults.progress must be true or false");
    load_err("defaults: [progress]\n", "t.yaml:1: defaults must be a mapping, not a list");
    load_err("routes: [a]\n", "t.yaml:1: routes must be a mapping of names to lists, not a list");
    load_err("routes:\n  p: []\n", "t.yaml:2: route \"p\" is empty");
    load_err("routes:\n  p: q\n",
             "t.yaml:2: route \"p\" must be a list of queue names, not a scalar");
    load_err("routes:\n  '': [q]\n", "t.yaml:2: a route name is empty");
}

static void test_param_errors(void **state)
{
    (void)state;
#define TOOL "tools:\n  - name: t\n    route: [q]\n    parameters:\n"
    load_err(TOOL "      v: {description: x}\n",
             "t.yaml:5: parameter \"v\" in tool \"t\" has no type");
    load_err(TOOL "      v: {type: text}\n",
             "t.yaml:5: unknown type \"text\" in parameter \"v\" of tool \"t\" (string, number, "
             "integer, boolean, object, array)");
    load_err(TOOL "      v: string\n",
             "t.yaml:5: parameter \"v\" in tool \"t\" must be a mapping, not a scalar");
    load_err(TOOL "      '': {type: string}\n",
             "t.yaml:5: a parameter name is empty in tool \"t\"");
    load_err(TOOL "      v: {type: string, required: maybe}\n",
             "t.yaml:5: required must be true or false");
    load_err(
        TOOL "      v:\n        type: string\n        properties: {}\n",
        "t.yaml:7: properties are only for an object parameter (parameter \"v\" of tool \"t\")");
    load_err(TOOL "      v:\n        type: object\n        items: {type: string}\n",
             "t.yaml:7: items are only for an array parameter (parameter \"v\" of tool \"t\")");
    load_err(
        TOOL "      v:\n        type: array\n        items: {type: string, required: true}\n",
        "t.yaml:7: \"required\" has no meaning for the items in parameter \"v[]\" of tool \"t\"");
    load_err(TOOL "      v:\n        type: object\n        properties:\n          d: {type: int}\n",
             "t.yaml:8: unknown type \"int\" in parameter \"v.d\" of tool \"t\" (string, number, "
             "integer, boolean, object, array)");
    load_err(TOOL "      v: {type: object, properties: [a]}\n",
             "t.yaml:5: properties of parameter \"v\" in tool \"t\" must be a mapping, not a list");
    load_err(TOOL "      v: {type: string}\n      v: {type: integer}\n",
             "t.yaml:6: duplicate key \"v\"");
    load_err(TOOL "      v: {type: string, type: integer}\n", "t.yaml:5: duplicate key \"type\"");
}

static void test_value_errors(void **state)
{
    (void)state;
    load_err(TOOL "      n: {type: integer, default: ten}\n",
             "t.yaml:5: default of parameter \"n\" in tool \"t\": expected integer, got \"ten\"");
    load_err(TOOL "      n: {type: integer, default: '10'}\n",
             "t.yaml:5: default of parameter \"n\" in tool \"t\": expected integer, got \"10\" (a "
             "quoted string)");
    load_err(TOOL "      n: {type: integer, default: 1.5}\n",
             "t.yaml:5: default of parameter \"n\" in tool \"t\": expected integer, got \"1.5\"");
    load_err(TOOL "      n: {type: integer, default: 99999999999999999999}\n",
             "t.yaml:5: default of parameter \"n\" in tool \"t\": expected integer, got "
             "\"99999999999999999999\"");
    load_err(TOOL "      n: {type: number, default: .inf}\n",
             "t.yaml:5: default of parameter \"n\" in tool \"t\": expected number, got \".inf\"");
    load_err(TOOL "      n: {type: number, default: 1e999}\n",
             "t.yaml:5: default of parameter \"n\" in tool \"t\": expected number, got \"1e999\"");
    load_err(TOOL "      b: {type: boolean, default: yes}\n",
             "t.yaml:5: default of parameter \"b\" in tool \"t\": expected boolean, got \"yes\"");
    load_err(TOOL "      s: {type: string, default: [a]}\n",
             "t.yaml:5: default of parameter \"s\" in tool \"t\": expected string, got a list");
    load_err(TOOL "      o: {type: object, default: x}\n",
             "t.yaml:5: default of parameter \"o\" in tool \"t\": expected object, got \"x\"");
    load_err(TOOL "      a: {type: array, default: {x: 1}}\n",
             "t.yaml:5: default of parameter \"a\" in tool \"t\": expected array, got a mapping");
    load_err(TOOL "      m: {type: string, options: [fast, slow], default: turbo}\n",
             "t.yaml:5: default in tool \"t\": parameter m: \"turbo\" is not one of [fast, slow]");
    load_err(TOOL
             "      m:\n        type: integer\n        options:\n          - 1\n          - two\n",
             "t.yaml:9: option of parameter \"m\" in tool \"t\": expected integer, got \"two\"");
    load_err(TOOL "      m: {type: string, options: []}\n",
             "t.yaml:5: options of parameter \"m\" in tool \"t\" must be a non-empty list");
    load_err(TOOL "      m: {type: string, options: x}\n",
             "t.yaml:5: options of parameter \"m\" in tool \"t\" must be a non-empty list");
    load_err(
        TOOL "      m: {type: object, options: [x]}\n",
        "t.yaml:5: options of parameter \"m\" in tool \"t\": only a string, number, integer or "
        "boolean parameter has options");
    load_err(TOOL "      m: {type: string, options: [{a: 1}]}\n",
             "t.yaml:5: option of parameter \"m\" in tool \"t\": expected string, got a mapping");
    /* Nested: the line of the offending member, and the shape's own checks. */
    load_err(TOOL "      o:\n"
                  "        type: object\n"
                  "        properties: {d: {type: integer}, e: {type: string, required: true}}\n"
                  "        default:\n"
                  "          e: x\n"
                  "          d: deep\n",
             "t.yaml:10: default of parameter \"o\" in tool \"t\": expected integer, got \"deep\"");
    load_err(TOOL "      o:\n"
                  "        type: object\n"
                  "        properties: {d: {type: integer}, e: {type: string, required: true}}\n"
                  "        default: {d: 1}\n",
             "t.yaml:8: default in tool \"t\": missing required parameter: o.e");
    load_err(TOOL "      l:\n"
                  "        type: array\n"
                  "        items: {type: integer, options: [1, 2]}\n"
                  "        default: [1, 3]\n",
             "t.yaml:8: default in tool \"t\": parameter l[1]: 3 is not one of [1, 2]");
    load_err(TOOL "      o: {type: object, default: {a: 1, a: 2}}\n",
             "t.yaml:5: duplicate key \"a\"");
}

static void test_document_errors(void **state)
{
    (void)state;
    load_err("[a, b]\n", "t.yaml:1: the top level must be a mapping, not a list");
    load_err("tools:\n  - name: a\n   route: [q]\n",
             "t.yaml:3: did not find expected '-' indicator while parsing a block collection (line "
             "2)");
    load_err("tools: []\n---\ntools: []\n", "t.yaml:3: more than one YAML document");
    load_err("tools:\n  - name: a\n    route: [q]\n    timeout: !!int 5\n",
             "t.yaml:4: YAML tags are not supported (tag:yaml.org,2002:int)");
    load_err("tools:\n  - name: a\n    route: !queues [q]\n",
             "t.yaml:3: YAML tags are not supported (!queues)");
    load_err("? [a]\n: b\n", "t.yaml:1: a key must be a string, not a list");
    load_err("tools: []\ntools: []\n", "t.yaml:2: duplicate key \"tools\"");
    load_err("tools:\n  - name: \"a\\0b\"\n", "t.yaml:2: a tool name contains a NUL character");
    load_err("tools:\n  - {name: a, route: [q], \"na\\0me\": 1}\n",
             "t.yaml:2: a key contains a NUL character");
    /* An alias loop in a shape stops at the depth limit instead of recursing forever. */
    load_err(TOOL "      o: &x {type: object, properties: {p: *x}}\n",
             "t.yaml:5: nested more than 32 levels deep");
}

static void test_limits(void **state)
{
    (void)state;
    /* Not UTF-8: the reader reports a byte offset, not a line. */
    load_err("tools:\n  - name: \xff\n", "t.yaml: invalid leading UTF-8 octet at byte 17");
    /* An alias bomb (10^6 nodes from a few lines) stops at the node budget. */
    load_err("tools:\n"
             "  - name: t\n"
             "    route: [q]\n"
             "    parameters:\n"
             "      l:\n"
             "        type: array\n"
             "        default:\n"
             "          - &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
             "          - &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
             "          - &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
             "          - &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
             "          - &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
             "          - [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
             "t.yaml:8: too many nodes (more than 100000, with aliases)");
    /* Deep nesting without aliases. */
    char yaml[4096] = "tools:\n  - name: t\n    route: [q]\n    parameters:\n      o: ";
    for (int i = 0; i < 40; i++)
        strcat(yaml, "{type: object, properties: {o: ");
    strcat(yaml, "{type: string}");
    for (int i = 0; i < 40; i++)
        strcat(yaml, "}}");
    strcat(yaml, "\n");
    load_err(yaml, "t.yaml:5: nested more than 32 levels deep");

    /* No error buffer: still an error code. */
    struct routes *r = NULL;
    assert_int_equal(routes_load_string("tools: 1\n", "t.yaml", &r, NULL, 0), -EINVAL);
    assert_null(r);
}

static void test_aliases(void **state)
{
    (void)state;
    /* Plain (non-recursive) aliases work like the copied text. */
    struct routes *r = load_ok("routes: {p: &q [a, b]}\n"
                               "tools:\n"
                               "  - {name: x, route: *q, parameters: {v: &v {type: integer}}}\n"
                               "  - {name: y, route: [z], parameters: {w: *v}}\n");
    assert_int_equal(r->tools[0].nsteps, 2);
    assert_string_equal(r->tools[1].params[0].name, "w");
    assert_int_equal(r->tools[1].params[0].type, PARAM_INTEGER);
    routes_free(r);
}

/* ---- input schema ---------------------------------------------------------- */

static void test_schema(void **state)
{
    (void)state;
    struct routes *r = load_ok(full_yaml);
    json_t *s = tool_input_schema(&r->tools[0]);
    assert_json(s, "{\"type\": \"object\","
                   " \"properties\": {"
                   "  \"value\": {\"type\": \"integer\", \"description\": \"The value\"},"
                   "  \"mode\": {\"type\": \"string\", \"enum\": [\"fast\", \"slow\"],"
                   "            \"default\": \"fast\"},"
                   "  \"ratio\": {\"type\": \"number\", \"default\": 0.5},"
                   "  \"dry\": {\"type\": \"boolean\", \"default\": false},"
                   "  \"opts\": {\"type\": \"object\", \"description\": \"Options\","
                   "            \"properties\": {\"depth\": {\"type\": \"number\"},"
                   "                             \"label\": {\"type\": \"string\","
                   "                                         \"default\": \"none\"}},"
                   "            \"required\": [\"depth\"]},"
                   "  \"tags\": {\"type\": \"array\","
                   "            \"items\": {\"type\": \"string\", \"enum\": [\"x\", \"y\"]}}},"
                   " \"required\": [\"value\"]}");
    json_decref(s);

    /* No parameters: properties still there, no "required". */
    s = tool_input_schema(&r->tools[1]);
    assert_json(s, "{\"type\": \"object\", \"properties\": {}}");
    json_decref(s);
    routes_free(r);

    /* An object without properties and an array without items take anything;
     * a nested object's required list is only there when non-empty. */
    r = load_ok(TOOL "      any: {type: object}\n"
                     "      list: {type: array}\n"
                     "      o: {type: object, properties: {a: {type: string}}}\n"
                     "      l:\n"
                     "        type: array\n"
                     "        items:\n"
                     "          type: object\n"
                     "          properties: {k: {type: integer, required: true}}\n");
    s = tool_input_schema(&r->tools[0]);
    assert_json(s,
                "{\"type\": \"object\", \"properties\": {"
                " \"any\": {\"type\": \"object\"}, \"list\": {\"type\": \"array\"},"
                " \"o\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}},"
                " \"l\": {\"type\": \"array\", \"items\": {\"type\": \"object\","
                "        \"properties\": {\"k\": {\"type\": \"integer\"}},"
                "        \"required\": [\"k\"]}}}}");
    json_decref(s);
    routes_free(r);
}

/* ---- argument checks ------------------------------------------------------- */

static void test_args_basic(void **state)
{
    (void)state;
    struct routes *r = load_ok(full_yaml);
    const struct tool *t = &r->tools[0];
    /* Defaults applied, nested too; unknown names kept. */
    args_ok(t, "{\"value\": 4, \"opts\": {\"depth\": 1.5, \"x\": [1]}, \"zz\": {\"a\": null}}",
            "{\"value\": 4, \"mode\": \"fast\", \"ratio\": 0.5, \"dry\": false,"
            " \"opts\": {\"depth\": 1.5, \"label\": \"none\", \"x\": [1]}, \"zz\": {\"a\": null}}");
    args_ok(t,
            "{\"value\": -1, \"mode\": \"slow\", \"ratio\": 2, \"dry\": true, \"tags\": [\"y\", "
            "\"x\"]}",
            "{\"value\": -1, \"mode\": \"slow\", \"ratio\": 2, \"dry\": true, \"tags\": [\"y\", "
            "\"x\"]}");
    args_err(t, "{}", "missing required parameter: value");
    args_err(t, NULL, "missing required parameter: value");
    args_err(t, "{\"value\": \"4\"}", "parameter value: expected integer, got string");
    args_err(t, "{\"value\": 2.5}", "parameter value: expected integer, got number");
    args_err(t, "{\"value\": true}", "parameter value: expected integer, got boolean");
    args_err(t, "{\"value\": null}", "parameter value: expected integer, got null");
    args_err(t, "{\"value\": 1, \"mode\": \"turbo\"}",
             "parameter mode: \"turbo\" is not one of [fast, slow]");
    args_err(t, "{\"value\": 1, \"mode\": 1}", "parameter mode: expected string, got integer");
    args_err(t, "{\"value\": 1, \"ratio\": \"1\"}", "parameter ratio: expected number, got string");
    args_err(t, "{\"value\": 1, \"dry\": 0}", "parameter dry: expected boolean, got integer");
    args_err(t, "{\"value\": 1, \"dry\": \"true\"}", "parameter dry: expected boolean, got string");
    args_err(t, "{\"value\": 1, \"opts\": []}", "parameter opts: expected object, got array");
    args_err(t, "{\"value\": 1, \"opts\": {}}", "missing required parameter: opts.depth");
    args_err(t, "{\"value\": 1, \"opts\": {\"depth\": false}}",
             "parameter opts.depth: expected number, got boolean");
    args_err(t, "{\"value\": 1, \"tags\": {}}", "parameter tags: expected array, got object");
    args_err(t, "{\"value\": 1, \"tags\": [\"x\", \"y\", 3]}",
             "parameter tags[2]: expected string, got integer");
    args_err(t, "{\"value\": 1, \"tags\": [\"x\", \"y\", \"z\"]}",
             "parameter tags[2]: \"z\" is not one of [x, y]");
    args_err(t, "[1]", "arguments: expected object, got array");

    /* A tool without parameters passes everything through. */
    args_ok(&r->tools[1], NULL, "{}");
    args_ok(&r->tools[1], "{\"a\": [1, {\"b\": 2}]}", "{\"a\": [1, {\"b\": 2}]}");
    routes_free(r);
}

static void test_args_integers(void **state)
{
    (void)state;
    struct routes *r = load_ok(TOOL "      n: {type: integer}\n"
                                    "      m: {type: integer, options: [1, 2]}\n"
                                    "      x: {type: number, options: [0.5, 2]}\n");
    const struct tool *t = &r->tools[0];
    char err[ERRLEN];
    json_t *args = parse("{\"n\": 3.0, \"m\": 2.0, \"x\": 2.0}");
    json_t *payload = NULL;
    assert_int_equal(tool_check_args(t, args, &payload, err, sizeof err), 0);
    /* An integral real becomes the integer; a number stays as given. */
    assert_true(json_is_integer(json_object_get(payload, "n")));
    assert_int_equal(json_integer_value(json_object_get(payload, "n")), 3);
    assert_true(json_is_integer(json_object_get(payload, "m")));
    assert_true(json_is_real(json_object_get(payload, "x")));
    json_decref(payload);
    json_decref(args);

    args_ok(t, "{\"n\": 9223372036854775807, \"x\": 0.5}",
            "{\"n\": 9223372036854775807, \"x\": 0.5}");
    args_ok(t, "{\"n\": -9.223372036854775808e18}", "{\"n\": -9223372036854775808}");
    args_err(t, "{\"n\": 9.3e18}", "parameter n: expected integer, got number");
    args_err(t, "{\"n\": 1e300}", "parameter n: expected integer, got number");
    args_err(t, "{\"m\": 3}", "parameter m: 3 is not one of [1, 2]");
    args_err(t, "{\"m\": 3.0}", "parameter m: 3.0 is not one of [1, 2]");
    args_err(t, "{\"x\": 0.25}", "parameter x: 0.25 is not one of [0.5, 2]");
    routes_free(r);
}

static void test_args_nested(void **state)
{
    (void)state;
    struct routes *r = load_ok(TOOL "      cfg:\n"
                                    "        type: object\n"
                                    "        default: {}\n"
                                    "        properties:\n"
                                    "          level: {type: integer, default: 1}\n"
                                    "          inner:\n"
                                    "            type: object\n"
                                    "            properties:\n"
                                    "              flag: {type: boolean, default: true}\n"
                                    "      rows:\n"
                                    "        type: array\n"
                                    "        items:\n"
                                    "          type: object\n"
                                    "          properties:\n"
                                    "            name: {type: string, required: true}\n"
                                    "            n: {type: integer, default: 0}\n"
                                    "      req: {type: string, required: true, default: d}\n");
    const struct tool *t = &r->tools[0];
    /* A default object gets its own nested defaults; a default fills a
     * required parameter. */
    args_ok(t, NULL, "{\"cfg\": {\"level\": 1}, \"req\": \"d\"}");
    args_ok(t, "{\"cfg\": {\"inner\": {}}}",
            "{\"cfg\": {\"level\": 1, \"inner\": {\"flag\": true}}, \"req\": \"d\"}");
    args_ok(
        t, "{\"rows\": [{\"name\": \"a\"}, {\"name\": \"b\", \"n\": 5, \"k\": 1}], \"req\": \"r\"}",
        "{\"cfg\": {\"level\": 1}, \"req\": \"r\","
        " \"rows\": [{\"name\": \"a\", \"n\": 0}, {\"name\": \"b\", \"n\": 5, \"k\": 1}]}");
    args_err(t, "{\"rows\": [{\"name\": \"a\"}, {\"n\": 1}]}",
             "missing required parameter: rows[1].name");
    args_err(t, "{\"rows\": [{\"name\": \"a\", \"n\": \"1\"}]}",
             "parameter rows[0].n: expected integer, got string");
    args_err(t, "{\"rows\": [1]}", "parameter rows[0]: expected object, got integer");
    args_err(t, "{\"cfg\": {\"inner\": {\"flag\": \"no\"}}}",
             "parameter cfg.inner.flag: expected boolean, got string");

    /* The caller's arguments are not changed. */
    json_t *args = parse("{\"cfg\": {\"inner\": {}}}");
    json_t *payload = NULL;
    char err[ERRLEN];
    assert_int_equal(tool_check_args(t, args, &payload, err, sizeof err), 0);
    assert_json(args, "{\"cfg\": {\"inner\": {}}}");
    json_decref(payload);
    json_decref(args);
    routes_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin),         cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_scalars),         cmocka_unit_test(test_nested_defaults_at_load),
        cmocka_unit_test(test_file_path),       cmocka_unit_test(test_dir_merge),
        cmocka_unit_test(test_dir_empty),       cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_tool_errors),     cmocka_unit_test(test_setting_errors),
        cmocka_unit_test(test_param_errors),    cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_document_errors), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_aliases),         cmocka_unit_test(test_schema),
        cmocka_unit_test(test_args_basic),      cmocka_unit_test(test_args_integers),
        cmocka_unit_test(test_args_nested),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
