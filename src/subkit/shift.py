"""The distribution-shift suite: the local test images under seeded, reproducible shifts.

The hidden test set of the reference competition was shifted from the training data
(FACTS.md section 1): teams with 0.92-0.98 local validation accuracy scored 0.20-0.76 on the
leaderboard. What moved their scores most were random compositions of many augmentation
ops (RandAugment), occlusion (Cutout, GridMask), colour changes, shear and AugMix. This
module applies such shifts to the local test images, in plain numpy (no TensorFlow in
subkit's process; deterministic across library versions), vectorized over batches of
256 images, each seeded by ``np.random.default_rng((seed, crc32(name), batch))``: the three
severities of a shift share their random draws and differ only in strength.

Every shift has 3 severities. Images are converted to floats in [0, 1] (from the profile's
input range), transformed, and converted back to the profile's dtype and range (uint8
0..255 for the reference). Random parameters are drawn per image; "±U(a, b)" means a
magnitude drawn uniformly from [a, b] with a random sign. Geometric ops sample bilinearly
and fill outside the image by mirror reflection (Keras' ``fill_mode="reflect"``).

=================== ============================================ =========== =========== ===========
shift               what it does                                 severity 1  severity 2  severity 3
=================== ============================================ =========== =========== ===========
colour_cast         per-channel gain 1±U(0, g), offset ±U(0, o)  g .10       g .20       g .35
                    of the range (Keras' channel shift)          o .03       o .06       o .10
hue_shift           hue rotation in YIQ space by ±U(θ/2, θ)      θ 10°       θ 25°       θ 45°
saturation          blend with grey: factor exp(±U(a/2, a))      a ln 1.5    a ln 2.2    a ln 4
                    (desaturated or oversaturated)
brightness_contrast brightness ±U(b/2, b) of the range, then     b .08       b .16       b .25
                    contrast factor exp(±U(c/2, c)) about the    c ln 1.3    c ln 1.7    c ln 2.3
                    image mean
blur                separable Gaussian blur, σ in pixels         σ 0.8       σ 1.4       σ 2.2
noise               additive Gaussian noise, σ of the range      σ .03       σ .06       σ .10
jpeg                JPEG-like: YCbCr, 4:2:0 chroma, 8x8 block    q 40        q 20        q 8
                    DCT quantised with the IJG tables at quality
                    q
stain_jitter        stain colour jitter in HED optical density   α .05       α .12       α .25
                    (Ruifrok-Johnston): stain s*(1+U(-α, α))     β .02       β .05       β .10
                    + U(-β, β)
rotate_flip         random flips (p .5 each axis), rotation by   θ 15°       θ 45°       θ 180°
                    U(-θ, θ)
zoom_crop           zoom by a factor in [lo, hi] (in: a random   .90-1.15    .80-1.35    .70-1.60
                    crop; out: reflected border), random centre
shear               shear along x and y, factors U(-s, s)        s .10       s .20       s .35
occlusion           half of the images: Cutout (k squares of     k 1, a .25  k 2, a .30  k 3, a .35
                    side a); the other half: GridMask (period    r .40       r .55       r .70
                    U(.25, .5) of the side, square of side r per
                    period); fill black or the image's mean
augmix              AugMix: 3 chains of 1-3 random ops           m .3        m .6        m 1.0
                    (autocontrast, equalize, posterize, rotate,
                    solarize, shear, translate) at magnitude m,
                    mixed with Dirichlet(1) weights, then with
                    the original at Beta(1, 1)
randaugment         RandAugment: n ops per image drawn from 15   n 2, m .3   n 3, m .5   n 4, m .7
                    (identity, autocontrast, equalize, rotate,
                    solarize, colour, posterize, contrast,
                    brightness, sharpness, shear x/y,
                    translate x/y, cutout) at magnitude m
=================== ============================================ =========== =========== ===========

Op magnitudes in augmix/randaugment at m = 1: rotate 30°, shear 0.3, translate 0.3 of the
side, solarize threshold 0.25, posterize to 4 bits, colour/contrast/brightness/sharpness
factor 1±0.9, cutout side 0.4.

Suites: ``default`` (all shifts, severities 1-3), ``quick`` (randaugment, augmix, occlusion,
colour_cast, blur, jpeg at severity 2), or a comma list of ``name`` / ``name:severity``
(``"blur:3,noise"``).

The shifted score is the mean of the metric over every (shift, severity) of the suite. It
is an estimate of performance on *a* shifted test set of this kind, not a prediction of the
leaderboard: the hidden shift is unknown (docs/shift-and-report.md).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

BATCH = 256  # images per generated batch; part of the seeding: do not change lightly
SAMPLES = 3  # images per shift/severity kept for the report
Array = np.ndarray


# -- helpers ------------------------------------------------------------------------------
def _signed(rng, n, lo, hi):
    """Magnitudes U(lo, hi) with a random sign, shape (n,)."""
    return rng.uniform(lo, hi, n) * rng.choice(np.array([-1.0, 1.0]), n)


def _b(v):
    """A per-image vector (n,) as (n, 1, 1, 1) for broadcasting over images."""
    return np.asarray(v, np.float32).reshape(-1, 1, 1, 1)


def _luma(x):
    if x.shape[-1] != 3:
        return x
    return x[..., :1] * 0.299 + x[..., 1:2] * 0.587 + x[..., 2:3] * 0.114


def _mirror(s: Array, n: int) -> Array:
    """Source coordinates (float32, in place) mirrored into [0, n-1] about the image's edges
    (d c b a | a b c d | d c b a, like Keras' ``fill_mode="reflect"``)."""
    s += np.float32(0.5)
    np.mod(s, np.float32(2 * n), out=s)
    np.subtract(np.float32(2 * n), s, out=s, where=s >= n)
    s -= np.float32(0.5)
    return np.clip(s, 0, n - 1, out=s)


def warp(x: Array, A: Array, t: Array | None = None) -> Array:
    """Affine warp of a batch (n, h, w, c), bilinear, mirror fill.

    ``A`` (n, 2, 2) and ``t`` (n, 2) map an output pixel (column, row) relative to the
    image centre to the source position relative to the centre: src = A @ dst + t.
    """
    n, h, w, c = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    v = (np.arange(h, dtype=np.float32) - np.float32(cy))[None, :, None]
    u = (np.arange(w, dtype=np.float32) - np.float32(cx))[None, None, :]
    A = np.asarray(A, np.float32).reshape(n, 2, 2, 1, 1)
    t = np.zeros((n, 2), np.float32) if t is None else np.asarray(t, np.float32)
    sx = A[:, 0, 0] * u + A[:, 0, 1] * v + (t[:, 0, None, None] + np.float32(cx))
    sy = A[:, 1, 0] * u + A[:, 1, 1] * v + (t[:, 1, None, None] + np.float32(cy))
    _mirror(sx, w)
    _mirror(sy, h)
    x0, y0 = np.floor(sx), np.floor(sy)
    wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(np.int32), y0.astype(np.int32)
    dx = (x0 < w - 1).astype(np.int32)
    dy = (y0 < h - 1).astype(np.int32) * w
    i = y0 * w + x0
    i += (np.arange(n, dtype=np.int32) * (h * w))[:, None, None]
    flat = np.ascontiguousarray(x, np.float32).reshape(n * h * w, c)
    top = np.take(flat, i, axis=0)
    top += (np.take(flat, i + dx, axis=0) - top) * wx
    i += dy
    bot = np.take(flat, i, axis=0)
    bot += (np.take(flat, i + dx, axis=0) - bot) * wx
    top += (bot - top) * wy
    return top


def _rot(theta_deg):
    t = np.deg2rad(np.asarray(theta_deg, np.float64))
    c, s = np.cos(t), np.sin(t)
    return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)


