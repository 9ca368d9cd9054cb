"""Build a tiny Parakeet-architecture model: `python tests/tiny_parakeet.py OUT_DIR`.

No weights can be downloaded here, so the tests make their own: a 2-layer FastConformer
encoder with a TDT decoder (the architecture of parakeet-tdt-0.6b, about 1/3000 of its
size), random weights, a SentencePiece tokenizer trained on a few lines. It is saved as
`OUT_DIR/tiny-parakeet.nemo` and exported for onnx-asr into `OUT_DIR/onnx/` (encoder and
decoder+joint graphs, onnx-asr's `vocab.txt` of "token id" lines ending in `<blk>`, and a
config.json naming the model type). Its words are nonsense, and the same nonsense through
NeMo and onnx-asr. It runs in its own process (it imports NeMo): `cached()` builds it
once per version of this file and of NeMo, under ~/.cache/asr-supervisor/tiny-parakeet/.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Set to 1 to skip the Parakeet tests where the NeMo stack cannot be installed.
SKIP_ENV = "ASR_TEST_NO_PARAKEET"


@dataclass(frozen=True)
class TinyParakeet:
    nemo: Path  # the .nemo file (backend parakeet-nemo)
    onnx: Path  # its export, a directory in onnx-asr's layout (backend parakeet-onnx)
    parameters: int


def stack_missing() -> str | None:
    """Why the Parakeet stack cannot be used by this interpreter's workers; None when it can."""
    for package in ("nemo-toolkit", "torch", "onnx-asr", "onnxruntime"):
        try:
            importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return f"{package} is not installed: scripts/test installs the Parakeet stack (scripts/_stack.sh)"
    return None


def cached() -> TinyParakeet:
    """The tiny model, built now (about 10 s) unless this version of it is in the cache."""
    key = hashlib.sha256(Path(__file__).read_bytes() + importlib.metadata.version("nemo-toolkit").encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asr-supervisor" / "tiny-parakeet"
    out = cache / key.hexdigest()[:16]
    done = out / "model.json"
    if not done.is_file():
        staging = out.with_name(out.name + f".{os.getpid()}")
        built = subprocess.run([sys.executable, __file__, str(staging)], capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(
                f"building the tiny Parakeet model failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}"
            )
        (staging / "model.json").write_text(built.stdout.strip().splitlines()[-1])
        if not out.exists():  # another run may have built it meanwhile: theirs is as good
            staging.rename(out)
    info = json.loads(done.read_text())
    return TinyParakeet(nemo=out / "tiny-parakeet.nemo", onnx=out / "onnx", parameters=int(info["parameters"]))


LINES = [
    "the quick brown fox jumps over the lazy dog",
    "what is the weather like today",
    "turn on the kitchen lights",
    "hello world this is a test of speech recognition",
]
DURATIONS = [0, 1, 2, 3, 4]  # TDT: how many frames each emitted token may skip


def main(out: Path) -> None:
    import sentencepiece as spm
    import torch
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    tokenizer = out / "tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    (tokenizer / "text.txt").write_text("\n".join(LINES * 20))
    spm.SentencePieceTrainer.train(
        input=str(tokenizer / "text.txt"),
        model_prefix=str(tokenizer / "tokenizer"),
        vocab_size=40,
        model_type="unigram",
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
    )
    pieces = spm.SentencePieceProcessor(model_file=str(tokenizer / "tokenizer.model"))
    vocabulary = [pieces.id_to_piece(i) for i in range(pieces.get_piece_size())]
    (tokenizer / "vocab.txt").write_text("\n".join(vocabulary) + "\n")  # NeMo's bpe tokenizer reads it too

    width = 32
    config = OmegaConf.create(
        {
            "sample_rate": 16000,
            "model_defaults": {
                "enc_hidden": width,
                "pred_hidden": width,
                "joint_hidden": width,
                "tdt_durations": DURATIONS,
                "num_tdt_durations": len(DURATIONS),
            },
            "train_ds": None,
            "validation_ds": {"manifest_filepath": None, "sample_rate": 16000, "batch_size": 1, "shuffle": False},
            "test_ds": None,
            "optim": None,
            "tokenizer": {"dir": str(tokenizer), "type": "bpe"},
            "preprocessor": {
                "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                "sample_rate": 16000,
                "normalize": "per_feature",
                "window_size": 0.025,
                "window_stride": 0.01,
                "window": "hann",
                "features": 80,
                "n_fft": 512,
                "frame_splicing": 1,
                "dither": 0.0,
                "pad_to": 0,
            },
            "encoder": {
                "_target_": "nemo.collections.asr.modules.ConformerEncoder",
                "feat_in": 80,
                "feat_out": -1,
                "n_layers": 2,
                "d_model": width,
                "subsampling": "dw_striding",
                "subsampling_factor": 8,
                "subsampling_conv_channels": width,
                "ff_expansion_factor": 2,
                "self_attention_model": "rel_pos",
                "n_heads": 2,
                "att_context_size": [-1, -1],
                "xscaling": True,
                "untie_biases": True,
                "pos_emb_max_len": 5000,
                "conv_kernel_size": 9,
                "conv_norm_type": "batch_norm",
                "dropout": 0.0,
                "dropout_pre_encoder": 0.0,
                "dropout_emb": 0.0,
                "dropout_att": 0.0,
            },
            "decoder": {
                "_target_": "nemo.collections.asr.modules.RNNTDecoder",
                "normalization_mode": None,
                "random_state_sampling": False,
                "blank_as_pad": True,
                "prednet": {"pred_hidden": width, "pred_rnn_layers": 1, "t_max": None, "dropout": 0.0},
            },
            "joint": {
                "_target_": "nemo.collections.asr.modules.RNNTJoint",
                "log_softmax": None,
                "preserve_memory": False,
                "fuse_loss_wer": False,
                "jointnet": {"joint_hidden": width, "activation": "relu", "dropout": 0.0},
                "num_extra_outputs": len(DURATIONS),
            },
            "decoding": {
                "strategy": "greedy_batch",
                "model_type": "tdt",
                "durations": DURATIONS,
                "greedy": {"max_symbols": 10},
            },
            "loss": {
                "loss_name": "tdt",
                "tdt_kwargs": {
                    "fastemit_lambda": 0.0,
                    "clamp": -1.0,
                    "durations": DURATIONS,
                    "sigma": 0.02,
                    "omega": 0.1,
                },
            },
        }
    )
    model = EncDecRNNTBPEModel(cfg=config).eval()
    model.save_to(str(out / "tiny-parakeet.nemo"))

    onnx = out / "onnx"
    onnx.mkdir(exist_ok=True)
    model.export(str(onnx / "model.onnx"))  # writes encoder-model.onnx and decoder_joint-model.onnx
    (onnx / "vocab.txt").write_text(
        "".join(f"{t} {i}\n" for i, t in enumerate(vocabulary)) + f"<blk> {len(vocabulary)}\n"
    )
    (onnx / "config.json").write_text(
        json.dumps({"model_type": "nemo-conformer-tdt", "features_size": 80, "subsampling_factor": 8})
    )
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": params}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
