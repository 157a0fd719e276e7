"""The signing credential comes from the environment, as a path or as PEM text, and never shows."""

from __future__ import annotations

import pytest

from nbpro_pipeline.provenance import SigningConfigError, signer_from_env
from nbpro_pipeline.provenance.democert import make_demo_credential


def test_no_credential_means_signing_off():
    assert signer_from_env({}) is None
    assert signer_from_env({"NBPRO_C2PA_CERT": " ", "NBPRO_C2PA_KEY": ""}) is None


def test_half_a_credential_is_an_error_naming_the_missing_variable(credential):
    with pytest.raises(SigningConfigError, match="NBPRO_C2PA_KEY is not set"):
        signer_from_env({"NBPRO_C2PA_CERT": str(credential.cert_path)})


def test_paths_and_pem_text_both_work_and_repr_hides_the_key(credential):
    by_path = signer_from_env(
        {"NBPRO_C2PA_CERT": str(credential.cert_path), "NBPRO_C2PA_KEY": str(credential.key_path)}
    )
    by_text = signer_from_env(
        {"NBPRO_C2PA_CERT": credential.cert_path.read_text(), "NBPRO_C2PA_KEY": credential.key_path.read_text()}
    )
    assert by_path is not None and by_text is not None
    assert by_path.subject == by_text.subject == "O=nbpro demo,CN=nbpro demo signer"
    key_body = credential.key_path.read_text().splitlines()[1]
    assert key_body not in repr(by_path) and "PRIVATE" not in repr(by_path)


def test_a_key_that_is_not_the_certificates_is_refused(credential, tmp_path):
    other = make_demo_credential(tmp_path / "other")
    with pytest.raises(SigningConfigError, match="not the key of the first certificate"):
        signer_from_env({"NBPRO_C2PA_CERT": str(credential.cert_path), "NBPRO_C2PA_KEY": str(other.key_path)})


def test_an_unreadable_path_says_so(tmp_path):
    with pytest.raises(SigningConfigError, match="neither PEM text nor a readable file"):
        signer_from_env({"NBPRO_C2PA_CERT": str(tmp_path / "nope.pem"), "NBPRO_C2PA_KEY": str(tmp_path / "k.pem")})
