"""The state store's schema, and every change to it, in order: its one owner.

Each migration is a numbered list of statements; the store records the last one it
has in ``PRAGMA user_version``. Opening a store applies the missing ones, all in one
transaction (a failure leaves the store as it was), and refuses a store written by a
newer collector, by name, rather than misread it. Migration 1 is the store of 0.1.0,
which had no version: its statements create only what is missing, so a 0.1.0 store
(user_version 0, tables present) and an empty file both become version 1 unchanged.

To change the store: add a migration at the end (never edit one that shipped), and
an upgrade test from the previous release's store (tests/data/stores/).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from collector.state import packed


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


_NEXT_SEQ = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM agent_changes)"


def _on_change(name: str, event: str, place: str, source: str = "WHERE true") -> str:
    """A trigger moving the commune ``place`` (province, commune) past every other in
    ``agent_changes``."""
    # A WHERE before ON CONFLICT: SQLite would read the upsert as a join's ON otherwise.
    return f"""CREATE TRIGGER {name} AFTER {event} BEGIN
            INSERT INTO agent_changes SELECT {place}, {_NEXT_SEQ} {source}
            ON CONFLICT (province, commune) DO UPDATE SET seq = excluded.seq;
        END"""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the 0.1.0 store: agents, latest samples, up/down history, RTT, the sink's spool, "
        "alerts, silences, notifications",
        (
            """CREATE TABLE IF NOT EXISTS agents (
            agent_key TEXT PRIMARY KEY,
            province TEXT NOT NULL, commune TEXT NOT NULL, agent TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'unknown',
            state_since REAL, status_ts REAL NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
            version TEXT NOT NULL DEFAULT '', checks TEXT NOT NULL DEFAULT '[]',
            last_seen REAL, last_seq INTEGER,
            interval REAL NOT NULL DEFAULT 0
        )""",
            """CREATE TABLE IF NOT EXISTS latest (
            agent_key TEXT NOT NULL, name TEXT NOT NULL, item TEXT NOT NULL, target TEXT NOT NULL,
            check_kind TEXT NOT NULL, ts REAL NOT NULL, outcome TEXT NOT NULL,
            fields TEXT NOT NULL, tags TEXT NOT NULL, error TEXT NOT NULL,
            PRIMARY KEY (agent_key, name, item, target)
        )""",
            """CREATE TABLE IF NOT EXISTS subjects (
            id INTEGER PRIMARY KEY,
            agent_key TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL,
            network TEXT NOT NULL DEFAULT '',
            monitored_since REAL NOT NULL, state TEXT NOT NULL, since REAL NOT NULL,
            last_ts REAL NOT NULL,
            UNIQUE (agent_key, kind, name, target)
        )""",
            """CREATE TABLE IF NOT EXISTS outages (
            subject_id INTEGER NOT NULL REFERENCES subjects(id),
            start REAL NOT NULL, end REAL,
            PRIMARY KEY (subject_id, start)
        )""",
            """CREATE INDEX IF NOT EXISTS outages_open ON outages(subject_id) WHERE end IS NULL""",
            """CREATE INDEX IF NOT EXISTS latest_by_check ON latest(check_kind)""",
            """CREATE TABLE IF NOT EXISTS rtt_history (
            place TEXT NOT NULL, bucket INTEGER NOT NULL, rtt REAL NOT NULL,
            PRIMARY KEY (place, bucket)
        )""",
            """CREATE TABLE IF NOT EXISTS spool (
            id INTEGER PRIMARY KEY AUTOINCREMENT, lines BLOB NOT NULL
        )""",
            """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)""",
            """INSERT OR IGNORE INTO meta VALUES ('spool_dropped', 0)""",
            # The spool's size, kept here since both processes change it (once, not per open).
            """INSERT OR IGNORE INTO meta VALUES
            ('spool_bytes', (SELECT COALESCE(SUM(LENGTH(lines)), 0) FROM spool))""",
            """CREATE TABLE IF NOT EXISTS alert_subjects (
            rule TEXT NOT NULL, subject TEXT NOT NULL,
            state TEXT NOT NULL, since REAL NOT NULL, last_ts REAL NOT NULL, alert_id INTEGER,
            PRIMARY KEY (rule, subject)
        )""",
            """CREATE TABLE IF NOT EXISTS alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            rule TEXT NOT NULL, subject TEXT NOT NULL,
            province TEXT NOT NULL, commune TEXT NOT NULL, agent TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL DEFAULT '', target TEXT NOT NULL DEFAULT '',
            severity TEXT NOT NULL, state TEXT NOT NULL,
            started_at REAL NOT NULL, fired_at REAL NOT NULL, resolved_at REAL,
            value TEXT NOT NULL DEFAULT '', labels TEXT NOT NULL DEFAULT '{}',
            late INTEGER NOT NULL DEFAULT 0, suppressed INTEGER NOT NULL DEFAULT 0,
            flaps INTEGER NOT NULL DEFAULT 0, notified INTEGER NOT NULL DEFAULT 0,
            last_notified REAL,
            acked_by TEXT, acked_at REAL, ack_comment TEXT
        )""",
            """CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts(state, commune)""",
            """CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts(started_at)""",
            """CREATE TABLE IF NOT EXISTS silences (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            province TEXT NOT NULL DEFAULT '', commune TEXT NOT NULL DEFAULT '',
            agent TEXT NOT NULL DEFAULT '', rule TEXT NOT NULL DEFAULT '',
            starts REAL NOT NULL, ends REAL NOT NULL,
            created_by TEXT NOT NULL, created_at REAL NOT NULL, comment TEXT NOT NULL DEFAULT ''
        )""",
            """CREATE TABLE IF NOT EXISTS notifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id INTEGER NOT NULL, event TEXT NOT NULL, created REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,
            done TEXT NOT NULL DEFAULT ''
        )""",
        ),
    ),
    Migration(
        2,
        "console sessions logged out before their time; samples refused per agent",
        (
            """CREATE TABLE IF NOT EXISTS console_logouts (
            sid TEXT PRIMARY KEY, expires REAL NOT NULL
        )""",
            """CREATE TABLE IF NOT EXISTS agent_refusals (
            agent_key TEXT NOT NULL, reason TEXT NOT NULL,
            samples INTEGER NOT NULL, total INTEGER NOT NULL, first_at REAL NOT NULL,
            last_at REAL NOT NULL,
            PRIMARY KEY (agent_key, reason)
        )""",
        ),
    ),
    Migration(
        3,
        "enrollment: tokens, the agents enrolled and the config each is sent, the audit of "
        "every enrollment, replacement and revocation; the config version agents report",
        (
            """CREATE TABLE enroll_tokens (
            id TEXT PRIMARY KEY, digest TEXT NOT NULL,
            province TEXT NOT NULL, commune TEXT NOT NULL, profile TEXT NOT NULL,
            uses INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0, expires REAL NOT NULL,
            allow_replace INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL, created_by TEXT NOT NULL, revoked_at REAL
        )""",
            """CREATE TABLE managed_agents (
            agent_key TEXT PRIMARY KEY,
            province TEXT NOT NULL, commune TEXT NOT NULL, agent TEXT NOT NULL,
            username TEXT NOT NULL, profile TEXT NOT NULL, token_id TEXT NOT NULL DEFAULT '',
            enrolled_at REAL NOT NULL, revoked_at REAL,
            config_version INTEGER NOT NULL DEFAULT 0, config_hash TEXT NOT NULL DEFAULT '',
            config_published REAL
        )""",
            """CREATE TABLE enrollment_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, event TEXT NOT NULL,
            province TEXT NOT NULL DEFAULT '', commune TEXT NOT NULL DEFAULT '',
            agent TEXT NOT NULL DEFAULT '', token_id TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '', actor TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT ''
        )""",
            "CREATE INDEX enrollment_events_place ON enrollment_events (province, commune, at)",
            "ALTER TABLE agents ADD COLUMN config_version INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE agents ADD COLUMN config_hash TEXT NOT NULL DEFAULT ''",
        ),
    ),
    Migration(
        4,
        "ports seen up (quiet port alerts); maintenance windows (muted, excluded from "
        "availability); escalation: the step an alert reached and its recorded steps; "
        "the line's loss for the chart",
        (
            # One row per router/switch port: when it was first seen operating, and its
            # operating state since when. Bounded by the agent's latest rows.
            """CREATE TABLE ports (
            agent_key TEXT NOT NULL, device TEXT NOT NULL, port TEXT NOT NULL,
            state TEXT NOT NULL, since REAL NOT NULL, first_up REAL, last_ts REAL NOT NULL,
            PRIMARY KEY (agent_key, device, port)
        )""",
            """CREATE TABLE maintenance (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            province TEXT NOT NULL, commune TEXT NOT NULL DEFAULT '',
            agent TEXT NOT NULL DEFAULT '', device TEXT NOT NULL DEFAULT '',
            starts REAL NOT NULL, ends REAL NOT NULL,
            every TEXT NOT NULL DEFAULT '', until REAL,
            reason TEXT NOT NULL DEFAULT '', comment TEXT NOT NULL DEFAULT '',
            created_by TEXT NOT NULL, created_at REAL NOT NULL
        )""",
            "CREATE INDEX maintenance_place ON maintenance (province, commune)",
            "ALTER TABLE alerts ADD COLUMN escalation_step INTEGER NOT NULL DEFAULT 0",
            """CREATE TABLE alert_steps (
            id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id INTEGER NOT NULL, at REAL NOT NULL,
            step TEXT NOT NULL, detail TEXT NOT NULL DEFAULT ''
        )""",
            "CREATE INDEX alert_steps_by_alert ON alert_steps (alert_id, at)",
            # The commune's line loss for the console's chart, beside its RTT: the best
            # probe per 5 minutes, down buckets (100 %) included.
            """CREATE TABLE loss_history (
            place TEXT NOT NULL, bucket INTEGER NOT NULL, loss REAL NOT NULL,
            PRIMARY KEY (place, bucket)
        )""",
        ),
    ),
    Migration(
        5,
        "revocation that lasts: each enrollment's own broker account and certificate; the "
        "accounts retired (replaced, revoked) until the broker has removed them",
        (
            # The n-th enrollment of an agent id has the account "<key>@<n>" (0: an account
            # named by the key alone, made by 0.2) and, enrolled with a key pair, the
            # serial of the certificate the collector signed for it (hex).
            "ALTER TABLE managed_agents ADD COLUMN generation INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE managed_agents ADD COLUMN cert_serial TEXT NOT NULL DEFAULT ''",
            # Every account that must never log in again, and its certificate (for the
            # revocation list); removed_at once the broker no longer holds it.
            """CREATE TABLE retired_accounts (
            username TEXT PRIMARY KEY, agent_key TEXT NOT NULL, reason TEXT NOT NULL,
            retired_at REAL NOT NULL, cert_serial TEXT NOT NULL DEFAULT '',
            removed_at REAL
        )""",
            "CREATE INDEX retired_accounts_pending ON retired_accounts (removed_at)",
        ),
    ),
    Migration(
        6,
        "the operators' audit: who did what, when, from where, at which place, to what "
        "(acknowledgements, silences, maintenance, profiles, enrollment, revocations, logins)",
        (
            # before/after are JSON bounded by collector/state/audit.py; the table is pruned
            # by the store's retention like the outage history.
            """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
            actor TEXT NOT NULL, role TEXT NOT NULL, address TEXT NOT NULL,
            via TEXT NOT NULL, action TEXT NOT NULL,
            province TEXT NOT NULL DEFAULT '', commune TEXT NOT NULL DEFAULT '',
            agent TEXT NOT NULL DEFAULT '', object TEXT NOT NULL DEFAULT '',
            before TEXT NOT NULL DEFAULT 'null', after TEXT NOT NULL DEFAULT 'null'
        )""",
            "CREATE INDEX audit_by_time ON audit (at)",
            "CREATE INDEX audit_by_place ON audit (province, commune, at)",
        ),
    ),
    Migration(
        7,
        "signed configs: the signing key (and the next one announced) of each agent's last config",
        (
            # '' for configs sent before signing: every agent is sent a signed one anew.
            "ALTER TABLE managed_agents ADD COLUMN config_key TEXT NOT NULL DEFAULT ''",
        ),
    ),
    Migration(
        8,
        "self-update: where each agent's update stands (from its birth), and the rollouts of "
        "a release in rings: their gate, state, each ring's start and promotion",
        (
            # The last update report of each agent (Status.update), and how many reports
            # in a row said refused or failed for the same version (the alert's count).
            """CREATE TABLE agent_updates (
            agent_key TEXT PRIMARY KEY,
            state TEXT NOT NULL, version TEXT NOT NULL DEFAULT '',
            previous TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
            ts REAL NOT NULL, launcher TEXT NOT NULL DEFAULT '', received REAL NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0
        )""",
            # rings and gate are JSON (collector/rollout/rings.py, gates.py); lab and pilot
            # are the members fixed at start (agent keys, province/commune), so a ring
            # never changes under a running rollout. opened: the last ring open (0-based).
            """CREATE TABLE rollouts (
            id TEXT PRIMARY KEY, version TEXT NOT NULL,
            rings TEXT NOT NULL, gate TEXT NOT NULL,
            lab TEXT NOT NULL DEFAULT '[]', pilot TEXT NOT NULL DEFAULT '[]',
            spread_s REAL NOT NULL DEFAULT 0,
            state TEXT NOT NULL, opened INTEGER NOT NULL DEFAULT 0,
            why TEXT NOT NULL DEFAULT '', breach INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL, created_by TEXT NOT NULL,
            changed_at REAL NOT NULL
        )""",
            "CREATE INDEX rollouts_by_time ON rollouts (created_at)",
            """CREATE TABLE rollout_rings (
            rollout TEXT NOT NULL REFERENCES rollouts(id), position INTEGER NOT NULL,
            name TEXT NOT NULL, started_at REAL, promoted_at REAL,
            promoted_by TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (rollout, position)
        )""",
        ),
    ),
    Migration(
        9,
        "certificates: when each PC's client certificate expires (the certificate_expiring alert)",
        (
            # 0: signed before this was recorded; the watch then reckons enrolled_at plus
            # [enrollment] client_cert_days, the validity it was signed with unless changed.
            "ALTER TABLE managed_agents ADD COLUMN cert_expires REAL NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        10,
        "shared systems: each probe's response times, as histograms per hour and per day; "
        "the time a probe was silent",
        (
            # bucket: collector/state/systemtimes.py (a quarter of a doubling of the
            # milliseconds); hour: Unix hours; day: Vietnam's days since 1970.
            """CREATE TABLE system_times_hourly (
            subject_id INTEGER NOT NULL REFERENCES subjects(id),
            hour INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (subject_id, hour, bucket)
        ) WITHOUT ROWID""",
            """CREATE TABLE system_times_daily (
            subject_id INTEGER NOT NULL REFERENCES subjects(id),
            day INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (subject_id, day, bucket)
        ) WITHOUT ROWID""",
            "CREATE INDEX system_times_hourly_by_hour ON system_times_hourly (hour)",
            "CREATE INDEX system_times_daily_by_day ON system_times_daily (day)",
            # A probe of a shared system silent longer than its bound (its PC switched
            # off): from its last word to its next, nobody watched.
            """CREATE TABLE subject_gaps (
            subject_id INTEGER NOT NULL REFERENCES subjects(id),
            start REAL NOT NULL, end REAL NOT NULL,
            PRIMARY KEY (subject_id, start)
        ) WITHOUT ROWID""",
            "CREATE INDEX subject_gaps_by_end ON subject_gaps (end)",
        ),
    ),
    Migration(
        11,
        "latest samples: no index by check kind (kept up to date by every sample, it cost "
        "a third of writing one; reads of a kind under a place use the key's place prefix)",
        ("DROP INDEX IF EXISTS latest_by_check",),
    ),
    Migration(
        12,
        "the sink's spool: a batch's envelopes in one row, which says how many it holds",
        ("ALTER TABLE spool ADD COLUMN envelopes INTEGER NOT NULL DEFAULT 1",),
    ),
    Migration(
        13,
        "a year of the country in a few GB: the line's RTT and loss one row per commune and "
        "day, the response-time histograms one row per probe and hour or day, the outages "
        "without a second copy of their key",
        (
            # Half-precision values, slot = the 5-minute bucket of the day (state/packed.py):
            # the best value per bucket, as before. A row is 1.2 KB: a rowid table keeps it
            # on its page (a WITHOUT ROWID one would spill it on an overflow page).
            """CREATE TABLE line_history (
            place TEXT NOT NULL, day INTEGER NOT NULL, rtt BLOB, loss BLOB,
            PRIMARY KEY (place, day)
        )""",
            """INSERT INTO line_history (place, day, rtt)
            SELECT place, bucket / 86400, line_gather(bucket % 86400 / 300, rtt)
            FROM rtt_history WHERE true GROUP BY place, bucket / 86400""",
            """INSERT INTO line_history (place, day, loss)
            SELECT place, bucket / 86400, line_gather(bucket % 86400 / 300, loss)
            FROM loss_history WHERE true GROUP BY place, bucket / 86400
            ON CONFLICT (place, day) DO UPDATE SET loss = excluded.loss""",
            "DROP TABLE rtt_history",
            "DROP TABLE loss_history",
            # (bucket, count) pairs in one blob per probe and period (state/packed.py).
            """CREATE TABLE system_times_hourly_packed (
            subject_id INTEGER NOT NULL REFERENCES subjects(id),
            hour INTEGER NOT NULL, counts BLOB NOT NULL,
            PRIMARY KEY (subject_id, hour)
        ) WITHOUT ROWID""",
            """INSERT INTO system_times_hourly_packed
            SELECT subject_id, hour, histogram_gather(bucket, count)
            FROM system_times_hourly GROUP BY subject_id, hour""",
            "DROP TABLE system_times_hourly",
            "ALTER TABLE system_times_hourly_packed RENAME TO system_times_hourly",
            "CREATE INDEX system_times_hourly_by_hour ON system_times_hourly (hour)",
            """CREATE TABLE system_times_daily_packed (
            subject_id INTEGER NOT NULL REFERENCES subjects(id),
            day INTEGER NOT NULL, counts BLOB NOT NULL,
            PRIMARY KEY (subject_id, day)
        ) WITHOUT ROWID""",
            """INSERT INTO system_times_daily_packed
            SELECT subject_id, day, histogram_gather(bucket, count)
            FROM system_times_daily GROUP BY subject_id, day""",
            "DROP TABLE system_times_daily",
            "ALTER TABLE system_times_daily_packed RENAME TO system_times_daily",
            "CREATE INDEX system_times_daily_by_day ON system_times_daily (day)",
            # The outages in their key's order alone: no rowid table beside its index.
            """CREATE TABLE outages_keyed (
            subject_id INTEGER NOT NULL REFERENCES subjects(id),
            start REAL NOT NULL, end REAL,
            PRIMARY KEY (subject_id, start)
        ) WITHOUT ROWID""",
            "INSERT INTO outages_keyed SELECT subject_id, start, end FROM outages",
            "DROP TABLE outages",
            "ALTER TABLE outages_keyed RENAME TO outages",
            "CREATE INDEX outages_open ON outages(subject_id) WHERE end IS NULL",
        ),
    ),
    Migration(
        14,
        "an envelope is spooled for the time-series server once: each agent's seqs applied "
        "(recent ranges); the record of every envelope applied, by agent and seq, kept only "
        "with [store] ledger = true (the chaos soak's checker reads it)",
        (
            # state/seqranges.py: "lo-hi lo-hi"; an agent of an earlier store starts with
            # the last seq it applied (redelivered after the upgrade, it is not spooled).
            "ALTER TABLE agents ADD COLUMN seqs TEXT NOT NULL DEFAULT ''",
            "UPDATE agents SET seqs = last_seq || '-' || last_seq WHERE last_seq IS NOT NULL",
            # state/applied.py: how many times each envelope was applied, first and last;
            # refused: why the ingest refused it whole (its clock), '' if never.
            """CREATE TABLE applied_envelopes (
            agent_key TEXT NOT NULL, seq INTEGER NOT NULL,
            applied INTEGER NOT NULL, first_at REAL NOT NULL, last_at REAL NOT NULL,
            refused TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (agent_key, seq)
        ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        15,
        "the communes whose agents changed, in the order they changed: a round of the alert "
        "rules and of the silent agents reads those again, not every agent of the country",
        (
            # One row per commune (so bounded by them), its seq moved past every other by each
            # change: a round reads again the communes past the seq it last read.
            """CREATE TABLE agent_changes (
            province TEXT NOT NULL, commune TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (province, commune)
        ) WITHOUT ROWID""",
            "CREATE INDEX agent_changes_by_seq ON agent_changes (seq)",
            # Triggers rather than code: every writer of an agent (a status, data bringing
            # back a silent agent, marked silent, forgotten, its commune renamed) is caught,
            # in its own transaction. The ingest upserts every agent of every batch: the
            # update trigger costs that path a test of some columns, and a write on a change.
            _on_change("agents_added", "INSERT ON agents", "NEW.province, NEW.commune"),
            _on_change("agents_removed", "DELETE ON agents", "OLD.province, OLD.commune"),
            # Also what may bring an agent's silence sooner (``state/silence.py``): its
            # last sign of life known for the first time or moved back, its interval.
            _on_change(
                "agents_changed",
                "UPDATE OF state, reason, state_since, province, commune, last_seen, status_ts, "
                "interval ON agents "
                "WHEN OLD.state IS NOT NEW.state OR OLD.reason IS NOT NEW.reason "
                "OR OLD.state_since IS NOT NEW.state_since "
                "OR OLD.province IS NOT NEW.province OR OLD.commune IS NOT NEW.commune "
                "OR (OLD.last_seen IS NULL) != (NEW.last_seen IS NULL) "
                "OR NEW.last_seen < OLD.last_seen OR NEW.status_ts < OLD.status_ts "
                "OR OLD.interval IS NOT NEW.interval",
                "NEW.province, NEW.commune",
            ),
            _on_change(
                "agents_moved",
                "UPDATE OF province, commune ON agents "
                "WHEN OLD.province IS NOT NEW.province OR OLD.commune IS NOT NEW.commune",
                "OLD.province, OLD.commune",
            ),
            # An agent's update report is among its rules' facts.
            *(
                _on_change(
                    f"agent_update_{name}",
                    f"{event} ON agent_updates",
                    "province, commune",
                    f"FROM agents WHERE agent_key = {row}.agent_key",
                )
                for name, event, row in (
                    ("added", "INSERT", "NEW"),
                    ("changed", "UPDATE", "NEW"),
                    ("removed", "DELETE", "OLD"),
                )
            ),
        ),
    ),
    Migration(
        16,
        "what bounds each outage (the last 'up' seen before its start, the last 'down' "
        "before its end): a sample sent again after later ones is placed as if it had "
        "come in order",
        (
            # state/latesamples.py. NULL: unknown, an outage of an earlier store keeps the
            # rule it had (only the current change moves back).
            "ALTER TABLE outages ADD COLUMN up_seen REAL",
            "ALTER TABLE outages ADD COLUMN down_seen REAL",
            # The gap in the agent's seqs that late samples placing a bound came in.
            "ALTER TABLE outages ADD COLUMN late_gap INTEGER",
            # How often late samples changed the subject's outages: what was computed from
            # them (the console's combined lines) holds while it, the state and since do.
            "ALTER TABLE subjects ADD COLUMN revised INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)
LATEST = MIGRATIONS[-1].version


class StoreTooNew(Exception):
    """A store written by a newer collector: not to be opened by this one."""


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def pending(db: sqlite3.Connection) -> list[Migration]:
    """The migrations this store lacks; StoreTooNew for a store newer than this collector."""
    current = version(db)
    if current > LATEST:
        raise StoreTooNew(
            f"the state store is at schema version {current}, written by a newer collector; "
            f"this one knows up to {LATEST}: upgrade the collector (the store is left as it is)"
        )
    return [m for m in MIGRATIONS if m.version > current]


def migrate(db: sqlite3.Connection) -> list[Migration]:
    """Bring the store to ``LATEST`` in one transaction; the migrations applied.

    ``db`` is in autocommit mode (``isolation_level=None``). Another process may be
    migrating the same file: the write lock is taken first, then the version read.
    """
    if not pending(db):
        return []
    packed.register(db)  # what the migrations' statements call
    db.execute("BEGIN IMMEDIATE")
    try:
        todo = pending(db)
        for migration in todo:
            for statement in migration.statements:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {LATEST}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return todo
