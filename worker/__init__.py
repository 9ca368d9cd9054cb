"""The worker: one OS process that loads exactly one model and serves it over ZeroMQ.

The supervisor starts it (`python -m worker`) and imports nothing from it: what both sides
share is the `common` package. Nothing here imports an ML library at module level; backends
import theirs lazily.
"""
