"""What tokens cost, when the operator says so: a TOML price table (``LLM_LEDGER_PRICES``), which overrides
the ``genai-prices`` catalogue for the models it names (``costs.Pricing``).

```toml
[models."openai/gpt-4o-mini"]
input_per_million = 0.15
output_per_million = 0.60

[models."anthropic/*"]          # a trailing * matches by prefix; the longest match wins
input_per_million = 3.0
output_per_million = 15.0
```

Prices are applied when events are projected: after changing the table, ``llm-ledger project --rebuild``
recomputes every cost. A model priced neither here nor by the catalogue has no cost (NULL), never a cost of
zero.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llm_ledger.environment import LLM_LEDGER_PRICES
from llm_ledger.projections.errors import PriceTableError as PriceTableError


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float


@dataclass(frozen=True, slots=True)
class PriceTable:
    exact: Mapping[str, Price] = field(default_factory=dict)
    prefixes: Mapping[str, Price] = field(default_factory=dict)

    def price_of(self, model: str) -> Price | None:
        price = self.exact.get(model)
        if price is not None:
            return price
        matches = [prefix for prefix in self.prefixes if model.startswith(prefix)]
        return self.prefixes[max(matches, key=len)] if matches else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        price = self.price_of(model)
        if price is None:
            return None
        return (input_tokens * price.input_per_million + output_tokens * price.output_per_million) / 1_000_000

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        try:
            document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise PriceTableError(f"cannot read the price table {path}: {exc}") from None
        exact: dict[str, Price] = {}
        prefixes: dict[str, Price] = {}
        for model, entry in (document.get("models") or {}).items():
            price = _price(path, model, entry)
            if model.endswith("*"):
                prefixes[model[:-1]] = price
            else:
                exact[model] = price
        return cls(exact, prefixes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PriceTable:
        path = LLM_LEDGER_PRICES.get(environ)
        return cls.load(path) if path else cls()


def _price(path: str | Path, model: str, entry: object) -> Price:
    if not isinstance(entry, dict):
        raise PriceTableError(f"{path}: models.{model!r} must be a table of prices")
    values = []
    for name in ("input_per_million", "output_per_million"):
        value = entry.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise PriceTableError(f"{path}: models.{model!r}.{name} must be a number >= 0, not {value!r}")
        values.append(float(value))
    unknown = set(entry) - {"input_per_million", "output_per_million"}
    if unknown:
        raise PriceTableError(f"{path}: models.{model!r} has unknown keys {sorted(unknown)}")
    return Price(*values)
