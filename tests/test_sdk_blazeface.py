"""The LiteRT BlazeFace detector against MediaPipe's Tasks graph (the reference it restates), its anchors and
its suppression, and how a runtime is chosen."""
import numpy as np
import pytest

from benchmarks import face_corpus
from sdk_python import AvatarEstimatorOptions
from sdk_python.blazeface import N_ANCHORS, anchor_centres, weighted_nms
from sdk_python.detector import FaceDetector
from sdk_python.errors import AvatarSDKError, DetectorError


def test_anchor_layout_is_the_short_range_models():
    a = anchor_centres()
    assert a.shape == (N_ANCHORS, 2)
    # stride 8: a 16 x 16 grid, two anchors a cell, row by row
    assert np.allclose(a[0], [1 / 32, 1 / 32]) and np.allclose(a[1], a[0]) and np.allclose(a[2], [3 / 32, 1 / 32])
    assert np.allclose(a[2 * 16], [1 / 32, 3 / 32])
    # stride 16 (three layers): an 8 x 8 grid, six anchors a cell
    tail = a[512:]
    assert np.allclose(tail[:6], [1 / 16, 1 / 16]) and np.allclose(tail[6], [3 / 16, 1 / 16])
    assert np.allclose(tail[-1], [15 / 16, 15 / 16])


def test_weighted_suppression_merges_a_cluster_and_keeps_the_best_score():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [5.0, 5.0, 6.0, 6.0]])
    points = np.array([[[0.5, 0.5]], [[0.7, 0.5]], [[5.5, 5.5]]])
    scores = np.array([0.6, 0.9, 0.7])
    out = weighted_nms(boxes, points, scores)
    assert [round(s, 3) for _, _, s in out] == [0.9, 0.7]
    box, pts, _ = out[0]
    assert np.allclose(box, [0.1 * 0.9 / 1.5, 0.0, 1.0 + 0.1 * 0.9 / 1.5, 1.0])   # score-weighted mean
    assert np.allclose(pts, [[0.5 + 0.2 * 0.9 / 1.5, 0.5]])
    assert np.allclose(out[1][0], boxes[2])


def _images():
    yield from face_corpus.portraits().values()
    for s in face_corpus.positives(per_engine=6):
        yield s.image
    for s in face_corpus.negatives(per_kind=2):
        yield s.image


def test_litert_detections_match_mediapipes(detector_model):
    lite = FaceDetector(detector_model, runtime="litert")
    ref = FaceDetector(detector_model, runtime="mediapipe")
    assert (lite.runtime, ref.runtime) == ("litert", "mediapipe")
    try:
        faces = 0
        for img in _images():
            a, b = ref.detect(img), lite.detect(img)
            assert len(a) == len(b)
            for fa, fb in zip(a, b):
                assert abs(fa.score - fb.score) < 0.01
                if fa.score < 0.6:   # near the floor a box may join or leave a cluster: scores only
                    continue
                faces += 1
                for name, (x, y) in fa.keypoints.items():
                    assert abs(x - fb.keypoints[name][0]) < 1.0 and abs(y - fb.keypoints[name][1]) < 1.0, name
                # whole pixels, as MediaPipe's (a value within float rounding of an integer may truncate apart)
                for u, v in ((fa.box.x, fb.box.x), (fa.box.y, fb.box.y), (fa.box.width, fb.box.width)):
                    assert v == int(v) and abs(u - v) <= 1.0
        assert faces >= 12
    finally:
        lite.close()
        ref.close()


def test_runtime_choice(detector_model, full_range_model):
    with pytest.raises(DetectorError, match="detector_runtime='mediapipe'"):
        FaceDetector(full_range_model, runtime="litert")
    full = FaceDetector(full_range_model)               # auto: the full-range layout goes to MediaPipe
    short = FaceDetector(detector_model)
    assert (full.runtime, short.runtime) == ("mediapipe", "litert")
    full.close()
    short.close()
    with pytest.raises(DetectorError, match="choose one of auto, litert, mediapipe"):
        FaceDetector(detector_model, runtime="tflite")
    with pytest.raises(AvatarSDKError, match="detector_runtime"):
        AvatarEstimatorOptions(bundle_path="x.swiftavatar", detector_runtime="gpu").validate()


def test_a_closed_litert_detector_says_so(detector_model):
    d = FaceDetector(detector_model)
    d.close()
    d.close()   # idempotent
    with pytest.raises(DetectorError, match="closed"):
        d.detect(np.zeros((64, 64, 3), np.uint8))
