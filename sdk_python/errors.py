"""Typed SDK errors: one base class, one subclass per thing a caller can act on.

Every message says what went wrong *and* what to do about it. Catch :class:`AvatarSDKError` to handle
them all; nothing the SDK raises on bad input escapes as a runtime's own exception.
"""
from __future__ import annotations


class AvatarSDKError(Exception):
    """Base class of every error the SDK raises on purpose."""


# ----- input images ---------------------------------------------------------------------------------
class InvalidImageError(AvatarSDKError, ValueError):
    """The input is not an image the SDK can use (wrong type, dtype, shape, NaN values, unstated
    colour order)."""


class UnsupportedImageFormatError(InvalidImageError):
    """A file or buffer that cannot be decoded: unknown format, truncated or corrupt data."""


class ImageTooSmallError(InvalidImageError):
    """The image is smaller than the smallest size the detector can work with."""


class ImageTooLargeError(InvalidImageError):
    """The image is larger than the SDK accepts (it would need gigabytes of memory)."""


# ----- faces ----------------------------------------------------------------------------------------
class FaceError(AvatarSDKError):
    """Base class for problems with the faces found in a valid image."""


class NoFaceError(FaceError):
    """No face above ``min_face_confidence`` was found.

    Attributes:
        rejected: Detections above the score threshold dropped as not a human face (keypoint layout,
            colour): a picture of an animal or a pattern, rather than a face the detector missed.
    """

    def __init__(self, message: str, rejected: int = 0):
        super().__init__(message)
        self.rejected = rejected


class MultipleFacesError(FaceError):
    """More than one face was found and the policy is ``MultipleFacePolicy.ERROR``."""

    def __init__(self, message: str, count: int):
        super().__init__(message)
        self.count = count


class FaceTooSmallError(FaceError):
    """A face was found, but it is too small in the image for a reliable estimate ("move closer").

    Attributes:
        size_px: The largest face's size (the detector box's shorter side, in input pixels).
        min_size_px: The smallest size estimated (``min_face_size``).
        count: How many (too small) faces were found.
    """

    def __init__(self, message: str, size_px: float = 0.0, min_size_px: int = 0, count: int = 1):
        super().__init__(message)
        self.size_px = size_px
        self.min_size_px = min_size_px
        self.count = count


# ----- models, backends, detector -------------------------------------------------------------------
class BundleError(AvatarSDKError, ValueError):
    """The model bundle (or model file) is missing, unreadable or inconsistent."""


class BundleDamagedError(BundleError):
    """The bundle's bytes are not what was written: appended or prepended bytes, truncation, a changed byte
    (sha256 mismatch), a bad zip header."""


class ManifestError(BundleError):
    """A manifest field is missing or malformed; :attr:`field` names it (e.g. ``models[1].file``)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message, field)
        self.field = field

    def __str__(self) -> str:
        return str(self.args[0])


class BundleVersionError(BundleError):
    """The bundle was written for an SDK version this SDK does not understand."""


class BackendUnavailableError(AvatarSDKError):
    """The requested backend cannot run here (runtime not installed, wrong platform, no model for it)."""


class DetectorError(AvatarSDKError):
    """The face detector could not be created or failed at run time (after one rebuild and retry)."""


class DetectorModelUnavailableError(DetectorError):
    """The face-detector model file is not available and could not be obtained."""


# ----- API use --------------------------------------------------------------------------------------
class RunningModeError(AvatarSDKError):
    """A method was called that does not match the estimator's running mode."""


class TimestampError(AvatarSDKError, ValueError):
    """VIDEO mode got a timestamp that is not strictly increasing (or not an integer)."""


class EstimatorClosedError(AvatarSDKError):
    """The estimator was used after :meth:`AvatarEstimator.close`."""


class ParityWarning(UserWarning):
    """The model about to run did not pass (or was never put through) the exporter's parity check against
    torch: an explicitly requested model below its threshold, or ``auto`` precision finding no validated
    model. Results may differ from the trained model's."""
