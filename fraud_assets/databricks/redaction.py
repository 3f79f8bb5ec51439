"""Keep secrets out of everything Dagster records: logs, metadata and error text.

The SDK puts the request headers, ``Authorization`` included, into the message of an error
whose body it cannot parse (a plain-text answer from a proxy, for example). Errors leaving
a launch are therefore checked, and rewritten without the secret when one appears.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

MASK = "[REDACTED]"


class SecretLeakGuardError(RuntimeError):
    """An error whose original text contained a secret; this one carries the redacted text."""


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by a mask."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _leaks(err: BaseException, secrets: Sequence[str]) -> bool:
    texts = ["".join(traceback.format_exception_only(type(e), e)) for e in _chain(err)]
    texts += [repr(arg) for e in _chain(err) for arg in e.args]
    return any(secret in text for text in texts for secret in secrets if secret)


class _RedactingFilter(logging.Filter):
    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            record.msg, record.args = redact(message, self.secrets), None
        return True


@contextmanager
def secrets_kept_out(secrets: Sequence[str], loggers: Sequence[str] = ("databricks.sdk",)):
    """Redact ``secrets`` from these loggers and from any error raised inside the block.

    An error that does not contain a secret passes through untouched, traceback and all.
    One that does is replaced by an error with the redacted text and no chained cause,
    because Dagster serializes the whole chain into the event log.
    """
    secrets = [s for s in secrets if s]
    log_filter = _RedactingFilter(secrets)
    for name in loggers:
        logging.getLogger(name).addFilter(log_filter)
    try:
        yield
    except BaseException as err:
        if not secrets or not _leaks(err, secrets):
            raise
        text = "\ncaused by: ".join(
            "".join(traceback.format_exception_only(type(e), e)).strip() for e in _chain(err)
        )
        raise SecretLeakGuardError(redact(text, secrets)) from None
    finally:
        for name in loggers:
            logging.getLogger(name).removeFilter(log_filter)
