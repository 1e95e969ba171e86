"""lw-agentwrite: AgentWrite plan-then-write generation, embeddable, resumable and run at scale."""

from lw_agentwrite.parse import PlanParseError, parse_plan

__version__ = "0.1.0"
__all__ = ["PlanParseError", "parse_plan"]
