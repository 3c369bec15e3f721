"""Scenarios: every known LVS-DR failure by name, broken and fixed side by side."""

from lab.scenarios.base import Outcome, Scenario, Verdict, run, run_both, start
from lab.scenarios.catalogue import REGISTRY


def get(name: str) -> Scenario:
    from lab.errors import UsageError

    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"no scenario {name!r}; see `drlab scenarios`") from None


__all__ = ["REGISTRY", "Outcome", "Scenario", "Verdict", "get", "run", "run_both", "start"]
