"""The environment is read in one place: llm_ledger/environment.py, whose registry docs/ARCHITECTURE.md
lists exactly. Regenerate that table with ``python -m tests.docs.test_environment``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from llm_ledger import environment
from llm_ledger.environment import VARIABLES, Variable

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "llm_ledger"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"

# What reads, or hands out, the process's environment in module ``os``.
_OS_ENVIRONMENT = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})
# None: every read and write goes through llm_ledger.environment, a child's environment included
# (environment.child_environment). A module that must touch os.environ itself is named here, with why.
ALLOWED: frozenset[str] = frozenset()


def environment_reads(path: Path) -> list[str]:
    """Where ``path`` touches ``os.environ``/``os.getenv`` (or reads a registered variable by its literal
    name from a mapping: ``.get``, a subscript, ``in``), as ``file:line what``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    os_names = {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {alias.asname or alias.name for alias in node.names if alias.name == "os"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{where}:{node.lineno} from os import {a.name}" for a in node.names if a.name in _OS_ENVIRONMENT]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _OS_ENVIRONMENT
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            found.append(f"{where}:{node.lineno} {node.value.id}.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in VARIABLES
        ):
            found.append(f"{where}:{node.lineno} .get({node.args[0].value!r})")
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and node.slice.value in VARIABLES
            and isinstance(node.ctx, ast.Load)
        ):
            found.append(f"{where}:{node.lineno} [{node.slice.value!r}]")
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Constant)
            and node.left.value in VARIABLES
            and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
        ):
            found.append(f"{where}:{node.lineno} {node.left.value!r} in")
    return found


def test_the_package_reads_the_environment_only_through_the_registry() -> None:
    modules = [p for p in sorted(PACKAGE.rglob("*.py")) if p != PACKAGE / "environment.py"]
    assert len(modules) > 50
    reads = [read for path in modules if str(path.relative_to(ROOT)) not in ALLOWED for read in environment_reads(path)]
    assert reads == [], "read these through llm_ledger.environment:\n" + "\n".join(reads)


def test_the_scan_sees_every_form_of_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    source = (
        "import os\nimport os as system\nfrom os import getenv\n"
        "a = os.environ.get('X')\nb = system.getenv('Y')\nc = dict(os.environ)\nd = env.get('LLM_LEDGER_HOME')\n"
        "e = env['LLM_LEDGER_HOME']\nf = 'OTEL_SERVICE_NAME' in env\ng = {'LLM_LEDGER_HOME': 1}\n"
    )
    sample.write_text(source)
    reads = environment_reads(sample)
    assert sorted(r.split(":", 1)[1] for r in reads) == [
        "3 from os import getenv",
        "4 os.environ",
        "5 system.getenv",
        "6 os.environ",
        "7 .get('LLM_LEDGER_HOME')",
        "8 ['LLM_LEDGER_HOME']",
        "9 'OTEL_SERVICE_NAME' in",
    ]


def test_each_variable_is_the_module_constant_of_its_name() -> None:
    constants = {name: value for name, value in vars(environment).items() if isinstance(value, Variable)}
    assert constants == {variable.name: variable for variable in VARIABLES.values()}
    assert len(VARIABLES) >= 30
    for variable in VARIABLES.values():
        assert variable.default is None or variable.default_note is None, variable.name
        for module in variable.read_in.split(", "):
            assert (ROOT / module).is_file(), f"{variable.name}: {module} does not exist"


def test_the_names_chosen_at_run_time_are_declared() -> None:
    # routing.py and telemetry/setup.py read these through variable(name), which raises KeyError for an
    # undeclared name only when a call gets there: a provider added without its variables fails here.
    from llm_ledger.executor.routing import PROVIDERS

    names = [n for p in PROVIDERS.values() for n in (p.api_key_env, p.base_url_env) if n is not None]
    for signal in ("TRACES", "METRICS"):
        names += [
            f"OTEL_{signal}_EXPORTER",
            f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT",
            f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL",
        ]
    assert len(names) == 14
    assert [name for name in names if name not in VARIABLES] == []


def test_a_variable_reads_its_default_when_unset_or_empty() -> None:
    home = environment.LLM_LEDGER_HOME
    assert home.get({}) == home.get({"LLM_LEDGER_HOME": ""}) == "~/.llm-ledger"
    assert home.get({"LLM_LEDGER_HOME": "/srv/ledger"}) == "/srv/ledger"
    assert environment.LLM_LEDGER_PRICES.get({"LLM_LEDGER_PRICES": ""}) is None
    assert environment.OTEL_SERVICE_NAME.is_set({"OTEL_SERVICE_NAME": ""})
    assert environment.variable("OTEL_TRACES_EXPORTER") is environment.OTEL_TRACES_EXPORTER


def test_a_name_outside_the_registry_is_refused() -> None:
    try:
        environment.variable("LLM_LEDGER_NOT_A_VARIABLE")
    except KeyError as exc:
        assert "not declared in llm_ledger.environment" in str(exc)
    else:
        raise AssertionError("an undeclared variable was read")


def expected_rows() -> list[str]:
    """docs/ARCHITECTURE.md's table of variables, as the registry says it."""
    rows = []
    for variable in VARIABLES.values():
        default = f"`{variable.default}`" if variable.default is not None else variable.default_note or "none"
        modules = ", ".join(f"`{module}`" for module in variable.read_in.split(", "))
        rows.append(f"| `{variable.name}` | {default} | {variable.meaning} | {modules} |")
    return rows


def documented_rows() -> list[str]:
    """The rows of the table under docs/ARCHITECTURE.md's heading "Configuration variables"."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Configuration variables", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if re.match(r"\| `[A-Z_]+` \|", line)]


def test_the_architecture_lists_exactly_the_registry() -> None:
    documented, expected = documented_rows(), expected_rows()
    assert {row.split(" | ")[0] for row in documented} == {row.split(" | ")[0] for row in expected}
    assert documented == expected, "regenerate the table: python -m tests.docs.test_environment"


if __name__ == "__main__":
    print("| variable | default | what it does | read in |\n|---|---|---|---|")
    print("\n".join(expected_rows()))


def test_children_are_not_given_the_secrets_they_do_not_need(monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer process is handed payloads already digested; Streamlit neither digests nor seals.
    monkeypatch.setenv("LLM_LEDGER_DIGEST_KEY", "digest secret")
    monkeypatch.setenv("LLM_LEDGER_SEAL_KEY", "seal key")
    monkeypatch.setenv("LLM_LEDGER_HOME", "/home")
    child = environment.child_environment(EXTRA="1")
    assert "LLM_LEDGER_DIGEST_KEY" not in child and "LLM_LEDGER_SEAL_KEY" not in child
    assert (child["LLM_LEDGER_HOME"], child["EXTRA"]) == ("/home", "1")
