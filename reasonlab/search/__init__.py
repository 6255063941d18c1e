"""Test-time search strategies. Every strategy has the signature
``strategy(problems, policy, scorer, cfg) -> list[SearchResult]`` and is registered by name in
:data:`reasonlab.search.base.STRATEGIES` (``get_strategy(name)``)."""
from reasonlab.search.base import (
    STRATEGIES,
    Policy,
    SearchConfig,
    SearchResult,
    get_strategy,
)

__all__ = ["STRATEGIES", "Policy", "SearchConfig", "SearchResult", "get_strategy"]
