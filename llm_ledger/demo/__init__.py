"""The demo: a Focal-like multi-tenant workload on ``mock/`` models, recorded in a ledger.
See docs/ARCHITECTURE.md for its place among the layers.

``run_workload`` (or ``arun_workload`` from async code) fills a ledger and returns a
``WorkloadSummary``; ``llm-ledger demo`` runs it with a progress bar and prints the summary.
"""

from llm_ledger.demo.plan import STEPS, TENANT_AGENTS, SessionPlan, TurnPlan, WorkloadPlan, plan_workload
from llm_ledger.demo.providers import MOCK_PROVIDERS
from llm_ledger.demo.summary import Figures, WorkloadSummary
from llm_ledger.demo.workload import (
    AgentReply,
    arun_workload,
    build_step_executors,
    load_demo_pipeline,
    run_workload,
)

__all__ = [
    "MOCK_PROVIDERS",
    "STEPS",
    "TENANT_AGENTS",
    "AgentReply",
    "Figures",
    "SessionPlan",
    "TurnPlan",
    "WorkloadPlan",
    "WorkloadSummary",
    "arun_workload",
    "build_step_executors",
    "load_demo_pipeline",
    "plan_workload",
    "run_workload",
]
