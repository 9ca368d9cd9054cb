"""What the supervisor and its workers share: the wire protocol, the backend descriptions, logs.

Both processes import this package, so nothing here may import an ML library or numpy (the
supervisor must stay light), and nothing here imports `supervisor` or `worker`: the
supervisor imports only `common` of the worker's side, the worker only `common` of the
supervisor's (tests/test_boundaries.py checks both, and that no imports form a cycle).
"""
