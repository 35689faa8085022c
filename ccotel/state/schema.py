"""Every table of the state, the migrations between versions, and the statements of Store.

(Which module of ``ccotel.state`` owns which tables and queries: its ``__init__``.)

The schema version is ``PRAGMA user_version``. A fresh state runs every migration from 0,
so a new state and an upgraded one have the same schema by construction. A migration is
never edited once released: a change is a new one appended to MIGRATIONS.
"""

from __future__ import annotations

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # WAL + NORMAL: a kill -9 never loses a commit
    "PRAGMA foreign_keys=OFF",
    "PRAGMA busy_timeout=5000",
    "PRAGMA cache_size=-16384",  # 16 MiB: random-key inserts of a backfill stay in memory
    "PRAGMA wal_autocheckpoint=4096",  # 16 MiB of WAL between checkpoints: a backfill's
    "PRAGMA journal_size_limit=33554432",  # commits are not each a checkpoint; WAL <= 32 MiB
)
CACHE_SIZE = "PRAGMA cache_size=-{kib}"

# --- version 1: the schema of ccotel 0.1.0 (frozen) ------------------------------------

_V1 = (
    """CREATE TABLE IF NOT EXISTS files(
        path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, offset INTEGER NOT NULL,
        line_no INTEGER NOT NULL, marker BLOB, trace_offset INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS responses(
        key INTEGER PRIMARY KEY, mkey INTEGER NOT NULL, session TEXT, cwd TEXT, model TEXT,
        ts REAL, input INTEGER, output INTEGER, cache_read INTEGER, cw5m INTEGER, cw1h INTEGER,
        web_search INTEGER, sidechain INTEGER, has_speed INTEGER, cost REAL, priced INTEGER)""",
    "CREATE INDEX IF NOT EXISTS responses_mkey ON responses(mkey)",
    "CREATE TABLE IF NOT EXISTS response_alias(key INTEGER PRIMARY KEY, target INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS usage(
        session TEXT NOT NULL, hour INTEGER NOT NULL, model TEXT NOT NULL, cwd TEXT NOT NULL,
        input INTEGER NOT NULL DEFAULT 0, output INTEGER NOT NULL DEFAULT 0,
        cache_read INTEGER NOT NULL DEFAULT 0, cw5m INTEGER NOT NULL DEFAULT 0,
        cw1h INTEGER NOT NULL DEFAULT 0, web_search INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,
        unpriced INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(session, hour, model, cwd)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS usage_hour ON usage(hour)",
    """CREATE TABLE IF NOT EXISTS sessions(
        id TEXT PRIMARY KEY, cwd TEXT, branch TEXT, version TEXT,
        first_ts REAL, last_ts REAL)""",
    "CREATE INDEX IF NOT EXISTS sessions_last ON sessions(last_ts)",
    """CREATE TABLE IF NOT EXISTS tools(
        id TEXT PRIMARY KEY, name TEXT NOT NULL, session TEXT, cwd TEXT,
        start_ts REAL, end_ts REAL, status TEXT) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS tools_session ON tools(session)",
    """CREATE TABLE IF NOT EXISTS tool_agg(
        tool TEXT NOT NULL, cwd TEXT NOT NULL, status TEXT NOT NULL,
        count INTEGER NOT NULL, dur_sum REAL NOT NULL, buckets TEXT NOT NULL,
        PRIMARY KEY(tool, cwd, status)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS spend_minutes(minute INTEGER PRIMARY KEY, cost REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)",
)

# --- version 2 -----------------------------------------------------------------------
# - The trace shipper's tables join the schema (0.1.0 created them from the shipper).
# - Responses and tool calls keep their texts (session, cwd, model, tool name) once, in
#   `names`, and tool calls are keyed by a 64-bit hash of their id: the two tables that
#   grow with every response shrink to about a third. Views under the old names keep
#   every reader working.
# - session_cwds: each working directory a session had activity in (sessions per project).

_V2 = (
    # Per file: how far spans have been delivered (apart from the metrics cursor in `files`).
    """CREATE TABLE IF NOT EXISTS trace_files(
        path TEXT PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
        offset INTEGER NOT NULL, line_no INTEGER NOT NULL, marker BLOB)""",
    # Per session: what a restart needs to continue its trace (msgpack of model.Session).
    """CREATE TABLE IF NOT EXISTS trace_sessions(
        id TEXT PRIMARY KEY, closed INTEGER NOT NULL, last REAL, blob BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS trace_sessions_open ON trace_sessions(closed)",
    # Responses that already have their chat span (a kept copy read twice gets one).
    "CREATE TABLE IF NOT EXISTS trace_chats(key INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS trace_meta(key TEXT PRIMARY KEY, value TEXT)",
    # Texts that rows of the big tables refer to by id.
    "CREATE TABLE names(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    """INSERT OR IGNORE INTO names(name)
        SELECT session FROM responses WHERE session IS NOT NULL
        UNION SELECT cwd FROM responses WHERE cwd IS NOT NULL
        UNION SELECT model FROM responses WHERE model IS NOT NULL
        UNION SELECT name FROM tools
        UNION SELECT session FROM tools WHERE session IS NOT NULL
        UNION SELECT cwd FROM tools WHERE cwd IS NOT NULL""",
    # One row per de-duplicated API response (the kept copy).
    # flags: 1 sidechain, 2 has a speed field, 4 priced.
    """CREATE TABLE response(
        key INTEGER PRIMARY KEY, mkey INTEGER NOT NULL, session INTEGER, cwd INTEGER,
        model INTEGER, ts REAL NOT NULL, input INTEGER NOT NULL, output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL, cw5m INTEGER NOT NULL, cw1h INTEGER NOT NULL,
        web_search INTEGER NOT NULL, flags INTEGER NOT NULL, cost REAL NOT NULL)""",
    """INSERT INTO response SELECT r.key, r.mkey,
        (SELECT id FROM names WHERE name = r.session), (SELECT id FROM names WHERE name = r.cwd),
        (SELECT id FROM names WHERE name = r.model), COALESCE(r.ts, 0), COALESCE(r.input, 0),
        COALESCE(r.output, 0), COALESCE(r.cache_read, 0), COALESCE(r.cw5m, 0),
        COALESCE(r.cw1h, 0), COALESCE(r.web_search, 0),
        (COALESCE(r.sidechain, 0) != 0) | ((COALESCE(r.has_speed, 0) != 0) << 1)
            | ((COALESCE(r.priced, 0) != 0) << 2),
        COALESCE(r.cost, 0) FROM responses r""",
    "DROP TABLE responses",
    "CREATE INDEX response_mkey ON response(mkey)",
    """CREATE VIEW responses AS SELECT r.key AS key, r.mkey AS mkey, s.name AS session,
        c.name AS cwd, m.name AS model, r.ts AS ts, r.input AS input, r.output AS output,
        r.cache_read AS cache_read, r.cw5m AS cw5m, r.cw1h AS cw1h, r.web_search AS web_search,
        r.flags & 1 AS sidechain, (r.flags >> 1) & 1 AS has_speed, r.cost AS cost,
        (r.flags >> 2) & 1 AS priced
        FROM response r LEFT JOIN names s ON s.id = r.session
        LEFT JOIN names c ON c.id = r.cwd LEFT JOIN names m ON m.id = r.model""",
    # Tool calls by a hash of their tool_use id; status NULL (no result yet), 0 ok, 1 error.
    # Every call has a session (the file names one): the view joins it, so that a query
    # by session text finds the calls through tool_call_session.
    """CREATE TABLE tool_call(
        key INTEGER PRIMARY KEY, name INTEGER NOT NULL, session INTEGER NOT NULL, cwd INTEGER,
        start_ts REAL, end_ts REAL, status INTEGER)""",
    """INSERT OR IGNORE INTO tool_call SELECT ccotel_h64(t.id),
        (SELECT id FROM names WHERE name = t.name), (SELECT id FROM names WHERE name = t.session),
        (SELECT id FROM names WHERE name = t.cwd), t.start_ts, t.end_ts,
        CASE t.status WHEN 'ok' THEN 0 WHEN 'error' THEN 1 END FROM tools t""",
    "DROP TABLE tools",
    "CREATE INDEX tool_call_session ON tool_call(session)",
    """CREATE VIEW tools AS SELECT t.key AS id, n.name AS name, s.name AS session,
        c.name AS cwd, t.start_ts AS start_ts, t.end_ts AS end_ts,
        CASE t.status WHEN 0 THEN 'ok' WHEN 1 THEN 'error' END AS status
        FROM tool_call t JOIN names s ON s.id = t.session JOIN names n ON n.id = t.name
        LEFT JOIN names c ON c.id = t.cwd""",
    # Each working directory a session had activity in: a session counts in every project
    # it worked in. From a 0.1.0 state: its first directory and those its responses and tool
    # calls were made in (the lines themselves may be gone).
    """CREATE TABLE session_cwds(
        session TEXT NOT NULL, cwd TEXT NOT NULL, first_ts REAL, last_ts REAL,
        PRIMARY KEY(session, cwd)) WITHOUT ROWID""",
    "CREATE INDEX session_cwds_last ON session_cwds(last_ts)",
    """INSERT OR IGNORE INTO session_cwds
        SELECT id, COALESCE(cwd, ''), first_ts, last_ts FROM sessions""",
    """INSERT OR IGNORE INTO session_cwds
        SELECT u.session, u.cwd, MIN(u.hour) * 3600.0,
            MIN(MAX(u.hour) * 3600.0 + 3599, COALESCE(MAX(s.last_ts), MAX(u.hour) * 3600.0 + 3599))
        FROM usage u LEFT JOIN sessions s ON s.id = u.session
        WHERE u.session != '' GROUP BY u.session, u.cwd""",
    """INSERT OR IGNORE INTO session_cwds
        SELECT s.name, COALESCE(c.name, ''), MIN(t.start_ts), MAX(COALESCE(t.end_ts, t.start_ts))
        FROM tool_call t JOIN names s ON s.id = t.session LEFT JOIN names c ON c.id = t.cwd
        WHERE t.start_ts IS NOT NULL GROUP BY 1, 2""",
)

# --- version 3 -----------------------------------------------------------------------
# - files.trace_offset goes: nothing read it (the traces' cursors are in trace_files).

_V3 = ("ALTER TABLE files DROP COLUMN trace_offset",)

# --- version 4 (statusline) ---------------------------------------------------------------
# - plan_history: the plan's 5-hour and weekly use as Claude Code's status line reported it,
#   one row per change (ccotel.statusline.plan); the newest row per window is what a restart
#   reads back. Bounded by age and rows.
# - block_marks: the zero-usage API-error lines ("API Error: 529", "usage limit reached") that
#   ccusage counts as billing-block entries (they can open a block or end one); no tokens, no
#   cost, so `response` keeps no row for them. Keyed like a response (ccotel.records.mark_key).

_V4 = (
    """CREATE TABLE plan_history(
        win TEXT NOT NULL, reported_at REAL NOT NULL, used_ratio REAL NOT NULL, resets_at REAL,
        PRIMARY KEY(win, reported_at)) WITHOUT ROWID""",
    "CREATE TABLE block_marks(key INTEGER PRIMARY KEY, ts REAL NOT NULL)",
)

# --- version 5 (chat span corrections) ---------------------------------------------------
# - What each chat span carried when it was sent (its span id, tokens and cost), and how many
#   corrections followed it: a copy of the response found larger after the span was sent is
#   sent as the difference (docs/traces.md). Rows from before carry NULLs: never corrected.

_V5 = (
    "ALTER TABLE trace_chats ADD COLUMN span INTEGER",
    "ALTER TABLE trace_chats ADD COLUMN input INTEGER",
    "ALTER TABLE trace_chats ADD COLUMN output INTEGER",
    "ALTER TABLE trace_chats ADD COLUMN cache_read INTEGER",
    "ALTER TABLE trace_chats ADD COLUMN cw5m INTEGER",
    "ALTER TABLE trace_chats ADD COLUMN cw1h INTEGER",
    "ALTER TABLE trace_chats ADD COLUMN web_search INTEGER",
    "ALTER TABLE trace_chats ADD COLUMN cost REAL",
    "ALTER TABLE trace_chats ADD COLUMN corrections INTEGER NOT NULL DEFAULT 0",
)

# --- version 6 (outcomes) -----------------------------------------------------------------
# What the spend bought (ccotel.state.ledger): each outcome counted once, by the hash of its
# tool_use id (of its line's uuid for a turn), and the calls that may still commit. A state
# upgraded with transcripts already read has their outcomes read once more from the start
# (pipeline.read_history, until the meta row below is gone).

_V6 = (
    """CREATE TABLE outcome(
        key INTEGER PRIMARY KEY, kind INTEGER NOT NULL, session TEXT, cwd TEXT NOT NULL,
        ts REAL, added INTEGER NOT NULL DEFAULT 0, removed INTEGER NOT NULL DEFAULT 0, ref TEXT)""",
    "CREATE INDEX outcome_session ON outcome(session)",
    """CREATE TABLE outcome_call(
        key INTEGER PRIMARY KEY, kinds INTEGER NOT NULL, session TEXT, cwd TEXT NOT NULL,
        ts REAL)""",
    """INSERT OR REPLACE INTO meta(key, value)
        SELECT 'outcomes_history', 'unread' WHERE EXISTS (SELECT 1 FROM files)""",
)

# --- version 7 (block marks of the history) -------------------------------------------------
# A state with transcripts read before block_marks existed (v4) lacks their API-error lines:
# pipeline.read_history reads them once (until the meta row is gone), so its billing blocks
# equal ccusage's.

_V7 = (
    """INSERT OR REPLACE INTO meta(key, value)
        SELECT 'marks_history', 'unread' WHERE EXISTS (SELECT 1 FROM files)""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7)  # version i -> i+1
VERSION = len(MIGRATIONS)

# --- statements ------------------------------------------------------------------------

# Secondary indexes of random keys that a first backfill builds once at its end instead of
# row by row (Store.defer_indexes; a state opened without them gets them back). Their
# statements as the migrations above created them: a migration that changes one changes it here.
DEFERRABLE_INDEXES = {
    "response_mkey": "CREATE INDEX response_mkey ON response(mkey)",
    "tool_call_session": "CREATE INDEX tool_call_session ON tool_call(session)",
}
INDEXES_PRESENT = "SELECT name FROM sqlite_master WHERE type='index'"

FILES_ALL = "SELECT path, dev, ino, offset, line_no, marker FROM files"
# A file's cursor, in `files` (the metrics') or `trace_files` (the traces').
CURSOR_UPSERT = """INSERT INTO {table}(path, dev, ino, offset, line_no, marker) VALUES(?,?,?,?,?,?)
    ON CONFLICT(path) DO UPDATE SET dev=excluded.dev, ino=excluded.ino, offset=excluded.offset,
    line_no=excluded.line_no, marker=excluded.marker"""
FILE_UPSERT = CURSOR_UPSERT.format(table="files")
FILE_DELETE = "DELETE FROM files WHERE path=?"

NAME_GET = "SELECT id FROM names WHERE name=?"
NAME_ADD = "INSERT INTO names(name) VALUES(?)"

# The columns of the `responses` view (readers outside the store use them too).
RESPONSE_COLS = (
    "key, mkey, session, cwd, model, ts, input, output, cache_read, cw5m, cw1h,"
    " web_search, sidechain, has_speed, cost, priced"
)
RESPONSE_GET = f"SELECT {RESPONSE_COLS} FROM responses WHERE key=?"
RESPONSE_BY_MKEY = f"SELECT {RESPONSE_COLS} FROM responses WHERE mkey=?"
RESPONSE_PUT = """INSERT OR REPLACE INTO response(key, mkey, session, cwd, model, ts, input,
    output, cache_read, cw5m, cw1h, web_search, flags, cost) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"""
RESPONSE_KEYS = "SELECT key, mkey FROM response"
ALIAS_GET = "SELECT target FROM response_alias WHERE key=?"
ALIAS_PUT = "INSERT OR REPLACE INTO response_alias(key, target) VALUES(?,?)"
ALIAS_KEYS = "SELECT key FROM response_alias"

USAGE_ADD = """INSERT INTO usage(session, hour, model, cwd, input, output, cache_read, cw5m, cw1h,
        web_search, requests, cost, unpriced) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT(session, hour, model, cwd) DO UPDATE SET
        input=input+excluded.input, output=output+excluded.output,
        cache_read=cache_read+excluded.cache_read, cw5m=cw5m+excluded.cw5m,
        cw1h=cw1h+excluded.cw1h, web_search=web_search+excluded.web_search,
        requests=requests+excluded.requests, cost=cost+excluded.cost,
        unpriced=unpriced+excluded.unpriced"""
USAGE_BY_LABELS = """SELECT model, cwd, SUM(input), SUM(output), SUM(cache_read), SUM(cw5m),
    SUM(cw1h), SUM(web_search), SUM(requests), SUM(cost), SUM(unpriced)
    FROM usage GROUP BY model, cwd"""

SESSION_UPSERT = """INSERT INTO sessions(id, cwd, branch, version, first_ts, last_ts)
    VALUES(?,?,?,?,?,?)
    ON CONFLICT(id) DO UPDATE SET
        cwd=COALESCE(sessions.cwd, excluded.cwd),
        branch=COALESCE(excluded.branch, sessions.branch),
        version=COALESCE(excluded.version, sessions.version),
        first_ts=MIN(COALESCE(sessions.first_ts, excluded.first_ts), COALESCE(excluded.first_ts, sessions.first_ts)),
        last_ts=MAX(COALESCE(sessions.last_ts, excluded.last_ts), COALESCE(excluded.last_ts, sessions.last_ts))"""
SESSION_CWD = "SELECT cwd FROM sessions WHERE id=?"
SESSION_COUNT = "SELECT COUNT(*) FROM sessions"
SESSION_IDS = "SELECT id FROM sessions"

PLACE_UPSERT = """INSERT INTO session_cwds(session, cwd, first_ts, last_ts) VALUES(?,?,?,?)
    ON CONFLICT(session, cwd) DO UPDATE SET
        first_ts=MIN(session_cwds.first_ts, excluded.first_ts),
        last_ts=MAX(session_cwds.last_ts, excluded.last_ts)"""
PLACE_GET = "SELECT 1 FROM session_cwds WHERE session=? AND cwd=?"
PLACES_ALL = "SELECT session, cwd FROM session_cwds"
PLACES_BY_CWD = "SELECT cwd, COUNT(*) FROM session_cwds GROUP BY cwd"
PLACES_SINCE = "SELECT session, cwd, last_ts FROM session_cwds WHERE last_ts >= ?"

TOOL_GET = "SELECT id, name, session, cwd, start_ts, end_ts, status FROM tools WHERE id=?"
TOOL_PUT = """INSERT OR REPLACE INTO tool_call(key, name, session, cwd, start_ts, end_ts, status)
    VALUES(?,?,?,?,?,?,?)"""
TOOL_KEYS = "SELECT key FROM tool_call"
TOOL_AGG_PUT = """INSERT OR REPLACE INTO tool_agg(tool, cwd, status, count, dur_sum, buckets)
    VALUES(?,?,?,?,?,?)"""
TOOL_AGG_ALL = "SELECT tool, cwd, status, count, dur_sum, buckets FROM tool_agg"

SPEND_ADD = """INSERT INTO spend_minutes(minute, cost) VALUES(?,?)
    ON CONFLICT(minute) DO UPDATE SET cost=cost+excluded.cost"""
SPEND_SINCE = "SELECT minute, cost FROM spend_minutes WHERE minute >= ?"
SPEND_PRUNE = "DELETE FROM spend_minutes WHERE minute < ?"

COUNTER_ADD = """INSERT INTO counters(name, value) VALUES(?,?)
    ON CONFLICT(name) DO UPDATE SET value=value+excluded.value"""
COUNTERS_ALL = "SELECT name, value FROM counters"
MARK_PUT = """INSERT INTO block_marks(key, ts) VALUES(?,?)
    ON CONFLICT(key) DO UPDATE SET ts=MIN(ts, excluded.ts)"""
META_GET = "SELECT value FROM meta WHERE key=?"
META_PUT = "INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)"
META_DEL = "DELETE FROM meta WHERE key=?"

# What the spend bought (ccotel.state.ledger)
OUTCOME_PUT = """INSERT OR IGNORE INTO outcome(key, kind, session, cwd, ts, added, removed, ref)
    VALUES(?,?,?,?,?,?,?,?)"""
OUTCOME_GET = "SELECT 1 FROM outcome WHERE key=?"
OUTCOME_KEYS = "SELECT key FROM outcome"
OUTCOME_BY_CWD = """SELECT cwd, kind, COUNT(*), SUM(added), SUM(removed) FROM outcome
    GROUP BY cwd, kind"""
OUTCOME_CALL_PUT = """INSERT OR REPLACE INTO outcome_call(key, kinds, session, cwd, ts)
    VALUES(?,?,?,?,?)"""
OUTCOME_CALL_DELETE = "DELETE FROM outcome_call WHERE key=?"
OUTCOME_CALLS = "SELECT key, kinds, session, cwd, ts FROM outcome_call"
