"""`kata-top serve`: the engine behind HTTP for Prometheus and remote consoles (read-only).

`hub.py` runs collections on one thread and shares them between requests; `routes.py` parses
request targets (untrusted input); `server.py` is the HTTP server.
"""
