"""make install and make deb: what a handler author and an operator get.

Installs into a temp PREFIX, builds a handler against the installed header
with one cc line (pkg-config pointed at the installed .pc), runs it through
the installed asya-invoke; then builds the .deb, checks its metadata and
contents, extracts it and runs the programs from there.  Nothing is
installed on this machine."""

import json
import os
import shutil
import subprocess

import pytest

from invokelib import BUILD, REPO, clean_env

VERSION = "0.1.0"
HELLO = r'''
#include <asya/asya.h>
#include <asya/asya_json.h>

ASYA_MODULE_MAGIC(.name = "pkgtest");

ASYA_EXPORT int greet(struct asya_call *call);
ASYA_EXPORT int greet(struct asya_call *call)
{
    json_t *p = asya_input_json(call);
    if (!json_is_object(p))
        return json_decref(p), asya_fail(call, "ValueError", "want an object");
    json_object_set_new(p, "greeting", json_string("hi"));
    return asya_emit_json_new(call, p);
}
'''


def make(*args):
    """make in the repository on the build under test, without rebuilding it
    (-o all: the suites run after `make all`)."""
    cmd = ["make", "-s", "-C", REPO, "-o", "all", "BUILD=" + BUILD] + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def run(cmd, **kw):
    kw.setdefault("env", clean_env())
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert out.returncode == 0, (cmd, out.stdout, out.stderr)
    return out


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix")
    make("install", "PREFIX=" + str(root))
    yield str(root)
    shutil.rmtree(str(root), ignore_errors=True)


def test_install_layout(prefix):
    for rel in ("bin/asya-runtime", "bin/asya-sidecar", "bin/asya-invoke",
                "include/asya/asya.h", "include/asya/asya_json.h",
                "lib/pkgconfig/asya-handler.pc", "lib/asya/hello.so",
                "lib/asya/examples/wordcount.so", "lib/asya/examples/stopwords.so",
                "lib/asya/examples/stopwords.txt", "lib/asya/examples/router.so",
                "lib/asya/examples/stats.so",
                "share/man/man1/asya-runtime.1.gz", "share/man/man1/asya-sidecar.1.gz",
                "share/man/man1/asya-invoke.1.gz"):
        assert os.path.isfile(os.path.join(prefix, rel)), rel
    for prog in ("asya-runtime", "asya-sidecar", "asya-invoke"):
        out = run([os.path.join(prefix, "bin", prog), "--version"])
        assert out.stdout == "%s %s (handler ABI 1)\n" % (prog, VERSION)
    with open(os.path.join(prefix, "lib/pkgconfig/asya-handler.pc")) as f:
        assert "prefix=%s\n" % prefix in f.read()


def test_man_pages_are_the_help(prefix):
    if not shutil.which("man"):
        pytest.skip("no man")
    page = os.path.join(prefix, "share/man/man1/asya-invoke.1.gz")
    out = run(["man", "-l", page], env=clean_env({"MANWIDTH": "200", "MAN_KEEP_FORMATTING": ""}))
    assert "asya-invoke - run one envelope or payload through an Asya handler" in out.stdout
    assert "--memory-mb N" in out.stdout and "msg_parsing_error" in out.stdout


def test_handler_builds_with_one_cc_line_and_runs(prefix, tmp_path):
    (tmp_path / "hello.c").write_text(HELLO)
    env = clean_env({"PKG_CONFIG_PATH": os.path.join(prefix, "lib", "pkgconfig")})
    # The one line from the docs, warnings as errors.
    run(["sh", "-c", "cc -Wall -Wextra -Werror -o hello.so hello.c "
         "$(pkg-config --cflags --libs asya-handler)"], cwd=str(tmp_path), env=env)
    out = run(["nm", "-D", "--defined-only", str(tmp_path / "hello.so")])
    assert {l.split()[-1] for l in out.stdout.splitlines()} == {"asya_module_magic", "greet"}
    out = subprocess.run([os.path.join(prefix, "bin", "asya-invoke"), "--payload",
                          "--handler", "./hello.so:greet"], input='{"to": "you"}',
                         capture_output=True, text=True, cwd=str(tmp_path), env=clean_env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"payload": {"to": "you", "greeting": "hi"},
                                       "route": {"actors": ["invoke"], "current": 0}}]


