"""SSRF: reference URLs reach public addresses only, unless the operator allows more, on every hop; the
listeners a refused URL names never see a request. Credentials in reference URLs are refused (userinfo)
or redacted (signed-URL parameters) before anything is written down."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
from collections.abc import Iterator

import pytest

from nbpro_pipeline.engine.references import ReferenceProblem, ReferenceResolver
from nbpro_pipeline.network_policy import AddressRefused, NetworkPolicy
from nbpro_pipeline.providers.guarded_stack import GuardedResolver
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.providers.rivya import TRAITS as RIVYA_TRAITS
from nbpro_pipeline.storage import Storage
from tests.engine.conftest import SETTINGS, prompt_row
from tests.prompts.helpers import png_bytes
from tests.serving import serving

REFUSED = {
    "127.0.0.1": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.9": "private",
    "192.168.0.1": "private",
    "100.64.0.1": "not a public",  # carrier-grade NAT
    "169.254.169.254": "metadata",
    "fd00:ec2::254": "metadata",
    "::ffff:169.254.169.254": "metadata",  # IPv4-mapped spelling of the same endpoint
    "::ffff:127.0.0.1": "loopback",
    "2002:7f00:1::1": "loopback",  # 6to4 around 127.0.0.1
    "100.100.100.200": "metadata",
    "168.63.129.16": "metadata",  # Azure's wire server: a public address, refused by name
    "fe80::1": "link-local",
    "224.0.0.1": "multicast",
    "0.0.0.0": "unspecified",
    "240.0.0.1": "reserved",
}


@pytest.mark.parametrize(("address", "why"), REFUSED.items())
def test_non_public_and_metadata_addresses_are_refused(address, why):
    with pytest.raises(AddressRefused) as refused:
        NetworkPolicy().check("images.example", address)
    assert why in str(refused.value)
    assert ("NBPRO_REFERENCE_ALLOW" in str(refused.value)) is (why != "metadata")  # how to allow it, if it can be


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    NetworkPolicy().check("images.example", address)


def test_the_operator_allows_networks_and_hosts_but_never_metadata():
    policy = NetworkPolicy(allow_networks=("10.0.0.0/8", "169.254.0.0/16"), allow_hosts=(".corp.example", "minio"))
    policy.check("x", "10.9.8.7")
    policy.check("img.corp.example", "192.168.1.1") and policy.check("MINIO.", "127.0.0.1")
    with pytest.raises(AddressRefused, match="cannot be allowed"):
        policy.check("x", "169.254.169.254")
    with pytest.raises(AddressRefused):
        policy.check("evilcorp.example", "192.168.1.1")  # a suffix, not a substring
    env = NetworkPolicy.from_env(
        {"NBPRO_REFERENCE_ALLOW_NETWORKS": "10.0.0.0/8, ::1", "NBPRO_REFERENCE_ALLOW_HOSTS": "a"}
    )
    assert env.allow_networks == ("10.0.0.0/8", "::1") and env.allow_hosts == ("a",)
    with pytest.raises(ValueError, match="not a network"):
        NetworkPolicy(allow_networks=("intranet",))


class _Answers:
    """A stub inner resolver: whatever addresses the DNS server chose to answer."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.calls = 0

    async def resolve(self, host, port=0, family=0):
        self.calls += 1
        return [
            {"hostname": host, "host": a, "port": port, "family": 0, "proto": 0, "flags": 0} for a in self.addresses
        ]

    async def close(self):
        pass


async def test_a_host_is_refused_when_any_of_its_addresses_is():
    mixed = _Answers("93.184.215.14", "10.0.0.5")  # a rebinding server slipping in a private address
    with pytest.raises(AddressRefused, match="10.0.0.5"):
        await GuardedResolver(NetworkPolicy(), mixed).resolve("images.example", 80)  # type: ignore[arg-type]
    public = _Answers("93.184.215.14")
    answers = await GuardedResolver(NetworkPolicy(), public).resolve("images.example", 80)  # type: ignore[arg-type]
    assert [a["host"] for a in answers] == ["93.184.215.14"] and public.calls == 1  # what is checked is connected to


class _Counting(http.server.BaseHTTPRequestHandler):
    """Serves a PNG at /ok.png, redirects /hop?to=URL, counts every request it sees."""

    seen: list[str]

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.seen.append(self.path)
        if self.path.startswith("/hop?to="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/hop?to="))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = png_bytes() if self.path == "/ok.png" else b"<html>not an image</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def listener() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Counting,), {"seen": seen})
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as port:
        yield port, seen


