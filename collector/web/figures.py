"""The collector's own figures for ``/metrics``, read from its running parts at each
scrape: messages in, refusals by reason, commits, the spool, agents, alerts,
notifications, the sink."""

from __future__ import annotations

from collector import __version__
from collector.alerts.certificates import Expiry
from collector.alerts.notify import Notifier
from collector.alerts.records import firing_by_severity
from collector.common.sessions import SessionWatch
from collector.ingest.ingestor import COMMIT_BOUNDS, IngestStats
from collector.ingest.source import MqttSource
from collector.outputs.sink import SinkStats
from collector.outputs.spool import Spool
from collector.release.online import OnlineSigner
from collector.rollout.enrollment import REFUSALS as ENROLL_REFUSALS
from collector.rollout.service import Rollout
from collector.state.store import StateStore
from collector.web.metrics import Family, histogram
from collector.web.readprocess import ReadProcess


def alerts_firing(reader: StateStore) -> Family:
    family = Family("commune_collector_alerts_firing", "gauge", "Alerts firing, by severity.")
    counts = firing_by_severity(reader)
    for severity in ("critical", "warning", "info"):
        family.add(counts.get(severity, 0), severity=severity)
    return family


def figures(
    stats: IngestStats,
    source: MqttSource,
    store: StateStore,
    reader: StateStore,
    notifier: Notifier,
    sink: SinkStats | None,
) -> list[Family]:
    """``store``: the ingest's connection (the spool's counters); ``reader``: the API's."""
    spooled = Spool(store).stats()
    rows, size, dropped = spooled.rows, spooled.bytes, spooled.dropped

    def counter(name: str, help_text: str, value: float) -> Family:
        return Family(f"commune_collector_{name}", "counter", help_text).add(value)

    def gauge(name: str, help_text: str, value: float) -> Family:
        return Family(f"commune_collector_{name}", "gauge", help_text).add(value)

    rejected = Family(
        "commune_collector_messages_rejected_total", "counter", "Messages rejected, by reason."
    )
    refused_qos0 = source.refused_qos0  # counted where they are read, as are retained data
    read_refused = {"qos0": refused_qos0, "retained": source.refused_retained}
    for reason, count in sorted({**stats.rejected, **read_refused}.items()):
        rejected.add(count, reason=reason)
    refused = Family(
        "commune_collector_samples_refused_total",
        "counter",
        "Samples refused alone (the rest of their envelope applied), by reason.",
    )
    for reason, count in sorted(stats.samples_refused.items()):
        refused.add(count, reason=reason)
    fields_dropped = Family(
        "commune_collector_fields_dropped_total",
        "counter",
        "Fields dropped alone (the rest of their sample applied), by reason.",
    )
    fields_dropped.add(stats.fields_dropped["field_type"], reason="field_type")
    agents = Family("commune_collector_agents", "gauge", "Agents known, by state.")
    by_state = reader.agent_counts()
    for state in ("online", "offline", "unknown"):
        agents.add(by_state.get(state, 0), state=state)
    families = [
        Family("commune_collector_info", "gauge", "Version of this collector.").add(
            1, version=__version__
        ),
        counter(
            "messages_received_total",
            "MQTT messages received.",
            stats.received + refused_qos0 + source.refused_retained,
        ),
        counter("messages_acked_total", "Messages acknowledged after commit.", stats.acked),
        rejected,
        refused,
        fields_dropped,
        counter("envelopes_applied_total", "Envelopes committed.", stats.applied_envelopes),
        counter("statuses_applied_total", "Status messages committed.", stats.applied_statuses),
        counter(
            "renamed_messages_total",
            "Messages from agents configured with a commune's former slug (the inventory's "
            "formerly), counted under its slug now.",
            stats.renamed,
        ),
        counter("commit_batches_total", "Batches processed.", stats.batches),
        histogram(
            "commune_collector_commit_duration_seconds",
            "State store commit of a batch (apply, spool, fsync).",
            COMMIT_BOUNDS,
            stats.commit_buckets,
            stats.commit_seconds_total,
        ),
        gauge("last_commit_seconds", "Duration of the last commit.", stats.last_commit_s),
        gauge(
            "lag_seconds",
            "Last commit time minus the newest committed envelope's outbox time.",
            stats.lag_s,
        ),
        counter(
            "broker_resyncs_total",
            "Reconnections after a flood of QoS 0 messages, for the QoS 1 messages the "
            "broker may have held back behind it.",
            source.resyncs,
        ),
        gauge("ingest_queue", "Messages received, waiting for commit.", source.queued()),
        gauge(
            "broker_connected",
            "1 while connected to the broker.",
            float(source.connected.is_set()),
        ),
        gauge("spool_rows", "Envelopes' points waiting for the time-series sink.", rows),
        gauge("spool_bytes", "Size of the points waiting for the sink.", size),
        counter("spool_dropped_total", "Spooled rows dropped over the spool's bound.", dropped),
        agents,
        alerts_firing(reader),
        counter("notifications_sent_total", "Messages delivered.", notifier.sent),
        counter(
            "notification_failures_total",
            "Deliveries that failed (retried).",
            notifier.failures,
        ),
        counter(
            "notifications_abandoned_total",
            "Events given up after every retry failed.",
            notifier.abandoned,
        ),
    ]
    if sink is not None:
        families += [
            counter("sink_points_written_total", "Points accepted.", sink.points_written),
            counter(
                "sink_batches_written_total",
                "Writes the server accepted.",
                sink.batches_written,
            ),
            counter("sink_write_errors_total", "Failed writes (retried).", sink.write_errors),
            counter(
                "sink_rejected_rows_total",
                "Envelopes' points the server refused as bad data (dropped).",
                sink.rejected_rows,
            ),
        ]
    return families


