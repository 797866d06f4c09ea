"""A deterministic, seeded synthetic blood-cell-like image set.

96x96 RGB smears: a pinkish background with pale red-cell discs, and one stained cell in
the middle whose "nucleus" tells the class apart by shape (round, bilobed, multilobed,
kidney, fragments), size, colour and texture (granules), with per-class counts as
imbalanced as the reference set. Parameters of neighbouring classes overlap on purpose, and
every image gets a random colour cast, blur and sensor noise, so that a small CNN learns it
well but not perfectly.

Optionally injects the reference set's two traps: byte-identical copies of a few "joke"
images spread over classes with conflicting labels, and a few percent of legitimate images
with a strong colour cast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from subkit.profile import Profile

# per-class counts of the reference training set (AN2DL 2024-25 Homework 1)
REFERENCE_COUNTS = np.array([1052, 2381, 1285, 2226, 1049, 1393, 2530, 1843])

SIZE = 96
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

# class -> (cell radius range, cytoplasm rgb, nucleus rgb, nucleus kind, nucleus scale range,
#           granules rgb or None)
_CLASSES = [
    # basophil
    ((22, 28), (185, 160, 200), (70, 30, 110), "blob", (0.70, 0.90), (60, 20, 90)),
    # eosinophil
    ((24, 30), (230, 170, 150), (110, 50, 130), "bilobed", (0.40, 0.55), (225, 110, 70)),
    # erythroblast
    ((17, 22), (175, 165, 205), (45, 20, 75), "round", (0.45, 0.60), None),
    # immature granulocyte
    ((25, 32), (200, 170, 200), (125, 70, 160), "kidney", (0.55, 0.72), (170, 120, 170)),
    # lymphocyte
    ((16, 21), (160, 175, 220), (70, 40, 120), "round", (0.68, 0.85), None),
    # monocyte
    ((27, 33), (175, 170, 200), (120, 80, 150), "kidney", (0.50, 0.65), None),
    # neutrophil
    ((23, 29), (215, 185, 205), (100, 45, 130), "multilobed", (0.45, 0.60), (200, 160, 190)),
    # platelet
    ((0, 0), (0, 0, 0), (120, 70, 160), "fragments", (0.0, 0.0), None),
]


def class_counts(n: int, n_classes: int = 8) -> np.ndarray:
    """Per-class counts for n images, proportional to the reference (largest remainder)."""
    share = REFERENCE_COUNTS[:n_classes] / REFERENCE_COUNTS[:n_classes].sum()
    raw = share * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n - counts.sum()]:
        counts[i] += 1
    return counts


def _disc(cy, cx, r, soft=1.5):
    d = np.sqrt((_YY - cy) ** 2 + (_XX - cx) ** 2)
    return np.clip((r - d) / soft + 0.5, 0.0, 1.0)


def _ellipse(cy, cx, ry, rx, angle, soft=1.5):
    c, s = np.cos(angle), np.sin(angle)
    y, x = _YY - cy, _XX - cx
    u, v = (x * c + y * s) / max(rx, 1e-3), (-x * s + y * c) / max(ry, 1e-3)
    d = np.sqrt(u * u + v * v)
    return np.clip((1.0 - d) * min(rx, ry) / soft + 0.5, 0.0, 1.0)


def _paint(img, mask, rgb):
    m = mask[..., None]
    img *= 1.0 - m
    img += m * np.asarray(rgb, np.float32)


def _one_image(rng: np.random.Generator, cls: int) -> np.ndarray:
    bg = np.array([232, 205, 212], np.float32) + rng.normal(0, 8, 3)
    img = np.broadcast_to(bg, (SIZE, SIZE, 3)).astype(np.float32).copy()
    # red blood cells in the background
    for _ in range(rng.integers(4, 12)):
        cy, cx = rng.uniform(0, SIZE, 2)
        r = rng.uniform(9, 14)
        rbc = np.array([222, 150, 160], np.float32) + rng.normal(0, 10, 3)
        _paint(img, _disc(cy, cx, r) * 0.8, rbc)
        _paint(img, _disc(cy, cx, r * 0.45) * 0.35, bg)  # pale centre
    (r_lo, r_hi), cyto, nuc, kind, (s_lo, s_hi), gran = _CLASSES[cls]
    cy, cx = SIZE / 2 + rng.normal(0, 4, 2)

    def jitter(c, s=18):
        return np.clip(np.asarray(c, np.float32) + rng.normal(0, s, 3), 0, 255)

    if kind == "fragments":
        for _ in range(rng.integers(2, 7)):
            fy, fx = cy + rng.normal(0, 10), cx + rng.normal(0, 10)
            _paint(img, _ellipse(fy, fx, rng.uniform(2, 5), rng.uniform(2, 6),
                                 rng.uniform(0, np.pi)),
                   jitter(nuc, 25))
    else:
        R = rng.uniform(r_lo, r_hi)
        cell = _ellipse(cy, cx, R * rng.uniform(0.85, 1.0), R, rng.uniform(0, np.pi))
        _paint(img, cell, jitter(cyto))
        s = rng.uniform(s_lo, s_hi) * R
        ang = rng.uniform(0, 2 * np.pi)
        if kind == "round" or kind == "blob":
            mask = _disc(cy + rng.normal(0, 2), cx + rng.normal(0, 2), s)
            if kind == "blob":  # irregular outline
                for _ in range(4):
                    a = rng.uniform(0, 2 * np.pi)
                    mask = np.maximum(mask, _disc(cy + np.sin(a) * s * 0.5,
                                                  cx + np.cos(a) * s * 0.5, s * 0.6))
        elif kind == "bilobed":
            d = s * 0.9
            mask = np.maximum(_disc(cy + np.sin(ang) * d, cx + np.cos(ang) * d, s * 0.75),
                              _disc(cy - np.sin(ang) * d, cx - np.cos(ang) * d, s * 0.75))
        elif kind == "multilobed":
            mask = np.zeros_like(_YY)
            k = int(rng.integers(3, 5))
            for j in range(k):
                a = ang + 2 * np.pi * j / k + rng.normal(0, 0.3)
                mask = np.maximum(mask, _disc(cy + np.sin(a) * s, cx + np.cos(a) * s, s * 0.55))
        else:  # kidney: an ellipse with a bite taken out
            mask = _ellipse(cy, cx, s * 0.65, s * 1.15, ang)
            bite = _disc(cy + np.sin(ang + np.pi / 2) * s * 0.9,
                         cx + np.cos(ang + np.pi / 2) * s * 0.9, s * 0.6)
            mask = np.clip(mask - bite, 0, 1)
        mask = mask * cell
        _paint(img, mask, jitter(nuc))
        if gran is not None:
            n_g = int(rng.integers(25, 60))
            gy = cy + rng.normal(0, R * 0.55, n_g)
            gx = cx + rng.normal(0, R * 0.55, n_g)
            gmask = np.zeros_like(_YY)
            iy, ix = np.clip(gy.astype(int), 0, SIZE - 1), np.clip(gx.astype(int), 0, SIZE - 1)
            gmask[iy, ix] = 1.0
            gmask = np.clip(gmask + 0.5 * (np.roll(gmask, 1, 0) + np.roll(gmask, 1, 1)),
                            0, 1) * cell
            _paint(img, gmask * 0.85, jitter(gran, 12))
    # acquisition: colour cast, brightness, a little blur, sensor noise
    img *= rng.uniform(0.85, 1.12, 3).astype(np.float32)
    img += rng.normal(0, 6)
    if rng.random() < 0.5:
        img = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1)
               + np.roll(img, -1, 0) + np.roll(img, -1, 1)) / 5
    img += rng.normal(0, 5, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _joke_image(rng: np.random.Generator) -> np.ndarray:
    """A cartoon-like outlier: saturated stripes and a face-ish pattern, nothing cell-like."""
    img = np.zeros((SIZE, SIZE, 3), np.float32)
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    stripes = ((_XX + _YY * rng.uniform(-1, 1)) // rng.integers(6, 16) % 2)[..., None]
    img[:] = stripes * c1 + (1 - stripes) * c2
    _paint(img, _disc(48, 48, 30), (250, 220, 40))
    _paint(img, _disc(40, 38, 5), (20, 20, 20))
    _paint(img, _disc(40, 58, 5), (20, 20, 20))
    _paint(img, _ellipse(60, 48, 4, 14, 0.0), (120, 10, 10))
    return img.astype(np.uint8)


def generate(n: int = 2000, *, seed: int = 0, n_classes: int = 8, duplicates: int = 0,
             n_joke_images: int = 4, colour_cast_fraction: float = 0.0,
             shuffle: bool = True, labels_2d: bool = True) -> dict[str, np.ndarray]:
    """Generate ``n`` clean images plus ``duplicates`` copies of a few joke images.

    Returns ``{"images": (n + duplicates, 96, 96, 3) uint8, "labels": (m, 1) int}``, the
    layout of the reference file (labels (m,) with ``labels_2d=False``), and
    ``"is_duplicate"`` (bool, m) marking the injected copies, for tests.
    """
    if n < 0 or duplicates < 0:
        raise ValueError("n and duplicates must be >= 0")
    rng = np.random.default_rng(seed)
    counts = class_counts(n, n_classes)
    labels = np.repeat(np.arange(n_classes), counts)
    images = np.empty((n + duplicates, SIZE, SIZE, 3), np.uint8)
    for i, c in enumerate(labels):
        images[i] = _one_image(rng, int(c))
    if colour_cast_fraction > 0 and n:
        idx = rng.choice(n, int(round(colour_cast_fraction * n)), replace=False)
        for i in idx:
            cast = rng.uniform(0.45, 1.5, 3)
            images[i] = np.clip(images[i] * cast, 0, 255).astype(np.uint8)
    is_dup = np.zeros(n + duplicates, bool)
    if duplicates:
        jokes = [_joke_image(rng) for _ in range(max(1, n_joke_images))]
        which = rng.integers(0, len(jokes), duplicates)
        images[n:] = np.stack(jokes)[which]
        labels = np.concatenate([labels, rng.integers(0, n_classes, duplicates)])
        is_dup[n:] = True
    if shuffle:
        perm = rng.permutation(len(labels))
        images, labels, is_dup = images[perm], labels[perm], is_dup[perm]
    labels = labels.astype(np.uint8 if n_classes <= 255 else np.int64)
    return {"images": images, "labels": labels[:, None] if labels_2d else labels,
            "is_duplicate": is_dup}


# -- the other kinds of competition ---------------------------------------------------
# Each generator is seeded and offline, and made so that a small network learns it well
# but not perfectly: the classes differ by texture, shape or frequency, never by one
# value alone, and every sample carries noise and a random nuisance (lighting, phase,
# amplitude, scale).
PLANT_CLASSES = ["healthy", "unhealthy"]
CATEGORIES = list("ABCDEF")


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a batch of coarse grids (n, gh, gw) to (n, h, w)."""
    def weights(n_out, n_in):
        pos = np.linspace(0, n_in - 1, n_out)
        lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
        f = pos - lo
        m = np.zeros((n_out, n_in), np.float32)
        m[np.arange(n_out), lo] = 1 - f
        m[np.arange(n_out), lo + 1] = f
        return m
    return np.einsum("hi,nij,wj->nhw", weights(h, grid.shape[1]), grid, weights(w, grid.shape[2]))


