"""What an attempt cost, in US dollars, from the first source that knows:

1. the provider's own bill, when its response carried one (``usage.cost_usd``: OpenRouter's ``usage.cost``);
2. the operator's TOML price table (``LLM_LEDGER_PRICES``, ``prices.PriceTable``), which overrides
3. the prices of the ``genai-prices`` package, as they stood when the call was made, tokens read from and
   written to the prompt cache and reasoning tokens priced at their own rates where the model has them.

A model none of them knows (a ``mock/`` model of the demo, a model newer than the installed package) has
no cost (NULL), never a cost of zero. Prices come from the snapshot bundled with the installed package,
never from the one ``genai_prices.calc_price`` would use: that one is replaced by any ``UpdatePrices``
another library in the process runs, with prices fetched over the network. So projecting the same events
gives the same costs until the package is upgraded and the read models rebuilt.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from llm_ledger.events.storable import provider_cost
from llm_ledger.projections.prices import PriceTable

if TYPE_CHECKING:
    from genai_prices import data_snapshot


@functools.cache
def _bundled_prices() -> data_snapshot.DataSnapshot:
    """The prices bundled with the installed ``genai-prices``, whatever snapshot it was told to use. Imported
    here, not with the module: every ``llm-ledger`` command imports the projections, and only the projector
    prices (the package's data takes ~140 ms to load cold)."""
    from genai_prices import data, data_snapshot

    return data_snapshot.DataSnapshot(providers=data.providers, from_auto_update=False)


class Pricing:
    """The cost of an attempt's usage: reported, else overridden, else ``genai-prices``'."""

    def __init__(self, overrides: PriceTable) -> None:
        self._overrides = overrides
        self._unknown: set[str] = set()

    def cost(self, model: str, usage: Mapping[str, Any], at: datetime) -> float | None:
        """``usage`` is an event's ``usage`` value; ``model`` the ledger's model string (``openai/gpt-4.1``);
        ``at`` when the call was made (prices change at a moment: the request's, not the answer's)."""
        reported = usage.get("cost_usd")
        if reported is not None:
            # Events stored before costs were bounded may hold an absurd one: unknown, as it is now.
            return provider_cost(reported)
        input_tokens, output_tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        overridden = self._overrides.cost(model, input_tokens, output_tokens)
        if overridden is not None:
            return overridden
        return self._catalogue_cost(model, usage, at)

    def _catalogue_cost(self, model: str, usage: Mapping[str, Any], at: datetime) -> float | None:
        if model in self._unknown:
            return None
        from genai_prices import Usage

        provider, _, model_ref = model.partition("/")
        counts = {
            "input_tokens": int(usage.get("prompt_tokens", 0)),
            "cache_read_tokens": usage.get("cached_tokens"),
            "cache_write_tokens": usage.get("cache_write_tokens"),
            "output_tokens": int(usage.get("completion_tokens", 0)),
            "output_reasoning_tokens": usage.get("reasoning_tokens"),
        }
        try:
            with warnings.catch_warnings():
                # A model priced only by inference from other counts warns per call; its price is still its own.
                warnings.simplefilter("ignore")
                calculation = _bundled_prices().calc(
                    Usage(**counts),
                    model_ref,
                    provider_id=provider,
                    provider_api_url=None,
                    genai_request_timestamp=at,
                )
        except LookupError:
            self._unknown.add(model)
            return None
        except ValueError:
            return None  # counts the package refuses (more cached tokens than input ones): cost unknown
        return float(calculation.total_price)
