"""faster-whisper (CTranslate2 Whisper): its implementation, `.engine`.

Its description (name, files, catalogue) is `common.backends.faster_whisper`, ML-free; only
`engine` imports faster-whisper, and only in a worker.
"""