def terrain(n: int = 400, *, seed: int = 0, shape: tuple[int, int] = (64, 128), aliens: int = 0,
            shuffle: bool = True) -> dict[str, np.ndarray]:
    """Mars-like grayscale terrain: ``images`` (n, H, W) float32 on 0..255 (not integers)
    and ``masks`` (n, H, W) uint8 with five classes, told apart by texture more than by
    brightness: 0 background (dark, smooth), 1 soil (grainy), 2 bedrock (smooth with
    cracks), 3 sand (ripples), 4 big rock (rare bright blobs with a shadow).

    ``aliens`` extra images of the reference set's trap: varied "alien" pictures that all
    share ONE identical mask (``is_outlier`` marks them).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fields = _upsample(rng.normal(size=(n * 4, 5, 9)).astype(np.float32), h, w).reshape(n, 4, h, w)
    masks = (1 + np.argmax(fields[:, :3], axis=1)).astype(np.uint8)
    masks[fields[:, 3] < -0.9] = 0  # shadowed / no-data areas
    images = np.empty((n + aliens, h, w), np.float32)
    for i in range(n):
        for _ in range(int(rng.integers(0, 3))):
            cy, cx = rng.uniform(4, h - 4), rng.uniform(4, w - 4)
            ry, rx = rng.uniform(2, 6), rng.uniform(3, 9)
            masks[i][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 4
        images[i] = _terrain_image(rng, masks[i], yy, xx)
    is_outlier = np.zeros(n + aliens, bool)
    if aliens:
        alien_mask = np.zeros((h, w), np.uint8)
        alien_mask[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 4
        alien_mask[:, : w // 6] = 1
        masks = np.concatenate([masks, np.broadcast_to(alien_mask, (aliens, h, w))])
        for i in range(n, n + aliens):
            face = (((yy - h / 2) / rng.uniform(14, 22)) ** 2
                    + ((xx - w / 2) / rng.uniform(10, 16)) ** 2)
            eyes = np.minimum(np.hypot(yy - h / 2 + 5, xx - w / 2 - 6),
                              np.hypot(yy - h / 2 + 5, xx - w / 2 + 6))
            images[i] = np.clip(rng.uniform(20, 60) + 180 * (face < 1) - 150 * (eyes < 3)
                                + rng.normal(0, 10, (h, w)), 0, 255)
        is_outlier[n:] = True
    idx = rng.permutation(len(images)) if shuffle else np.arange(len(images))
    return {"images": images[idx], "masks": np.ascontiguousarray(masks[idx]),
            "is_outlier": is_outlier[idx]}


def _terrain_image(rng: np.random.Generator, mask: np.ndarray, yy: np.ndarray,
                   xx: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    light = rng.uniform(0.8, 1.2) + rng.uniform(-0.15, 0.15) * (xx / w - 0.5)
    grain = rng.normal(0, 1, (h, w)).astype(np.float32)
    smooth = _upsample(rng.normal(size=(1, h // 4, w // 4)).astype(np.float32), h, w)[0]
    ang = rng.uniform(0, np.pi)
    ripples = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * rng.uniform(0.7, 1.1))
    cracks = (np.abs(np.sin(xx * 0.21 + yy * 0.13 + 3 * smooth)) < 0.06).astype(np.float32)
    base = rng.normal([45, 115, 135, 125, 165], 8)
    img = np.choose(mask, [
        base[0] + 6 * smooth + 4 * grain,
        base[1] + 22 * grain + 8 * smooth,
        base[2] + 10 * smooth + 3 * grain - 45 * cracks,
        base[3] + 18 * ripples + 4 * grain,
        base[4] + 8 * smooth + 5 * grain,
    ])
    rock = (mask == 4).astype(np.float32)
    shadow = np.clip(np.roll(rock, 3, axis=1) - rock, 0, 1)  # the side away from the sun
    img = img - 60 * shadow
    return np.clip(img * light + rng.normal(0, 4, (h, w)), 0, 255).astype(np.float32)


def plants(n: int = 400, *, seed: int = 0, duplicates: int = 0, n_joke_images: int = 2,
           shuffle: bool = True) -> dict[str, np.ndarray]:
    """Plant-like leaves, 96x96 RGB float32 on 0..255, ``labels`` strings 'healthy' /
    'unhealthy' (about 3:2, as the reference set): an unhealthy leaf is yellower and carries
    brown lesions, but healthy leaves vary in colour and may show a small spot or two.

    ``duplicates`` copies of a few "joke" images (the reference set's Shrek and Trololo)
    with random labels; ``is_duplicate`` marks them.
    """
    rng = np.random.default_rng(seed)
    sick = np.zeros(n, bool)
    sick[: int(round(n * 0.385))] = True
    images = np.empty((n + duplicates, SIZE, SIZE, 3), np.float32)
    for i in range(n):
        images[i] = _leaf(rng, bool(sick[i]))
    labels = np.array([PLANT_CLASSES[int(s)] for s in sick] +
                      [PLANT_CLASSES[int(v)] for v in rng.integers(0, 2, duplicates)])
    is_dup = np.zeros(n + duplicates, bool)
    if duplicates:
        jokes = [_joke_image(rng).astype(np.float32) for _ in range(max(1, n_joke_images))]
        images[n:] = np.stack(jokes)[rng.integers(0, len(jokes), duplicates)]
        is_dup[n:] = True
    idx = rng.permutation(len(labels)) if shuffle else np.arange(len(labels))
    return {"data": images[idx], "labels": labels[idx], "is_duplicate": is_dup[idx]}


def _leaf(rng: np.random.Generator, sick: bool) -> np.ndarray:
    soil = np.array([120, 95, 70], np.float32) + rng.normal(0, 15, 3)
    img = np.broadcast_to(soil, (SIZE, SIZE, 3)).astype(np.float32).copy()
    img += rng.normal(0, 10, (SIZE, SIZE, 1))
    cy, cx = SIZE / 2 + rng.normal(0, 5, 2)
    ang = rng.uniform(0, np.pi)
    leaf = _ellipse(cy, cx, rng.uniform(18, 26), rng.uniform(34, 44), ang)
    green = np.array([60, 140, 50], np.float32) + rng.normal(0, 14, 3)
    if sick:
        green += np.array([45, 10, -5]) * rng.uniform(0.2, 1.0)  # chlorosis: yellower
    _paint(img, leaf, green)
    vein = _ellipse(cy, cx, 1.2, rng.uniform(30, 40), ang) * leaf
    _paint(img, vein * 0.6, green * 1.3)
    n_spots = int(rng.integers(3, 12)) if sick else int(rng.integers(0, 3))
    for _ in range(n_spots):
        r = rng.uniform(2.5, 7) if sick else rng.uniform(1.5, 3)
        sy, sx = cy + rng.normal(0, 10), cx + rng.normal(0, 16)
        _paint(img, _disc(sy, sx, r) * leaf, np.array([110, 70, 30]) + rng.normal(0, 15, 3))
    img *= rng.uniform(0.75, 1.2)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255)


def _series_signal(rng: np.random.Generator, category: int, length: int) -> np.ndarray:
    """One series of a category: its own periods and shape, random phase, trend, noise."""
    periods = [(12, 6), (7, 3.5), (24, 8), (5, 10), (30, 15), (9, 18)][category]
    t = np.arange(length, dtype=np.float64)
    phase = rng.uniform(0, 2 * np.pi, 2)
    amp = rng.uniform(0.6, 1.4, 2)
    s = amp[0] * np.sin(2 * np.pi * t / periods[0] + phase[0])
    s += 0.5 * amp[1] * np.sin(2 * np.pi * t / periods[1] + phase[1])
    if category == 3:  # sharp peaks
        s = np.sign(s) * np.abs(s) ** 3
    s += rng.uniform(-1, 1) * t / length * 2  # trend
    noise = np.zeros(length)
    e = rng.normal(0, rng.uniform(0.05, 0.2), length)
    for i in range(1, length):  # AR(1) noise
        noise[i] = 0.6 * noise[i - 1] + e[i]
    return s + noise


def forecasting(n_series: int = 120, *, seed: int = 0, windows: int = 4, history: int = 200,
                horizon: int = 18) -> dict[str, np.ndarray]:
    """Seasonal series of six categories A-F (each its own periods and shape, with random
    phase, amplitude, trend and AR noise), min-max scaled to [0, 1] per series, cut into
    ``windows`` windows per series: ``X`` (n, history) float32, ``y`` (n, horizon) the
    values that follow, ``categories`` (n,) letters, ``series`` (n,) the series' id (keep
    a series on one side of a split)."""
    rng = np.random.default_rng(seed)
    X, Y, cats, ids = [], [], [], []
    for sid in range(n_series):
        c = int(rng.integers(0, len(CATEGORIES)))
        length = int(rng.integers(history + horizon + windows * 10, 3 * (history + horizon)))
        s = _series_signal(rng, c, length)
        s = (s - s.min()) / max(s.max() - s.min(), 1e-9)
        for start in rng.choice(length - history - horizon + 1, windows, replace=False):
            X.append(s[start:start + history])
            Y.append(s[start + history:start + history + horizon])
            cats.append(CATEGORIES[c])
            ids.append(sid)
    return {"X": np.asarray(X, np.float32), "y": np.asarray(Y, np.float32),
            "categories": np.asarray(cats), "series": np.asarray(ids, np.int64)}


def multivariate(n: int = 600, *, seed: int = 0, steps: int = 36, features: int = 6,
                 n_classes: int = 12, class_weights: list[float] | None = None,
                 shuffle: bool = True) -> dict[str, np.ndarray]:
    """Multivariate series for classification: ``X`` (n, steps, features) float32,
    ``labels`` (n,) int. A class is a frequency (class % 4) and a pattern (class // 4) of
    which features carry it and with which phase lags; every sample has its own phase,
    amplitude, per-feature scale and offset (the data are not normalised) and noise."""
    rng = np.random.default_rng(seed)
    p = np.asarray(class_weights if class_weights is not None else np.ones(n_classes), float)
    labels = rng.choice(n_classes, n, p=p / p.sum())
    t = np.arange(steps, dtype=np.float32)[:, None]
    freqs = np.array([1.5, 2.5, 3.5, 5.0]) / steps * 2 * np.pi
    n_patterns = max(1, -(-n_classes // 4))
    pattern_rng = np.random.default_rng(1234)  # the patterns are the task, not the sample
    carriers = pattern_rng.random((n_patterns, features)) < 0.6
    carriers[np.arange(n_patterns), np.arange(n_patterns) % features] = True
    lags = pattern_rng.uniform(0, np.pi, (n_patterns, features))
    scale = rng.uniform(0.5, 20, features)
    X = np.empty((n, steps, features), np.float32)
    for i, c in enumerate(labels):
        f, pat = freqs[c % 4] * rng.uniform(0.85, 1.15), c // 4
        sig = np.sin(f * t + rng.uniform(0, 2 * np.pi) + lags[pat]) * carriers[pat]
        X[i] = (sig * rng.uniform(0.5, 1.5) + rng.normal(0, 0.9, (steps, features))) * scale \
            + rng.normal(0, 2, features)
    idx = rng.permutation(n) if shuffle else np.arange(n)
    return {"X": X[idx], "labels": labels[idx].astype(np.int64)}


def for_profile(prof: Profile, n: int, *, seed: int = 0, **kwargs) -> dict[str, np.ndarray]:
    """A synthetic set shaped as ``prof`` says, under the profile's own keys (plus the
    generator's markers: ``series``, ``is_duplicate``, ``is_outlier``)."""
    return prof.kind_spec.synthetic(prof, n, seed=seed, **kwargs)


def images_for_profile(prof: Profile, n: int, *, seed: int = 0, **kwargs) -> dict[str, np.ndarray]:
    """An image classification set (the plants' or the blood cells' look)."""
    if prof.class_names == PLANT_CLASSES:
        d = plants(n, seed=seed, **kwargs)
        return {prof.images_key: d["data"], prof.labels_key: d["labels"],
                "is_duplicate": d["is_duplicate"]}
    d = generate(n, seed=seed, n_classes=prof.n_classes, **kwargs)
    return {prof.images_key: d["images"], prof.labels_key: d["labels"],
            "is_duplicate": d["is_duplicate"]}
