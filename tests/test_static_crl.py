"""The revocation list of a broker without the plugin: its own record, kept by `revoke
--cert` (collector/rollout/staticcrl.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from collector.cli.main import main
from collector.rollout import staticcrl
from collector.rollout.signer import load_signer
from tests.tls import client_cert, make_pki


def test_each_revocation_keeps_what_the_list_held_and_refuses_what_it_cannot_mean(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path / "pki")
    crl = tmp_path / "client-crl.pem"
    runner = CliRunner()
    made = runner.invoke(main, ["client-crl", "--ca-cert", str(pki.ca), "--ca-key",
                                str(pki.ca_key), "--crl", str(crl)])  # fmt: skip
    assert made.exit_code == 0 and "0 revoked" in made.output, made.output
    place = ["revoke", "--province", "dong-nai", "--commune", "la-nga", "--passwd-file",
             str(tmp_path / "passwd"), "--broker-group", "", "--crl", str(crl),
             "--ca-cert", str(pki.ca), "--ca-key", str(pki.ca_key)]  # fmt: skip
    serials = []
    for agent in ("pc-01", "pc-02"):
        cert, _key = client_cert(pki, tmp_path, f"dong-nai/la-nga/{agent}")
        serials.append(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)
        done = runner.invoke(main, [*place, "--agent", agent, "--cert", str(cert)])
        assert done.exit_code == 0 and "listed in" in done.output, done.output
    again = runner.invoke(main, [*place, "--agent", "pc-01", "--cert",
                                 str(tmp_path / "dong-nai_la-nga_pc-01.crt")])  # fmt: skip
    assert again.exit_code == 0 and "was listed already" in again.output
    listed = x509.load_pem_x509_crl(crl.read_bytes())
    assert sorted(r.serial_number for r in listed) == sorted(serials)
    # Another PC's certificate under this id: refused, the list untouched.
    wrong = runner.invoke(main, [*place, "--agent", "pc-03", "--cert",
                                 str(tmp_path / "dong-nai_la-nga_pc-01.crt")])  # fmt: skip
    assert wrong.exit_code == 1 and "not of dong-nai/la-nga/pc-03" in wrong.output
    # A certificate of another CA: listing it would refuse nothing.
    other = make_pki(tmp_path / "other", client_name="dong-nai/la-nga/pc-04")
    foreign = runner.invoke(main, [*place, "--agent", "pc-04", "--cert", str(other.client_cert)])
    assert foreign.exit_code == 1 and "not signed by the CA" in foreign.output
    assert sorted(r.serial_number for r in x509.load_pem_x509_crl(crl.read_bytes())) == sorted(
        serials
    )
    no_key = runner.invoke(main, [*place[:-2], "--agent", "pc-01", "--cert",
                                  str(tmp_path / "dong-nai_la-nga_pc-01.crt")])  # fmt: skip
    assert no_key.exit_code == 1 and "--cert needs --ca-key" in no_key.output


def test_a_list_of_another_ca_is_never_rewritten(tmp_path: Path) -> None:
    """Rewriting it with this CA would drop every serial it holds."""
    ours, theirs = make_pki(tmp_path / "ours"), make_pki(tmp_path / "theirs")
    crl = tmp_path / "client-crl.pem"
    staticcrl.write_empty(load_signer(str(theirs.ca), str(theirs.ca_key), 1), crl)
    before = crl.read_bytes()
    with pytest.raises(staticcrl.CrlError, match="not signed by the CA"):
        staticcrl.write_empty(load_signer(str(ours.ca), str(ours.ca_key), 1), crl)
    assert crl.read_bytes() == before
