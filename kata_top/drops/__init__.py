"""`kata-top drops`: where and why packets die, from the kernel's own drop reasons.

`model` holds the records, `parse` reads what the kernel and bpftrace print (untrusted),
`attribute` maps each drop to a sandbox and a hop of its datapath, `meaning` says what a
reason means for Kata and what fixes it. The tracer itself is collectors/droptrace.py.
"""
