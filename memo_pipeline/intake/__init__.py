"""The intake: writes accepted over HTTP, routed by ``execution_mode`` into the shared ledger.

Plain Python, usable without Dagster: the HTTP service (``memo_pipeline.api``), the CLI and the
Dagster sensors and jobs in ``memo_pipeline.defs.intake`` all call into it.
"""
