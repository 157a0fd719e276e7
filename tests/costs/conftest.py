import pytest

from nbpro_pipeline.costs.prices import PriceTable


@pytest.fixture
def prices() -> PriceTable:
    return PriceTable()
