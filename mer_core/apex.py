"""Apex spotting: per-frame intensity curves and the apex they point to (scoring against the
annotation is :mod:`mer_core.apex_scores`).

Every spotter turns a clip (frames onset..offset of an *aligned* face, T x H x W gray or
T x H x W x 3 RGB uint8) into a curve: one score per frame saying how far the face has moved away
from its neutral onset state. :func:`spot` returns the 0-based index of the curve's top. No
spotter reads the annotation.

Methods (:data:`mer_core.vocab.SPOTTERS`; each but ``middle`` has its curve in :data:`CURVES`):

- ``middle``: the midpoint ``(T - 1) // 2`` (the baseline every spotter must beat); its curve is a
  triangle peaking there.
- ``frame_diff``: mean absolute gray-level difference to the onset reference, per block of the
  facial regions (:data:`REGIONS`).
- ``lbp``: block-wise uniform-LBP histograms (8 neighbours, radius 1, 59 bins, NumPy vectorised)
  compared with the onset reference by the chi-square distance (Liong et al., 2015 style).
- ``optical_flow``: OpenCV DIS dense flow from the onset reference to each frame; the median flow
  vector of the face (global head motion) is subtracted, then the mean magnitude per block.
- ``frequency`` (experimental): Li, Huang & Zhao (ICIP 2018) style: LBP code images minus the
  onset's, a 3-D FFT of each block over a short sliding temporal window, the spatially
  high-frequency magnitude averaged over blocks (an adaptation; clearly weaker here).

Shared robustness steps (options, all documented in :data:`DEFAULTS`):

- *reference*: the mean of the first ``ref_frames`` frames (less sensor noise than frame 0 alone);
- *illumination*: every frame is standardised (zero mean, unit std over the regions) before
  ``frame_diff`` and ``optical_flow``; LBP is invariant to monotonic gray-level changes anyway;
- *head drift*: ``frame_diff``, ``lbp`` and ``frequency`` register each frame to the reference
  (global sub-pixel translation, robust Lucas-Kanade); ``optical_flow`` removes the median flow;
  then every block curve is detrended by the straight line through its start and end levels
  (the face is neutral at both onset and offset, so what remains at the offset is drift);
- *blinks*: a blink (100-200 ms, as long as a micro-expression's rise) is a strong change of
  the eyes, so the default regions leave the eye band out (add ``"eyes"`` to ``regions`` to
  watch AU7 directly). ``despike`` (temporal median filter) removes shorter spikes and
  ``block_cap`` limits what one block can contribute; both are off by default because on the
  synthetic set they cost more accuracy than they bought;
- *smoothing*: a centred moving average of ``smooth`` frames on the final curve;
- *flat tops*: :func:`peak` returns the centre of the run of frames near the maximum
  (``peak_level``; used by ``lbp``, whose histogram distance saturates).

Measured on the default synthetic set (255 clips, against the annotation): MAE frame_diff 2.7,
lbp 3.3, optical_flow 3.8, frequency 7.3, middle 10.2 frames.

Region boxes are fractions of the aligned face frame, ``(top, bottom, left, right)``.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from mer_core import vocab

#: Facial regions of an aligned face as fractions of the frame: (top, bottom, left, right).
#: ``brows``: forehead and eyebrows above the eyes (AU1/2/4); ``eyes``: the eyes themselves
#: (AU7; blinks live here); ``cheeks``: the band just below the eyes (AU6 cheek raise);
#: ``mouth``: nose wings to chin (AU9/10/12/14/15/17). The default set is brows + cheeks +
#: mouth: the eye band is left out because blinks, not micro-expressions, dominate it.
REGIONS = {
    "brows": (0.12, 0.36, 0.10, 0.90),
    "eyes": (0.36, 0.50, 0.10, 0.90),
    "cheeks": (0.50, 0.56, 0.10, 0.90),
    "mouth": (0.56, 0.94, 0.18, 0.82),
}

#: Default options of every spotter (``curve(frames, method, **options)`` overrides them).
DEFAULTS = dict(
    smooth=5,          # centred moving-average window (frames); the apex stage passes params.yaml's
                       # apex.smooth instead (3, chosen on the calibration population); <= 1: none
    despike=0,         # temporal median filter (frames) on the block curves; 0: none
    size=96,           # frames are resized to size x size (px) before spotting; 0: keep
    regions=("brows", "cheeks", "mouth"),  # names in REGIONS, or (top, bottom, left, right) tuples
    block=8,           # block side (px, at the working size)
    ref_frames=3,      # the reference is the mean of the first ref_frames frames
    register=True,     # register each frame to the reference (not optical_flow: see above)
    detrend=True,      # subtract the straight line through the start and end levels
    end_frames=3,      # frames averaged for the start and end levels of the detrend line
    block_cap=0.0,     # cap each block curve at block_cap x the median block level; 0: no cap
    blur=1.0,          # Gaussian sigma (px) applied before spotting; 0: none
    window=3,          # frequency: temporal window (frames) of the 3-D FFT
    lbp_threshold=0.0,  # lbp, frequency: gray levels a neighbour must exceed the centre by
    peak_level=1.0,    # spot(): apex = centre of the run >= peak_level x max (1.0: argmax)
    cutoff=0.1,        # frequency: spatial frequency (cycles/px, 0..0.5) below which bins drop
)

#: Per-method departures from :data:`DEFAULTS` (tuned on the synthetic set; explicit options
#: passed to :func:`curve` override these too). LBP codes flip on sensor noise, so the texture
#: methods smooth more; small blocks keep LBP histograms sensitive to displaced features.
METHOD_DEFAULTS = {
    "lbp": {"blur": 1.5, "block": 6, "peak_level": 0.9, "lbp_threshold": 1.0},
    "frequency": {"blur": 2.0},
}


def spot(frames: np.ndarray, method: str, **options) -> int:
    """Index (0-based, into ``frames``) of the apex that ``method`` finds.

    Args:
        frames: T x H x W or T x H x W x 3 uint8 array, frames onset..offset of one clip.
        method: one of :data:`mer_core.vocab.SPOTTERS`.
        **options: overrides of :data:`DEFAULTS`.

    Returns:
        The top of :func:`curve` (argmax, or the centre of a flat top; see :func:`peak`);
        ``(T - 1) // 2`` for ``middle``.

    Raises:
        ValueError: unknown method or option, or an empty clip.
    """
    return locate(curve(frames, method, **options), method, **options)


def locate(c: np.ndarray, method: str, **options) -> int:
    """The apex index that ``method`` reads off its curve ``c`` (what :func:`spot` returns)."""
    if method == "middle":
        return (len(c) - 1) // 2
    return peak(c, _options(options, method)["peak_level"])


def peak(c: np.ndarray, level: float = 1.0) -> int:
    """The apex index of a curve: the centre of its top.

    Args:
        c: the curve.
        level: the top is the contiguous run of frames around the maximum whose value is at
            least ``level`` x the maximum (above the curve's minimum); its midpoint is returned.
            1.0 is the plain argmax. Saturating curves (LBP histograms stop changing once a
            feature has moved far enough) have a flat top whose centre is the apex.
    """
    c = np.asarray(c, np.float64)
    i = int(np.argmax(c))
    if level >= 1.0 or len(c) < 3:
        return i
    lo = c.min()
    thr = lo + level * (c[i] - lo)
    a = i
    while a > 0 and c[a - 1] >= thr:
        a -= 1
    b = i
    while b < len(c) - 1 and c[b + 1] >= thr:
        b += 1
    return (a + b) // 2 if (a + b) % 2 == 0 or c[(a + b) // 2] >= c[(a + b + 1) // 2] \
        else (a + b + 1) // 2


def curve(frames: np.ndarray, method: str, **options) -> np.ndarray:
    """Per-frame apex score (float64, length T); the apex is its maximum.

    Args:
        frames: T x H x W or T x H x W x 3 uint8 array (onset..offset).
        method: one of :data:`mer_core.vocab.SPOTTERS`.
        **options: overrides of :data:`DEFAULTS` and :data:`METHOD_DEFAULTS` (unknown
            keys raise).

    Returns:
        The smoothed, drift-corrected score of each frame (>= 0; 0 for the reference frames
        when nothing moves).
    """
    if method not in vocab.SPOTTERS or (method != "middle" and method not in CURVES):
        raise ValueError(f"unknown apex method {method!r}; expected one of "
                         f"{', '.join(vocab.SPOTTERS)}")
    opts = _options(options, method)
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty T x H x W (x 3) array, got shape {frames.shape}")
    t = len(frames)
    if method == "middle":
        mid = (t - 1) / 2
        return 1.0 - np.abs(np.arange(t) - mid) / max(mid, 1.0)
    if t == 1:
        return np.zeros(1)
    gray = prepare(frames, opts)
    blocks = region_blocks(gray.shape[1:], opts["regions"], opts["block"])
    return _finish(CURVES[method](gray, blocks, opts), opts)


def curves(frames: np.ndarray, methods, **options) -> dict[str, np.ndarray]:
    """:func:`curve` for several methods, preparing the frames once."""
    return {m: curve(frames, m, **options) for m in methods}


# ---------------------------------------------------------------------------- preparation

def _options(options: dict, method: str = "") -> dict:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown apex option(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **METHOD_DEFAULTS.get(method, {}), **options}


def prepare(frames: np.ndarray, opts: dict) -> np.ndarray:
    """Gray float32 frames at the working size, blurred (T x S x S)."""
    if frames.ndim == 4:
        frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    size = int(opts["size"])
    out = np.empty((len(frames),) + ((size, size) if size else frames.shape[1:]), np.float32)
    for i, f in enumerate(frames):
        f = f.astype(np.float32)
        if size and f.shape != (size, size):
            interp = cv2.INTER_AREA if min(f.shape) > size else cv2.INTER_LINEAR
            f = cv2.resize(f, (size, size), interpolation=interp)
        if opts["blur"] > 0:
            f = cv2.GaussianBlur(f, (0, 0), opts["blur"])
        out[i] = f
    return out


def region_blocks(shape: tuple[int, int], regions, block: int) -> list[tuple[int, int, int, int]]:
    """Pixel boxes ``(y0, y1, x0, x1)`` of the ``block`` x ``block`` tiles covering the regions.

    Args:
        shape: (H, W) of the working frames.
        regions: names in :data:`REGIONS` or ``(top, bottom, left, right)`` fraction tuples.
        block: tile side in pixels (a region smaller than a tile is one tile).
    """
    h, w = shape
    boxes = []
    for r in regions:
        if isinstance(r, str):
            if r not in REGIONS:
                raise ValueError(f"unknown region {r!r}; expected one of {', '.join(REGIONS)} "
                                 "or a (top, bottom, left, right) tuple of fractions")
            r = REGIONS[r]
        top, bottom, left, right = r
        y0, y1 = int(round(top * h)), max(int(round(bottom * h)), int(round(top * h)) + 1)
        x0, x1 = int(round(left * w)), max(int(round(right * w)), int(round(left * w)) + 1)
        ny, nx = max(1, (y1 - y0) // block), max(1, (x1 - x0) // block)
        ys = np.linspace(y0, y1, ny + 1).round().astype(int)
        xs = np.linspace(x0, x1, nx + 1).round().astype(int)
        boxes += [(ys[i], ys[i + 1], xs[j], xs[j + 1]) for i in range(ny) for j in range(nx)]
    return boxes


def _reference(gray: np.ndarray, opts: dict) -> np.ndarray:
    return gray[: max(1, min(int(opts["ref_frames"]), len(gray)))].mean(axis=0)


def _register(gray: np.ndarray, ref: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Shift every frame onto ``ref``: global translation by robust Gauss-Newton (Lucas-Kanade).

    Inverse compositional (the reference gradients are computed once) with Huber weights, so
    the pixels that change for other reasons (a blink, the expression itself) barely pull on
    the shift; gray levels are matched in mean and spread first, so flicker does not either.
    """
    h, w = ref.shape
    m = max(2, min(h, w) // 16)                  # ignore the border (warp fill)
    inner = (slice(m, h - m), slice(m, w - m))
    r = cv2.GaussianBlur(ref.astype(np.float32), (0, 0), 1.5)
    gy, gx = (g[inner].ravel() for g in np.gradient(r))
    rc = r[inner].ravel()
    rc = (rc - rc.mean()) / (rc.std() + 1e-6)
    out = np.empty_like(gray)
    for i, f in enumerate(gray):
        fb = cv2.GaussianBlur(f.astype(np.float32), (0, 0), 1.5)
        d = np.zeros(2)
        for _ in range(iterations):
            mat = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
            wf = cv2.warpAffine(fb, mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)[inner].ravel()
            err = (wf - wf.mean()) / (wf.std() + 1e-6) - rc
            k = 1.5 * 1.4826 * np.median(np.abs(err)) + 1e-6
            wt = np.minimum(1.0, k / (np.abs(err) + 1e-12))          # Huber weights
            a, b, c = (wt * gx * gx).sum(), (wt * gx * gy).sum(), (wt * gy * gy).sum()
            det = a * c - b * b
            if det <= 1e-9:
                break
            e1, e2 = (wt * gx * err).sum(), (wt * gy * err).sum()
            step = np.array([c * e1 - b * e2, a * e2 - b * e1]) / det * r[inner].std()
            d -= step
            if np.abs(step).max() < 0.01:
                break
        mat = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
        out[i] = cv2.warpAffine(f, mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def _standardise(gray: np.ndarray, blocks=None) -> np.ndarray:
    """Per frame: subtract the mean, divide by the std (over the blocks' pixels if given).

    Only the watched regions set the statistics, so a blink (a large change elsewhere) does
    not shift the gray levels of the whole frame.
    """
    if blocks:
        mask = np.zeros(gray.shape[1:], bool)
        for y0, y1, x0, x1 in blocks:
            mask[y0:y1, x0:x1] = True
        flat = gray[:, mask]
    else:
        flat = gray.reshape(len(gray), -1)
    mean = flat.mean(axis=1)[:, None, None]
    std = flat.std(axis=1)[:, None, None] + 1e-6
    return (gray - mean) / std


def _block_means(values: np.ndarray, blocks) -> np.ndarray:
    """T x H x W -> T x B mean of each block."""
    return np.stack([values[:, y0:y1, x0:x1].mean(axis=(1, 2)) for y0, y1, x0, x1 in blocks],
                    axis=1)


# ---------------------------------------------------------------------------- methods

def _frame_diff(gray, blocks, opts):
    ref = _reference(gray, opts)
    if opts["register"]:
        gray = _register(gray, ref)
        ref = _reference(gray, opts)
    g = _standardise(np.concatenate([ref[None], gray]), blocks)
    return _block_means(np.abs(g[1:] - g[0]), blocks)


_LBP_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


@lru_cache(maxsize=1)
def _uniform_lut() -> np.ndarray:
    """256 LBP codes -> 59 uniform bins (58 uniform patterns + 1 for all the others)."""
    lut = np.full(256, 58, np.int64)
    k = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            lut[code] = k
            k += 1
    return lut


def lbp_codes(gray: np.ndarray, uniform: bool = True, threshold: float = 0.0) -> np.ndarray:
    """LBP (8 neighbours, radius 1) of T x H x W frames, vectorised; edges replicated.

    A neighbour sets its bit when it is >= centre + ``threshold``: with a threshold of about
    the noise level, flat skin gets the stable code 0 instead of codes flipped by sensor noise.

    Returns:
        T x H x W int64 codes: 0..58 (uniform) or 0..255.
    """
    g = np.asarray(gray, np.float32)
    p = np.pad(g, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = g.shape[1:]
    code = np.zeros(g.shape, np.int64)
    for bit, (dy, dx) in enumerate(_LBP_OFFSETS):
        code |= (p[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] >= g + threshold).astype(np.int64) << bit
    return _uniform_lut()[code] if uniform else code


def lbp_histograms(codes: np.ndarray, blocks, bins: int = 59) -> np.ndarray:
    """T x B x bins normalised histograms of the codes inside each block (one bincount)."""
    t = len(codes)
    hists = np.empty((t, len(blocks), bins))
    for b, (y0, y1, x0, x1) in enumerate(blocks):
        c = codes[:, y0:y1, x0:x1].reshape(t, -1)
        idx = c + bins * np.arange(t)[:, None]
        hists[:, b] = np.bincount(idx.ravel(), minlength=t * bins).reshape(t, bins)
    return hists / np.maximum(hists.sum(axis=2, keepdims=True), 1)


def chi_square(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """Chi-square distance over the last axis: sum (h1 - h2)^2 / (h1 + h2)."""
    s = h1 + h2
    return np.where(s > 0, (h1 - h2) ** 2 / np.where(s > 0, s, 1), 0).sum(axis=-1)


def _lbp(gray, blocks, opts):
    if opts["register"]:
        gray = _register(gray, _reference(gray, opts))
    hists = lbp_histograms(lbp_codes(gray, threshold=opts["lbp_threshold"]), blocks)
    ref = hists[: max(1, min(int(opts["ref_frames"]), len(hists)))].mean(axis=0)
    return chi_square(hists, ref[None])


def _optical_flow(gray, blocks, opts):
    g = _standardise(gray, blocks)
    lo, hi = np.percentile(g, [0.5, 99.5])
    u8 = np.clip((g - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    ref = _reference(u8.astype(np.float32), opts).round().astype(np.uint8)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    mags = np.empty(gray.shape, np.float32)
    for i, f in enumerate(u8):
        flow = dis.calc(ref, f, None)
        flow -= np.median(flow.reshape(-1, 2), axis=0)   # global head motion
        mags[i] = np.sqrt((flow ** 2).sum(axis=2))
    return _block_means(mags, blocks)


def _frequency(gray, blocks, opts):
    """Li, Huang & Zhao (2018) style: high-frequency 3-D FFT magnitude of LBP volumes per block.

    The LBP code images of a temporal window around each frame, minus the reference's codes,
    are Fourier transformed per block in 3-D (time x height x width); the mean magnitude of the
    bins whose *spatial* frequency is at least ``cutoff`` (cycles/px) is that frame's block
    score. The onset difference makes the score grow with the expression (not with its speed of
    change), and the spatial high-pass ignores slow shading changes. Relative to the paper, this
    is an adaptation: their exact windowing and filter are not public in full.
    """
    if opts["register"]:
        gray = _register(gray, _reference(gray, opts))
    codes = lbp_codes(gray, threshold=opts["lbp_threshold"]).astype(np.float32)
    codes -= codes[: max(1, min(int(opts["ref_frames"]), len(codes)))].mean(axis=0)
    t = len(codes)
    win = max(1, min(int(opts["window"]), t))
    # All blocks share one size so they batch into one FFT: the median block shape.
    bh = int(np.median([y1 - y0 for y0, y1, _, _ in blocks]))
    bw = int(np.median([x1 - x0 for _, _, x0, x1 in blocks]))
    vols = np.stack([codes[:, y0:y0 + bh, x0:x0 + bw] for y0, _, x0, _ in blocks], axis=1)
    fy, fx = np.meshgrid(np.fft.fftfreq(bh), np.fft.fftfreq(bw), indexing="ij")
    high = np.hypot(fy, fx) >= opts["cutoff"]
    scores = np.zeros((t, len(blocks)))
    half = win // 2
    for c in range(t):
        s = min(max(0, c - half), t - win)
        spec = np.abs(np.fft.fftn(vols[s:s + win], axes=(0, 2, 3)))   # win x B x bh x bw
        scores[c] = spec[:, :, high].sum(axis=(0, 2)) / (high.sum() * win)
    return scores


# ---------------------------------------------------------------------------- post-processing

#: Score curve of each spotter but ``middle``: ``(gray frames, blocks, options) -> one score per
#: frame``. A new spotter is its function here plus its name in :data:`mer_core.vocab.SPOTTERS`.
CURVES = {"frame_diff": _frame_diff, "lbp": _lbp, "optical_flow": _optical_flow,
          "frequency": _frequency}


def _finish(scores: np.ndarray, opts: dict) -> np.ndarray:
    """Block curves (T x B) -> one smoothed, drift-free, blink-robust curve (T)."""
    scores = np.asarray(scores, np.float64)
    t = len(scores)
    if opts["despike"] and opts["despike"] > 1 and t > 2:
        scores = median_filter(scores, size=(int(opts["despike"]), 1), mode="nearest")
    if opts["detrend"] and t > 2:
        # The reference frames sit below the noise floor of the others (they make up the
        # reference): the start level is taken just after them.
        k = max(1, min(int(opts["end_frames"]), t // 3 or 1))
        r = min(max(0, int(opts["ref_frames"])), max(0, t - k - 1))
        start, end = scores[r:r + k].mean(axis=0), scores[-k:].mean(axis=0)
        ramp = np.linspace(0.0, 1.0, t)[:, None]
        scores = scores - (start + (end - start) * ramp)
    scores = np.clip(scores, 0, None)
    if opts["block_cap"] and opts["block_cap"] > 0 and scores.shape[1] > 1:
        level = np.median(scores.max(axis=0))
        if level > 0:
            scores = np.minimum(scores, opts["block_cap"] * level)
    c = scores.mean(axis=1)
    if opts["smooth"] and opts["smooth"] > 1 and t > 2:
        c = uniform_filter1d(c, size=int(opts["smooth"]), mode="nearest")
    return c


__all__ = ["CURVES", "REGIONS", "DEFAULTS", "METHOD_DEFAULTS", "spot", "locate", "curve", "curves",
           "peak", "lbp_codes", "lbp_histograms", "chi_square", "region_blocks", "prepare"]
