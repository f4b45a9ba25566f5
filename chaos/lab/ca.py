"""The lab's certificate authority and the leaf certificates its servers present.

Everything is EC P-256 (fast to generate) and written as PEM under the lab's run
directory. Clients trust the lab CA explicitly (SSL_CERT_FILE for the Go daemons, a
cert dir for skopeo); nothing is added to the host's trust store.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class LabCA:
    """The lab CA; ``cert_dir`` holds only ``ca.crt`` (the layout skopeo's --cert-dir expects)."""

    cert: Path
    key: Path
    cert_dir: Path

    def issue(self, name: str, dns_names: Sequence[str] = (), ips: Sequence[str] = (),
              *, days: int = 7, directory: Path | None = None) -> KeyPair:
        """A leaf for ``name`` signed by this CA, with the given SANs (server and client auth),
        written beside the CA or into ``directory``."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(self.key.read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):  # create_ca() makes P-256 keys
            raise ValueError(f"{self.key}: not an EC private key")
        ca_cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))  # tolerate small clock skew
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=True, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        d = Path(directory or self.cert.parent)
        d.mkdir(parents=True, exist_ok=True)
        pair = KeyPair(d / f"{name}.crt", d / f"{name}.key")
        _write_key(pair.key, key)
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair


def create_ca(directory: str | Path, name: str = "chaos lab CA", *, days: int = 7) -> LabCA:
    """Generate a fresh CA in ``directory`` (which the caller owns and removes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chaos")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_dir = d / "trust"
    cert_dir.mkdir(exist_ok=True)
    ca = LabCA(d / "ca.crt", d / "ca.key", cert_dir)
    _write_key(ca.key, key)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    ca.cert.write_bytes(pem)
    (cert_dir / "ca.crt").write_bytes(pem)
    return ca


STATE_CA_DAYS = 3650  # kept for good: a client told to trust it once keeps trusting it


def state_ca(state: str | Path) -> LabCA:
    """The CA of a state dir (``<state>/ca/``): made by the first run that needs it, then
    reused by every later one, so a client trusts it once (``ca.crt``; ``trust/ca.crt`` is
    the layout of docker's certs.d). Made aside and renamed into place: two runs starting
    at once end up with the same CA."""
    import tempfile

    home = Path(state) / "ca"
    ca = LabCA(home / "ca.crt", home / "ca.key", home / "trust")
    if not ca.cert.exists():
        Path(state).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".ca-", dir=state))
        create_ca(tmp, "chaos fault proxy CA", days=STATE_CA_DAYS)
        tmp.chmod(0o755)  # the certificate is for everyone; the key stays 0600
        try:
            tmp.rename(home)
        except OSError:  # another run made it first: use that one
            shutil.rmtree(tmp, ignore_errors=True)
    return ca


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