def gaussian_blur(x: Array, sigma: float) -> Array:
    """Separable Gaussian blur of a batch (n, h, w, c), mirror border."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma * sigma)).astype(np.float32)
    k /= k.sum()
    n, h, w, c = x.shape
    p = np.pad(x, ((0, 0), (r, r), (0, 0), (0, 0)), mode="symmetric")
    y = sum(k[i] * p[:, i:i + h] for i in range(2 * r + 1))
    p = np.pad(y, ((0, 0), (0, 0), (r, r), (0, 0)), mode="symmetric")
    return sum(k[i] * p[:, :, i:i + w] for i in range(2 * r + 1)).astype(np.float32)


def _smooth3(x):
    """PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]]/13, the 'degenerate' of sharpness."""
    n, h, w, c = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    s = sum(p[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
    return (s + 4 * x) / 13.0


# -- primitive ops on floats in [0, 1]; per-image magnitudes -------------------------------
def autocontrast(x, rng=None, m=None):
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    span = hi - lo
    return np.where(span > 1e-6, (x - lo) / np.maximum(span, 1e-6), x)


def equalize(x, rng=None, m=None):
    n, h, w, c = x.shape
    q = np.clip(np.rint(x * 255), 0, 255).astype(np.int64)
    off = ((np.arange(n)[:, None] * c + np.arange(c)[None, :]) * 256)[:, None, None, :]
    idx = q + off
    hist = np.bincount(idx.ravel(), minlength=n * c * 256).reshape(n, c, 256)
    cdf = hist.cumsum(-1).astype(np.float32)
    cmin = np.take_along_axis(cdf, np.argmax(hist > 0, axis=-1)[..., None], -1)
    lut = (cdf - cmin) / np.maximum(cdf[..., -1:] - cmin, 1)
    lut = np.clip(lut, 0, 1).astype(np.float32)
    return lut.reshape(-1)[idx]


def posterize(x, rng, m):
    bits = np.clip(8 - np.rint(4 * np.abs(m)), 1, 8)
    step = _b(2.0 ** (8 - bits))
    return np.floor(np.clip(x, 0, 1) * 255 / step) * step / 255.0


def solarize(x, rng, m):
    th = _b(1.0 - 0.75 * np.abs(m))
    return np.where(x >= th, 1.0 - x, x)


def _blend(a, b, f):
    """a + f * (b - a): PIL ImageEnhance's blend(degenerate=a, image=b, factor=f)."""
    return a + _b(f) * (b - a)


def colour(x, rng, m):
    return _blend(np.broadcast_to(_luma(x), x.shape), x, 1 + 0.9 * m)


def contrast(x, rng, m):
    mean = _luma(x).mean(axis=(1, 2, 3), keepdims=True)
    return _blend(np.broadcast_to(mean, x.shape), x, 1 + 0.9 * m)


