"""lw-core: the schemas, word count, JSONL I/O and chat client shared by every lw package."""

import importlib.metadata

from lw_core.cache import convert_once
from lw_core.client import (
    Capabilities,
    ChatClient,
    Completion,
    OpenAIChatClient,
    SyncChatClient,
    json_schema_format,
    run_sync,
)
from lw_core.config import ConfigError
from lw_core.data import DataFileError, data_dir, data_file
from lw_core.errors import ClientError, LWError, RecordError
from lw_core.jsonl import JsonlWriter, atomic_write, read_jsonl, write_jsonl
from lw_core.paths import cache_dir, lw_home
from lw_core.schemas import (
    DIMENSIONS,
    BenchItem,
    BenchReport,
    ChatMessage,
    Document,
    Instruction,
    Judgment,
    MessageLike,
    Plan,
    PlanStep,
    Prediction,
    PreferencePair,
    ScoreGroup,
    Section,
    SFTRecord,
    Usage,
    stable_id,
)
from lw_core.scoring import (
    REPETITION_THRESHOLD,
    length_score,
    length_scores_array,
    loop_aware_length_score,
    loop_free_words,
    loop_onset,
    quality_score,
    repeated_ngram_ratio,
)
from lw_core.text import (
    TASK_TALK,
    count_words,
    count_words_batch,
    detect_language,
    ends_with_sentence,
    trim_to_sentence,
)

__version__ = importlib.metadata.version("lw-core")  # written once: pyproject.toml
__all__ = [
    "DIMENSIONS",
    "REPETITION_THRESHOLD",
    "TASK_TALK",
    "BenchItem",
    "BenchReport",
    "Capabilities",
    "ChatClient",
    "ChatMessage",
    "ClientError",
    "Completion",
    "ConfigError",
    "DataFileError",
    "Document",
    "Instruction",
    "JsonlWriter",
    "Judgment",
    "LWError",
    "MessageLike",
    "OpenAIChatClient",
    "Plan",
    "PlanStep",
    "Prediction",
    "PreferencePair",
    "RecordError",
    "SFTRecord",
    "ScoreGroup",
    "Section",
    "SyncChatClient",
    "Usage",
    "atomic_write",
    "cache_dir",
    "convert_once",
    "count_words",
    "count_words_batch",
    "data_dir",
    "data_file",
    "detect_language",
    "ends_with_sentence",
    "json_schema_format",
    "length_score",
    "length_scores_array",
    "loop_aware_length_score",
    "loop_free_words",
    "loop_onset",
    "lw_home",
    "quality_score",
    "read_jsonl",
    "repeated_ngram_ratio",
    "run_sync",
    "stable_id",
    "trim_to_sentence",
    "write_jsonl",
]
