"""memo_pipeline: LLM memory extraction through sync, async and bulk paths with one Stage 2."""

__version__ = "0.1.0"
