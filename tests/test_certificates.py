"""The certificates a province depends on, watched by the collector before they expire:
the broker as it ships (TLS on the password listener, the certificate listener that
requires a client certificate), the collector's HTTPS, the CAs, and the PCs' own client
certificates, with the alerts that say when and the gauge on ``/metrics``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from collector.alerts.certificates import pc_certificates, read_file, tls_address
from tests import tls
from tests.hostile.brokersite import broker_site
from tests.servers import wait_for

DAY = 86400.0


def not_after(path: Path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


def test_a_province_whose_certificates_expire_is_told_which_and_when(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server certificates with 5 days left, CAs with 20, PCs' certificates signed for
    10: each watched place is one subject, critical within a week, a warning within 30
    days; the broker's certificates are read from its listeners (the certificate
    listener hands its own over though the collector has no client certificate)."""
    monkeypatch.setattr(tls, "LEAF_DAYS", 5)
    monkeypatch.setattr(tls, "CA_DAYS", 20)
    with broker_site(tmp_path, enrollment_extra="client_cert_days = 10\n") as bsite:
        token = bsite.token()
        bsite.enroll("pc-keyed", token, "--client-cert")
        pki = bsite.site.pki

        def firing() -> dict[str, dict[str, Any]]:
            _, alerts = bsite.get("/api/v1/alerts?state=firing")
            return {
                f"{a['rule']} {str(a['name']).split(' ')[0]}": a
                for a in alerts
                if str(a["rule"]).startswith("certificate_")
            }

        expected = {
            "certificate_expiring_soon api", "certificate_expiring_soon broker",
            "certificate_expiring_soon broker-certificates",
            "certificate_expiring broker-ca", "certificate_expiring client-ca",
            "certificate_expiring pc-certificates",
        }  # fmt: skip
        wait_for(lambda: expected <= set(firing()), 60, f"alerts {expected}")
        alerts = firing()
        assert {a["severity"] for k, a in alerts.items() if "_soon" in k} == {"critical"}
        assert not {"certificate_expiring_soon broker-ca", "certificate_expiring_soon client-ca",
                    "certificate_expiring_soon pc-certificates"} & set(alerts)  # fmt: skip
        # The servers' 5 days are also within 30: the warning fires beside the critical.
        assert "certificate_expiring api" in alerts
        assert float(alerts["certificate_expiring_soon api"]["value"]) == pytest.approx(5, abs=0.2)
        assert float(alerts["certificate_expiring broker-ca"]["value"]) == pytest.approx(
            20, abs=0.2
        )
        pcs = alerts["certificate_expiring pc-certificates"]
        assert float(pcs["value"]) == pytest.approx(10, abs=0.2)
        assert "1 PCs" in pcs["name"] and "dong-nai/la-nga/pc-keyed" in pcs["name"]
        broker_port = f"localhost:{bsite.broker.cert_port}"
        assert broker_port in alerts["certificate_expiring_soon broker-certificates"]["name"]
        # /metrics: the exact notAfter of what each place holds or presents.
        server = not_after(pki.server_cert)
        for name in ("api", "broker", "broker-certificates"):
            figure = bsite.metric("commune_collector_certificate_expires_seconds", certificate=name)
            assert figure == pytest.approx(server, abs=1), name
        figure = bsite.metric(
            "commune_collector_certificate_expires_seconds", certificate="client-ca"
        )
        assert figure == pytest.approx(not_after(pki.ca), abs=1)


def test_what_cannot_be_read_is_refused_by_reason_and_a_bundle_counts_its_last() -> None:
    with pytest.raises(ValueError):
        read_file("/dev/null", bundle=True)  # no certificate in it
    assert tls_address("mqtt://broker:1883") == ""  # no TLS: nothing presented
    assert tls_address("mqtts://broker.dong-nai.example") == "broker.dong-nai.example:8883"
    assert tls_address("https://[::1]:8443") == "[::1]:8443"


def test_the_pcs_certificates_are_one_subject_and_those_signed_before_0_3_are_reckoned() -> None:
    now = time.time()
    rows = [
        ("dong-nai/la-nga/pc-02", now + 400 * DAY, now),
        ("dong-nai/la-nga/pc-01", 0.0, now - 820 * DAY),  # signed before its end was kept
        ("dong-nai/phu-loc/pc-07", now + 12 * DAY, now),
    ]
    found = pc_certificates(rows, 825, now)
    assert found is not None
    assert found.expires == pytest.approx(now + 5 * DAY, abs=1)
    assert found.what == "3 PCs" and found.note == "2 within 30 days; first dong-nai/la-nga/pc-01"
    assert pc_certificates([], 825, now) is None
