"""The answer to Wyoming's `describe`, from configuration and snapshots alone: never loads a model."""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from supervisor.models import files as model_files
from supervisor.models.registry import ModelRegistry

VERSION = "0.1.0"
ATTRIBUTION = Attribution(name="asr-supervisor", url="https://github.com/asr-supervisor/asr-supervisor")


def build_info(registry: ModelRegistry) -> Info:
    models = []
    for name in registry.names():
        owner = registry.get(name)
        spec = owner.spec
        models.append(
            AsrModel(
                name=name,
                description=spec.description or f"{spec.backend} {name}",
                attribution=ATTRIBUTION,
                installed=model_files.installed_path(spec) is not None,
                languages=owner.snapshot().languages or model_files.languages_guess(spec) or [],
                version=VERSION,
            )
        )
    program = AsrProgram(
        name="asr-supervisor",
        description="asr-supervisor: every configured model, each in its own worker process",
        attribution=ATTRIBUTION,
        installed=True,
        version=VERSION,
        models=models,
        supports_transcript_streaming=True,
    )
    return Info(asr=[program])
