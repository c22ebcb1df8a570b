"""Structured logs: ASYA_LOG_FORMAT=json gives one JSON object per line, lines
about a message carry its id and every line the actor; payloads stay out of
INFO logs."""
import json


def test_json_logs_carry_actor_and_message_id(ctx):
    ctx.real_runtime("error_handler")
    sc = ctx.sidecar({"ASYA_LOG_FORMAT": "json", "ASYA_LOG_LEVEL": "DEBUG"})
    env = ctx.envelope({"should_fail": True}, id="log-json-1")
    ctx.publish(env)
    ends = ctx.wait_ends(error=1, timeout=15)
    assert ends["error"][0]["id"] == "log-json-1"

    lines = [ln for ln in sc.log_text().splitlines() if ln.strip()]
    assert lines, "no log output"
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    for r in records:
        assert r["program"] == "asya-sidecar"
        assert r["actor"] == ctx.queue
        assert r["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")
        assert isinstance(r["msg"], str) and r["time"].endswith("Z")
    about = [r for r in records if r.get("msg_id") == "log-json-1"]
    assert any("processing_error" in r["msg"] for r in about), about
    assert any("published to" in r["msg"] for r in about), about


def test_info_logs_hold_no_payload(ctx):
    ctx.real_runtime("error_handler")
    sc = ctx.sidecar({"ASYA_LOG_LEVEL": "INFO"})
    secret = "payload-marker-7f3a9c"
    ctx.publish(ctx.envelope({"should_fail": True, "note": secret}, id="log-info-1"))
    ctx.publish_raw(b'{"not": "an envelope", "note": "' + secret.encode() + b'"}')
    ends = ctx.wait_ends(error=2, timeout=15)
    assert len(ends["error"]) == 2
    text = sc.log_text()
    assert "log-info-1" in text  # the line about the failure names the message
    assert secret not in text
