"""NVIDIA Parakeet (FastConformer encoder, TDT/RNNT decoder): two descriptions, ML-free.

Two backends read the same model family. `parakeet-nemo` runs the published `.nemo` with
NeMo and torch (CUDA, MPS or CPU; gigabytes of libraries), `parakeet-onnx` runs its ONNX
export with onnx-asr and onnxruntime (about 170 MB of libraries: the CPU box's choice).
Their catalogues have different names (`…-onnx`), so `--model NAME` says which backend.
Neither translates: Parakeet only transcribes. Implementations, in `worker.backends.parakeet`:
`.nemo_engine` and `.onnx_engine`, imported in a worker only; both cut audio the same way
(`.windows`).
"""

from __future__ import annotations

from common.backends.description import BackendDescription, Capabilities, KnownModel, ModelFiles

NEMO_NAME = "parakeet-nemo"
ONNX_NAME = "parakeet-onnx"

#: parakeet-tdt-0.6b-v3's 25 European languages, as its model card lists them.
V3_LANGUAGES = (
    "bg", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "hr", "hu", "it",
    "lt", "lv", "mt", "nl", "pl", "pt", "ro", "ru", "sk", "sl", "sv", "uk",
)  # fmt: skip

_CAPABILITIES = Capabilities(translate=False, word_timestamps=True, streaming=True)


def _model(
    backend: str, name: str, repo: str, size_mb: int, languages: tuple[str, ...], description: str
) -> KnownModel:
    return KnownModel(
        name=name,
        backend=backend,
        repo=repo,
        size_mb=size_mb,
        english_only=languages == ("en",),
        languages=len(languages),
        description=description,
        language_codes=languages,
    )


NEMO = BackendDescription(
    name=NEMO_NAME,
    implementation="worker.backends.parakeet.nemo_engine",
    capabilities=_CAPABILITIES,
    # A NeMo model is one file: `source` may name it, or a directory (a hub snapshot) holding it.
    files=ModelFiles(required=("*.nemo",), download=("*.nemo",), one_file=True),
    catalog=(
        _model(
            NEMO_NAME,
            "parakeet-tdt-0.6b-v2",
            "nvidia/parakeet-tdt-0.6b-v2",
            2470,
            ("en",),
            "Parakeet TDT 0.6B v2, English, punctuation and capitals (NeMo)",
        ),
        _model(
            NEMO_NAME,
            "parakeet-tdt-0.6b-v3",
            "nvidia/parakeet-tdt-0.6b-v3",
            2510,
            V3_LANGUAGES,
            "Parakeet TDT 0.6B v3, 25 European languages (NeMo)",
        ),
        _model(
            NEMO_NAME,
            "parakeet-tdt_ctc-110m",
            "nvidia/parakeet-tdt_ctc-110m",
            459,
            ("en",),
            "Parakeet TDT-CTC 110M, English: small and fast (NeMo)",
        ),
    ),
    aliases={"parakeet": "parakeet-tdt-0.6b-v2", "parakeet-v3": "parakeet-tdt-0.6b-v3"},
    extra="parakeet",
    runtime_mb=800.0,  # torch + NeMo imported, before any weights: a little over what a spare holds (bench.parakeet)
)

ONNX = BackendDescription(
    name=ONNX_NAME,
    implementation="worker.backends.parakeet.onnx_engine",
    capabilities=_CAPABILITIES,
    # onnx-asr's layout: encoder and decoder+joint graphs (float32, and int8 beside them in
    # the published exports), the vocabulary, and a config.json naming the model type.
    files=ModelFiles(
        required=("encoder-model*.onnx", "decoder_joint-model*.onnx", "vocab.txt"),
        download=("config.json", "vocab.txt", "encoder-model*.onnx*", "decoder_joint-model*.onnx*"),
    ),
    catalog=(
        _model(
            ONNX_NAME,
            "parakeet-tdt-0.6b-v2-onnx",
            "istupakov/parakeet-tdt-0.6b-v2-onnx",
            3140,
            ("en",),
            "Parakeet TDT 0.6B v2 for onnx-asr: float32 and int8 (the CPU default)",
        ),
        _model(
            ONNX_NAME,
            "parakeet-tdt-0.6b-v3-onnx",
            "istupakov/parakeet-tdt-0.6b-v3-onnx",
            3200,
            V3_LANGUAGES,
            "Parakeet TDT 0.6B v3 for onnx-asr, 25 European languages: float32 and int8",
        ),
    ),
    aliases={"parakeet-onnx": "parakeet-tdt-0.6b-v2-onnx", "parakeet-v3-onnx": "parakeet-tdt-0.6b-v3-onnx"},
    extra="parakeet-onnx",
    runtime_mb=150.0,  # onnxruntime + onnx-asr imported, before any weights: a little over a worker's (bench.parakeet)
)
