"""A "hidden" shifted test set made with other code than the shift suite, and small models
of different robustness: the proof that the suite ranks and the calibration predicts like a
hidden test (tests/test_shift.py, tests/test_calibration.py, benchmarks/bench_calibration.py).

The hidden set is the test set under a RandAugment written on Pillow's ImageOps,
ImageEnhance and affine ``Image.transform`` (timm's and torchvision's way, one image at a
time: none of the suite's Keras layers), then a Cutout and sensor noise in numpy. Training
augmentation is numpy too (flips, 90-degree turns, brightness/contrast, colour cast,
Cutout, noise), so neither the suite nor the hidden set is what the models saw.
"""

from __future__ import annotations

import math

import numpy as np

N_CLASSES = 8


# -- the hidden test: Pillow RandAugment + numpy Cutout and noise -----------------------------
def _pil_ops():
    from PIL import Image, ImageEnhance, ImageOps

    def affine(im, m):
        return im.transform(im.size, Image.AFFINE, m, resample=Image.BILINEAR,
                            fillcolor=(128, 128, 128))

    def enh(cls):
        return lambda im, v, s: cls(im).enhance(1 + s * 0.9 * v)

    return [
        lambda im, v, s: ImageOps.autocontrast(im),
        lambda im, v, s: ImageOps.equalize(im),
        lambda im, v, s: im.rotate(s * 30 * v, resample=Image.BILINEAR, fillcolor=(128,) * 3),
        lambda im, v, s: ImageOps.solarize(im, int(256 - 128 * v)),
        lambda im, v, s: ImageOps.posterize(im, max(1, int(8 - 4 * v))),
        enh(ImageEnhance.Color), enh(ImageEnhance.Contrast), enh(ImageEnhance.Brightness),
        enh(ImageEnhance.Sharpness),
        lambda im, v, s: affine(im, (1, s * 0.3 * v, 0, 0, 1, 0)),
        lambda im, v, s: affine(im, (1, 0, 0, s * 0.3 * v, 1, 0)),
        lambda im, v, s: affine(im, (1, 0, s * 0.3 * v * im.size[0], 0, 1, 0)),
        lambda im, v, s: affine(im, (1, 0, 0, 0, 1, s * 0.3 * v * im.size[1])),
    ]


def hidden_shift(X: np.ndarray, seed: int = 2024, n_ops: int = 2, magnitude: float = 0.4,
                 cutout: float = 0.25, noise: float = 6.0) -> np.ndarray:
    """Each uint8 image through ``n_ops`` random Pillow ops at ``magnitude`` (0..1, random
    sign), then a Cutout of side ``cutout`` (p .5) and Gaussian noise of sigma ``noise``."""
    from PIL import Image

    ops = _pil_ops()
    rng = np.random.default_rng(seed)
    out = np.empty_like(X)
    n, h, w, _ = X.shape
    for i in range(n):
        im = Image.fromarray(X[i])
        for k in rng.integers(0, len(ops), n_ops):
            im = ops[k](im, magnitude, rng.choice([-1.0, 1.0]))
        a = np.asarray(im, np.float32)
        if rng.random() < 0.5:
            s = int(cutout * min(h, w))
            y0, x0 = rng.integers(0, h - s), rng.integers(0, w - s)
            a[y0:y0 + s, x0:x0 + s] = 0
        a += rng.normal(0, noise, a.shape)
        out[i] = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return out


# -- training -----------------------------------------------------------------------------
def numpy_augment(X: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Training augmentation in numpy at ``strength`` (0: none .. 1: strong): flips,
    brightness, contrast, saturation, a per-channel cast, Cutout and noise."""
    if strength <= 0:
        return X
    n, h, w, _ = X.shape
    x = X.astype(np.float32)
    flip = rng.random(n) < 0.5
    x[flip] = x[flip, :, ::-1]
    flip = rng.random(n) < 0.5
    x[flip] = x[flip, ::-1]
    grey = x.mean(axis=3, keepdims=True)
    sat = rng.uniform(1 - strength, 1 + 0.5 * strength, (n, 1, 1, 1)).astype(np.float32)
    x = grey + (x - grey) * sat
    mean = grey.mean(axis=(1, 2), keepdims=True)
    con = (1 + rng.uniform(-0.5, 0.5, (n, 1, 1, 1)) * strength).astype(np.float32)
    cast = (1 + rng.uniform(-0.25, 0.25, (n, 1, 1, 3)) * strength).astype(np.float32)
    shift = (rng.uniform(-50, 50, (n, 1, 1, 1)) * strength).astype(np.float32)
    x = ((x - mean) * con + mean + shift) * cast
    side = int(0.3 * h)
    for i in np.flatnonzero(rng.random(n) < 0.5 * strength):
        y0, x0 = rng.integers(0, h - side, 2)
        x[i, y0:y0 + side, x0:x0 + side] = rng.uniform(0, 255)
    x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(12 * strength)
    return np.clip(x, 0, 255).astype(np.uint8)


def small_cnn(width: int = 16, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.AveragePooling2D(2)(x)  # 48x48: a CPU-cheap cousin of train.py --quick
    for f in (width, 2 * width, 4 * width):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(N_CLASSES, activation="softmax")(x)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train(X: np.ndarray, y: np.ndarray, strength: float, epochs: int, seed: int = 0,
          width: int = 16):
    """A small CNN trained on (X, y) with numpy augmentation at ``strength``."""
    model = small_cnn(width, seed)
    rng = np.random.default_rng(seed)
    views = [numpy_augment(X, rng, strength) for _ in range(min(epochs, 3 if strength else 1))]
    for epoch in range(epochs):  # three augmented views of the set, in turn
        model.fit(views[epoch % len(views)], y, batch_size=64, epochs=1, verbose=0)
    return model


def accuracy(model, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(X, verbose=0), 1) == y.ravel()))


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 1 else math.nan
