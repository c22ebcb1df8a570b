"""Echo handler for the reference Python runtime in `make bench` row (g):
ASYA_HANDLER=bench_py_handler.echo with tests/bench on PYTHONPATH."""


def echo(payload):
    return payload
