"""kata-top's command line: one module per command, each with `add_arguments` and `run`.

Only the command being run is imported (and only its parser is built in full), so
`kata-top snapshot` never loads Textual, pyroute2 or the lab. The entry point is `main`.
"""