async def _fetch(url: str, policy: NetworkPolicy, tmp_path, row_number: int | None = 7):
    resolver = ReferenceResolver(RIVYA_TRAITS, None, Storage(str(tmp_path)), network=policy)  # type: ignore[arg-type]
    try:
        return await resolver.for_fingerprint((url,), "/data/t.csv", row_number)
    finally:
        await resolver.aclose()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_a_loopback_reference_is_refused_and_the_listener_sees_nothing(tmp_path, host):
    with listener() as (port, seen), pytest.raises(ReferenceProblem) as problem:
        await _fetch(f"http://{host}:{port}/ok.png", NetworkPolicy(), tmp_path)
    message = str(problem.value)
    assert seen == []
    assert message.startswith("/data/t.csv, row 7, column reference_images, item 1 (")
    assert "loopback" in message and "refused before connecting" in message


async def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(tmp_path):
    allowed = NetworkPolicy(allow_hosts=("localhost",))  # the first hop's host is the operator's
    with listener() as (port_a, seen_a), listener() as (port_b, seen_b):
        with pytest.raises(ReferenceProblem, match="127.0.0.1 is a loopback address"):
            await _fetch(f"http://localhost:{port_a}/hop?to=http://127.0.0.1:{port_b}/ok.png", allowed, tmp_path)
        with pytest.raises(ReferenceProblem, match="cloud metadata"):
            await _fetch(
                f"http://localhost:{port_a}/hop?to=http://169.254.169.254/latest/meta-data/", allowed, tmp_path
            )
        (ref,) = await _fetch(f"http://localhost:{port_a}/hop?to=/ok.png", allowed, tmp_path)  # same host: fine
    assert seen_b == [] and len(seen_a) == 4
    assert ref.sha256 == hashlib.sha256(png_bytes()).hexdigest()


async def test_allowlisted_loopback_works_and_bad_answers_fail_the_row_with_a_reason(tmp_path):
    policy = NetworkPolicy(allow_networks=("127.0.0.0/8",))
    with listener() as (port, seen):
        (ref,) = await _fetch(f"http://127.0.0.1:{port}/ok.png", policy, tmp_path)
        with pytest.raises(ReferenceProblem) as not_image:
            await _fetch(f"http://127.0.0.1:{port}/page.html?token=s3cr3t", policy, tmp_path)
        with pytest.raises(ReferenceProblem, match="more than 5 redirects"):
            await _fetch(
                f"http://127.0.0.1:{port}/hop?to=/hop%3Fto=/hop%3Fto=/hop%3Fto=/hop%3Fto=/hop%3Fto=/ok.png",
                policy,
                tmp_path,
            )
    assert ref.sha256 == hashlib.sha256(png_bytes()).hexdigest() and seen[0] == "/ok.png"
    message = str(not_image.value)
    assert message.startswith("/data/t.csv, row 7, column reference_images, item 1 (")
    assert "is not a JPEG, PNG or WebP image" in message and "s3cr3t" not in message and "token=redacted" in message


async def test_a_url_with_credentials_is_refused_clearly_without_repeating_them(tmp_path):
    with listener() as (port, seen), pytest.raises(ReferenceProblem) as problem:
        await _fetch(f"http://user:hunter2@127.0.0.1:{port}/ok.png", NetworkPolicy(), tmp_path)
    assert seen == [] and "hunter2" not in str(problem.value) and "user name or password" in str(problem.value)


async def test_signed_url_tokens_are_not_stored(harness):
    """OdiRouter fetches reference URLs itself, so the engine sends them whole; the ledger and the image's
    embedded lineage (XMP, C2PA, the private blob) keep them without their credentials."""
    url = "https://images.example/ref.png?X-Amz-Signature=SIGSECRET&X-Amz-Credential=CREDSECRET&token=TOKSECRET&w=2"
    report = await harness.run(Provider.ODIROUTER, [prompt_row("signed", reference_images=(url,))], settings=SETTINGS)
    assert report.succeeded == 1
    (row,) = harness.rows()
    assert "X-Amz-Signature=redacted" in row["params"] and "w=2" in row["params"]
    stored = [str(v) for v in row.values()]
    files = [p for p in harness.storage.fs.find(harness.storage.root) if not p.endswith(".parquet")]
    blobs = [harness.storage.fs.cat_file(p) for p in files]
    for secret in ("SIGSECRET", "CREDSECRET", "TOKSECRET"):
        assert not any(secret in s for s in stored)
        assert not any(secret.encode() in b for b in blobs)  # images (lineage, XMP, C2PA), journal, references
