"""asr-supervisor: the light process that owns the HTTP API and the model workers.

It must never import an ML library (torch, ctranslate2, faster_whisper, nemo): those
live in `worker/`, one OS process per model, so ending a process frees its memory.
"""
