"""Sandbox server lifecycle: ports, threads, several sandboxes, foreground mode."""

from __future__ import annotations

import signal
import smtplib
import socket
import threading
from email.message import EmailMessage

import httpx
import pytest

from moltbot.sandbox import Sandbox, SandboxError, SandboxState, serve_forever

# Tests that only need *a* running sandbox use the session one (`sandbox` in conftest.py):
# stopping uvicorn takes ~0.2 s.


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_two_sandboxes_run_side_by_side():
    with Sandbox() as one, Sandbox() as two:
        assert one.port != two.port
        assert one.smtp_port != two.smtp_port

        assert httpx.post(one.slack_webhook_url(), json={"text": "one"}).text == "ok"
        assert httpx.post(two.slack_webhook_url(), json={"text": "two"}).text == "ok"

        assert [p.text for p in one.state.slack.posts] == ["one"]
        assert [p.text for p in two.state.slack.posts] == ["two"]


def test_webhook_url_shape_is_stable_per_name(sandbox: Sandbox):
    url = sandbox.slack_webhook_url("demo")

    assert url.startswith(f"http://127.0.0.1:{sandbox.port}/slack/services/T0SANDBOX/B0SANDBOX/")
    assert sandbox.base_url == f"http://127.0.0.1:{sandbox.port}"
    assert url == sandbox.slack_webhook_url("demo")
    assert url != sandbox.slack_webhook_url("other")


def test_webhook_urls_are_accepted_once_asked_for_and_others_404(sandbox: Sandbox):
    url = sandbox.slack_webhook_url("ops")
    unknown = url.rsplit("/", 1)[0] + "/not-a-webhook"

    assert httpx.post(url, json={"text": "x"}).status_code == 200
    assert httpx.post(sandbox.sandbox_webhook_url, json={"text": "x"}).status_code == 200
    assert httpx.post(unknown, json={"text": "x"}).status_code == 404


def test_stop_releases_ports_and_restart_on_same_ports_works():
    sandbox = Sandbox().start()
    port, smtp_port = sandbox.port, sandbox.smtp_port
    # A keep-alive connection open at stop time must not keep the port busy.
    with httpx.Client() as client:
        client.post(sandbox.slack_webhook_url(), json={"text": "x"})
        sandbox.stop()
        assert not _accepts(port)
        assert not _accepts(smtp_port)

    with Sandbox(port=port, smtp_port=smtp_port) as again:
        assert httpx.get(f"{again.base_url}/").status_code == 200
    sandbox.stop()  # a second stop is harmless


def test_http_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        sandbox = Sandbox(port=port)
        with pytest.raises(SandboxError, match=f"127.0.0.1:{port}.*already in use"):
            sandbox.start()
        assert not sandbox.running


def test_smtp_port_in_use_is_a_clear_error_and_frees_http_port():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        http_port = free.getsockname()[1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        smtp_port = taken.getsockname()[1]

        with pytest.raises(SandboxError, match=f"127.0.0.1:{smtp_port}.*already in use"):
            Sandbox(port=http_port, smtp_port=smtp_port).start()

    # The HTTP socket bound before the SMTP failure was released.
    with Sandbox(port=http_port) as sandbox:
        assert sandbox.port == http_port


def test_state_and_smtp_are_inspectable_and_resettable(sandbox: Sandbox):
    state = sandbox.state
    httpx.post(sandbox.slack_webhook_url(), json={"text": "x"})
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@x.kr", "b@x.kr", "보고서"
    msg.set_content("본문")
    with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=5) as smtp:
        smtp.send_message(msg)

    assert len(state.slack.posts) == 1
    assert [m.subject for m in sandbox.smtp.messages] == ["보고서"]

    sandbox.reset()
    assert state.slack.posts == []
    assert sandbox.smtp.messages == []


def test_given_state_is_the_one_served():
    state = SandboxState()
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with Sandbox(state=state) as sandbox:
        httpx.post(sandbox.slack_webhook_url(), json={"text": "mine"})
        # Signal handlers belong to the main thread's owner (Prefect, the CLI), not to uvicorn.
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers

    assert [p.text for p in state.slack.posts] == ["mine"]


def test_properties_need_a_running_sandbox():
    sandbox = Sandbox()
    with pytest.raises(RuntimeError):
        _ = sandbox.base_url
    with pytest.raises(RuntimeError):
        _ = sandbox.smtp_port


def test_serve_forever_runs_until_stopped():
    ready: list[Sandbox] = []
    got_ready = threading.Event()
    stop = threading.Event()

    def on_ready(sandbox: Sandbox) -> None:
        ready.append(sandbox)
        got_ready.set()

    thread = threading.Thread(target=serve_forever, kwargs={"on_ready": on_ready, "stop": stop})
    thread.start()
    try:
        assert got_ready.wait(5)
        [sandbox] = ready
        assert httpx.post(sandbox.slack_webhook_url(), json={"text": "hi"}).text == "ok"
        port = sandbox.port
    finally:
        stop.set()
        thread.join(5)

    assert not thread.is_alive()
    assert not _accepts(port)
