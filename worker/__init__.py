"""The worker: one OS process that loads exactly one model and serves it over ZeroMQ.

This package's `__init__` and `protocol` module are imported by the supervisor, so
nothing here may import an ML library at module level; backends import theirs lazily.
"""
