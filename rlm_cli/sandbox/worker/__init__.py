"""The REPL worker: the program that runs inside the sandbox and holds `context` and the model's
variables. Standard library only, and nothing from the rest of rlm_cli: it must start fast and see
nothing of the host (no keys, no settings).

The host starts `__main__.main()` with `python -I -B -u -c` (see `process.WORKER_MAIN` on the
host side), then speaks length-prefixed JSON frames over the worker's stdin/stdout. Modules:
`protocol` (frames, their types and limits; the host imports it too), `confine` (the confinement
steps, capabilities and limits; the steps' own modules `namespaces`, `landlock` and `seccomp`,
over `libc`), `repl` (cells and the scaffold), `load` (reading the sources).
"""
