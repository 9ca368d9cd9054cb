"""NVIDIA Parakeet: the implementations of `parakeet-nemo` (`.nemo_engine`) and `parakeet-onnx` (`.onnx_engine`).

Their descriptions are `common.backends.parakeet`, ML-free. Both engines are imported in a
worker only, and cut audio the same way (`.windows`).
"""
