"""The soak harness's own logic, without starting anything: the command line, the
fault schedule, the windows that excuse an error, the PII scan and the verdict.
(test_soak_bounded.py runs the whole thing.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import cli, faults, invariants, pii, queries, stats
from bench.soak.load import Sample

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_command_still_runs_the_harness():
    done = subprocess.run(
        [sys.executable, "bench/soak.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bench/soak.py")
    for option in ("--quick", "--proposals", "--seconds", "--no-faults", "--no-docs"):
        assert option in done.stdout


def test_quick_and_full_runs_keep_their_sizes():
    assert (cli.options(["--quick"]).proposals, cli.options(["--quick"]).seconds) == (50_000, 60)
    full = cli.options([])
    assert (full.proposals, full.seconds, full.max_wall) == (1_000_000, 120, 2400)
    assert cli.options(["--proposals", "2000", "--no-faults"]).no_faults


def test_no_faults_means_an_empty_schedule_and_says_so():
    assert faults.fault_schedule(90, enabled=False) == {}
    assert faults.schedule_text({}) == "none (--no-faults)"


def test_the_fault_schedule_fires_one_fault_at_a_time_in_order():
    plan = faults.fault_schedule(60, enabled=True)
    assert list(plan) == [
        "worker_kill",
        "worker_restart",
        "pg_terminate",
        "redis_stop",
        "redis_start",
        "pause",
        "resume",
    ]
    assert list(plan.values()) == sorted(plan.values())
    assert plan["redis_start"] - plan["redis_stop"] == 10
    assert "worker_kill at 9s" in faults.schedule_text(plan)


def test_an_error_inside_a_fault_window_is_excused_and_one_outside_is_not():
    start = 1_000.0
    fired = {"redis_down": {"at_s": 10.0, "restarted_at_s": 20.0}, "pg_terminate": {"at_s": 40.0}}
    samples = [
        Sample(start + 12, "queue_page", 500, 5),  # Redis down
        Sample(start + 29, "decide_next", 0, 5),  # within 10 s of Redis's restart
        Sample(start + 41, "dashboard", 500, 5),  # a terminated backend
        Sample(start + 9.9, "queue_page", 502, 300),  # in flight when Redis stopped
        Sample(start + 35, "ops", 500, 5),  # no fault explains this one
        Sample(start + 36, "ops", 200, 5),
    ]
    outside = faults.errors_outside_fault_windows(fired, samples, start, 60)
    assert outside == {"count": 1, "by_kind": {"ops:500": 1}, "at_s": [35]}


def test_with_no_faults_every_error_counts():
    samples = [Sample(5.0, "queue_page", 500, 1.0)]
    assert faults.errors_outside_fault_windows({}, samples, 0.0, 60)["count"] == 1


def test_latency_summary_counts_only_successes_in_its_percentiles():
    samples = [Sample(0, "floor", 200, ms) for ms in (1, 2, 3, 4, 100)]
    samples.append(Sample(0, "floor", 500, 9_999))
    summary = stats.latency_summary(samples, seconds=2)["floor"]
    assert summary["n"] == 6
    assert summary["ok"] == 5
    assert summary["p50_ms"] == 3
    assert summary["status"] == {"200": 5, "500": 1}


@pytest.mark.parametrize(
    ("line", "cards"),
    [
        ("My card is 4111 1111 1111 1111 if you need it.", 1),
        ("card 5500-0000-0000-0004", 1),
        ("order 4111 1111 1111 1112 (not Luhn-valid)", 0),
        ("trace id 4111111111111111abc", 0),
    ],
)
def test_the_pii_scan_finds_luhn_valid_card_numbers(tmp_path, monkeypatch, line, cards):
    monkeypatch.setattr(pii, "seeded_emails", lambda: {"ann@example.com"})
    (tmp_path / "web.log").write_text(f"{line}\nmail from ann@example.com\n")
    scan = pii.scan_logs(tmp_path)
    assert scan["files"]["web.log"]["card_numbers"] == cards
    assert scan["files"]["web.log"]["seeded_emails"] == 1
    assert scan["pii_found"]


def test_the_verdict_names_every_broken_invariant():
    report = {
        "invariants": {
            "lost_items": {"without_a_broker_message": 2, "runs_running_over_150s": 0},
            "executing_items_idle_over_120s": 0,
            "double_execution": {"duplicate_keys": 1, "sandbox_refunds": 40},
            "double_decision": {"decision_audit_events_twice": 0, "decided_over_http": 9},
            "claims_held_beyond_their_lease": 0,
            "pause": {"executions_started_while_paused": 0},
        },
        "errors_outside_fault_windows": {"count": 0},
        "log_scan": {"pii_found": False},
    }
    assert invariants.violations(report) == [
        "work items neither finished nor queued after the sweeper's window: 2",
        "double execution (duplicate keys): 1",
    ]


def test_a_failed_measurement_is_reported_not_fatal():
    measured = {
        "floor": {"queries": [3, 3, 3], "status": [200, 200, 200]},
        "ops": {"error": "ImportError: boom"},
    }
    assert queries.errors_of(measured) == ["queries per request (ops): ImportError: boom"]
    assert queries.errors_of({"error": "ImportError: boom"}) == [
        "queries per request: ImportError: boom"
    ]


def test_the_harness_imports_what_it_needs_late_at_the_start(db):
    """queries per request logs in with django.test's Client at the very end of a run;
    its authentication backends (console.backends and Django's) are imported up front."""
    from bench.soak.processes import imports_warm

    imports_warm()
    assert {"console.backends", "django.contrib.auth.backends", "demo.workflows"} <= set(
        sys.modules
    )


def test_the_soak_never_takes_over_a_redis_it_did_not_start(tmp_path, monkeypatch):
    from bench.soak import processes

    own = processes.OwnRedis(tmp_path / "redis", tmp_path / "redis.log")
    monkeypatch.setattr(own, "ping", lambda: True)  # something answers on the port already
    with pytest.raises(RuntimeError, match="already answers"):
        own.start()
    assert own.proc is None, "no redis-server started, and none will be shut down"
    own.stop()


def test_the_soak_drops_only_a_database_named_for_a_soak(monkeypatch):
    from bench.soak import db

    monkeypatch.setattr(db, "DB_NAME", "tenure")
    with pytest.raises(RuntimeError, match="not named for a soak"):
        db.recreate_database()


def test_custom_sizes_are_kept_and_the_issue_command_parses():
    opts = cli.options(
        ["--proposals", "1000000", "--seconds", "90", "--reviewers", "4", "--no-faults",
         "--no-docs"]
    )  # fmt: skip
    assert (opts.proposals, opts.seconds, opts.reviewers) == (1_000_000, 90, 4)
    assert opts.no_faults
    assert opts.no_docs
    assert faults.fault_schedule(opts.seconds, enabled=not opts.no_faults) == {}
    quick = cli.options(["--quick", "--proposals", "3000", "--seconds", "20"])
    assert (quick.proposals, quick.seconds, quick.max_wall) == (3000, 20, 600)


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_an_item_the_sweeper_brings_back_within_its_window_is_late_not_lost():
    clock = _FakeClock()

    # Item 1 finishes after 10 s, item 2 gets a broker message again at 40 s (the
    # sweeper), item 3 never comes back.
    def in_pipeline(ids):
        return {i for i in ids if not (i == 1 and clock.now >= 10)}

    def queued():
        return {2} if clock.now >= 40 else set()

    late, lost, waited = invariants.late_or_lost(
        [1, 2, 3], window=95, in_pipeline=in_pipeline, queued=queued,
        sleep=clock.sleep, clock=clock,
    )  # fmt: skip
    assert (late, lost) == ([1, 2], [3])
    assert waited >= 95  # the whole window is waited out before calling one lost


def test_nothing_stranded_means_no_wait():
    clock = _FakeClock()
    late, lost, waited = invariants.late_or_lost(
        [], window=95, in_pipeline=lambda ids: set(ids), queued=set,
        sleep=clock.sleep, clock=clock,
    )  # fmt: skip
    assert (late, lost, waited) == ([], [], 0.0)


def test_the_window_covers_the_sweepers_stranded_time_and_its_period():
    from bench.soak.config import STRANDED_AFTER_SECONDS, SWEEP_WINDOW_SECONDS
    from console.ops.beat import BEAT_SCHEDULE

    period = BEAT_SCHEDULE["redispatch-stranded"]["schedule"].total_seconds()
    assert STRANDED_AFTER_SECONDS + period < SWEEP_WINDOW_SECONDS


def test_late_items_are_reported_but_are_no_violation():
    report = {
        "invariants": {
            "lost_items": {"late": 2, "without_a_broker_message": 0, "runs_running_over_150s": 0}
        }
    }
    assert not any("neither finished" in v for v in invariants.violations(report))
