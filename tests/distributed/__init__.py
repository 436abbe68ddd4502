"""Multi-process tests on real gloo process groups (127.0.0.1 only): the launcher and its rank program."""
