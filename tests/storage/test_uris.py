"""Storage roots by URI: the scheme picks the fsspec filesystem (s3fs, gcsfs from the extras), and remote
roots never cache listings. No network here: constructing a filesystem does not connect."""

from __future__ import annotations

from nbpro_pipeline.storage import Storage


def test_an_s3_root_uses_s3fs_without_a_listings_cache():
    import s3fs  # the `s3` extra; part of the dev extra

    storage = Storage("s3://team-bucket/nbpro/", {"anon": True})
    assert isinstance(storage.fs, s3fs.S3FileSystem)
    assert storage.root == "team-bucket/nbpro" and not storage.is_local
    assert storage.uri(storage.ledger_dir()) == "s3://team-bucket/nbpro/ledger"
    assert storage.fs.dircache.use_listings_cache is False


def test_a_gs_root_uses_gcsfs_without_a_listings_cache():
    import gcsfs  # the `gcs` extra; part of the dev extra

    storage = Storage("gs://team-bucket/nbpro", {"token": "anon"})
    assert isinstance(storage.fs, gcsfs.GCSFileSystem)
    assert storage.uri(storage.path("images", "x.png")) == "gs://team-bucket/nbpro/images/x.png"
    assert storage.fs.dircache.use_listings_cache is False


def test_a_local_root_is_resolved_and_keeps_its_listings_cache(tmp_path):
    storage = Storage(f"file://{tmp_path}/root")
    assert storage.is_local and storage.root == str((tmp_path / "root").resolve())
    assert storage.uri(storage.ledger_dir()) == f"{storage.root}/ledger"
