"""The 2-D partition grid: provider × resolution (keys like ``<provider>|2K``; dimensions sort
alphabetically), the providers being the registry's at the time the definitions are built."""

import dagster as dg

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import PROVIDERS


def cell_partitions() -> dg.MultiPartitionsDefinition:
    providers = dg.StaticPartitionsDefinition(PROVIDERS.names())
    resolutions = dg.StaticPartitionsDefinition([r.value for r in Resolution])
    return dg.MultiPartitionsDefinition({"provider": providers, "resolution": resolutions})


def cell_of(partition_key: dg.MultiPartitionKey | str) -> tuple[str, Resolution]:
    """(provider, resolution) of a partition key such as ``<provider>|2K``."""
    keys = partition_key.keys_by_dimension if isinstance(partition_key, dg.MultiPartitionKey) else None
    if keys is None:
        provider, resolution = str(partition_key).split("|")
    else:
        provider, resolution = keys["provider"], keys["resolution"]
    return PROVIDERS[provider].name, Resolution(resolution)


def cell_key(provider: str, resolution: Resolution | str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"provider": str(provider), "resolution": Resolution(resolution).value})
