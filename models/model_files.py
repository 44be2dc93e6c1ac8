"""Locate model weight files that ship inside installed packages, by path.

The packages are never imported: ``face_recognition_models/__init__.py`` imports ``pkg_resources``,
which recent setuptools no longer provides, so importing it fails even when the files are there.
``importlib.util.find_spec`` finds a package's folder without running its ``__init__``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_FACE_MODELS_PACKAGE = "face_recognition_models"
_FACE_MODELS_DIST = "face-recognition-models"


def package_dir(package: str, dist: str | None = None) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; install it with `pip install {dist or package}`"
        )
    return Path(locations[0])


def packaged_file(package: str, relative: str, dist: str | None = None) -> Path:
    """A file inside an installed package; FileNotFoundError naming the package when absent."""
    path = package_dir(package, dist) / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed package {package!r}; "
            f"reinstall it with `pip install --force-reinstall {dist or package}`"
        )
    return path


def dlib_resnet_path() -> Path:
    """dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``)."""
    return packaged_file(_FACE_MODELS_PACKAGE, "models/dlib_face_recognition_resnet_model_v1.dat", _FACE_MODELS_DIST)


def dlib_shape_predictor_5_path() -> Path:
    """dlib's 5-point landmark model (``shape_predictor_5_face_landmarks.dat``)."""
    return packaged_file(_FACE_MODELS_PACKAGE, "models/shape_predictor_5_face_landmarks.dat", _FACE_MODELS_DIST)
