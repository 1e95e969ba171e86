"""lw-data: LongWriter-6k-style SFT data and DPO pairs from instructions and AgentWrite output, on polars.

Instructions → :func:`prepare_instructions` / :func:`select_instructions`, or our own with
:func:`generate_instructions`; AgentWrite documents →
:func:`build_sft` (or :func:`build_sft_file` for big files); scored candidates → :func:`build_dpo`; blends →
:func:`mix` and :func:`split`; a look at the result → :func:`summarize` and :func:`plot`.
"""

import importlib.metadata

from lw_data.dpo import DPORule, build_dpo
from lw_data.errors import DataError
from lw_data.generator import generate_instructions
from lw_data.instructions import prepare_instructions, select_instructions
from lw_data.io import load_longwriter6k, read_table, to_dataset, write_table
from lw_data.lengths import extract_length
from lw_data.mixing import mix, split
from lw_data.sft import SFTFilters, build_sft, build_sft_file, read_documents, split_plan_answer
from lw_data.stats import measures, plot, summarize

__version__ = importlib.metadata.version("lw-data")  # written once: pyproject.toml
__all__ = [
    "DPORule",
    "DataError",
    "SFTFilters",
    "build_dpo",
    "build_sft",
    "build_sft_file",
    "extract_length",
    "generate_instructions",
    "load_longwriter6k",
    "measures",
    "mix",
    "plot",
    "prepare_instructions",
    "read_documents",
    "read_table",
    "select_instructions",
    "split",
    "split_plan_answer",
    "summarize",
    "to_dataset",
    "write_table",
]
