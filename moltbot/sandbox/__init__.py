"""Local sandbox of the services moltbot talks to: HTTP API emulators and an SMTP sink."""

from moltbot.sandbox.app import SandboxState
from moltbot.sandbox.server import Sandbox, SandboxError, serve_forever
from moltbot.sandbox.smtp import SmtpSink

__all__ = ["Sandbox", "SandboxError", "SandboxState", "SmtpSink", "serve_forever"]
