"""Integration-test fixtures of this repository (the drlab plugin has the public ones)."""

import sys

import pytest


@pytest.fixture(scope="session", autouse=True)
def _command_server():
    """Stop the warm command server (tests/integration/cli_runner.py) when this test
    process is done: pytest-xdist's and --drlab-forks' workers end without running
    atexit handlers."""
    yield
    # (not imported here: a controller that runs no test would pay for pyroute2)
    runner = sys.modules.get("cli_runner")
    if runner is not None:
        runner.leave()


#: The tests that take longest in the VM (30-60 s each there under software
#: emulation; `--durations`), longest first. They are started first, so that
#: the workers (--drlab-forks in scripts/test's VM part, or pytest-xdist's) all
#: end at about the same time instead of three of them waiting on one that drew
#: a long test last.
LONGEST_FIRST = (
    "test_scenarios.py::test_broken_lab_check_and_its_collected_twin_name_the_scenario",
    "test_probes.py::test_failing_test_leaves_pcaps_and_state_dump",
    "test_cli.py::test_up_check_status_shell_down_a_broken_scenario_lab",
    "test_cli.py::test_demo_reports_and_cleans_up",
    "test_cluster.py::test_diagnose_and_validate_the_example",
    "test_keepalived.py::test_failover_with_sync_keeps_the_established_connection",
    "test_ipvs_matrix.py::test_ipvs_knobs_match_predictions",
    "test_realistic.py::",
    "test_load.py::",
    "test_scenarios.py::test_fixed_lab_check_and_its_collected_twin_find_nothing",
)


def _rank(item: pytest.Item) -> int:
    for n, prefix in enumerate(LONGEST_FIRST):
        if prefix in item.nodeid:
            return n
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the same order on every xdist worker, as it needs
