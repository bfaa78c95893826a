"""Constant-velocity Kalman filters on a box state, as ByteTrack (xyah) and BoT-SORT (xywh) use them.

The state is the 4 box numbers and their 4 velocities; one frame is one time step. The noise of every step scales
with the box size (`std_weight_position` 1/20 and `std_weight_velocity` 1/160 of the height, or of the width and
height for xywh), as in the ByteTrack and BoT-SORT papers.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

NDIM = 4  # box numbers in a measurement


class KalmanFilterXYAH:
    """Kalman filter on (centre x, centre y, aspect w/h, height) and their velocities."""

    std_weight_position = 1.0 / 20
    std_weight_velocity = 1.0 / 160

    def __init__(self) -> None:
        self.motion_mat = np.eye(2 * NDIM)
        self.motion_mat[:NDIM, NDIM:] = np.eye(NDIM)  # x' = x + v (dt = one frame)
        self.update_mat = np.eye(NDIM, 2 * NDIM)  # measurement = the box part of the state

    # ------------------------------------------------------------------------------------ noise (per subclass)
    def _init_std(self, measurement: np.ndarray) -> np.ndarray:
        """Standard deviations of a new track's state (8,)."""
        h, wp, wv = measurement[3], self.std_weight_position, self.std_weight_velocity
        return np.array([2 * wp * h, 2 * wp * h, 1e-2, 2 * wp * h, 10 * wv * h, 10 * wv * h, 1e-5, 10 * wv * h])

    def _motion_std(self, mean: np.ndarray) -> np.ndarray:
        """Process noise standard deviations (N, 8) for states `mean` (N, 8)."""
        h, wp, wv = mean[:, 3], self.std_weight_position, self.std_weight_velocity
        return np.stack([wp * h, wp * h, np.full_like(h, 1e-2), wp * h,
                         wv * h, wv * h, np.full_like(h, 1e-5), wv * h], axis=1)

    def _measurement_std(self, mean: np.ndarray) -> np.ndarray:
        """Measurement noise standard deviations (4,) for state `mean` (8,)."""
        h, wp = mean[3], self.std_weight_position
        return np.array([wp * h, wp * h, 1e-1, wp * h])

    # ------------------------------------------------------------------------------------ the filter
    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (8,) and covariance (8, 8) of a new track from its first box; velocities start at 0."""
        measurement = np.asarray(measurement, dtype=np.float64)
        mean = np.concatenate([measurement, np.zeros(NDIM)])
        return mean, np.diag(np.square(self._init_std(measurement)))

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step ahead for a single track."""
        m, c = self.multi_predict(mean[None], covariance[None])
        return m[0], c[0]

    def multi_predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step ahead for N tracks at once: means (N, 8), covariances (N, 8, 8)."""
        q = np.square(self._motion_std(mean))  # noise from the state before the step
        f = self.motion_mat
        mean = mean @ f.T
        covariance = f @ covariance @ f.T + q[:, :, None] * np.eye(2 * NDIM)
        return mean, covariance

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state distribution in measurement space: mean (4,), innovation covariance (4, 4)."""
        r = np.diag(np.square(self._measurement_std(mean)))
        h = self.update_mat
        return h @ mean, h @ covariance @ h.T + r

    def update(self, mean: np.ndarray, covariance: np.ndarray,
               measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct a track's state with a measured box (4,)."""
        projected_mean, projected_cov = self.project(mean, covariance)
        # Kalman gain K = P H^T S^-1, solved through the Cholesky factor of the (symmetric, positive) S
        gain = scipy.linalg.cho_solve(scipy.linalg.cho_factor(projected_cov, lower=True, check_finite=False),
                                      (covariance @ self.update_mat.T).T, check_finite=False).T
        innovation = np.asarray(measurement, dtype=np.float64) - projected_mean
        new_mean = mean + innovation @ gain.T
        new_cov = covariance - gain @ projected_cov @ gain.T
        return new_mean, new_cov


class KalmanFilterXYWH(KalmanFilterXYAH):
    """Kalman filter on (centre x, centre y, width, height) and their velocities (BoT-SORT)."""

    def _init_std(self, measurement: np.ndarray) -> np.ndarray:
        w, h, wp, wv = measurement[2], measurement[3], self.std_weight_position, self.std_weight_velocity
        return np.array([2 * wp * w, 2 * wp * h, 2 * wp * w, 2 * wp * h,
                         10 * wv * w, 10 * wv * h, 10 * wv * w, 10 * wv * h])

    def _motion_std(self, mean: np.ndarray) -> np.ndarray:
        w, h, wp, wv = mean[:, 2], mean[:, 3], self.std_weight_position, self.std_weight_velocity
        return np.stack([wp * w, wp * h, wp * w, wp * h, wv * w, wv * h, wv * w, wv * h], axis=1)

    def _measurement_std(self, mean: np.ndarray) -> np.ndarray:
        w, h, wp = mean[2], mean[3], self.std_weight_position
        return np.array([wp * w, wp * h, wp * w, wp * h])
