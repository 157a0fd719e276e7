"""Charts are real, small PNGs."""

import base64
import io
from datetime import timedelta

from PIL import Image

from nbpro_pipeline.costs import PriceTable, reports
from nbpro_pipeline.presentation import charts
from tests.costs.builders import T0, ledger, record

ROWS = ledger(
    record("a", provider="rivya", resolution="1K"),
    record("a", provider="odirouter", resolution="1K", latency_s=3.0),
    record("b", provider="odirouter", resolution="4K", latency_s=9.0),
)


def _decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_cost_per_day_is_a_small_png():
    png = charts.cost_per_day(reports.credit_cost_report(ROWS, PriceTable()))
    image = _decoded(png)
    assert image.format == "PNG" and image.width > 300 and len(png) < 60_000


def test_comparison_chart_and_its_markdown():
    png = charts.comparison(reports.provider_comparison(ROWS, PriceTable()))
    assert _decoded(png).width > 300
    md = charts.markdown_image(png, "provider_comparison")
    assert md.startswith("![provider\\_comparison](data:image/png;base64,")  # the alt text is escaped
    assert base64.b64decode(md.split(",", 1)[1].rstrip(")")) == png


def test_no_rows_no_chart():
    assert charts.cost_per_day(reports.credit_cost_report(ledger(), PriceTable())) is None


def test_the_cost_chart_adds_cost_over_time_only_once_there_is_time():
    one_day = charts.cost_chart(reports.credit_cost_report(ROWS, PriceTable()))
    two_days = ledger(
        record("a", provider="rivya", resolution="1K"),
        record("c", provider="rivya", resolution="1K", at=T0 + timedelta(days=1)),
    )
    both = charts.cost_chart(reports.credit_cost_report(two_days, PriceTable()))
    assert _decoded(one_day).width < _decoded(both).width  # one panel (per image), then two (per image, per day)
    assert charts.cost_chart(reports.credit_cost_report(ledger(), PriceTable())) is None
