"""SwiftAvatar reference SDK: a face image in, an avatar vector for the engine out.

Mirrors MediaPipe Tasks: :class:`AvatarEstimatorOptions` + :meth:`AvatarEstimator.create_from_options`
(or :meth:`AvatarEstimator.create_from_bundle`), then :meth:`~AvatarEstimator.estimate` (IMAGE mode) or
:meth:`~AvatarEstimator.estimate_for_video` (VIDEO mode). Needs only numpy, Pillow, mediapipe and one
runtime (onnxruntime, ai-edge-litert, coremltools on macOS, or torch for debugging); every heavy
import is lazy.
"""
from __future__ import annotations

SDK_VERSION = "1.0.0"

from .errors import (AvatarSDKError, BackendUnavailableError, BundleDamagedError, BundleError,  # noqa: E402
                     BundleVersionError, ManifestError,
                     DetectorError, DetectorModelUnavailableError, EstimatorClosedError, FaceError,
                     FaceTooSmallError, ImageTooLargeError, ImageTooSmallError, InvalidImageError,
                     MultipleFacesError, NoFaceError, ParityWarning, RunningModeError, TimestampError,
                     UnsupportedImageFormatError)
from .estimator import AvatarEstimator, InferenceError  # noqa: E402
from .image_input import RgbImage, load_image  # noqa: E402
from .options import AvatarEstimatorOptions, Detection, DetectorMode, MultipleFacePolicy, RunningMode  # noqa: E402
from .quality import FaceQuality  # noqa: E402
from .result import (AvatarEstimatorResult, AvatarFace, FaceBox, FaceDetection, ParameterEstimate,  # noqa: E402
                     Timings)

__all__ = [
    "SDK_VERSION", "AvatarEstimator", "AvatarEstimatorOptions", "RunningMode", "MultipleFacePolicy", "Detection", "DetectorMode", "FaceQuality",
    "AvatarEstimatorResult", "AvatarFace", "FaceBox", "FaceDetection", "ParameterEstimate", "Timings", "load_image", "RgbImage",
    "AvatarSDKError", "InvalidImageError", "UnsupportedImageFormatError", "ImageTooSmallError", "ImageTooLargeError",
    "FaceError", "NoFaceError", "MultipleFacesError", "FaceTooSmallError", "BundleError", "BundleVersionError",
    "BundleDamagedError", "ManifestError",
    "BackendUnavailableError", "DetectorError", "DetectorModelUnavailableError", "RunningModeError",
    "TimestampError", "EstimatorClosedError", "InferenceError", "ParityWarning",
]
