"""The synthetic corpus generator: determinism, shape, and agreement with ccusage.

The ccusage comparisons run the pinned oracle (tests/node, or $CCOTEL_CCUSAGE) on
small corpora; they are skipped, with the reason, when it is not installed.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.corpus import (
    CCUSAGE_VERSION,
    HAIKU45,
    MODELS,
    OPUS41,
    OPUS46,
    SONNET45,
    SONNET46,
    SYNTHETIC,
    CorpusInfo,
    Usage,
    append_assistant,
    append_lines,
    assistant_record,
    cost_usd,
    encode_cwd,
    find_ccusage,
    generate,
    generate_cached,
    run_ccusage,
    session_meta,
    write_session,
)

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------- helpers


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "projects").rglob("*"))
        if p.is_file()
    }


def jsonl_files(root: Path) -> list[Path]:
    return sorted((root / "projects").rglob("*.jsonl"))


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def usage_of(u: dict) -> Usage:
    cc = u.get("cache_creation")
    if cc is not None:
        c5, c1 = cc["ephemeral_5m_input_tokens"], cc["ephemeral_1h_input_tokens"]
    else:
        c5, c1 = u["cache_creation_input_tokens"], 0
    return Usage(
        u["input_tokens"],
        u["output_tokens"],
        c5,
        c1,
        u["cache_read_input_tokens"],
        (u.get("server_tool_use") or {}).get("web_search_requests", 0),
    )


@pytest.fixture(
    scope="module", params=[(60, 3), (150, 8)], ids=lambda p: f"files={p[0]},seed={p[1]}"
)
def corpus(request, tmp_path_factory) -> tuple[Path, CorpusInfo]:
    files, seed = request.param
    root = tmp_path_factory.mktemp("corpus")
    info = generate(root, files=files, seed=seed, start=START)
    return root, info


@pytest.fixture(scope="module")
def parsed(corpus):
    root, _ = corpus
    return {p: records(p) for p in jsonl_files(root)}


def need_ccusage() -> Path:
    exe = find_ccusage()
    assert exe is not None, (
        "ccusage not installed: run scripts/install-test-deps or set CCOTEL_CCUSAGE"
    )
    return exe


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_info(tmp_path):
    a = generate(tmp_path / "a", files=30, seed=11, start=START)
    b = generate(tmp_path / "b", files=30, seed=11, start=START)
    da, db = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert da == db
    assert len(da) > 30  # jsonl files plus meta.json files
    ja, jb = json.loads(a.to_json()), json.loads(b.to_json())
    for j in (ja, jb):
        j.pop("root")
        j.pop("generation_seconds")
    assert ja == jb


def test_different_seed_or_start_differs(tmp_path):
    a = generate(tmp_path / "a", files=20, seed=1, start=START)
    b = generate(tmp_path / "b", files=20, seed=2, start=START)
    c = generate(tmp_path / "c", files=20, seed=1, start=START + timedelta(days=1))
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "b")
    assert a.totals != b.totals
    # same content shifted in time: same token totals, different bytes
    assert a.totals == c.totals
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")


def test_refuses_to_overwrite(tmp_path):
    generate(tmp_path, files=5, seed=0, start=START)
    with pytest.raises(FileExistsError):
        generate(tmp_path, files=5, seed=0, start=START)


# ---------------------------------------------------------------------------- counts and encoding


def test_counts_match_disk(corpus, parsed):
    root, info = corpus
    files = jsonl_files(root)
    assert len(files) == info.files == info.params["files"]
    assert sum(p.stat().st_size for p in files) == info.bytes
    assert sum(p.read_bytes().count(b"\n") for p in files) == info.lines
    assert len(list((root / "projects").rglob("*.meta.json"))) == info.meta_files
    assert (info.session_files + info.subagent_files + info.legacy_agent_files) == info.files
    assert sum(info.line_types.values()) == info.lines
    n_types = defaultdict(int)
    for recs in parsed.values():
        for r in recs:
            n_types[r["type"]] += 1
    assert n_types["assistant"] == sum(
        v for k, v in info.line_types.items() if k.startswith("assistant/")
    )
    assert n_types["progress"] == sum(
        v for k, v in info.line_types.items() if k.startswith("progress/")
    )
    assert info.usage_lines + info.synthetic_lines == n_types["assistant"]
    projects = {p.name for p in (root / "projects").iterdir()}
    assert projects == set(info.projects)
    assert all(encode_cwd(cwd) == d for d, cwd in info.projects.items())


def test_lines_are_compact_json_with_literal_usage(corpus):
    root, _ = corpus
    for p in jsonl_files(root):
        data = p.read_bytes()
        if not data:
            continue
        assert data.endswith(b"\n"), p
        for line in data.splitlines():
            obj = json.loads(line)
            assert json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() == line
            if obj["type"] == "assistant":
                assert b'"usage":{' in line  # what ccusage greps for


def test_files_are_utf8_with_multibyte_text(corpus):
    root, _ = corpus
    blob = b"".join(p.read_bytes() for p in jsonl_files(root))
    blob.decode("utf-8")
    assert "→".encode() in blob  # Read results use cat -n arrows
    assert b"\\u" not in blob.replace(
        b"\\\\u", b""
    )  # non-ASCII is written raw, as JSON.stringify does


# ---------------------------------------------------------------------------- shape


def test_responses_repeat_ids_and_grow_output(parsed):
    multi_line = 0
    for path, recs in parsed.items():
        by_key: dict[tuple, list[dict]] = defaultdict(list)
        for r in recs:
            if r["type"] == "assistant" and r["message"]["model"] != SYNTHETIC:
                assert len(r["message"]["content"]) == 1  # one content block per line
                by_key[(r["message"]["id"], r["requestId"])].append(r["message"]["usage"])
        for key, us in by_key.items():
            outs = [u["output_tokens"] for u in us]
            assert outs == sorted(outs), (path, key)
            fixed = {
                (u["input_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"])
                for u in us
            }
            assert len(fixed) == 1, (path, key)
            if len(us) > 1:
                multi_line += 1
                assert all(
                    u.get("cache_creation") == us[0].get("cache_creation")
                    or sorted(u["cache_creation"].items())
                    == sorted(us[0]["cache_creation"].items())
                    for u in us
                )
    assert multi_line > 50


def test_subagents_link_to_parent_agent_calls(corpus, parsed):
    root, info = corpus
    subs = sorted((root / "projects").glob("*/*/subagents/agent-*.jsonl"))
    assert len(subs) == info.subagent_files > 0
    linked = 0
    for sub in subs:
        aid = sub.stem.removeprefix("agent-")
        sid = sub.parent.parent.name
        parent = sub.parent.parent.parent / f"{sid}.jsonl"
        assert parent.exists(), sub
        for r in parsed[sub]:
            assert (
                r.get("isSidechain") is True
                and r.get("agentId") == aid
                and r.get("sessionId") == sid
            )
        meta_path = sub.with_name(f"agent-{aid}.meta.json")
        if aid.startswith("acompact-"):
            assert not meta_path.exists()
            continue
        meta = json.loads(meta_path.read_text())
        assert set(meta) >= {"agentType", "description", "toolUseId"}
        uses = [
            b
            for r in parsed[parent]
            if r["type"] == "assistant"
            for b in r["message"]["content"]
            if b["type"] == "tool_use" and b["id"] == meta["toolUseId"]
        ]
        assert len(uses) == 1 and uses[0]["name"] == "Agent", sub
        results = [
            r
            for r in parsed[parent]
            if r["type"] == "user"
            and isinstance(r["message"]["content"], list)
            and r["message"]["content"][0].get("tool_use_id") == meta["toolUseId"]
        ]
        assert len(results) == 1
        assert results[0]["toolUseResult"]["agentId"] == aid
        assert results[0]["toolUseResult"]["agentType"] == meta["agentType"]
        linked += 1
    assert linked == info.meta_files
    assert info.compact_files >= 1


def test_agent_progress_copies_match_subagent_final_lines(corpus, parsed):
    _, info = corpus
    final_usage: dict[tuple, dict] = {}
    for p, recs in parsed.items():
        if "subagents" in p.parts:
            for r in recs:
                if r["type"] == "assistant":
                    final_usage[(r["message"]["id"], r["requestId"])] = r["message"]["usage"]
    copies = 0
    for recs in parsed.values():
        for r in recs:
            if r["type"] == "progress" and r["data"]["type"] == "agent_progress":
                assert r["parentToolUseID"].startswith("toolu_") and r["toolUseID"].startswith(
                    "agent_msg_msg_"
                )
                m = r["data"]["message"]
                if m["type"] == "assistant":
                    key = (m["message"]["id"], m["requestId"])
                    assert (
                        m["message"]["usage"] == final_usage[key]
                    )  # same ids, the last line's usage
                    copies += 1
    assert copies > 0
    assert info.agent_progress_lines >= copies


def test_legacy_flat_agents(corpus, parsed):
    root, info = corpus
    flat = sorted((root / "projects").glob("*/agent-*.jsonl"))
    assert len(flat) == info.legacy_agent_files >= 1
    task_results = {}
    for recs in parsed.values():
        for r in recs:
            tur = r.get("toolUseResult")
            if r["type"] == "user" and isinstance(tur, dict) and "agentId" in tur:
                task_results[tur["agentId"]] = r
    for p in flat:
        aid = p.stem.removeprefix("agent-")
        recs = parsed[p]
        assert all(r["isSidechain"] is True and r["agentId"] == aid for r in recs)
        assert recs[0]["version"].startswith("2.0.")
        assert (p.parent / f"{recs[0]['sessionId']}.jsonl").exists()
        if recs[0]["message"]["content"] != "Warmup":
            assert aid in task_results
            tu_id = task_results[aid]["message"]["content"][0]["tool_use_id"]
            assert info_tool_name(parsed, tu_id) == "Task"


def info_tool_name(parsed, tool_id: str) -> str | None:
    for recs in parsed.values():
        for r in recs:
            if r["type"] == "assistant":
                b = r["message"]["content"][0]
                if b["type"] == "tool_use" and b["id"] == tool_id:
                    return b["name"]
    return None


def test_resumed_copies_rewrite_origin_lines(corpus, parsed):
    _, info = corpus
    assert info.resumed_copies
    by_sid = {p.stem: p for p in parsed if p.parent.parent.name == "projects"}
    kinds = set()
    for copy_sid, origin_sid, cut in info.resumed_copies:
        kinds.add(cut)
        cp, op = by_sid[copy_sid], by_sid[origin_sid]
        assert cp.parent == op.parent  # same project
        origin_by_uuid = {r["uuid"]: r for r in parsed[op] if "uuid" in r}
        shared = [r for r in parsed[cp] if r.get("uuid") in origin_by_uuid]
        assert shared, copy_sid
        for r in shared:
            o = origin_by_uuid[r["uuid"]]
            assert r["timestamp"] == o["timestamp"]
            if "sessionId" in o:
                assert o["sessionId"] == origin_sid and r["sessionId"] == copy_sid
            assert {k: v for k, v in r.items() if k != "sessionId"} == {
                k: v for k, v in o.items() if k != "sessionId"
            }
        shared_ids = {
            (r["message"]["id"], r.get("requestId")) for r in shared if r["type"] == "assistant"
        }
        origin_ids = {
            (r["message"]["id"], r.get("requestId")) for r in parsed[op] if r["type"] == "assistant"
        }
        assert shared_ids <= origin_ids
        # the copy then continues with new lines of its own
        assert len(shared) < len(parsed[cp])
        if cut == "mid":
            # cut right after the first line of a multi-line response: the copy holds a partial response
            last_shared = shared[-1]
            assert last_shared["type"] == "assistant"
            key = (last_shared["message"]["id"], last_shared["requestId"])
            n_origin = sum(
                1
                for r in parsed[op]
                if r["type"] == "assistant" and (r["message"]["id"], r.get("requestId")) == key
            )
            assert n_origin > 1
    assert "mid" in kinds


def test_every_tool_use_has_a_result_except_the_open_ones(corpus, parsed):
    _, info = corpus
    uses, results, errors = {}, set(), set()
    for recs in parsed.values():
        for r in recs:
            if r["type"] == "assistant":
                for b in r["message"]["content"]:
                    if b["type"] == "tool_use":
                        uses[b["id"]] = b["name"]
            elif r["type"] == "user" and isinstance(r["message"]["content"], list):
                for b in r["message"]["content"]:
                    if b.get("type") == "tool_result":
                        assert "toolUseResult" in r
                        results.add(b["tool_use_id"])
                        if b["is_error"]:
                            errors.add(b["tool_use_id"])
    assert results <= set(uses)
    assert set(uses) - results == set(info.open_tool_use_ids)
    assert info.open_tool_use_ids
    assert info.tool_calls == len(uses)
    assert info.tool_calls_by_status == {
        "ok": len(results - errors),
        "error": len(errors),
        "open": len(uses) - len(results),
    }
    assert errors


def test_timestamps_within_window_and_increasing(parsed):
    lo = START - timedelta(days=31)
    for p, recs in parsed.items():
        prev = None
        for r in recs:
            ts = r.get("timestamp") or (r.get("snapshot") or {}).get("timestamp")
            if ts is None:
                continue
            t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
            assert lo <= t <= START, (p, ts)
            assert prev is None or t >= prev, (p, ts)
            prev = t


def test_covers_the_traps(corpus, parsed):
    _, info = corpus
    models, types, over_200k, web, h1, flat = set(), set(), defaultdict(int), 0, 0, 0
    synthetic = 0
    for recs in parsed.values():
        for r in recs:
            t = r["type"]
            types.add(
                t
                if t not in ("system", "progress")
                else f"{t}/{r.get('subtype') or r['data']['type']}"
            )
            if t != "assistant":
                continue
            m, u = r["message"]["model"], r["message"]["usage"]
            models.add(m)
            if m == SYNTHETIC:
                assert r["isApiErrorMessage"] is True and "requestId" not in r
                assert usage_of(u).total == 0
                synthetic += 1
                continue
            uu = usage_of(u)
            if max(uu.input, uu.cache_5m, uu.cache_1h, uu.cache_read) > 200_000:
                over_200k[m] += 1
            web += uu.web_search
            h1 += uu.cache_1h > 0
            flat += "cache_creation" not in u
    assert models == {*MODELS, SYNTHETIC}
    assert over_200k[SONNET45] > 0 and over_200k[OPUS46] > 0
    assert web > 0 and h1 > 0 and flat > 0 and synthetic == info.synthetic_lines > 0
    assert {
        "user",
        "assistant",
        "attachment",
        "queue-operation",
        "file-history-snapshot",
        "last-prompt",
        "system/turn_duration",
        "system/compact_boundary",
        "progress/agent_progress",
        "progress/hook_progress",
        "progress/bash_progress",
    } <= types


def test_expected_totals_are_the_sum_of_unique_final_usage(corpus, parsed):
    """Re-derive the expectation from the files with the dedupe rule (largest total per
    (message.id, requestId), non-sidechain first) and compare with the generator's own."""
    _, info = corpus
    best: dict[tuple, tuple[bool, int, str, Usage]] = {}
    for p in sorted(parsed):
        for r in parsed[p]:
            if r["type"] != "assistant" or r["message"]["model"] == SYNTHETIC:
                continue
            u = usage_of(r["message"]["usage"])
            key = (r["message"]["id"], r["requestId"])
            cand = (r.get("isSidechain", False), u.total, r["message"]["model"], u)
            old = best.get(key)
            if old is None or (old[0] and not cand[0]) or (old[0] == cand[0] and cand[1] > old[1]):
                best[key] = cand
    assert len(best) == info.responses
    tot = defaultdict(float)
    for _, _, model, u in best.values():
        tot["input_tokens"] += u.input
        tot["output_tokens"] += u.output
        tot["cache_write_tokens"] += u.cache_write
        tot["cache_read_tokens"] += u.cache_read
        tot["cost_usd"] += cost_usd(model, u)
        tot["web_search_requests"] += u.web_search
    for k, v in tot.items():
        assert math.isclose(info.totals[k], v, rel_tol=1e-12), k


