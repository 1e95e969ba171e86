"""lw-agentwrite's errors: one package base under :class:`lw_core.LWError`, so callers can catch them at once.

>>> all(issubclass(e, AgentWriteError) for e in (PlanParseError, PromptError, WriteError, PlanError))
True
>>> issubclass(AgentWriteError, LWError)
True
"""

from __future__ import annotations

from lw_core import LWError, Usage

__all__ = ["AgentWriteError", "PlanError", "PlanParseError", "PromptError", "WriteError"]


class AgentWriteError(LWError):
    """Base of every error lw-agentwrite raises on purpose (an unknown preset or a bad option: this class itself)."""


class PlanParseError(AgentWriteError):
    """No plan step could be recovered from a model's reply."""


class PromptError(AgentWriteError):
    """A prompt template is missing a placeholder or cannot be read."""


class WriteError(AgentWriteError):
    """A section could not be written (the model answered nothing): the document fails and is retried next run."""


class PlanError(AgentWriteError):
    """No usable plan after all attempts: the reasons of every attempt are in the message."""

    def __init__(self, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()  # what the failed attempts cost
