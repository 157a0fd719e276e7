"""The C2PA signing credential: a certificate chain and private key the deployment provides.

Read from the environment only (``NBPRO_C2PA_CERT`` / ``NBPRO_C2PA_KEY``, each a file path or the PEM
text itself), never from a config file, and never logged: ``repr`` shows the certificate's subject, not
the key. Without them signing is off and images carry IPTC XMP only; ``SIGNING_HELP`` says how to turn
it on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

CERT_ENV = "NBPRO_C2PA_CERT"
KEY_ENV = "NBPRO_C2PA_KEY"
TSA_ENV = "NBPRO_C2PA_TSA_URL"
SIGNING_HELP = (
    f"C2PA signing is off: set {CERT_ENV} (the signing certificate chain, leaf first, PEM) and {KEY_ENV} "
    "(its private key, PEM), each as a file path or the PEM text, to sign every stored image; "
    f"optionally {TSA_ENV} for an RFC 3161 time-stamp. Images still carry IPTC XMP."
)


class SigningConfigError(ValueError):
    """The signing credential in the environment is incomplete or unusable."""


def _pem(value: str, env: str) -> bytes:
    if "-----BEGIN" in value:
        return value.encode("ascii")
    path = Path(value).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningConfigError(f"{env}={value!r} is neither PEM text nor a readable file ({exc.strerror})") from None


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _algorithm(key: object) -> c2pa.C2paSigningAlg:
    """The C2PA algorithm for a key: ES256/384/512 by EC curve, PS256 for RSA, Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {256: c2pa.C2paSigningAlg.ES256, 384: c2pa.C2paSigningAlg.ES384, 521: c2pa.C2paSigningAlg.ES512}
        if key.curve.key_size in by_curve:
            return by_curve[key.curve.key_size]
    if isinstance(key, rsa.RSAPrivateKey):
        return c2pa.C2paSigningAlg.PS256
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return c2pa.C2paSigningAlg.ED25519
    raise SigningConfigError(f"{KEY_ENV}: C2PA signs with EC P-256/384/521, RSA (PS256) or Ed25519 keys only")


class ProvenanceSigner:
    """Makes a ``c2pa.Signer`` per signature (cheap, and no native handle shared across threads)."""

    def __init__(self, cert_chain_pem: bytes, key_pem: bytes, tsa_url: str | None = None) -> None:
        try:
            certs = x509.load_pem_x509_certificates(cert_chain_pem)
            key = load_pem_private_key(key_pem, password=None)
        except ValueError as exc:
            raise SigningConfigError(f"{CERT_ENV}/{KEY_ENV} do not parse as PEM: {exc}") from None
        if _spki(certs[0].public_key()) != _spki(key.public_key()):
            raise SigningConfigError(f"{KEY_ENV} is not the key of the first certificate in {CERT_ENV}")
        self.subject = certs[0].subject.rfc4514_string()
        self.issuer = certs[0].issuer.rfc4514_string()
        self.algorithm = _algorithm(key)
        self._chain = cert_chain_pem.decode("ascii")
        self._key = key_pem.decode("ascii")
        self._tsa_url = tsa_url
        try:
            self.c2pa_signer().close()  # c2pa's own checks (certificate profile) fail here, not per image
        except c2pa.C2paError as exc:
            raise SigningConfigError(f"c2pa refuses the credential in {CERT_ENV}/{KEY_ENV}: {exc}") from None

    def c2pa_signer(self) -> c2pa.Signer:
        info = c2pa.C2paSignerInfo(self.algorithm, self._chain.encode(), self._key.encode(), self._tsa_url)
        return c2pa.Signer.from_info(info)

    def __repr__(self) -> str:
        return f"ProvenanceSigner(subject={self.subject!r}, issuer={self.issuer!r}, alg={self.algorithm.name})"


def signer_from_env(environ: Mapping[str, str] | None = None) -> ProvenanceSigner | None:
    """The deployment's signer, or None when neither variable is set; half a credential is an error."""
    env = os.environ if environ is None else environ
    cert, key = env.get(CERT_ENV, "").strip(), env.get(KEY_ENV, "").strip()
    if not cert and not key:
        return None
    if not cert or not key:
        missing = CERT_ENV if not cert else KEY_ENV
        raise SigningConfigError(f"{missing} is not set; C2PA signing needs both {CERT_ENV} and {KEY_ENV}")
    return ProvenanceSigner(_pem(cert, CERT_ENV), _pem(key, KEY_ENV), env.get(TSA_ENV) or None)
