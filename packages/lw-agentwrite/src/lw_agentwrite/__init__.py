"""lw-agentwrite: AgentWrite plan-then-write generation, embeddable, resumable and run at scale."""

import importlib.metadata

from lw_agentwrite.agent import PRESETS, AgentWrite, AgentWriteOptions, fallback_plan, preset_sampling
from lw_agentwrite.batch import BatchStats, read_plans, run_batch
from lw_agentwrite.errors import AgentWriteError, PlanError, PlanParseError, PromptError, WriteError
from lw_agentwrite.parse import parse_plan
from lw_agentwrite.prompts import Prompts

__version__ = importlib.metadata.version("lw-agentwrite")  # written once: pyproject.toml
__all__ = [
    "PRESETS",
    "AgentWrite",
    "AgentWriteError",
    "AgentWriteOptions",
    "BatchStats",
    "PlanError",
    "PlanParseError",
    "PromptError",
    "Prompts",
    "WriteError",
    "fallback_plan",
    "parse_plan",
    "preset_sampling",
    "read_plans",
    "run_batch",
]
