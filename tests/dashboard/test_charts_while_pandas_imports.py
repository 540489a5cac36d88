"""A chart built while another session's thread is still importing pandas: Streamlit imports it lazily, in
whichever session first needs it, and Altair reads it (and numpy) from ``sys.modules`` without importing
it. Run in a process of its own, where nothing has imported pandas yet."""

from __future__ import annotations

import json
import subprocess
import sys

# The charts module is imported once pandas is half-initialised in sys.modules: everything else it needs is
# imported first, so that the import of pandas is still under way when the charts are built.
_BUILT_WHILE_PANDAS_IMPORTS = """
import importlib, json, sys, threading, time
import altair
import llm_ledger.dashboard.shaping

assert "pandas" not in sys.modules
importer = threading.Thread(target=importlib.import_module, args=("pandas",))
importer.start()
while "pandas" not in sys.modules:
    time.sleep(0.001)
half_imported = importer.is_alive()
from llm_ledger.dashboard import charts
rows = [{"time": "2026-03-14T10:00:00+00:00", "series": "executions", "count": 1}]
charts.activity(rows).to_dict()
charts.latency([], "step").to_dict()
importer.join()
print(json.dumps({"half_imported": half_imported}))
"""


def test_a_chart_is_built_while_another_thread_is_importing_pandas() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _BUILT_WHILE_PANDAS_IMPORTS], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    # The case under test happened: the charts were asked for while pandas was in sys.modules, unfinished.
    assert json.loads(done.stdout) == {"half_imported": True}
