"""How the pipeline's results look to a person: charts (PNG), short report summaries, contact sheets
and static HTML galleries. Plain functions over report frames and cell state; Dagster wraps them."""
