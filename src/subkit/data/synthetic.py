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

import numpy as np

# per-class share of the reference training set (FACTS.md section 1)
REFERENCE_COUNTS = np.array([1052, 2381, 1285, 2226, 1049, 1393, 2530, 1843])
REFERENCE_CLASSES = ["Basophil", "Eosinophil", "Erythroblast", "Immature granulocytes",
                     "Lymphocyte", "Monocyte", "Neutrophil", "Platelet"]

SIZE = 96
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

# class -> (cell radius range, cytoplasm rgb, nucleus rgb, nucleus kind, nucleus scale range,
#           granules rgb or None)
_CLASSES = [
    ((22, 28), (185, 160, 200), (70, 30, 110), "blob", (0.70, 0.90), (60, 20, 90)),        # basophil
    ((24, 30), (230, 170, 150), (110, 50, 130), "bilobed", (0.40, 0.55), (225, 110, 70)),  # eosinophil
    ((17, 22), (175, 165, 205), (45, 20, 75), "round", (0.45, 0.60), None),                 # erythroblast
    ((25, 32), (200, 170, 200), (125, 70, 160), "kidney", (0.55, 0.72), (170, 120, 170)),   # immature gran.
    ((16, 21), (160, 175, 220), (70, 40, 120), "round", (0.68, 0.85), None),                # lymphocyte
    ((27, 33), (175, 170, 200), (120, 80, 150), "kidney", (0.50, 0.65), None),              # monocyte
    ((23, 29), (215, 185, 205), (100, 45, 130), "multilobed", (0.45, 0.60), (200, 160, 190)),  # neutrophil
    ((0, 0), (0, 0, 0), (120, 70, 160), "fragments", (0.0, 0.0), None),                     # platelet
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
    jitter = lambda c, s=18: np.clip(np.asarray(c, np.float32) + rng.normal(0, s, 3), 0, 255)
    if kind == "fragments":
        for _ in range(rng.integers(2, 7)):
            fy, fx = cy + rng.normal(0, 10), cx + rng.normal(0, 10)
            _paint(img, _ellipse(fy, fx, rng.uniform(2, 5), rng.uniform(2, 6), rng.uniform(0, np.pi)),
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
                    mask = np.maximum(mask, _disc(cy + np.sin(a) * s * 0.5, cx + np.cos(a) * s * 0.5, s * 0.6))
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
            bite = _disc(cy + np.sin(ang + np.pi / 2) * s * 0.9, cx + np.cos(ang + np.pi / 2) * s * 0.9, s * 0.6)
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
            gmask = np.clip(gmask + 0.5 * (np.roll(gmask, 1, 0) + np.roll(gmask, 1, 1)), 0, 1) * cell
            _paint(img, gmask * 0.85, jitter(gran, 12))
    # acquisition: colour cast, brightness, a little blur, sensor noise
    img *= rng.uniform(0.85, 1.12, 3).astype(np.float32)
    img += rng.normal(0, 6)
    if rng.random() < 0.5:
        img = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 0) + np.roll(img, -1, 1)) / 5
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
