"""The `[cuda]` library lookup (common/cuda_libs.py) and the worker's use of it, with stand-in files.

No GPU and no NVIDIA wheel are here, so the site-packages trees are made up: NVIDIA's
layout (`nvidia/<name>/lib/<soname>`), and a CTranslate2 distribution whose library names
the sonames it would `dlopen`. Stand-ins that are not shared libraries must be refused by
name, never crash a worker; where a C compiler is at hand, real shared libraries built
under cuBLAS's sonames show the mechanism a worker relies on: once loaded by path, a
`dlopen` of the bare soname, which is what CTranslate2 does, finds them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from common import cuda_libs

#: What CTranslate2 4.8 names (cuBLAS only), and what the releases built with cuDNN 9 named too.
CUBLAS_ONLY = b"\0libcuda.so.1\0libcublas.so.12\0"
WITH_CUDNN = CUBLAS_ONLY + b"libcudnn.so.9\0"


def site(
    root: Path, ctranslate2: bytes | None, wheels: dict[str, list[str]], content: bytes = b"not a library"
) -> Path:
    """A site-packages folder: a CTranslate2 distribution whose library holds `ctranslate2`
    (none when None), and NVIDIA wheel folders `nvidia/<name>/lib/` holding stand-in files."""
    packages = root / "site-packages"
    packages.mkdir(parents=True)
    if ctranslate2 is not None:
        library = "ctranslate2.libs/libctranslate2-0000.so.4.9.0"
        (packages / "ctranslate2.libs").mkdir()
        (packages / library).write_bytes(b"\x7fELF" + ctranslate2)
        info = packages / "ctranslate2-4.9.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ctranslate2\nVersion: 4.9.0\n")
        (info / "RECORD").write_text(f"{library},,\nctranslate2-4.9.0.dist-info/METADATA,,\n")
    for name, files in wheels.items():
        folder = packages / "nvidia" / name / "lib"
        folder.mkdir(parents=True)
        for file in files:
            (folder / file).write_bytes(content)
    return packages


def test_the_libraries_are_those_the_installed_ctranslate2_names(tmp_path: Path) -> None:
    only_cublas = cuda_libs.find([str(site(tmp_path / "a", CUBLAS_ONLY, {}))], system=False)
    assert [s.library.name for s in only_cublas.libraries] == ["cuBLAS 12"]
    assert only_cublas.ctranslate2 is not None and only_cublas.ctranslate2.name.startswith("libctranslate2")

    both = cuda_libs.find([str(site(tmp_path / "b", WITH_CUDNN, {}))], system=False)
    assert [s.library.name for s in both.libraries] == ["cuBLAS 12", "cuDNN 9"]

    cuda13 = cuda_libs.find([str(site(tmp_path / "c", b"libcublas.so.13\0", {}))], system=False)
    (status,) = cuda13.libraries
    assert status.library.sonames == ("libcublasLt.so.13", "libcublas.so.13")
    assert status.library.fix == "pip install 'nvidia-cublas-cu13'"  # not the extra: it brings CUDA 12's


def test_without_ctranslate2_what_faster_whispers_readme_asks_for_is_assumed(tmp_path: Path) -> None:
    lookup = cuda_libs.find([str(site(tmp_path, None, {}))], system=False)
    assert lookup.ctranslate2 is None
    assert [s.library.name for s in lookup.libraries] == ["cuBLAS 12", "cuDNN 9"]


def test_this_machines_ctranslate2_is_read() -> None:
    lookup = cuda_libs.find()
    assert lookup.ctranslate2 is not None and lookup.ctranslate2.is_file()
    assert "cuBLAS 12" in [s.library.name for s in lookup.libraries]


def test_found_and_missing_files_are_reported_by_name_with_their_fix(tmp_path: Path) -> None:
    packages = site(
        tmp_path,
        WITH_CUDNN,
        {"cublas": ["libcublas.so.12", "libcublasLt.so.12", "libnvblas.so.12"], "cudnn": ["libcudnn.so.9"]},
    )
    lookup = cuda_libs.find([str(packages)], system=False)
    cublas, cudnn = lookup.libraries
    assert cublas.ok and cublas.found == {
        "libcublasLt.so.12": str(packages / "nvidia/cublas/lib/libcublasLt.so.12"),
        "libcublas.so.12": str(packages / "nvidia/cublas/lib/libcublas.so.12"),
    }
    assert cudnn.missing == ["libcudnn_ops.so.9", "libcudnn_cnn.so.9"]
    assert lookup.problem() == (
        "cuDNN 9 not found (libcudnn_ops.so.9, libcudnn_cnn.so.9): pip install 'asr-supervisor[cuda]'"
    )
    report = cuda_libs.report(lookup)
    assert report[1]["missing"] == ["libcudnn_ops.so.9", "libcudnn_cnn.so.9"] and report[1]["fix"].endswith("[cuda]'")
    json.dumps(report)  # what python -m worker.doctor prints


def test_a_stand_in_that_is_not_a_shared_library_is_refused_by_name(tmp_path: Path) -> None:
    packages = site(tmp_path, CUBLAS_ONLY, {"cublas": ["libcublas.so.12", "libcublasLt.so.12"]})
    preloaded = cuda_libs.preload(cuda_libs.find([str(packages)], system=False))
    assert preloaded.loaded == {}
    assert preloaded.failed == {
        "libcublasLt.so.12": "not a shared library (no ELF header)",
        "libcublas.so.12": "not a shared library (no ELF header)",
    }
    problem = preloaded.problem()
    assert problem is not None and problem.startswith("cuBLAS 12 found but not loadable (libcublasLt.so.12: not a")
    assert problem.endswith(": pip install 'asr-supervisor[cuda]'")


def test_an_elf_file_that_does_not_load_is_reported_not_raised(tmp_path: Path) -> None:
    """An ELF header over garbage gets past the header check: dlopen's own error is the reason."""
    packages = site(tmp_path, CUBLAS_ONLY, {"cublas": ["libcublas.so.12", "libcublasLt.so.12"]}, b"\x7fELF garbage")
    preloaded = cuda_libs.preload(cuda_libs.find([str(packages)], system=False))
    assert set(preloaded.failed) == {"libcublas.so.12", "libcublasLt.so.12"}
    assert all(why for why in preloaded.failed.values())


