"""A throwaway CA and signing certificate for ``make demo`` and tests: for demonstration only.

C2PA accepts an end-entity certificate, not a self-signed one, with a critical key usage of
digitalSignature and an extended key usage (here emailProtection), issued by a CA whose certificate
has basicConstraints CA:TRUE and keyCertSign; the chain is given leaf first. Nobody trusts this CA, so
readers report the manifest as valid but its signer as untrusted, which is the truth.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel

DEMO_NOTICE = "for demonstration only: a throwaway self-signed CA that no C2PA reader trusts"


class DemoCredential(BaseModel):
    cert_path: Path  # leaf + CA, PEM
    key_path: Path  # the leaf's private key, PEM (PKCS#8, unencrypted: it guards nothing)
    ca_path: Path  # the CA alone: a trust anchor for tests


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nbpro demo")]
    )


def _usage(*, sign: bool, certs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certs,
        crl_sign=certs,
        encipher_only=False,
        decipher_only=False,
    )


def _certificates(days: int) -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("nbpro demo CA (untrusted, demonstration only)")
    base = x509.CertificateBuilder().not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
    ca = (
        base.subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign=True, certs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        base.subject_name(_name("nbpro demo signer"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True, certs=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca, leaf, key


def make_demo_credential(folder: str | Path, *, days: int = 30) -> DemoCredential:
    """Write (or reuse, while still valid) a demo CA, leaf certificate and key under ``folder``."""
    folder = Path(folder)
    cred = DemoCredential(
        cert_path=folder / "signer-chain.pem", key_path=folder / "signer-key.pem", ca_path=folder / "ca.pem"
    )
    if cred.cert_path.exists() and cred.key_path.exists():
        leaf = x509.load_pem_x509_certificates(cred.cert_path.read_bytes())[0]
        if leaf.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
            return cred
    folder.mkdir(parents=True, exist_ok=True)
    ca, leaf, key = _certificates(days)
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    cred.ca_path.write_bytes(ca_pem)
    cred.cert_path.write_bytes(leaf.public_bytes(pem) + ca_pem)
    cred.key_path.touch(mode=0o600)
    cred.key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cred
