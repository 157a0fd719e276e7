"""Which chart library renders the report charts: matplotlib (Agg) or Vega-Altair + vl-convert.

    .venv/bin/python bench/chart_render.py [--json]

Each library runs in a fresh subprocess (import time and peak RSS are its own): import, first chart,
mean of the next 10 charts, PNG bytes, and the installed size of its packages. The same chart both
ways: 6 bars, 400x160 px. Altair is optional (``pip install altair vl-convert-python`` to compare).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

MPL = """
import io, time, resource
t = time.perf_counter()
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
imported = time.perf_counter() - t
def one():
    fig, ax = plt.subplots(figsize=(4, 1.6), dpi=100)
    ax.bar(list("abcdef"), [1, 2, 3, 4, 5, 6]); buf = io.BytesIO(); fig.savefig(buf, format="png"); plt.close(fig)
    return buf.getvalue()
"""

ALTAIR = """
import time, resource
t = time.perf_counter()
import altair as alt, pandas as pd, vl_convert as vlc
imported = time.perf_counter() - t
df = pd.DataFrame({"x": list("abcdef"), "y": [1, 2, 3, 4, 5, 6]})
def one():
    chart = alt.Chart(df).mark_bar().encode(x="x", y="y").properties(width=400, height=160)
    return vlc.vegalite_to_png(chart.to_json(), scale=1)
"""

TIMING = """
t = time.perf_counter(); png = one(); first = time.perf_counter() - t
t = time.perf_counter()
for _ in range(10): one()
mean = (time.perf_counter() - t) / 10
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"import_s": round(imported, 3), "first_chart_s": round(first, 3),
                  "chart_s": round(mean, 4), "png_bytes": len(png), "peak_rss_mb": round(rss, 1)}))
"""


def _installed_mb(*modules: str) -> float:
    total = 0
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            total += sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
    return round(total / 2**20, 1)


def measure(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", "import json\n" + code + TIMING], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    results = {"matplotlib": {**measure(MPL), "installed_mb": _installed_mb("matplotlib")}}
    if importlib.util.find_spec("altair") and importlib.util.find_spec("vl_convert"):
        results["altair_vl_convert"] = {**measure(ALTAIR), "installed_mb": _installed_mb("altair", "vl_convert")}
    for name, r in results.items():
        print(
            f"{name:<18} import {r['import_s']:.2f}s, first chart {r['first_chart_s']:.3f}s, then {r['chart_s']:.4f}s; "
            f"PNG {r['png_bytes']} B; peak RSS {r['peak_rss_mb']} MB; installed {r['installed_mb']} MB"
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
