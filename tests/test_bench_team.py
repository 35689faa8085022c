"""bench/team.py's arithmetic: which laptops it simulates and how it fits series per host.

The benchmark itself runs 50+ daemons for minutes (bench/README.md); these check the parts a
short run once got wrong: six hosts that all had 2 projects made a singular fit, which came
out as 0 series for the typical laptop instead of "unknown"."""

from __future__ import annotations

import importlib.util
import itertools
from types import SimpleNamespace

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("bench_team", REPO / "bench" / "team.py")
team = importlib.util.module_from_spec(spec)
spec.loader.exec_module(team)


def test_the_typical_laptop_comes_first_and_thirty_hosts_cover_every_pair():
    mix = team.host_mix()
    assert mix[:2] == [(20, 4, "full"), (20, 4, "team")]
    expected = set(itertools.product(team.PROJECTS, team.MODEL_COUNTS, team.PROFILES))
    assert set(mix) == expected and len(mix) == len(expected)
    # a few hosts already vary both numbers: enough for the fit with 10 hosts per profile
    for prof in team.PROFILES:
        first = [(p, m) for p, m, pr in mix[:20] if pr == prof]
        assert len({p for p, _ in first}) >= 4 and len({m for _, m in first}) == 3
    # 12 hosts are enough to fit both profiles (bench/README.md says so)
    for prof in team.PROFILES:
        some = [(p, m) for p, m, pr in mix[:12] if pr == prof]
        assert team._fit(rows(lambda p, m: 50 + p * m + p, some, prof)) is not None


def rows(formula, pairs, profile):
    return [
        {"projects": p, "models": m, "profile": profile, "series": formula(p, m)} for p, m in pairs
    ]


def test_the_fit_recovers_a_known_formula_in_both_profiles():
    pairs = [(p, m) for p, m, _ in team.host_mix()[::2]]
    full = rows(lambda p, m: 40 + 9 * p * m + 30 * p + 6 * m, pairs, "full")
    f = team._fit(full)
    assert abs(f["a"] - 40) < 1e-6 and abs(f["b"] - 9) < 1e-6
    assert abs(f["c"] - 30) < 1e-6 and abs(f["d"] - 6) < 1e-6
    assert f["max_rel_error"] < 1e-9

    # the team profile names 5 projects and folds the rest into one "other"
    def folded(p, m):
        named = team.pushed_projects(p, "team")  # 5 by name and "other" beyond 5
        return 40 + 4 * named * m + 3 * named

    assert team.pushed_projects(40, "team") == 6 and team.pushed_projects(40, "full") == 40
    t = team._fit(rows(folded, pairs, "team"))
    assert abs(team._fitted(t, 20, 4, "team") - folded(20, 4)) < 1e-6
    assert abs(team._fitted(t, 40, 1, "team") - folded(40, 1)) < 1e-6


def test_hosts_that_do_not_vary_give_no_fit_rather_than_zeros():
    same_projects = rows(lambda p, m: 100 + 10 * m, [(2, 1), (2, 2), (2, 4)], "full")
    assert team._fit(same_projects) is None
    assert team._solve([[1.0, 2.0], [2.0, 4.0]], [1.0, 2.0]) is None


def test_the_typical_laptop_is_measured_when_such_a_host_pushed_else_fitted_else_unknown():
    class Lap:
        def __init__(self, n, p, m, prof):
            self.n, self.projects, self.models, self.profile = n, p, ("x",) * m, prof

    mix = team.host_mix()
    laps = [Lap(n, p, m, prof) for n, (p, m, prof) in enumerate(mix)]
    recv = SimpleNamespace(
        series={f"host-{lap.n:03d}": {"a": 10 + 5 * lap.projects * len(lap.models)} for lap in laps}
    )
    zero = {f"host-{lap.n:03d}": {} for lap in laps}
    cpu = {lap.n: 0 for lap in laps}
    load = {"before": (1.0, 1.0, 1.0), "during": (2.0, 2.0, 2.0), "end": (2.0, 2.0, 2.0)}
    args = type("A", (), {})()
    r = team.figures(laps, recv, zero, zero, cpu, cpu, cpu, cpu, 60.0, args, load)
    assert r["typical_laptop"]["full"]["series"] == 10 + 5 * 80
    assert r["typical_laptop"]["full"]["source"].startswith("measured")
    assert r["at_1000_hosts"]["full"]["active_series"] == 410_000
    # without the 20-project hosts: from the fit
    r = team.figures(laps[2:], recv, zero, zero, cpu, cpu, cpu, cpu, 60.0, args, load)
    assert r["typical_laptop"]["full"]["source"] == "fitted"
    assert abs(r["typical_laptop"]["full"]["series"] - 410) < 1e-6
    # two hosts of one kind: neither measured nor fitted, and said so (not 0)
    r = team.figures(laps[2:4], recv, zero, zero, cpu, cpu, cpu, cpu, 60.0, args, load)
    assert r["typical_laptop"]["full"] is None and r["at_1000_hosts"]["full"] is None