def rollout_figures(rollout: Rollout) -> list[Family]:
    """Enrollments done and refused (by reason), and configs not yet sent."""
    stats = rollout.enroller.stats
    enrollments = Family(
        "commune_collector_enrollments_total", "counter", "PCs enrolled, new or replacing one."
    )
    enrollments.add(stats.enrolled, kind="new").add(stats.replaced, kind="replaced")
    refused = Family(
        "commune_collector_enrollments_refused_total", "counter", "Enrollments refused, by reason."
    )
    for reason in sorted({*ENROLL_REFUSALS, *stats.refused}):
        refused.add(stats.refused.get(reason, 0), reason=reason)
    behind = Family(
        "commune_collector_configs_unsent", "gauge",
        "Enrolled agents whose config the last round could not make or send.",
    ).add(len(rollout.sender.last.failed))  # fmt: skip
    revocations = rollout.revocations.stats
    retired = Family(
        "commune_collector_accounts_removed_total",
        "counter",
        "Agent accounts removed from the broker: retired (replaced, revoked) or found there "
        "without an enrollment (stray).",
    ).add(revocations.removed - revocations.strays, why="retired")
    retired.add(revocations.strays, why="stray")
    pending = Family(
        "commune_collector_accounts_pending_removal", "gauge",
        "Retired agent accounts the broker may still hold (removed at the next round).",
    ).add(len(rollout.revocations.pending()))  # fmt: skip
    remade = Family(
        "commune_collector_accounts_remade_total", "counter",
        "Certificate accounts of active enrollments the broker had lost (a restored plugin "
        "file), made again.",
    ).add(revocations.remade)  # fmt: skip
    return [enrollments, refused, behind, retired, pending, remade]


def session_figures(watches: list[SessionWatch]) -> list[Family]:
    """The collector's own broker sessions (ingest, configs, dynsec): up, taken over,
    refused."""
    up = Family("commune_collector_broker_session_up", "gauge",
                "1 while the session is connected.")  # fmt: skip
    takeovers = Family(
        "commune_collector_broker_session_takeovers_total", "counter",
        "Times the broker ended the session because another client logged in with its "
        "account (MQTT 5 reason 0x8E): its credentials are in other hands.",
    )  # fmt: skip
    refusals = Family("commune_collector_broker_session_refusals_total", "counter",
                      "Times the broker refused the session's login.")  # fmt: skip
    for watch in watches:
        up.add(float(watch.connected), session=watch.name)
        takeovers.add(watch.takeovers_total, session=watch.name)
        refusals.add(watch.refusals_total, session=watch.name)
    return [up, takeovers, refusals]


def certificate_figures(expiries: list[Expiry]) -> list[Family]:
    """When each watched certificate expires (collector/alerts/certificates.py)."""
    expires = Family(
        "commune_collector_certificate_expires_seconds",
        "gauge",
        "When each certificate the province depends on expires (Unix seconds); for "
        "pc-certificates, the first PC's.",
    )
    for expiry in expiries:
        expires.add(expiry.expires, certificate=expiry.name)
    return [expires]


def release_figures(signer: OnlineSigner) -> list[Family]:
    """The release repository's roles: when each expires, whether it is close to it, and
    how the collector's re-signing of the online ones goes."""
    expires = Family(
        "commune_collector_release_metadata_expires_seconds",
        "gauge",
        "When each role of the release repository expires (Unix seconds): once expired, no "
        "PC updates.",
    )
    expiring = Family(
        "commune_collector_release_metadata_expiring",
        "gauge",
        "1 while a role is close to expiry: root within 30 days, targets within 14, an "
        "online role with half its validity gone (re-signing fails).",
    )
    for role in signer.roles():
        expires.add(role.expires, role=role.role)
        expiring.add(int(role.expiring), role=role.role)
    return [
        expires,
        expiring,
        Family(
            "commune_collector_release_resign_failures_total",
            "counter",
            "Rounds in which the collector could not re-sign snapshot and timestamp.",
        ).add(signer.failures_total),
        Family(
            "commune_collector_release_resigned_total",
            "counter",
            "Snapshot and timestamp files signed by the collector.",
        ).add(signer.resigned_total),
    ]


def read_figures(reads: ReadProcess) -> list[Family]:
    """The read process (collector/web/readprocess.py): up, restarts, the reads it
    answered and those the collector served for it, its facts feed's resets."""
    channel, feed = reads.channel, reads.feed
    served = Family(
        "commune_collector_reads_total", "counter",
        "Reads of the health model, by who answered: the read process, or the collector "
        "while the read process was away (read_process), or neither in time (timed_out).",
    )  # fmt: skip
    served.add(channel.handed, answered_by="read_process")
    served.add(channel.kept, answered_by="collector")
    served.add(channel.timed_out, answered_by="timed_out")
    up = Family("commune_collector_read_process_up", "gauge", "1 while the read process runs.")
    restarts = Family(
        "commune_collector_read_process_restarts_total",
        "counter",
        "Times the read process was started again after it ended.",
    )
    resets = Family(
        "commune_collector_read_facts_resets_total",
        "counter",
        "Times the read process was so far behind the commits that it read its facts "
        "afresh from the store.",
    )
    return [
        up.add(float(reads.running)),
        restarts.add(reads.restarts),
        served,
        resets.add(feed.resets),
    ]