def test_cost_rules():
    m = 1_000_000
    assert cost_usd(OPUS46, Usage(m, m, m, m, m)) == pytest.approx(5 + 25 + 6.25 + 10 + 0.5)
    assert cost_usd(OPUS41, Usage(input=m)) == pytest.approx(15)
    assert cost_usd(HAIKU45, Usage(cache_1h=m)) == pytest.approx(2)
    # Sonnet 4.5: marginal tier above 200k, per category and per request
    assert cost_usd(SONNET45, Usage(cache_read=300_000)) == pytest.approx(
        (200_000 * 0.3 + 100_000 * 0.6) / m
    )
    assert cost_usd(SONNET45, Usage(input=200_000)) == pytest.approx(0.6)
    assert cost_usd(SONNET45, Usage(cache_1h=250_000, cache_5m=150_000)) == pytest.approx(
        (200_000 * 6 + 50_000 * 12 + 150_000 * 3.75) / m
    )
    # Sonnet 4.6 and Opus 4.6 are flat
    assert cost_usd(SONNET46, Usage(cache_read=300_000)) == pytest.approx(300_000 * 0.3 / m)
    assert cost_usd(OPUS46, Usage(input=400_000)) == pytest.approx(2.0)
    assert cost_usd(SYNTHETIC, Usage()) == 0