def brightness(x, rng, m):
    return x * _b(1 + 0.9 * m)


def sharpness(x, rng, m):
    return _blend(_smooth3(x), x, 1 + 0.9 * m)


def rotate(x, rng, m):
    return warp(x, _rot(30.0 * m))


def _shear(x, sx, sy):
    n = len(x)
    A = np.zeros((n, 2, 2), np.float32)
    A[:, 0, 0] = A[:, 1, 1] = 1
    A[:, 0, 1], A[:, 1, 0] = sx, sy
    return warp(x, A)


def shear_x(x, rng, m):
    return _shear(x, 0.3 * m, np.zeros(len(x)))


def shear_y(x, rng, m):
    return _shear(x, np.zeros(len(x)), 0.3 * m)


def _translate(x, tx, ty):
    n = len(x)
    A = np.broadcast_to(np.eye(2, dtype=np.float32), (n, 2, 2))
    return warp(x, A, np.stack([-np.asarray(tx), -np.asarray(ty)], -1))


def translate_x(x, rng, m):
    return _translate(x, 0.3 * m * x.shape[2], np.zeros(len(x)))


def translate_y(x, rng, m):
    return _translate(x, np.zeros(len(x)), 0.3 * m * x.shape[1])


def _squares(x, rng, k, side, fill):
    """Fill k squares of side ``side`` (fraction of the shorter side) at random centres."""
    n, h, w, _ = x.shape
    s = max(1, int(round(side * min(h, w))))
    yy, xx = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    mask = np.zeros((n, h, w), bool)
    for _ in range(k):
        cy, cx = rng.integers(0, h, n)[:, None, None], rng.integers(0, w, n)[:, None, None]
        mask |= (np.abs(yy - cy) * 2 < s) & (np.abs(xx - cx) * 2 < s)
    return np.where(mask[..., None], fill, x)


def cutout(x, rng, m):
    return _squares(x, rng, 1, 0.4 * float(np.mean(np.abs(m))), np.float32(0.5))


def identity(x, rng=None, m=None):
    return x


AUGMIX_OPS = [autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y,
              translate_x, translate_y]
RANDAUGMENT_OPS = [identity, autocontrast, equalize, rotate, solarize, colour, posterize,
                   contrast, brightness, sharpness, shear_x, shear_y, translate_x, translate_y,
                   cutout]


def _apply_random_ops(x, rng, ops, choice, mag):
    """Apply ops[choice[i]] to image i with signed magnitude mag[i], grouped by op."""
    out = x.copy()
    for k, op in enumerate(ops):
        idx = np.flatnonzero(choice == k)
        if idx.size:
            out[idx] = np.clip(op(x[idx], rng, mag[idx]), 0, 1)
    return out


# -- the shifts ----------------------------------------------------------------------------
def _colour_cast(x, rng, g, o):
    n, c = len(x), x.shape[-1]
    gain = 1 + rng.uniform(-g, g, (n, 1, 1, c))
    off = rng.uniform(-o, o, (n, 1, 1, c))
    return x * gain.astype(np.float32) + off.astype(np.float32)


_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue_shift(x, rng, theta):
    t = np.deg2rad(_signed(rng, len(x), theta / 2, theta))
    c, s = np.cos(t), np.sin(t)
    R = np.zeros((len(x), 3, 3))
    R[:, 0, 0] = 1
    R[:, 1, 1], R[:, 1, 2], R[:, 2, 1], R[:, 2, 2] = c, -s, s, c
    M = (np.linalg.inv(_YIQ) @ R @ _YIQ).astype(np.float32)  # (n, 3, 3)
    return np.einsum("nhwc,ndc->nhwd", x, M)


def _saturation(x, rng, a):
    f = np.exp(_signed(rng, len(x), a / 2, a))
    return _blend(np.broadcast_to(_luma(x), x.shape), x, f)


def _brightness_contrast(x, rng, b, c):
    n = len(x)
    x = x + _b(_signed(rng, n, b / 2, b))
    mean = _luma(x).mean(axis=(1, 2, 3), keepdims=True)
    return mean + _b(np.exp(_signed(rng, n, c / 2, c))) * (x - mean)


def _blur(x, rng, sigma):
    return gaussian_blur(x, sigma)


def _noise(x, rng, sigma):
    return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)


# JPEG: the IJG (libjpeg) base quantisation tables, scaled by quality.
_Q_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    np.float32).reshape(8, 8)
_Q_CHROMA = np.full((8, 8), 99, np.float32)
_Q_CHROMA[:4, :4] = np.array([17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 99, 47, 66, 99, 99],
                             np.float32).reshape(4, 4)
_D8 = np.array([[(math.sqrt(1 / 8) if k == 0 else math.sqrt(2 / 8))
                 * math.cos((2 * i + 1) * k * math.pi / 16)
                 for i in range(8)] for k in range(8)], np.float32)  # orthonormal DCT-II


def _qtable(base, quality):
    q = max(1, min(100, int(quality)))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return np.clip(np.floor((base * scale + 50) / 100), 1, 255).astype(np.float32)


_K64 = np.kron(_D8, _D8)  # the 2-D 8x8 DCT as one 64x64 matrix on row-major blocks


