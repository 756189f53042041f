"""The canonical face framing, re-exported from the SDK (its one definition lives in
``sdk_python/framing.py``, so training-data writers and the runtime crop can never disagree)."""
from sdk_python.framing import (ALIGN_NAMES, CANONICAL_KEYPOINTS, DESIGN_SIZE, KEYPOINT_WEIGHTS, align,  # noqa: F401
                                alignment_transform, canonical_points, frame_whole, keypoints_from_canonical,
                                similarity_transform)
