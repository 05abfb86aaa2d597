"""Process-wide runtime setup for moltbot commands: log masking and quiet bad-input failures."""

from __future__ import annotations

import logging

from moltbot.errors import MoltbotError
from moltbot.masking import install_log_masking


class KnownErrorTracebackFilter(logging.Filter):
    """Drops the traceback from console records about moltbot's own, already explained errors.

    Prefect logs every failed flow or task run with its traceback; for bad input or a refused
    delivery the one-line reason says everything, and a traceback reads like a crash. Only
    console handlers get this filter: the Prefect API (the run page) keeps the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MoltbotError):
            record.exc_info = None
            record.exc_text = None
        return True


def prepare_process_logging() -> None:
    """Mask secrets and personal data in every log handler; keep console failures to one line.

    Call after Prefect is imported (it configures its handlers on import). Idempotent.
    """
    import prefect.logging  # noqa: F401  (Prefect configures its handlers on import)

    install_log_masking()
    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            is_console = isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            )
            if is_console and not any(
                isinstance(existing, KnownErrorTracebackFilter) for existing in handler.filters
            ):
                handler.addFilter(KnownErrorTracebackFilter())
