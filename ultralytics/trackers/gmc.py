"""Global motion compensation for BoT-SORT: the camera's motion between frames as a 2x3 affine warp.

Methods (`gmc_method` in botsort.yaml): sparseOptFlow (corners tracked by pyramidal Lucas-Kanade), orb (FAST
corners + ORB descriptors), sift, ecc (intensity alignment, Euclidean model) and none (identity). Frames are
converted to grey and shrunk `downscale` times (2) first; the translation is scaled back to full resolution.
The first frame (and any frame where too few points match) gives the identity.
"""

from __future__ import annotations

import cv2
import numpy as np

from ultralytics.errors import ConfigError
from ultralytics.utils import LOGGER

METHODS = ("sparseOptFlow", "orb", "sift", "ecc", "none")


def _identity() -> np.ndarray:
    return np.eye(2, 3)


class GMC:
    """Estimates the frame-to-frame camera motion; `apply(frame, dets)` once per frame, in order."""

    def __init__(self, method: str = "sparseOptFlow", downscale: int = 2) -> None:
        if method not in METHODS and method is not None:
            raise ConfigError(f"gmc_method={method!r} is not one of {', '.join(METHODS)}")
        self.method = method or "none"
        self.downscale = max(1, int(downscale))
        if self.method in ("orb", "sift"):
            if self.method == "orb":
                self.detector = cv2.FastFeatureDetector_create(20)
                self.extractor = cv2.ORB_create()
                self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
            else:
                self.detector = self.extractor = cv2.SIFT_create(nOctaveLayers=3, contrastThreshold=0.02,
                                                                 edgeThreshold=20)
                self.matcher = cv2.BFMatcher(cv2.NORM_L2)
        self.reset_params()

    def reset_params(self) -> None:
        """Forget the previous frame (a new video)."""
        self.prev_frame: np.ndarray | None = None
        self.prev_points: np.ndarray | None = None
        self.prev_keypoints = None
        self.prev_descriptors = None

    def apply(self, frame: np.ndarray, dets: np.ndarray | None = None) -> np.ndarray:
        """The 2x3 warp taking the previous frame's coordinates to this frame's. `dets` (N, 4) xyxy boxes are
        masked out of the feature methods (moving objects are not the camera)."""
        if self.method == "none" or frame is None:
            return _identity()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if self.downscale > 1:
            h, w = gray.shape
            gray = cv2.resize(gray, (w // self.downscale, h // self.downscale))
        if self.method == "ecc":
            return self._ecc(gray)
        if self.method == "sparseOptFlow":
            return self._sparse_flow(gray)
        return self._features(gray, dets)

    def _scaled(self, warp: np.ndarray) -> np.ndarray:
        warp = warp.astype(np.float64).copy()
        warp[:, 2] *= self.downscale
        return warp

    # ------------------------------------------------------------------------------------------ methods
    def _ecc(self, gray: np.ndarray) -> np.ndarray:
        gray = cv2.GaussianBlur(gray, (3, 3), 1.5)
        prev, self.prev_frame = self.prev_frame, gray
        if prev is None:
            return _identity()
        warp = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 5000, 1e-6)
        try:
            _, warp = cv2.findTransformECC(prev, gray, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
        except cv2.error as e:  # no convergence (flat frames): assume a still camera
            LOGGER.warning(f"GMC ecc did not converge ({e.msg if hasattr(e, 'msg') else e}); using identity")
            return _identity()
        return self._scaled(warp)

    def _sparse_flow(self, gray: np.ndarray) -> np.ndarray:
        points = cv2.goodFeaturesToTrack(gray, mask=None, maxCorners=1000, qualityLevel=0.01, minDistance=1,
                                         blockSize=3, useHarrisDetector=False, k=0.04)
        prev, prev_points = self.prev_frame, self.prev_points
        self.prev_frame, self.prev_points = gray, points
        if prev is None or prev_points is None or len(prev_points) == 0:
            return _identity()
        moved, status, _ = cv2.calcOpticalFlowPyrLK(prev, gray, prev_points, None)
        ok = status.reshape(-1).astype(bool)
        return self._estimate(prev_points.reshape(-1, 2)[ok], moved.reshape(-1, 2)[ok])

    def _features(self, gray: np.ndarray, dets: np.ndarray | None) -> np.ndarray:
        h, w = gray.shape
        mask = np.zeros_like(gray)
        mask[int(0.02 * h):int(0.98 * h), int(0.02 * w):int(0.98 * w)] = 255  # borders: often black bars
        for box in (np.asarray(dets).reshape(-1, 4) if dets is not None else []):
            x1, y1, x2, y2 = (np.asarray(box[:4]) / self.downscale).astype(int)
            mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = 0
        keypoints = self.detector.detect(gray, mask)
        keypoints, descriptors = self.extractor.compute(gray, keypoints)
        prev_kp, prev_desc = self.prev_keypoints, self.prev_descriptors
        self.prev_keypoints, self.prev_descriptors = keypoints, descriptors
        if prev_kp is None or prev_desc is None or descriptors is None or len(prev_kp) < 2 or len(keypoints) < 2:
            return _identity()
        pairs = self.matcher.knnMatch(prev_desc, descriptors, k=2)
        max_shift = 0.25 * np.array([w, h])
        src, dst = [], []
        for pair in pairs:
            if len(pair) < 2 or pair[0].distance >= 0.9 * pair[1].distance:  # Lowe's ratio test
                continue
            p, q = np.array(prev_kp[pair[0].queryIdx].pt), np.array(keypoints[pair[0].trainIdx].pt)
            if np.all(np.abs(q - p) < max_shift):
                src.append(p)
                dst.append(q)
        return self._estimate(np.array(src).reshape(-1, 2), np.array(dst).reshape(-1, 2))

    def _estimate(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Similarity warp (rotation, scale, shift) from point pairs, robust to outliers (RANSAC)."""
        if len(src) <= 4:
            LOGGER.warning("GMC: not enough matching points; using identity")
            return _identity()
        warp, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC)
        return _identity() if warp is None else self._scaled(warp)