def test_target_bytes_scales_sizes_not_structure(tmp_path):
    a = generate(tmp_path / "a", files=120, seed=5, start=START)
    want = a.bytes // 2
    b = generate(tmp_path / "b", files=120, seed=5, start=START, target_bytes=want)
    assert b.files == a.files
    assert abs(b.bytes - want) < 0.1 * want
    # structure comes from its own random stream: same sessions and responses
    assert (b.lines, b.responses, b.sessions) == (a.lines, a.responses, a.sessions)
    assert b.tool_calls_by_name == a.tool_calls_by_name


def test_generate_cached_reuses_and_detects_changes(tmp_path):
    info, reused = generate_cached(tmp_path, files=12, seed=4, start=START)
    assert not reused
    again, reused = generate_cached(tmp_path, files=12, seed=4, start=START)
    assert reused and again.totals == info.totals and again.root == info.root
    victim = jsonl_files(Path(info.root))[0]
    append_lines(victim, [{"type": "summary", "summary": "x", "leafUuid": "y"}])
    fresh, reused = generate_cached(tmp_path, files=12, seed=4, start=START)
    assert not reused and fresh.bytes == info.bytes
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("corpus-")] == [
        Path(info.root).name
    ]


def test_append_helpers_write_whole_lines(tmp_path):
    path, expected = write_session(tmp_path, cwd="/home/user/live", seed=1, start=START)
    assert path.parent.name == "-home-user-live"
    meta = session_meta(path)
    rec = append_assistant(path, Usage(7, 70, 700, 0, 7000), meta=meta, timestamp=START)
    rec2 = assistant_record(
        session_id=meta["sessionId"],
        cwd=meta["cwd"],
        usage=Usage(1, 2, 0, 3, 4),
        parent_uuid=meta["lastUuid"],
        timestamp=START,
    )
    append_lines(path, [rec2], split_at=17)
    recs = records(path)
    assert recs[-2] == rec and recs[-1] == rec2
    assert rec["parentUuid"] != rec2["parentUuid"] or rec2["parentUuid"] == rec["uuid"]
    assert meta["lastUuid"] == rec["uuid"]
    assert (
        rec["sessionId"] == recs[0]["sessionId"]
        and rec["message"]["id"] != recs[1]["message"]["id"]
    )
    assert expected["totals"]["responses"] == 2


