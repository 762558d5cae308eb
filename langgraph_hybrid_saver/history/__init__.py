"""A thread's history read from both tiers, for operators: who changed what and
when (the audit trail, `trail`), what changed between two checkpoints
(`diff`), and how large the state is and how it grows (`size`). Read-only: no
TTL refresh, no read-through copy (`load`).

Sizes are serialized sizes: the blob bytes of a channel value (what Redis and
the durable store keep), or the JSON length of an inline primitive
(`values`).
"""

from langgraph_hybrid_saver.history.diff import (
    ChannelChange,
    CheckpointDiff,
    diff_checkpoints,
    diff_stored,
    resolve_checkpoint,
)
from langgraph_hybrid_saver.history.load import Loaded, load_history, load_one, require_history
from langgraph_hybrid_saver.history.size import (
    ChannelSize,
    SizeReport,
    StepSize,
    size_report,
    size_report_of,
)
from langgraph_hybrid_saver.history.trail import (
    CheckpointView,
    TaskView,
    ThreadHistory,
    WriteView,
    task_label,
    task_names,
    thread_history,
)
from langgraph_hybrid_saver.history.values import channel_sizes, decode_channel, preview

__all__ = [
    "ChannelChange",
    "ChannelSize",
    "CheckpointDiff",
    "CheckpointView",
    "Loaded",
    "SizeReport",
    "StepSize",
    "TaskView",
    "ThreadHistory",
    "WriteView",
    "channel_sizes",
    "decode_channel",
    "diff_checkpoints",
    "diff_stored",
    "load_history",
    "load_one",
    "preview",
    "require_history",
    "resolve_checkpoint",
    "size_report",
    "size_report_of",
    "task_label",
    "task_names",
    "thread_history",
]
