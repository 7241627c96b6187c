"""Exceptions tasks raise to say how a failure should be treated.

::

    Exception
     +-- PlatformError
          +-- TransientError    retry with backoff (timeouts, overload, 429/5xx)
          +-- PermanentError    dead-letter at once (bad input, business rule)
          |    +-- BusinessRuleViolation
          |    +-- MessageTooLarge     a task's or event's body is over the size limit (also a ValueError)
          |    +-- UnsupportedOption   a Celery option the platform can't honour (also a ValueError)
          +-- PublishError      the broker did not confirm a publish in time

Raising one of these is the explicit way; :mod:`workers.delivery.classify` also maps
common foreign exceptions (timeouts, HTTP statuses, JSON and schema errors).
"""

from __future__ import annotations


class PlatformError(Exception):
    """Base of the platform's own exceptions."""


class TransientError(PlatformError):
    """The operation may succeed later; retry it with backoff.

    Args:
        message: what went wrong.
        retry_after: seconds the remote side asked us to wait, if it did.
    """

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # keep retry_after across process boundaries
        return (type(self), (str(self), self.retry_after))


class PermanentError(PlatformError):
    """The operation will never succeed with this input; dead-letter it."""


class BusinessRuleViolation(PermanentError):
    """The input is well formed but breaks a rule of the business."""


class PublishError(PlatformError):
    """A message could not be handed to the broker with a confirm."""


class MessageTooLarge(PermanentError, ValueError):
    """A task's or an event's body is over ``PLATFORM_MAX_MESSAGE_BYTES``; nothing was sent.

    Raised by every publish path before anything reaches the broker (one
    limit, one setting, for tasks and events alike). A task that raises it
    while publishing is dead-lettered at once: the same data would be too
    large again.
    """


class UnsupportedOption(PermanentError, ValueError):
    """A Celery option the platform refuses because it can't honour it; the message says what to do.

    Raised when a task is declared with the option, or when a message is
    published with it, before anything reaches the broker.
    """