# ---------------------------------------------------------------------------- ccusage, the oracle


def test_ccusage_is_the_pinned_version():
    exe = need_ccusage()
    out = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == f"ccusage {CCUSAGE_VERSION}"


def assert_matches_ccusage(report: dict, info: CorpusInfo) -> None:
    t, e = report["totals"], info.totals
    assert t["inputTokens"] == e["input_tokens"]
    assert t["outputTokens"] == e["output_tokens"]
    assert t["cacheCreationTokens"] == e["cache_write_tokens"]
    assert t["cacheReadTokens"] == e["cache_read_tokens"]
    assert t["totalTokens"] == e["total_tokens"]
    assert math.isclose(t["totalCost"], e["cost_usd"], rel_tol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ccusage_totals_equal_ground_truth(tmp_path, seed):
    need_ccusage()
    info = generate(tmp_path, files=45, seed=seed, start=START)
    rep = run_ccusage(tmp_path, "session")
    assert_matches_ccusage(rep, info)
    # per model (summed over ccusage's per-session breakdowns)
    by_model: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for row in rep["session"]:
        for b in row["modelBreakdowns"]:
            x = by_model[b["modelName"]]
            x[0] += b["inputTokens"]
            x[1] += b["outputTokens"]
            x[2] += b["cacheCreationTokens"]
            x[3] += b["cacheReadTokens"]
            x[4] += b["cost"]
    by_model.pop(SYNTHETIC, None)
    assert set(by_model) == set(info.expected["by_model"])
    for model, x in by_model.items():
        e = info.expected["by_model"][model]
        assert x[:4] == [
            e["input_tokens"],
            e["output_tokens"],
            e["cache_write_tokens"],
            e["cache_read_tokens"],
        ], model
        assert math.isclose(x[4], e["cost_usd"], rel_tol=1e-9), model
    # ccusage groups by file: subagents/ files under their session, legacy flat agent files on their own
    assert len(rep["session"]) == info.sessions_with_usage + info.legacy_agent_files


def test_ccusage_daily_counts_progress_copies_once(corpus):
    """`daily` also reads agent_progress copies (session does not); they carry the
    subagent's final usage under the same ids, so totals must not move."""
    need_ccusage()
    root, info = corpus
    assert_matches_ccusage(run_ccusage(root, "daily"), info)
    assert_matches_ccusage(run_ccusage(root, "session"), info)


def test_ccusage_sees_appended_lines_exactly(tmp_path):
    need_ccusage()
    info = generate(tmp_path, files=15, seed=9, start=START)
    before = run_ccusage(tmp_path)["totals"]
    target = next(
        p
        for p in jsonl_files(tmp_path)
        if p.parent.parent.name == "projects"
        and p.stat().st_size > 0
        and not p.name.startswith("agent-")
    )
    added = [
        (SONNET45, Usage(10, 500, 1000, 250_000, 300_000)),
        (OPUS46, Usage(3, 40, 0, 900, 12_000)),
    ]
    meta = session_meta(target)
    for model, u in added:
        append_assistant(target, u, model=model, meta=meta, timestamp=START - timedelta(minutes=1))
    # a duplicate of the last line (same ids, same usage) must not count twice
    last = records(target)[-1]
    append_lines(target, [last])
    after = run_ccusage(tmp_path)["totals"]
    assert after["inputTokens"] - before["inputTokens"] == 13
    assert after["outputTokens"] - before["outputTokens"] == 540
    assert after["cacheCreationTokens"] - before["cacheCreationTokens"] == 251_900
    assert after["cacheReadTokens"] - before["cacheReadTokens"] == 312_000
    want = sum(cost_usd(m, u) for m, u in added)
    assert math.isclose(after["totalCost"] - before["totalCost"], want, rel_tol=1e-9)
    assert before["totalTokens"] == info.totals["total_tokens"]


def test_ccusage_on_write_session(tmp_path):
    need_ccusage()
    _, expected = write_session(
        tmp_path,
        seed=2,
        start=START,
        usages=[(SONNET45, Usage(210_000, 5, 0, 0, 0)), (OPUS41, Usage(1, 1, 1, 1, 1))],
    )
    t = run_ccusage(tmp_path)["totals"]
    e = expected["totals"]
    assert (
        t["inputTokens"],
        t["outputTokens"],
        t["cacheCreationTokens"],
        t["cacheReadTokens"],
    ) == (e["input_tokens"], e["output_tokens"], e["cache_write_tokens"], e["cache_read_tokens"])
    assert math.isclose(t["totalCost"], e["cost_usd"], rel_tol=1e-9)
