"""The fleet: every Kata node's health, read from Prometheus (which scrapes `kata-top serve`).

`promql.py` speaks Prometheus' HTTP API (auth, TLS, deadlines, untrusted answers),
`query.py` turns one round of queries into a FleetSnapshot (`model.py`).
"""