def _worker_python(code: str, packages: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter whose sys.path has `packages` first, as an installed wheel would."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(packages), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=60
    )


def test_a_cuda_worker_without_loadable_libraries_fails_its_load_by_name_and_auto_takes_the_cpu(tmp_path: Path) -> None:
    packages = site(tmp_path, None, {"cublas": ["libcublas.so.12", "libcublasLt.so.12"]})
    done = _worker_python(
        """
        import logging
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        from worker.backends.base import LoadError
        from worker.backends.faster_whisper import cuda
        print("auto:", cuda.libraries_ready("auto"))
        try:
            cuda.libraries_ready("cuda")
        except LoadError as exc:
            print("cuda:", exc)
        """,
        packages,
    )
    assert done.returncode == 0, done.stderr
    assert "auto: False" in done.stdout
    assert "cuda: CTranslate2 cannot use CUDA here: cuBLAS 12 found but not loadable (libcublasLt.so.12: not a " in (
        done.stdout
    )
    assert 'device "auto" found a CUDA device, but cuBLAS 12 found but not loadable' in done.stderr


needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build real stand-in libraries")


@needs_cc
def test_a_library_loaded_by_path_answers_a_dlopen_of_its_soname(tmp_path: Path) -> None:
    """Real shared libraries named as cuBLAS's: libcublas.so.12 needs libcublasLt.so.12 (as the
    real one does) and neither is on the loader's path. Before `preload()`, opening the bare
    soname fails as CTranslate2's does; after it, it succeeds, and calls through."""
    packages = site(tmp_path, CUBLAS_ONLY, {})
    lib = packages / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    (tmp_path / "lt.c").write_text("int lt_answer(void) { return 42; }\n")
    (tmp_path / "blas.c").write_text("int lt_answer(void);\nint blas_answer(void) { return lt_answer(); }\n")
    cc = shutil.which("cc")
    assert cc is not None
    build = [cc, "-shared", "-fPIC"]
    subprocess.run(
        [*build, "-Wl,-soname,libcublasLt.so.12", "-o", lib / "libcublasLt.so.12", tmp_path / "lt.c"], check=True
    )
    subprocess.run(
        [*build, "-Wl,-soname,libcublas.so.12", "-o", lib / "libcublas.so.12", tmp_path / "blas.c"]
        + ["-L", lib, "-l:libcublasLt.so.12"],
        check=True,
    )
    done = _worker_python(
        f"""
        import ctypes
        from common import cuda_libs
        try:
            ctypes.CDLL("libcublas.so.12")
            print("before: loaded")
        except OSError:
            print("before: not found")
        preloaded = cuda_libs.preload(cuda_libs.find([{str(packages)!r}], system=False))
        print("problem:", preloaded.problem())
        print("loaded:", sorted(preloaded.loaded))
        print("answer:", ctypes.CDLL("libcublas.so.12").blas_answer())
        """,
        packages,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "before: not found",
        "problem: None",
        "loaded: ['libcublas.so.12', 'libcublasLt.so.12']",
        "answer: 42",
    ]
