"""Each explanation method as a small pure formula on NumPy arrays.

Layout: activations A and gradients G of one image at a layer are (h, w, K) arrays (channels
last, like Keras). Every function returns the signed, unnormalised (h, w) map; ReLU and scaling
happen once, in `normalize`.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.linalg

_EPS = 1e-7


def _relu(x):
    return np.maximum(x, 0)


def weighted_sum(A: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_k w_k A_k: the common last step of CAM-style methods."""
    return np.tensordot(A, w, axes=([-1], [0])).astype(np.float32)


def gradcam(A, G):
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij G_kij; map = sum_k w_k A_k."""
    return weighted_sum(A, G.mean(axis=(0, 1)))


def gradcam_guided(A, G):
    """Grad-CAM with guided gradients: average only gradients where both the activation and the
    gradient are positive (the variant the Grad-CAM authors' code calls guided gradients)."""
    return weighted_sum(A, (G * ((G > 0) & (A > 0))).mean(axis=(0, 1)))


def gradcam_pp_alpha(A, G):
    """Grad-CAM++ alpha, closed form (Chattopadhyay et al. 2018, eq. 19).

    With Y = exp(S) and S piecewise linear in A, dY/dA = Y G, d2Y/dA2 = Y G^2, d3Y/dA3 = Y G^3, so
    alpha_kij = G^2 / (2 G^2 + sum_ab A_kab * G^3): Y cancels and one backward pass suffices.
    """
    g2 = G * G
    denom = 2.0 * g2 + A.sum(axis=(0, 1), keepdims=True) * g2 * G
    safe = np.where(denom != 0, denom, 1.0)
    return np.where(denom != 0, g2 / safe, 0.0)


def gradcam_pp(A, G):
    """Grad-CAM++: w_k = sum_ij alpha_kij relu(G_kij) (the exp(S) factor of dY/dA dropped: it is a
    positive constant per image); map = sum_k w_k A_k."""
    return weighted_sum(A, (gradcam_pp_alpha(A, G) * _relu(G)).sum(axis=(0, 1)))


def xgradcam(A, G):
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij A_kij G_kij / sum_ij A_kij."""
    return weighted_sum(A, (A * G).sum(axis=(0, 1)) / (A.sum(axis=(0, 1)) + _EPS))


def layercam(A, G):
    """Layer-CAM (Jiang et al. 2021): map = sum_k relu(G_k) * A_k, pixel by pixel."""
    return (_relu(G) * A).sum(axis=-1).astype(np.float32)


def hirescam(A, G):
    """HiResCAM (Draelos & Carin 2020): map = sum_k G_k * A_k (no spatial averaging, so the map
    is faithful to the score's dependence on each position)."""
    return (G * A).sum(axis=-1).astype(np.float32)


def cam(A, class_weights):
    """CAM (Zhou et al. 2016): map = sum_k W_kc A_k with W the Dense weights after GAP."""
    return weighted_sum(A, class_weights)


def eigencam(A):
    """Eigen-CAM (Muhammad & Yeasin 2020): projection of the (centred) activations on their first
    principal component; its sign is chosen to agree with the mean activation."""
    h, w, k = A.shape
    M = A.reshape(h * w, k).astype(np.float64)
    M = M - M.mean(axis=0)
    if not np.any(M):
        return np.zeros((h, w), np.float32)
    proj = _first_component(M).reshape(h, w)
    if np.sum(proj * A.mean(axis=-1)) < 0:
        proj = -proj
    return proj.astype(np.float32)


def _first_component(M):
    """M v1, v1 the top right singular vector of M, from the smaller Gram matrix. Power iteration:
    right after a TF call, NumPy's LAPACK fights TF's still-spinning threads for the cores (eigh
    ~1.5 ms here), while a few dozen matrix-vector products take ~0.4 ms."""
    if M.shape[0] <= M.shape[1]:   # hw <= K: u1 of M M^T; M v1 = M M^T u1 / |M^T u1|
        mtu = M.T @ _top_eigenvector(M @ M.T)
        return M @ mtu / max(np.linalg.norm(mtu), 1e-300)
    return M @ _top_eigenvector(M.T @ M)


def _top_eigenvector(G, iters=96, tol=1e-10, check_every=8):
    """Top eigenvector of a symmetric PSD matrix. Power iteration converges in ~10-30 steps on
    typical activations; when the top eigenvalues are close (l2/l1 > ~0.7) it would need
    hundreds, so after `iters` LAPACK computes just the top pair (~0.7 ms at 128 channels).
    Scaled by its trace, G's eigenvalues lie in [1/n, 1], so `check_every` products run without
    normalising (no overflow, no underflow) and only then is convergence checked."""
    G = G / np.trace(G)
    v = G[:, np.argmax(np.diag(G))]   # the largest-variance column: never orthogonal to v1 in practice
    v = v / np.linalg.norm(v)
    for _ in range(iters // check_every):
        u = v
        for _ in range(check_every):
            u = G @ u
        u /= np.linalg.norm(u)
        if np.abs(u - v).max() < tol:
            return u
        v = u
    n = len(G)
    return scipy.linalg.eigh(G, subset_by_index=[n - 1, n - 1])[1][:, 0]


def softmax(x, axis=-1):
    z = np.asarray(x, np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def scorecam(A_sel, scores):
    """Score-CAM (Wang et al. 2020): w = softmax_k(score of the image masked by channel k's
    normalised upsampled map); map = sum_k w_k A_k."""
    return weighted_sum(A_sel, softmax(scores).astype(np.float32))


def saliency(grad):
    """Gradient map as in Simonyan et al. 2014: max over channels of |gradient|."""
    return np.abs(grad).max(axis=-1).astype(np.float32)


def attribution_map(attr):
    """Pixel attribution summed over channels, signed (integrated / expected gradients,
    gradients x input): normalise with mode "magnitude" for the unsigned heatmap."""
    return attr.sum(axis=-1).astype(np.float32)


def gradient_x_input(x, grad):
    """Gradients x input (Shrikumar et al. 2016; Ancona et al. 2018): sum_c x_c dS/dx_c."""
    return attribution_map(np.asarray(x, np.float32) * grad)


def resize(m: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Resize an (h, w) map to size=(H, W) (bilinear up, area down), into `out` when given."""
    H, W = size
    m = m.astype(np.float32, copy=False)
    if m.shape == (H, W):
        if out is None:
            return m
        out[...] = m
        return out
    shrink = H < m.shape[0] or W < m.shape[1]
    return cv2.resize(m, (W, H), dst=out, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def normalize(raw: np.ndarray, size: tuple[int, int], mode: str = "relu",
              out: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Heatmap in [0, 1] at `size` from a raw map, plus the warnings a person needs.

    mode "relu": keep positive evidence (CAMs, occlusion), then divide by the max;
    "abs": already non-negative (pixel maps), divide by the max; "magnitude": signed maps shown
    by their size, |raw| / max |raw| (integrated gradients: the sign stays in the raw map);
    "minmax": signed maps without a natural zero (Eigen-CAM, activations), stretched to [0, 1].
    Never returns NaN.
    Scaling happens at the map's own resolution, before the (convex, bilinear/area) resize, so
    it costs nothing at large image sizes; the resized map's max can be a hair below 1.
    `out`: a float32 (H, W) array to write into (the engine passes rows of one block).
    """
    if out is None:
        out = np.empty(size, np.float32)
    m = np.asarray(raw, np.float32)
    if not np.all(np.isfinite(m)):
        out.fill(0)
        return out, ["the map has non-finite values (NaN/inf): shown as zero"]
    if mode == "relu":
        m = np.maximum(m, 0)
    elif mode == "magnitude":
        m = np.abs(m)
    lo, hi = float(m.min()), float(m.max())
    scale = max(abs(lo), abs(hi))
    warnings = []
    if mode == "minmax":
        if scale == 0 or hi - lo <= 1e-12 * scale:
            out.fill(0)
            return out, ["the map is constant: nothing to show"]
        if hi - lo < 1e-3 * scale:
            warnings.append("near-constant map stretched to the full range: differences are tiny")
        m = (m - lo) * np.float32(1.0 / (hi - lo))
    else:
        if hi <= 0:
            out.fill(0)
            return out, ["the map is all zero: no positive evidence for the target here"]
        if hi - lo < 1e-3 * hi:
            warnings.append("near-constant map: it does not localise anything")
        m = m * np.float32(1.0 / hi)
    resize(m, size, out)
    return np.clip(out, 0.0, 1.0, out=out), warnings


def fuse(maps, size: tuple[int, int] | None = None, mode: str = "relu",
         names=None) -> tuple[np.ndarray, list[str]]:
    """One map from the maps of several layers: each normalised on its own (`normalize`: ReLU,
    then scaled to [0, 1]; "minmax" maps stretched), resized to `size` (default: the finest map's
    (h, w)), then averaged. Returns (fused map in [0, 1], warnings prefixed by the layer's name).

    This is pytorch-grad-cam's multi-layer CAM (BaseCAM.compute_cam_per_layer, then
    aggregate_multi_layers: per-layer ReLU + scaling, mean over layers, as in Jiang et al. 2021,
    LayerCAM, sec. 3.3, who fuse the normalised maps of several stages). We take the mean, not
    torch-cam's max (torchcam.methods._CAM.fuse_cams): the mean keeps what several layers agree on
    and lets one layer's noisy peak count 1/n, while the max shows the union of every layer's
    hot spots. pytorch-grad-cam's scaling subtracts the min before dividing by the max; after the
    ReLU that min is 0 wherever the map has no positive evidence, and dividing by the max alone (as
    `normalize` does) makes fusing one layer give exactly the unfused map.
    """
    maps = [np.asarray(m, np.float32) for m in maps]
    if not maps:
        raise ValueError("fuse needs at least one map")
    if size is None:
        size = max((m.shape for m in maps), key=lambda s: s[0] * s[1])
    out = np.zeros(size, np.float32)
    part = np.empty(size, np.float32)
    warnings = []
    for i, m in enumerate(maps):
        _, w = normalize(m, size, mode, out=part)
        out += part
        name = names[i] if names is not None else f"layer {i + 1}"
        warnings += [f"{name}: {x}" if len(maps) > 1 else x for x in w]
    out *= np.float32(1.0 / len(maps))
    return out, warnings
