"""HTTP routes: audio (OpenAI transcription/translation), models, health."""
