"""Process-wide runtime setup for moltbot commands: log masking and quiet bad-input failures."""

from __future__ import annotations

import logging

from moltbot.errors import MoltbotError
from moltbot.masking import MaskingFilter, install_log_masking


class KnownErrorTracebackFilter(logging.Filter):
    """Drops the traceback from console records about moltbot's own, already explained errors.

    Prefect logs every failed flow or task run with its traceback; for bad input or a refused
    delivery the one-line reason says everything, and a traceback reads like a crash. Records
    still reach the Prefect API (the run page) unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MoltbotError):
            record.exc_info = None
            record.exc_text = None
        return True


def _console_handlers() -> list[logging.Handler]:
    loggers = [
        logging.getLogger(),
        *(
            logging.getLogger(name)
            for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.flows")
        ),
    ]
    handlers: list[logging.Handler] = []
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler not in handlers:
                handlers.append(handler)
    return handlers


def prepare_process_logging() -> None:
    """Mask secrets and personal data in every log handler; keep console failures to one line.

    Call after Prefect is imported (it configures its handlers on import). Idempotent.
    """
    import prefect.logging  # noqa: F401  (ensures Prefect's handlers exist)

    install_log_masking()
    for handler in _console_handlers():
        if not any(isinstance(f, KnownErrorTracebackFilter) for f in handler.filters):
            # Before the masking filter would also be fine; order only matters for exc_text.
            handler.addFilter(KnownErrorTracebackFilter())
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
