"""The fault storm, short form (the long one is `make faults`): ~24 runs on real worker,
scheduler and Redis processes while about a dozen faults of mixed kinds hit them."""

from __future__ import annotations

from tests.faults.storm import StormConfig, run_storm


def test_short_storm_loses_nothing_and_reruns_no_memoized_task(tmp_path):
    report = run_storm(StormConfig(
        runs=24, in_flight=12, minutes=0.6, settle_seconds=15, quiesce_seconds=10,
        kill_every=1.5, redis_restarts=1, seed=7, workdir=str(tmp_path / "storm"),
    ))
    print(report.summary())
    kinds = [k for k, n in report.kills.items() if n]
    assert report.total_kills >= 5 and len(kinds) >= 2, report.summary()
    assert not report.lost, f"{report.summary()}\n{report.details()}"
    assert not report.memo_duplicates, f"{report.summary()}\n{report.details()}"
    assert not report.wrong, f"{report.summary()}\n{report.details()}"
