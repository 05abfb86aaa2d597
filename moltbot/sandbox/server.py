"""Running the sandbox: the emulators' HTTP app under uvicorn in a thread, plus the SMTP sink."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import uvicorn

from moltbot.sandbox.app import SandboxState, create_app
from moltbot.sandbox.kit import StartedWhileEntered
from moltbot.sandbox.slack import SANDBOX_OPS_WEBHOOK_PATH, SANDBOX_WEBHOOK_PATH, webhook_path
from moltbot.sandbox.smtp import SandboxError, SmtpSink, bind_socket

__all__ = ["Sandbox", "SandboxError", "serve_forever"]


class Sandbox(StartedWhileEntered):
    """The local emulators (HTTP, one port) and SMTP sink, started and stopped together.

    Args:
        host: address both servers listen on.
        port: HTTP port; a free one when None.
        smtp_port: SMTP port; a free one when None.
        state: emulator state to serve (a fresh `SandboxState` when None).
        startup_timeout: seconds to wait for the HTTP server to come up.

    Attributes:
        state: the emulators' in-memory state (``sandbox.state.slack.posts`` …).
        smtp: the SMTP sink (``sandbox.smtp.messages`` …).
        base_url: ``http://HOST:PORT`` once started; its root (and ``/inbox``) is the inbox
            page of what the automations sent (see `moltbot.sandbox.inbox`).
        port: the HTTP port once started.
        smtp_port: the SMTP port once started.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        smtp_port: int | None = None,
        *,
        state: SandboxState | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.state = state if state is not None else SandboxState()
        self.smtp = SmtpSink(host=host, port=smtp_port)
        self._wanted_port = port
        self._port: int | None = None
        self._startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return self._port

    @property
    def smtp_port(self) -> int:
        return self.smtp.port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return self._server is not None

    def slack_webhook_url(self, name: str = "demo") -> str:
        """Full incoming-webhook URL for ``name``, registered so the emulator accepts it.

        The same name gives the same URL on every run; a `reset` forgets the registration, so
        ask for the URL again after one.
        """
        path = self.state.slack.register_webhook(webhook_path(name))
        return f"{self.base_url}/slack{path}"

    def jandi_webhook_url(self, name: str = "demo") -> str:
        """Full JANDI incoming-webhook URL for ``name``, registered (as `slack_webhook_url`)."""
        return f"{self.base_url}/jandi{self.state.jandi.register_webhook(name)}"

    def dooray_hook_url(self, name: str = "demo") -> str:
        """Full Dooray! incoming-hook URL for ``name``, registered (as `slack_webhook_url`)."""
        return f"{self.base_url}/dooray{self.state.dooray.register_hook(name)}"

    @property
    def sandbox_webhook_url(self) -> str:
        """The fixed Slack webhook URL of the saved `sandbox-slack` block."""
        return f"{self.base_url}/slack{SANDBOX_WEBHOOK_PATH}"

    @property
    def ops_webhook_url(self) -> str:
        """The fixed Slack webhook URL of the ops channel (the saved `sandbox-ops` block)."""
        return f"{self.base_url}/slack{SANDBOX_OPS_WEBHOOK_PATH}"

    def reset(self) -> None:
        """Clear all emulator state and received mail (between tests)."""
        self.state.reset()
        self.smtp.clear()

    def start(self) -> Sandbox:
        """Start both servers; raises `SandboxError` when a port is taken or startup times out."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        # Bind HTTP first so a taken port fails before anything has started.
        sock = bind_socket(self.host, self._wanted_port)
        try:
            self.smtp.start()
        except BaseException:
            sock.close()
            raise
        config = uvicorn.Config(
            create_app(self.state, mail=self.smtp),
            log_level="warning",
            access_log=False,
            # None keeps uvicorn from calling logging.dictConfig on the host process's loggers.
            log_config=None,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        # uvicorn installs signal handlers only in the main thread, so none are set here.
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="moltbot-sandbox", daemon=True
        )
        thread.start()
        port = sock.getsockname()[1]
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=2)
                sock.close()
                self.smtp.stop()
                raise SandboxError(
                    f"sandbox HTTP server on {self.host}:{port} did not start "
                    f"within {self._startup_timeout:g}s"
                )
            time.sleep(0.01)
        self._port = port
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop both servers and release their ports; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=5)
            if thread.is_alive():
                # A slow in-flight request (an injected delay) must not keep the port.
                server.force_exit = True
                thread.join(timeout=5)
        self._port = None
        self.smtp.stop()


def serve_forever(
    host: str = "127.0.0.1",
    port: int | None = None,
    smtp_port: int | None = None,
    on_ready: Callable[[Sandbox], None] | None = None,
    *,
    stop: threading.Event | None = None,
) -> None:
    """Run the sandbox in the foreground until Ctrl-C (or ``stop`` is set), then stop cleanly.

    ``on_ready`` gets the running sandbox, e.g. to print its URLs; ``stop`` lets a caller other
    than the terminal end it (tests, an embedding process).
    """
    stop = stop if stop is not None else threading.Event()
    with Sandbox(host=host, port=port, smtp_port=smtp_port) as sandbox:
        if on_ready is not None:
            on_ready(sandbox)
        try:
            # Wait in short steps so Ctrl-C is handled promptly on every platform.
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