def test_installed_examples_run(prefix):
    """The installed stopwords example finds its list next to itself."""
    ex = os.path.join(prefix, "lib", "asya", "examples")
    out = subprocess.run([os.path.join(prefix, "bin", "asya-invoke"), "--payload", "--handler",
                          os.path.join(ex, "stopwords.so") + ":remove_stopwords"],
                         input='{"text": "the end of it"}', capture_output=True, text=True,
                         env=clean_env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["payload"] == {"text": "end", "removed": 3}


def test_staged_install_keeps_the_final_prefix(tmp_path):
    make("install", "DESTDIR=" + str(tmp_path), "PREFIX=/opt/asya")
    with open(tmp_path / "opt/asya/lib/pkgconfig/asya-handler.pc") as f:
        assert "prefix=/opt/asya\n" in f.read()
    assert os.path.isfile(tmp_path / "opt/asya/bin/asya-invoke")


# ---- make deb -------------------------------------------------------------

@pytest.fixture(scope="module")
def deb():
    if not shutil.which("dpkg-deb"):
        pytest.skip("no dpkg-deb")
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    path = os.path.join(BUILD, "asya_%s_%s.deb" % (VERSION, arch))
    if os.path.exists(path):
        os.unlink(path)
    make("deb")
    assert os.path.isfile(path)
    return path, arch


def test_deb_info(deb):
    path, arch = deb
    fields = {}
    for line in run(["dpkg-deb", "--field", path]).stdout.splitlines():
        if ": " in line and not line.startswith(" "):
            k, v = line.split(": ", 1)
            fields[k] = v
    assert fields["Package"] == "asya"
    assert fields["Version"] == VERSION
    assert fields["Architecture"] == arch
    depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    for lib in ("libjansson4", "libev4", "librabbitmq4", "libmicrohttpd12"):
        assert lib in depends
    assert "Description" in run(["dpkg-deb", "--info", path]).stdout


def test_deb_contents(deb):
    path, _ = deb
    lines = run(["dpkg-deb", "--contents", path]).stdout.splitlines()
    files = {l.split()[-1]: l.split()[1] for l in lines}
    for f in ("./usr/bin/asya-runtime", "./usr/bin/asya-sidecar", "./usr/bin/asya-invoke",
              "./usr/include/asya/asya.h", "./usr/include/asya/asya_json.h",
              "./usr/lib/pkgconfig/asya-handler.pc", "./usr/lib/asya/examples/wordcount.so",
              "./usr/lib/asya/examples/stats.so", "./usr/share/man/man1/asya-invoke.1.gz"):
        assert f in files, f
        assert files[f] == "root/root", (f, files[f])


def test_deb_extracted_runs(deb, tmp_path):
    path, _ = deb
    run(["dpkg-deb", "-x", path, str(tmp_path)])
    usr = tmp_path / "usr"
    for prog in ("asya-runtime", "asya-sidecar", "asya-invoke"):
        out = run([str(usr / "bin" / prog), "--version"])
        assert out.stdout.startswith("%s %s " % (prog, VERSION))
    # A handler built against the packaged header, run by the packaged invoke.
    (tmp_path / "hello.c").write_text(HELLO)
    env = clean_env({"PKG_CONFIG_PATH": str(usr / "lib" / "pkgconfig")})
    run(["sh", "-c", "cc -o hello.so hello.c $(pkg-config --define-variable=prefix=%s "
         "--cflags --libs asya-handler)" % usr], cwd=str(tmp_path), env=env)
    out = subprocess.run([str(usr / "bin" / "asya-invoke"), "--payload", "--handler",
                          "./hello.so:greet"], input="{}", capture_output=True, text=True,
                         cwd=str(tmp_path), env=clean_env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["payload"] == {"greeting": "hi"}


def test_deb_is_installable(deb):
    """apt's simulation: the dependencies resolve (changes nothing)."""
    path, _ = deb
    if not shutil.which("apt-get"):
        pytest.skip("no apt-get")
    out = subprocess.run(["apt-get", "install", "-s", "-q", path], capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0 and ("lock" in out.stderr or "permission" in out.stderr.lower()):
        pytest.skip("apt-get cannot simulate here: " + out.stderr.strip())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Inst asya (%s" % VERSION in out.stdout
