"""handlers/examples/: every example through asya-invoke (and, where state or
recovery matters, through a long-running asya-runtime)."""

import os
import subprocess

import pytest

from invokelib import (ASAN, EXAMPLES, EXIT_OK, EXIT_OOM, EXIT_PROCESSING, EXIT_USAGE, REPO, Runtime,
                       example, invoke)

ROUTE = {"actors": ["invoke"], "current": 0}
RUST = os.path.join(EXAMPLES, "rust_shout.so")

# What each example library may export: the stamp, the hooks and its handlers.
EXPORTS = {
    "wordcount.so": {"asya_module_magic", "wordcount"},
    "stopwords.so": {"asya_module_magic", "asya_init", "asya_fini", "remove_stopwords"},
    "router.so": {"asya_module_magic", "asya_init", "route_by_length"},
    "stats.so": {"asya_module_magic", "stats", "always_throws", "unguarded_throw"},
    "rust_shout.so": {"asya_module_magic", "shout"},
}


def payload_of(res):
    assert res.code == EXIT_OK, res
    answer = res.json()
    assert len(answer) == 1 and answer[0]["route"] == ROUTE, answer
    return answer[0]["payload"]


@pytest.mark.parametrize("lib", sorted(EXPORTS))
def test_exports_only_the_abi(lib):
    path = os.path.join(EXAMPLES, lib)
    if lib == "rust_shout.so" and not os.path.exists(path):
        pytest.skip("the Rust example was not built (no cargo)")
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True,
                         check=True)
    names = {line.split()[-1] for line in out.stdout.splitlines() if line.strip()}
    assert names == EXPORTS[lib]


# ---- wordcount.c: payload handler -------------------------------------------

def test_wordcount():
    res = invoke("--payload", "--handler", example("wordcount.so", "wordcount"),
                 input={"text": "  the quick\tbrown\nfox  "})
    assert payload_of(res) == {"text": "  the quick\tbrown\nfox  ", "words": 4}


def test_wordcount_per_word():
    res = invoke("--payload", "--handler", example("wordcount.so", "wordcount"),
                 input={"text": "to be or not to be", "per_word": True})
    assert payload_of(res)["counts"] == {"to": 2, "be": 2, "or": 1, "not": 1}


def test_wordcount_empty_text():
    res = invoke("--payload", "--handler", example("wordcount.so", "wordcount"),
                 input={"text": ""})
    assert payload_of(res)["words"] == 0


@pytest.mark.parametrize("payload", [{"txt": "x"}, {"text": 5}, ["text"], '"text"'])
def test_wordcount_bad_payload(payload):
    res = invoke("--payload", "--handler", example("wordcount.so", "wordcount"), input=payload)
    assert res.code == EXIT_PROCESSING, res
    code, details = res.error()
    assert (code, details["type"]) == ("processing_error", "ValueError")
    assert "string \"text\"" in details["message"]


# ---- stopwords.c: stateful handler --------------------------------------------

def test_stopwords_default_list():
    res = invoke("--payload", "--handler", example("stopwords.so", "remove_stopwords"),
                 input={"text": "The cat and THE hat, is it?", "id": 7})
    assert payload_of(res) == {"text": "cat hat, it?", "removed": 4, "id": 7}


