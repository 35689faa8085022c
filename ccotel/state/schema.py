"""Every SQL statement of the state store, in one place."""

VERSION = 1

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # WAL + NORMAL: a kill -9 never loses a commit
    "PRAGMA foreign_keys=OFF",
    "PRAGMA busy_timeout=5000",
    "PRAGMA cache_size=-16384",  # 16 MiB: random-key inserts of a backfill stay in memory
)

CREATE = (
    # Per transcript file: where reading resumes.
    """CREATE TABLE IF NOT EXISTS files(
        path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, offset INTEGER NOT NULL,
        line_no INTEGER NOT NULL, marker BLOB, trace_offset INTEGER NOT NULL DEFAULT 0)""",
    # One row per de-duplicated API response (the kept copy).
    """CREATE TABLE IF NOT EXISTS responses(
        key INTEGER PRIMARY KEY, mkey INTEGER NOT NULL, session TEXT, cwd TEXT, model TEXT,
        ts REAL, input INTEGER, output INTEGER, cache_read INTEGER, cw5m INTEGER, cw1h INTEGER,
        web_search INTEGER, sidechain INTEGER, has_speed INTEGER, cost REAL, priced INTEGER)""",
    "CREATE INDEX IF NOT EXISTS responses_mkey ON responses(mkey)",
    # Another exact key that resolved to a kept response (sidechain replays).
    "CREATE TABLE IF NOT EXISTS response_alias(key INTEGER PRIMARY KEY, target INTEGER NOT NULL)",
    # Usage summed per session, hour, model and cwd: every report and counter derives from it.
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
    # Tool calls by tool_use id; end_ts/status set when the result arrives.
    """CREATE TABLE IF NOT EXISTS tools(
        id TEXT PRIMARY KEY, name TEXT NOT NULL, session TEXT, cwd TEXT,
        start_ts REAL, end_ts REAL, status TEXT) WITHOUT ROWID""",
    # The web page's per-session tool counts (ccotel/web).
    "CREATE INDEX IF NOT EXISTS tools_session ON tools(session)",
    """CREATE TABLE IF NOT EXISTS tool_agg(
        tool TEXT NOT NULL, cwd TEXT NOT NULL, status TEXT NOT NULL,
        count INTEGER NOT NULL, dur_sum REAL NOT NULL, buckets TEXT NOT NULL,
        PRIMARY KEY(tool, cwd, status)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS spend_minutes(minute INTEGER PRIMARY KEY, cost REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)",
)

FILES_ALL = "SELECT path, dev, ino, offset, line_no, marker FROM files"
FILE_UPSERT = """INSERT INTO files(path, dev, ino, offset, line_no, marker) VALUES(?,?,?,?,?,?)
    ON CONFLICT(path) DO UPDATE SET dev=excluded.dev, ino=excluded.ino, offset=excluded.offset,
    line_no=excluded.line_no, marker=excluded.marker"""
FILE_DELETE = "DELETE FROM files WHERE path=?"

RESPONSE_COLS = (
    "key, mkey, session, cwd, model, ts, input, output, cache_read, cw5m, cw1h,"
    " web_search, sidechain, has_speed, cost, priced"
)
RESPONSE_GET = f"SELECT {RESPONSE_COLS} FROM responses WHERE key=?"
RESPONSE_BY_MKEY = f"SELECT {RESPONSE_COLS} FROM responses WHERE mkey=?"
RESPONSE_UPSERT = f"INSERT OR REPLACE INTO responses({RESPONSE_COLS}) VALUES({','.join('?' * 16)})"
RESPONSE_KEYS = "SELECT key, mkey FROM responses"
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
SESSION_GET = "SELECT id, cwd, branch, version, first_ts, last_ts FROM sessions WHERE id=?"
SESSIONS_BY_CWD = "SELECT cwd, COUNT(*) FROM sessions GROUP BY cwd"
SESSIONS_SINCE = "SELECT id, cwd, last_ts FROM sessions WHERE last_ts >= ?"

TOOL_GET = "SELECT id, name, session, cwd, start_ts, end_ts, status FROM tools WHERE id=?"
TOOL_UPSERT = """INSERT OR REPLACE INTO tools(id, name, session, cwd, start_ts, end_ts, status)
    VALUES(?,?,?,?,?,?,?)"""
TOOL_AGG_GET = "SELECT count, dur_sum, buckets FROM tool_agg WHERE tool=? AND cwd=? AND status=?"
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
META_GET = "SELECT value FROM meta WHERE key=?"
META_PUT = "INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)"
