"""The warm path before the parser: `snapshot` and `check` in their plain forms.

A warm answer costs a connect and a copy; building the argument parser (argparse, the shared
options, their modules) would cost more than that. So `main()` first hands the command line
here: a line this module fully understands (the options below, each once, `--opt value` or
`--opt=value`) is answered from a running serve when it can be (kata_top/warm.py); anything
else (another option, an abbreviation, --help, a run root that does not exist) and every miss
returns None, and the parser runs as it always does. Standard library only.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

FLAGS = {"snapshot": {"--json": "json", "--prometheus": "prometheus"},
         "check": {"--json": "json"}}
VALUES = {"snapshot": {"--run-root": "run_root", "--sandbox": "sandbox", "--output": "output",
                       "--max-age": "max_age"},
          "check": {"--run-root": "run_root", "--sandbox": "sandbox", "--max-age": "max_age"}}


def parse(argv: list[str]) -> SimpleNamespace | None:
    """The arguments of a plain `snapshot` or `check` line, or None."""
    if not argv or argv[0] not in FLAGS:
        return None
    cmd = argv[0]
    args = SimpleNamespace(cmd=cmd, json=False, prometheus=False, sandbox=None, output=None,
                           max_age=None, watch=None, fresh=False, debug=False,
                           run_root=os.environ.get("KATA_TOP_RUN_ROOT", "/run"))
    seen: set[str] = set()
    words = iter(argv[1:])
    for word in words:
        name, eq, value = word.partition("=")
        if name in seen:
            return None
        seen.add(name)
        if name in FLAGS[cmd] and not eq:
            setattr(args, FLAGS[cmd][name], True)
        elif name in VALUES[cmd]:
            if not eq:
                value = next(words, "")
            if not value or value.startswith("-"):
                return None
            setattr(args, VALUES[cmd][name], value)
        else:
            return None
    if args.json and args.prometheus:
        return None
    if args.max_age is not None:
        try:
            args.max_age = float(args.max_age)
        except ValueError:
            return None
        if not 0 <= args.max_age <= 86400:
            return None
    if not os.path.isdir(args.run_root):
        return None  # the parser's path says what is wrong with it
    return args


def answer(argv: list[str]) -> int | None:
    """The exit code of a plain `snapshot`/`check` answered warm, or None."""
    args = parse(argv)
    if args is None:
        return None
    from kata_top import warm

    return warm.snapshot(args) if args.cmd == "snapshot" else warm.check(args)