def test_stopwords_list_from_env(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# my list\ncat\n\n  HAT  \n")
    res = invoke("--payload", "--handler", example("stopwords.so", "remove_stopwords"),
                 input={"text": "the cat in the hat"}, env={"STOPWORDS_FILE": str(words)})
    assert payload_of(res) == {"text": "the in the", "removed": 2}


def test_stopwords_missing_list_stops_start_up():
    res = invoke("--payload", "--handler", example("stopwords.so", "remove_stopwords"),
                 input={"text": "x"}, env={"STOPWORDS_FILE": "/nonexistent/words.txt"})
    assert res.code == EXIT_USAGE, res
    assert res.stdout == ""
    assert ("asya_init failed: cannot read the stopword list /nonexistent/words.txt: "
            "No such file or directory") in res.stderr


def test_stopwords_list_is_loaded_once_per_worker(tmp_path):
    """asya_init reads the file once: changing it later does not change the
    running worker's answers."""
    words = tmp_path / "words.txt"
    words.write_text("cat\n")
    rt = Runtime(example("stopwords.so", "remove_stopwords"), env={"STOPWORDS_FILE": str(words)})
    try:
        first = rt.call({"text": "cat dog"})
        words.write_text("dog\n")
        second = rt.call({"text": "cat dog"})
        assert first[0]["payload"]["text"] == second[0]["payload"]["text"] == "dog"
        assert rt.stop() == 0, rt.output()  # asya_fini ran in a clean worker exit
    finally:
        rt.cleanup()


# ---- router.c: envelope-mode router -----------------------------------------

def route(envelope):
    return invoke("--mode", "envelope", "--handler", example("router.so", "route_by_length"),
                  input=envelope)


def test_router_short_text_keeps_the_route():
    env = {"id": "m-1", "route": {"actors": ["router", "store"], "current": 0},
           "headers": {"trace": "abc"}, "payload": {"text": "short"}, "custom": [1]}
    res = route(env)
    assert res.code == EXIT_OK, res
    out = res.json()
    assert out == [dict(env, headers={"trace": "abc", "routed_by": "router"})]


def test_router_long_text_goes_to_summarize():
    env = {"id": "m-2", "route": {"actors": ["ingest", "router"], "current": 1},
           "payload": {"text": "é" * 201}}
    res = route(env)
    assert res.code == EXIT_OK, res
    out = res.json()[0]
    assert out["route"] == {"actors": ["ingest", "router", "summarize"], "current": 1}
    assert out["headers"] == {"routed_by": "router"}
    assert out["id"] == "m-2" and out["payload"] == env["payload"]


def test_router_counts_characters_not_bytes():
    # 200 two-byte characters: 400 bytes but not "long".
    res = route({"route": {"actors": ["router"], "current": 0}, "payload": {"text": "é" * 200}})
    assert res.json()[0]["route"]["actors"] == ["router"]


def test_router_keeps_steps_alias():
    res = route({"route": {"steps": ["router"], "current": 0}, "payload": {"text": "x" * 300}})
    assert res.code == EXIT_OK, res
    assert res.json()[0]["route"] == {"steps": ["router", "summarize"], "current": 0}


def test_router_threshold_from_env():
    res = invoke("--mode", "envelope", "--payload", "--handler",
                 example("router.so", "route_by_length"), input={"text": "four"},
                 env={"ROUTER_LONG_TEXT": "3"})
    assert res.json()[0]["route"]["actors"] == ["invoke", "summarize"]
    res = invoke("--mode", "envelope", "--payload", "--handler",
                 example("router.so", "route_by_length"), input={"text": "four"},
                 env={"ROUTER_LONG_TEXT": "lots"})
    assert res.code == EXIT_USAGE
    assert "ROUTER_LONG_TEXT=lots: expected a number of characters" in res.stderr


def test_router_in_payload_mode_explains():
    res = invoke("--payload", "--handler", example("router.so", "route_by_length"),
                 input={"text": "x"})
    assert res.code == EXIT_PROCESSING
    assert "ASYA_HANDLER_MODE=envelope" in res.error()[1]["message"]


def test_router_bad_payload():
    res = route({"route": {"actors": ["router"], "current": 0}, "payload": [1]})
    assert res.code == EXIT_PROCESSING
    assert res.error()[1]["type"] == "ValueError"


# ---- stats.cpp: C++ -----------------------------------------------------------

def stats(payload, fn="stats"):
    return invoke("--payload", "--handler", example("stats.so", fn), input=payload)


def test_cpp_stats():
    assert payload_of(stats({"numbers": [3, 1, 2, 10]})) == {
        "count": 4, "mean": 4.0, "min": 1.0, "max": 10.0, "median": 2.5}


@pytest.mark.parametrize("payload, type_, text", [
    ({"numbers": []}, "std::domain_error", "empty list"),
    ({"numbers": [1, "x"]}, "std::invalid_argument", "payload.numbers[1] is not a number"),
    ({"values": [1]}, "std::invalid_argument", "payload.numbers must be a list"),
])
def test_cpp_exceptions_become_processing_error(payload, type_, text):
    res = stats(payload)
    assert res.code == EXIT_PROCESSING, res
    code, details = res.error()
    assert (code, details["type"]) == ("processing_error", type_)
    assert text in details["message"]


def test_cpp_throw_becomes_processing_error():
    res = stats({}, fn="always_throws")
    assert res.code == EXIT_PROCESSING, res
    assert res.error()[1] == {"message": "thrown on purpose", "type": "std::runtime_error",
                              "traceback": "handler stats.so:always_throws returned ASYA_ERROR"}


@pytest.mark.skipif(ASAN, reason="ASan's operator new aborts instead of throwing std::bad_alloc")
def test_cpp_bad_alloc_becomes_oom():
    res = stats({"numbers": [1], "reserve": 10 ** 15})
    assert res.code == EXIT_OOM, res
    code, details = res.error()
    assert (code, details["type"]) == ("oom_error", "MemoryError")
    assert "std::bad_alloc" in details["message"]


def test_cpp_unguarded_throw_only_kills_the_worker():
    res = stats({}, fn="unguarded_throw")
    assert res.code == EXIT_PROCESSING, res
    assert res.error()[1]["type"] == "SIGABRT"
    assert "replacing it" in res.stderr  # the runtime replaced the worker and stopped cleanly


# ---- rust/: Rust --------------------------------------------------------------

needs_rust = pytest.mark.skipif(not os.path.exists(RUST),
                                reason="the Rust example was not built (no cargo)")


def shout(payload):
    return invoke("--payload", "--handler", RUST + ":shout", input=payload)


@needs_rust
def test_rust_shout():
    assert payload_of(shout({"text": "héllo wörld", "n": 2.50, "z": None})) == {
        "text": "héllo wörld", "n": 2.5, "z": None, "shout": "HÉLLO WÖRLD!", "chars": 11}
    assert payload_of(shout({"text": "ab", "repeat": 3}))["shout"] == "ABABAB!"
    assert payload_of(shout({"text": "q\"\\\n\u0001\U0001F600"}))["shout"] == "Q\"\\\n\u0001\U0001F600!"


@needs_rust
def test_rust_panic_becomes_processing_error():
    res = shout({"panic": True})
    assert res.code == EXIT_PROCESSING, res
    code, details = res.error()
    assert (code, details["type"]) == ("processing_error", "RustPanic")
    assert details["message"] == "panicking on purpose, as the payload asked"


@needs_rust
def test_rust_oom():
    res = shout({"text": "ab", "repeat": 9 * 10 ** 18})
    assert res.code == EXIT_OOM, res
    assert res.error()[0] == "oom_error"


@needs_rust
@pytest.mark.parametrize("payload", [{"text": 1}, [], '"x"', "null"])
def test_rust_bad_payload(payload):
    res = shout(payload)
    assert res.code == EXIT_PROCESSING, res
    assert res.error()[1]["type"] == "ValueError"


# ---- a crash or panic never takes anything but the worker down ----------------

@pytest.mark.parametrize("handler, bad, good", [
    (example("stats.so", "unguarded_throw"), {}, None),
    (example("stats.so", "stats"), {"numbers": []}, {"numbers": [2]}),
    (RUST + ":shout", {"panic": True}, {"text": "ok"}),
])
def test_runtime_survives(handler, bad, good):
    if handler.startswith(RUST) and not os.path.exists(RUST):
        pytest.skip("the Rust example was not built (no cargo)")
    rt = Runtime(handler)
    try:
        for _ in range(3):
            answer = rt.call(bad)
            assert answer[0]["error"] == "processing_error", answer
            if good is not None:
                answer = rt.call(good)
                assert "payload" in answer[0], answer
        assert rt.proc.poll() is None
        assert rt.stop() == 0, rt.output()
    finally:
        rt.cleanup()


def test_examples_are_in_the_source_tree():
    """Each built example comes from handlers/examples/ (guards the Makefile rules)."""
    src = os.path.join(REPO, "handlers", "examples")
    for name in ("wordcount.c", "stopwords.c", "stopwords.txt", "router.c", "stats.cpp",
                 "stats.map", os.path.join("rust", "Cargo.toml"), os.path.join("rust", "src",
                                                                               "lib.rs")):
        assert os.path.exists(os.path.join(src, name)), name
    assert os.path.exists(os.path.join(EXAMPLES, "stopwords.txt"))
