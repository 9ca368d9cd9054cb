"""Benchmark of asr-supervisor against in-process faster-whisper and wyoming-faster-whisper.

Run it with `python -m bench` from the repository root; see bench/README.md.
"""
