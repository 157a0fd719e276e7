"""Industry-standard provenance marks on every stored image: IPTC XMP saying the image is AI-generated
(with the project's lineage in its own XMP namespace) and a C2PA manifest signed with the deployment's
certificate. XMP is written first, the manifest signed last, so the signature covers the XMP.

The EU AI Act (Art. 50) asks for machine-readable marking of AI-generated images; exiftool, exiv2 and
every C2PA reader understand these marks, unlike the private lineage blob of ``image_files``.
"""

from nbpro_pipeline.provenance.lineage import ImageLineage, RequestParams, StoredLineage
from nbpro_pipeline.provenance.marks import MarksCheck, embed_marks, verify_marks
from nbpro_pipeline.provenance.signing import SIGNING_HELP, ProvenanceSigner, SigningConfigError, signer_from_env

__all__ = [
    "SIGNING_HELP",
    "ImageLineage",
    "RequestParams",
    "StoredLineage",
    "MarksCheck",
    "ProvenanceSigner",
    "SigningConfigError",
    "embed_marks",
    "signer_from_env",
    "verify_marks",
]
