"""lw-bench: LongBench-Write and LongWrite-Ruler with the paper's exact scoring, a choosable judge, reports, and the
same scores as RL rewards (:mod:`lw_bench.rewards`).

>>> from lw_bench import length_score
>>> length_score(1000, 1000)
100.0
"""

import importlib.metadata

from lw_core import length_score

from lw_bench.compare import PairedDifference, compare_runs, paired_length_difference
from lw_bench.data import DATASETS, load_items
from lw_bench.errors import BenchError, JudgmentParseError
from lw_bench.judging import judge, judge_prediction, judge_prompt, load_template, parse_judgment
from lw_bench.report import comparison_table, write_report
from lw_bench.rewards import (
    LENGTH_REWARD_WEIGHTS,
    LENGTH_REWARDS,
    JudgeReward,
    RepetitionReward,
    completion_text,
    length_reward,
    repetition_reward,
)
from lw_bench.runner import StageResult, predict, read_judgments, read_predictions
from lw_bench.sampling import PAPER_SAMPLING, Sampling, paper_sampling
from lw_bench.scoring import LENGTH_RANGES, length_score_expr, length_scores, score_run

__version__ = importlib.metadata.version("lw-bench")  # written once: pyproject.toml
__all__ = [
    "DATASETS",
    "LENGTH_RANGES",
    "LENGTH_REWARDS",
    "LENGTH_REWARD_WEIGHTS",
    "PAPER_SAMPLING",
    "BenchError",
    "JudgeReward",
    "JudgmentParseError",
    "PairedDifference",
    "RepetitionReward",
    "Sampling",
    "StageResult",
    "compare_runs",
    "comparison_table",
    "completion_text",
    "judge",
    "judge_prediction",
    "judge_prompt",
    "length_reward",
    "length_score",
    "length_score_expr",
    "length_scores",
    "load_items",
    "load_template",
    "paired_length_difference",
    "paper_sampling",
    "parse_judgment",
    "predict",
    "read_judgments",
    "read_predictions",
    "repetition_reward",
    "score_run",
    "write_report",
]