def _dct_quantise(p, Q):
    """p (n, H, W) with H, W multiples of 8, values centred on 0 (0..255 scale)."""
    n, H, W = p.shape
    b = np.ascontiguousarray(p.reshape(n, H // 8, 8, W // 8, 8).transpose(0, 1, 3, 2, 4))
    q = Q.reshape(64)
    coef = b.reshape(-1, 64) @ _K64.T
    coef = np.rint(coef / q) * q
    b = (coef @ _K64).reshape(n, H // 8, W // 8, 8, 8)
    return b.transpose(0, 1, 3, 2, 4).reshape(n, H, W)


def _jpeg(x, rng, quality):
    n, h, w, c = x.shape
    H, W = -(-h // 16) * 16, -(-w // 16) * 16
    p = np.pad(x * 255.0, ((0, 0), (0, H - h), (0, W - w), (0, 0)), mode="edge")
    if c != 3:
        y = _dct_quantise(p[..., 0] - 128, _qtable(_Q_LUMA, quality)) + 128
        return (np.repeat(y[..., None], c, -1)[:, :h, :w] / 255.0).astype(np.float32)
    r, g, bl = p[..., 0], p[..., 1], p[..., 2]
    Y = 0.299 * r + 0.587 * g + 0.114 * bl
    Cb = -0.168736 * r - 0.331264 * g + 0.5 * bl
    Cr = 0.5 * r - 0.418688 * g - 0.081312 * bl
    Y = _dct_quantise(Y - 128, _qtable(_Q_LUMA, quality)) + 128
    qc = _qtable(_Q_CHROMA, quality)
    chroma = []
    for C in (Cb, Cr):  # 4:2:0: average 2x2, code at half size, upsample by repetition
        small = C.reshape(n, H // 2, 2, W // 2, 2).mean(axis=(2, 4))
        Hs, Ws = small.shape[1:]
        Hp, Wp = -(-Hs // 8) * 8, -(-Ws // 8) * 8
        small = np.pad(small, ((0, 0), (0, Hp - Hs), (0, Wp - Ws)), mode="edge")
        small = _dct_quantise(small, qc)[:, :Hs, :Ws]
        chroma.append(small.repeat(2, 1).repeat(2, 2))
    Cb, Cr = chroma
    out = np.stack([Y + 1.402 * Cr, Y - 0.344136 * Cb - 0.714136 * Cr, Y + 1.772 * Cb], -1)
    return (out[:, :h, :w] / 255.0).astype(np.float32)


_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)


def _stain_jitter(x, rng, alpha, beta):
    n = len(x)
    od = -np.log(np.clip(x, 1 / 255.0, 1.0))  # optical density per channel
    hed = od @ _HED_FROM_RGB.astype(np.float32)
    a = 1 + rng.uniform(-alpha, alpha, (n, 1, 1, 3)).astype(np.float32)
    b = rng.uniform(-beta, beta, (n, 1, 1, 3)).astype(np.float32)
    od = (hed * a + b) @ _RGB_FROM_HED.astype(np.float32)
    return np.exp(-np.maximum(od, 0))


def _rotate_flip(x, rng, theta):
    n = len(x)
    lr, ud = rng.random(n) < 0.5, rng.random(n) < 0.5
    x = x.copy()
    x[lr] = x[lr, :, ::-1]
    x[ud] = x[ud, ::-1]
    if x.shape[1] != x.shape[2]:
        theta = min(theta, 45.0)
    return warp(x, _rot(rng.uniform(-theta, theta, n)))


def _zoom_crop(x, rng, lo, hi):
    n, h, w, _ = x.shape
    z = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    A = np.zeros((n, 2, 2))
    A[:, 0, 0] = A[:, 1, 1] = 1 / z
    # zooming in leaves (1 - 1/z) of the image outside the crop: move the crop within it
    room = np.maximum(0, 1 - 1 / z) / 2
    t = np.stack([rng.uniform(-1, 1, n) * room * w, rng.uniform(-1, 1, n) * room * h], -1)
    return warp(x, A, t)


def _shear_shift(x, rng, s):
    n = len(x)
    return _shear(x, rng.uniform(-s, s, n), rng.uniform(-s, s, n))


def _occlusion(x, rng, k, side, ratio):
    n, h, w, c = x.shape
    black = rng.random(n) < 0.5
    fill = np.where(_b(black), np.float32(0.0), x.mean(axis=(1, 2), keepdims=True))
    use_grid = rng.random(n) < 0.5
    cut = _squares(x, rng, k, side, fill)
    # GridMask: in each period d (per image), a square of side r*d is masked, random offset
    d = rng.uniform(0.25, 0.5, n) * min(h, w)
    side = ratio * d
    oy, ox = rng.uniform(0, 1, n) * d, rng.uniform(0, 1, n) * d
    yy, xx = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    my = np.mod(yy + oy[:, None, None], d[:, None, None]) < side[:, None, None]
    mx = np.mod(xx + ox[:, None, None], d[:, None, None]) < side[:, None, None]
    grid = np.where((my & mx)[..., None], fill, x)
    return np.where(_b(use_grid), grid, cut)


def _augmix(x, rng, m, width=3, max_depth=3):
    n = len(x)
    ws = rng.dirichlet([1.0] * width, n).astype(np.float32)  # (n, width)
    mix = rng.beta(1.0, 1.0, n).astype(np.float32)
    acc = np.zeros_like(x)
    for j in range(width):
        depth = rng.integers(1, max_depth + 1, n)
        xa = x
        for step in range(max_depth):
            choice = rng.integers(0, len(AUGMIX_OPS), n)
            choice[depth <= step] = -1  # chain already finished for these images
            xa = _apply_random_ops(xa, rng, AUGMIX_OPS, choice, _signed(rng, n, m / 2, m))
        acc += _b(ws[:, j]) * xa
    return (1 - _b(mix)) * x + _b(mix) * acc


def _randaugment(x, rng, n_ops, m):
    n = len(x)
    for _ in range(n_ops):
        choice = rng.integers(0, len(RANDAUGMENT_OPS), n)
        x = _apply_random_ops(x, rng, RANDAUGMENT_OPS, choice, _signed(rng, n, m, m))
    return x


@dataclass(frozen=True)
class Shift:
    name: str
    title: str
    fn: Callable
    severities: tuple  # 3 dicts of keyword parameters
    rgb_only: bool = False

    def params(self, severity: int) -> dict:
        return dict(self.severities[severity - 1])


_D = math.log
SHIFTS: dict[str, Shift] = {s.name: s for s in [
    Shift("colour_cast", "colour cast", _colour_cast,
          ({"g": .10, "o": .03}, {"g": .20, "o": .06}, {"g": .35, "o": .10})),
    Shift("hue_shift", "hue shift", _hue_shift,
          ({"theta": 10.0}, {"theta": 25.0}, {"theta": 45.0}), rgb_only=True),
    Shift("saturation", "saturation", _saturation,
          ({"a": _D(1.5)}, {"a": _D(2.2)}, {"a": _D(4.0)}), rgb_only=True),
    Shift("brightness_contrast", "brightness and contrast", _brightness_contrast,
          ({"b": .08, "c": _D(1.3)}, {"b": .16, "c": _D(1.7)}, {"b": .25, "c": _D(2.3)})),
    Shift("blur", "Gaussian blur", _blur, ({"sigma": 0.8}, {"sigma": 1.4}, {"sigma": 2.2})),
    Shift("noise", "Gaussian noise", _noise, ({"sigma": .03}, {"sigma": .06}, {"sigma": .10})),
    Shift("jpeg", "JPEG-like compression", _jpeg,
          ({"quality": 40}, {"quality": 20}, {"quality": 8})),
    Shift("stain_jitter", "stain colour jitter (HED)", _stain_jitter,
          ({"alpha": .05, "beta": .02}, {"alpha": .12, "beta": .05}, {"alpha": .25, "beta": .10}),
          rgb_only=True),
    Shift("rotate_flip", "rotation and flips", _rotate_flip,
          ({"theta": 15.0}, {"theta": 45.0}, {"theta": 180.0})),
    Shift("zoom_crop", "zoom and crop", _zoom_crop,
          ({"lo": .90, "hi": 1.15}, {"lo": .80, "hi": 1.35}, {"lo": .70, "hi": 1.60})),
    Shift("shear", "shear", _shear_shift, ({"s": .10}, {"s": .20}, {"s": .35})),
    Shift("occlusion", "occlusion (Cutout, GridMask)", _occlusion,
          ({"k": 1, "side": .25, "ratio": .40}, {"k": 2, "side": .30, "ratio": .55},
           {"k": 3, "side": .35, "ratio": .70})),
    Shift("augmix", "AugMix", _augmix, ({"m": .3}, {"m": .6}, {"m": 1.0})),
    Shift("randaugment", "RandAugment composition", _randaugment,
          ({"n_ops": 2, "m": .3}, {"n_ops": 3, "m": .5}, {"n_ops": 4, "m": .7})),
]}

SUITES: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "default": [(name, (1, 2, 3)) for name in SHIFTS],
    "quick": [(name, (2,)) for name in
              ("randaugment", "augmix", "occlusion", "colour_cast", "blur", "jpeg")],
}


class SuiteError(ValueError):
    pass


def parse_suite(spec: str | None) -> list[tuple[str, int]]:
    """(shift name, severity) pairs of a suite name or a ``name[:severity],...`` list."""
    spec = (spec or "default").strip()
    if spec in SUITES:
        return [(n, s) for n, sevs in SUITES[spec] for s in sevs]
    out: list[tuple[str, int]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, sev = part.partition(":")
        if name not in SHIFTS:
            raise SuiteError(f"unknown shift or suite {name!r}; suites: {', '.join(SUITES)}; "
                             f"shifts: {', '.join(SHIFTS)}")
        if sev:
            if sev not in ("1", "2", "3"):
                raise SuiteError(f"severity of {name} must be 1, 2 or 3, not {sev!r}")
            out.append((name, int(sev)))
        else:
            out.extend((name, s) for s in (1, 2, 3))
    if not out:
        raise SuiteError("empty shift suite")
    return list(dict.fromkeys(out))


def key(name: str, severity: int) -> str:
    return f"{name}-{severity}"


def _rng(seed: int, name: str, severity: int, batch: int) -> np.random.Generator:
    # The severity is not part of the seed: the three severities of a shift draw the same
    # random numbers (the same ops, positions, signs) at growing strengths, so the drop
    # from one severity to the next is the strength's, not the luck of the draw.
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(batch)])


def apply(X: Array, name: str, severity: int, *, seed: int = 0,
          value_range: tuple[float, float] = (0, 255), out: Array | None = None) -> Array:
    """``X`` under shift ``name`` at ``severity``, same dtype and range; batch by batch.

    ``out`` (an array or a ``np.lib.format.open_memmap``) receives the result in place.
    """
    shift = SHIFTS[name]
    if severity not in (1, 2, 3):
        raise SuiteError(f"severity must be 1, 2 or 3, not {severity}")
    if shift.rgb_only and X.shape[-1] != 3:
        raise SuiteError(f"{name} needs RGB images")
    lo, hi = float(value_range[0]), float(value_range[1])
    out = np.empty_like(X) if out is None else out
    params = shift.params(severity)
    integer = np.dtype(X.dtype).kind in "ui"
    scale = np.float32(1.0 / (hi - lo))
    for bi, start in enumerate(range(0, len(X), BATCH)):
        xb = np.asarray(X[start:start + BATCH]).astype(np.float32)
        if lo:
            xb -= np.float32(lo)
        xb *= scale
        if xb.ndim == 3:
            xb = xb[..., None]
        yb = np.asarray(shift.fn(xb, _rng(seed, name, severity, bi), **params), np.float32)
        np.clip(yb, 0, 1, out=yb)
        yb *= np.float32(hi - lo)
        if lo:
            yb += np.float32(lo)
        if integer:
            np.rint(yb, out=yb)
        dst = out[start:start + BATCH]
        dst[...] = yb.reshape(dst.shape)
    return out


_SHOW = {  # the parameters in words, per severity (the docstring's table)
    "colour_cast": lambda g, o: f"gain ±{g:g}, offset ±{o:g}",
    "hue_shift": lambda theta: f"±{theta / 2:g}-{theta:g}°",
    "saturation": lambda a: f"×/÷ up to {math.exp(a):.2g}",
    "brightness_contrast": lambda b, c: f"brightness ±{b:g}, contrast ×/÷ up to {math.exp(c):.2g}",
    "blur": lambda sigma: f"σ {sigma:g} px",
    "noise": lambda sigma: f"σ {sigma:g}",
    "jpeg": lambda quality: f"quality {quality}",
    "stain_jitter": lambda alpha, beta: f"α {alpha:g}, β {beta:g}",
    "rotate_flip": lambda theta: f"flips, ±{theta:g}°",
    "zoom_crop": lambda lo, hi: f"×{lo:g}-{hi:g}",
    "shear": lambda s: f"±{s:g}",
    "occlusion": lambda k, side, ratio: f"{k} × {side:g} cutout / grid {ratio:g}",
    "augmix": lambda m: f"magnitude {m:g}",
    "randaugment": lambda n_ops, m: f"{n_ops} ops, magnitude {m:g}",
}


def describe(name: str) -> dict:
    s = SHIFTS[name]
    return {"name": name, "title": s.title,
            "params": [{k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}
                       for d in s.severities],
            "shown": [_SHOW[name](**d) for d in s.severities]}


# -- the plan: shifted copies on disk, for one child that predicts each once ----------------
@dataclass
class Plan:
    """The (shift, severity) sets of a suite and where their .npy files go.

    ``generate`` writes them one by one (each to a temporary name, then renamed), so a
    child started at the same time can predict the first while the next are written.
    """

    suite: str
    seed: int
    entries: list[dict]  # {key, name, severity, path}
    folder: Path
    value_range: tuple[float, float]
    skipped: list[str] = field(default_factory=list)
    samples: dict = field(default_factory=dict)  # key -> (k, H, W, C) images for the report
    generate_s: float = 0.0
    generated: bool = False
    error: str | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def child_args(self) -> list[str]:
        args: list[str] = []
        for e in self.entries:
            args += ["--extra-input", f"{e['key']}={e['path']}"]
        return args

    def generate(self, X: Array, stop: threading.Event | None = None,
                 sample_index: Array | None = None) -> None:
        if self.generated:
            return
        if sample_index is None:
            sample_index = np.arange(min(SAMPLES, len(X)))
        t0 = time.perf_counter()
        try:
            for i, e in enumerate(self.entries):
                if stop is not None and stop.is_set():
                    self._fail_from(i, "stopped: the child ended")
                    return
                path = Path(e["path"])
                part = path.with_name(path.name + ".part")
                mm = np.lib.format.open_memmap(part, mode="w+", dtype=X.dtype, shape=X.shape)
                apply(X, e["name"], e["severity"], seed=self.seed, value_range=self.value_range,
                      out=mm)
                self.samples[e["key"]] = np.array(mm[sample_index])
                mm.flush()
                del mm
                os.replace(part, path)
            self.generated = True
        except Exception as exc:  # a bug here must not leave the child waiting
            self.error = f"{type(exc).__name__}: {exc}"
            self._fail_from(i, self.error)
        finally:
            self.generate_s += time.perf_counter() - t0

    def _fail_from(self, i: int, why: str) -> None:
        for e in self.entries[i:]:
            if not Path(e["path"]).exists():
                Path(e["path"] + ".failed").write_text(why)

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def make_plan(X: Array, spec: str | None, seed: int, folder: Path, *,
              value_range: tuple[float, float] = (0, 255)) -> Plan:
    """The suite's sets for ``X`` (shifts that need RGB are skipped on other images)."""
    pairs = parse_suite(spec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries, skipped = [], []
    for name, sev in pairs:
        if SHIFTS[name].rgb_only and X.shape[-1] != 3:
            skipped.append(key(name, sev))
            continue
        entries.append({"key": key(name, sev), "name": name, "severity": sev,
                        "path": str((folder / f"{key(name, sev)}.npy").resolve())})
    return Plan(suite=spec or "default", seed=int(seed), entries=entries, folder=folder,
                value_range=(float(value_range[0]), float(value_range[1])), skipped=skipped)


def prepare(X: Array, spec: str | None, seed: int, folder: Path, *,
            value_range: tuple[float, float] = (0, 255)) -> Plan:
    """``make_plan`` and generate every set now."""
    plan = make_plan(X, spec, seed, folder, value_range=value_range)
    plan.generate(X)
    if plan.error:
        raise RuntimeError(f"generating the shifted sets failed: {plan.error}")
    return plan


def collect(plan: Plan, status: dict, output_dir: Path, y_true: Array, prof,
            clean_score: float | None) -> dict:
    """The shift dict of a run: metric per (shift, severity), mean, drop, timings."""
    from subkit.grader import scoring

    extra = status.get("extra", {}) or {}
    rows: dict[str, dict] = {}
    scores, failures = [], []
    predict_s = 0.0
    for e in plan.entries:
        info = extra.get(e["key"], {})
        row = rows.setdefault(e["name"], {**describe(e["name"]), "severity": [], "scores": [],
                                          "predict_s": []})
        value, err = None, None
        if not info:
            err = "not predicted (the child stopped before this shift)"
        elif not info.get("ok"):
            err = f"{info.get('error_type', 'error')}: {info.get('error', '')}"[:300]
        else:
            p = Path(output_dir) / f"predictions_{e['key']}.npy"
            try:
                labels, _ = scoring.validate_predictions(np.load(p, allow_pickle=False),
                                                         len(y_true), prof.n_classes)
                value = float(scoring.metrics(y_true, labels, prof.class_names)[prof.metric])
            except scoring.PredictionError as exc:
                err = exc.message
            except (OSError, ValueError) as exc:
                err = f"predictions unreadable: {exc}"
        row["severity"].append(e["severity"])
        row["scores"].append(value)
        row["predict_s"].append(info.get("predict_s"))
        predict_s += info.get("predict_s") or 0.0
        if value is not None:
            scores.append(value)
        if err:
            failures.append({"key": e["key"], "error": err})
    for row in rows.values():
        ok = [s for s in row["scores"] if s is not None]
        row["mean"] = float(np.mean(ok)) if ok else None
        row["drop"] = (clean_score - row["mean"]) if (ok and clean_score is not None) else None
    shifted = float(np.mean(scores)) if scores else None
    ranked = sorted((r for r in rows.values() if r["mean"] is not None), key=lambda r: r["mean"])
    return {
        "suite": plan.suite, "seed": plan.seed, "metric": prof.metric, "n": int(len(y_true)),
        "clean_score": clean_score, "shifted_score": shifted,
        "drop": (clean_score - shifted if shifted is not None and clean_score is not None
                 else None),
        "n_shifted_sets": len(plan.entries), "n_scored": len(scores),
        "shifts": list(rows.values()),
        "worst": [r["name"] for r in ranked[:3]],
        "skipped": plan.skipped, "failures": failures,
        "timings": {"generate_s": plan.generate_s, "predict_s": predict_s},
    }


# -- running a submission on the suite --------------------------------------------------------
def run_with_plan(submission_dir: Path, X: Array, prof, plan: Plan | None, *, run_dir: Path,
                  time_limit: float, python: str | None = None, isolate_network: bool = True,
                  progress: bool = False, extra_env: dict | None = None, proba: bool = False,
                  label: str = "running the submission", inputs: dict | None = None):
    """One child: ``Model()``, ``predict(X)`` (the grader's run, timed against the limit),
    then ``predict`` once on each shifted copy. Returns the ChildRun of the clean part.

    The child may run for ``time_limit`` per predicted set; the clean part alone must fit
    ``time_limit``, as on the grader.
    """
    from subkit.grader import run as grun

    args = plan.child_args() if plan else []
    if proba:
        args.append("--proba")
    n_sets = 1 + (len(plan) if plan else 0)
    stop = threading.Event()
    gen = None
    if plan is not None and not plan.generated:
        # write the shifted sets while the child imports, loads and predicts the clean set
        gen = threading.Thread(target=plan.generate, args=(X, stop), daemon=True,
                               name="subkit-shift-generate")
        gen.start()
    try:
        cr = grun.run_submission(submission_dir, X, prof, run_dir=run_dir,
                                 time_limit=time_limit * n_sets, python=python,
                                 isolate_network=isolate_network, progress=progress,
                                 extra_env=extra_env, label=label, extra_args=args,
                                 inputs=inputs)  # predict's other inputs (issue 16)
    finally:
        stop.set()
        if gen is not None:
            gen.join()
    st = cr.status
    main_ok = bool(st.get("ok"))
    pred_path = Path(run_dir) / "output" / "predictions.npy"
    late_stage = str(st.get("stage", "")).startswith(("extra", "proba"))
    if cr.failure is not None and main_ok and late_stage:
        # the clean run finished; the child died or was killed on the extra work
        try:
            cr.predictions = np.load(pred_path, allow_pickle=False)
            cr.warnings.append(f"the submission's process ended during the extra predictions "
                               f"({cr.failure.message}); the shifted sets it did not finish count "
                               "as missing")
            cr.failure, cr.ok = None, True
        except (OSError, ValueError):
            pass
    elif cr.failure is not None and cr.child.timed_out:
        cr.failure = grun.diagnose(cr.child, st, prof, time_limit)
    clean_s = (st.get("timings") or {}).get("total_s")
    if cr.failure is None and n_sets > 1 and clean_s is not None and clean_s > time_limit:
        cr.failure = grun.Failure(
            "predict", f"the submission exceeded the time limit of {time_limit:g} s on the clean "
                       f"test set ({clean_s:.0f} s; the grader kills it: 'Execution Time Limit "
                       "exceeded')",
            "predict in batches (the template does), use fewer TTA views or a smaller model")
        cr.ok = False
    return cr


def tta_available(submission_dir: Path, prof) -> tuple[bool, str]:
    """Whether the submission's model.py has the template's SUBKIT_TTA switch, TTA on."""
    p = Path(submission_dir) / prof.entry_file
    try:
        text = p.read_text("utf-8", errors="replace")
    except OSError:
        return False, f"{prof.entry_file} not readable"
    if "SUBKIT_TTA" not in text:
        return False, (f"{prof.entry_file} has no SUBKIT_TTA switch (subkit's template has one): "
                       "TTA comparison is not available")
    import re

    m = re.search(r"^TTA\s*=\s*(True|False)\b", text, re.M)
    if m and m.group(1) == "False":
        return False, f"TTA is off in {prof.entry_file} (TTA = False): nothing to compare"
    return True, ""


def tta_compare(submission_dir: Path, X: Array, y_true: Array, prof, plan: Plan | None, *,
                with_tta: dict, run_dir: Path, time_limit: float, python: str | None = None,
                isolate_network: bool = True, progress: bool = False) -> dict:
    """Run the submission again with SUBKIT_TTA=0 and compare with the run ``with_tta``.

    ``with_tta``: {"clean": score, "shift": shift dict or None, "predict_s": seconds}.
    """
    from subkit.grader import scoring

    ok, why = tta_available(submission_dir, prof)
    if not ok:
        return {"available": False, "reason": why}
    cr = run_with_plan(submission_dir, X, prof, plan, run_dir=run_dir, time_limit=time_limit,
                       python=python, isolate_network=isolate_network, progress=progress,
                       extra_env={"SUBKIT_TTA": "0"}, label="the same without TTA")
    if cr.failure is not None:
        return {"available": True, "ok": False,
                "reason": f"the run without TTA failed: {cr.failure.message}"}
    try:
        labels, _ = scoring.validate_predictions(cr.predictions, len(y_true), prof.n_classes)
    except scoring.PredictionError as exc:
        return {"available": True, "ok": False,
                "reason": f"the run without TTA failed: {exc.message}"}
    clean_off = float(scoring.metrics(y_true, labels, prof.class_names)[prof.metric])
    out = {"available": True, "ok": True, "metric": prof.metric,
           "clean": {"tta": with_tta.get("clean"), "no_tta": clean_off},
           "predict_s": {"tta": with_tta.get("predict_s"),
                         "no_tta": (cr.status.get("timings") or {}).get("predict_s")},
           "shifted": None, "shifts": []}
    if plan is not None and with_tta.get("shift"):
        off = collect(plan, cr.status, Path(run_dir) / "output", y_true, prof, clean_off)
        on = with_tta["shift"]
        out["shifted"] = {"tta": on.get("shifted_score"), "no_tta": off.get("shifted_score")}
        off_rows = {r["name"]: r for r in off["shifts"]}
        for r in on["shifts"]:
            o = off_rows.get(r["name"], {})
            out["shifts"].append({"name": r["name"], "tta": r.get("mean"), "no_tta": o.get("mean")})
    return out


def save_samples(plan: Plan, path: Path) -> None:
    if plan.samples:
        tmp = Path(path).with_name(f".{Path(path).name}.tmp.npz")
        np.savez_compressed(tmp, **plan.samples)
        os.replace(tmp, path)


def table(shift: dict) -> str:
    """A plain-text table of a shift dict (for --json-less logs and the docs)."""
    head = "".join(f"{'sev ' + str(s):>8}" for s in (1, 2, 3))
    lines = [f"{'shift':<22}{head}{'mean':>8}"]
    for r in shift["shifts"]:
        by = dict(zip(r["severity"], r["scores"], strict=True))
        cells = "".join(f"{by[s]:8.4f}" if by.get(s) is not None else f"{'-':>8}"
                        for s in (1, 2, 3))
        mean = f"{r['mean']:8.4f}" if r["mean"] is not None else f"{'-':>8}"
        lines.append(f"{r['name']:<22}{cells}{mean}")
    return "\n".join(lines)


def to_json(shift: dict) -> str:
    return json.dumps(shift, indent=2)
