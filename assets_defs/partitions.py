"""The 2-D partition grid: provider × resolution (keys like ``rivya|2K``; dimensions sort alphabetically)."""

import dagster as dg

from nbpro_pipeline.models.common import Provider, Resolution

provider_partitions = dg.StaticPartitionsDefinition([p.value for p in Provider])
resolution_partitions = dg.StaticPartitionsDefinition([r.value for r in Resolution])
cell_partitions = dg.MultiPartitionsDefinition({"provider": provider_partitions, "resolution": resolution_partitions})


def cell_of(partition_key: dg.MultiPartitionKey | str) -> tuple[Provider, Resolution]:
    """(provider, resolution) of a partition key such as ``rivya|2K``."""
    keys = partition_key.keys_by_dimension if isinstance(partition_key, dg.MultiPartitionKey) else None
    if keys is None:
        provider, resolution = str(partition_key).split("|")
    else:
        provider, resolution = keys["provider"], keys["resolution"]
    return Provider(provider), Resolution(resolution)


def cell_key(provider: Provider | str, resolution: Resolution | str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"provider": Provider(provider).value, "resolution": Resolution(resolution).value})
