"""The image operations of the shift suite, on float32 batches (n, h, w, c) in [0, 255].

They run in the generator process (``subkit.shift.generate``, subkit's own interpreter and
libraries), never in the submission's child. Each op is built on a well-kept library where
one has it:

- Keras 3's preprocessing layers (``keras.layers``): the op set of RandAugment and AugMix,
  CutMix, MixUp, RandomErasing, Solarization, RandomColorJitter and the colour layers,
  RandomFlip/Rotation/Translation/Zoom/Shear, GaussianNoise;
- Pillow: JPEG encoding, GaussianBlur, BOX resizing (pixelate), ImageEnhance (brightness,
  contrast), HSV (saturation), ImageDraw (bubbles, stain deposits);
- numpy where neither library has the op: GridMask, a per-channel colour cast, HED stain
  jitter, MedMNIST-C's defocus (disk) and motion (line) blur kernels.

Where a Keras layer does not do what a test set needs, we say so and compose its parts:

- ``keras.layers.RandAugment`` picks its ops once per *batch* (``get_random_transformation``
  draws ``layer_idxes`` of shape ``(num_ops,)``) and ``keras.layers.AugMix`` picks its chain
  ops with Python's unseeded global ``random`` (``py_random.choice``), also once per batch
  (keras/src/layers/preprocessing/image_preprocessing/rand_augment.py, aug_mix.py). A test
  set made with them would carry one op choice per batch and could not be reproduced. We
  build the same 11 op layers with the same factor wiring (``keras_policy_ops``) and draw
  the ops per image from our seeded generator, as the RandAugment and AugMix papers do.
- ``keras.layers.RandomGaussianBlur`` accepts sigma <= 1 only and pads with zeros (a dark
  rim on a bright smear): the blur family uses Pillow's ``GaussianBlur``.

Every op takes ``(x, ctx, **params)``; ``ctx.rng`` is the numpy Generator of this
(suite seed, family, batch) and ``ctx.seed()`` draws a Keras layer's integer seed from it.
Ops that mix images also take and return one-hot labels.
"""

from __future__ import annotations

import io
import math

import numpy as np

Array = np.ndarray
VR = (0, 255)  # the value range every op works in


class Ctx:
    """The random state of one (family, batch): a numpy Generator and Keras layer seeds."""

    def __init__(self, rng: np.random.Generator, side: int):
        self.rng = rng
        self.scale = side / 224.0  # MedMNIST-C's pixel sizes are for 224x224 images

    def seed(self) -> int:
        return int(self.rng.integers(0, 2**31 - 1))

    def layer(self, name: str, *, seeded: bool = True, **kw):
        import keras

        cls = getattr(keras.layers, name)
        return cls(seed=self.seed(), **kw) if seeded else cls(**kw)


def _np(t) -> Array:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(t), np.float32)


def _kop(layer):
    """A Keras layer as an op on a batch (training=True: the random transformation)."""
    return lambda v: _np(layer(v, training=True))


def _b(v) -> Array:
    return np.asarray(v, np.float32).reshape(-1, 1, 1, 1)


def by_image(x: Array, ops: list, choice: Array) -> Array:
    """``ops[choice[i]]`` applied to image ``i`` (any other value: unchanged); each op is
    called once, on the images that drew it."""
    out = x.copy()
    for k, op in enumerate(ops):
        idx = np.flatnonzero(choice == k)
        if idx.size:
            out[idx] = op(x[idx])
    return out


# -- Keras: RandAugment / AugMix op set, mixing, erasing, colour, geometry ---------------------
def keras_policy_ops(ctx: Ctx, f: float) -> list:
    """The 11 op layers of Keras' RandAugment and AugMix(all_ops=True) for ``factor=f``,
    wired as those layers wire them (rand_augment.py ``RandAugment.__init__``; the factor
    becomes the range (0, f); posterization keeps ``max(1, int(8 f))`` bits)."""
    fac = (0.0, float(f))
    specs: list[tuple[str, dict]] = [("RandomShear", {"x_factor": fac, "y_factor": fac}),
             ("RandomTranslation", {"height_factor": fac, "width_factor": fac}),
             ("RandomRotation", {"factor": fac}),
             ("RandomBrightness", {"factor": fac, "value_range": VR}),
             ("RandomColorDegeneration", {"factor": fac, "value_range": VR}),
             ("RandomContrast", {"factor": fac, "value_range": VR}),
             ("RandomSharpness", {"factor": fac, "value_range": VR}),
             ("RandomPosterization", {"factor": max(1, int(8 * f)), "value_range": VR}),
             ("Solarization", {"addition_factor": fac, "threshold_factor": fac,
                               "value_range": VR})]
    ops = [_kop(ctx.layer(name, **kw)) for name, kw in specs]
    ops += [_kop(ctx.layer(name, seeded=False, value_range=VR))
            for name in ("AutoContrast", "Equalization")]
    return ops


def randaugment(x, ctx, n_ops, factor):
    ops = keras_policy_ops(ctx, factor)
    for _ in range(n_ops):
        x = by_image(x, ops, ctx.rng.integers(0, len(ops), len(x)))
    return x


def augmix(x, ctx, factor, chains=3, depth=3, alpha=1.0):
    """AugMix (Hendrycks et al. 2020) per image: ``chains`` chains of up to ``depth`` ops
    (each step an op or nothing, as Keras' ``choice(ops + [None])``), mixed with
    Dirichlet(alpha) weights, then with the image at Beta(alpha, alpha) (Keras' formula)."""
    ops = keras_policy_ops(ctx, factor)
    n, rng = len(x), ctx.rng
    w = rng.dirichlet([alpha] * chains, n)
    m = _b(rng.beta(alpha, alpha, n))
    mixed = np.zeros_like(x)
    for j in range(chains):
        xa = x
        for _ in range(depth):
            xa = by_image(xa, ops, rng.integers(0, len(ops) + 1, n))
        mixed += _b(w[:, j]) * xa
    return m * x + (1 - m) * mixed


def cutmix(x, y, ctx, factor):
    out = ctx.layer("CutMix", factor=factor)({"images": x, "labels": y}, training=True)
    return _np(out["images"]), _np(out["labels"])


def mixup(x, y, ctx, alpha):
    out = ctx.layer("MixUp", alpha=alpha)({"images": x, "labels": y}, training=True)
    return _np(out["images"]), _np(out["labels"])


def erasing(x, ctx, lo, hi):
    """Keras RandomErasing on every image: one patch of U(lo, hi) of each side's square
    (its ``scale``), filled with Keras' default random values."""
    return _kop(ctx.layer("RandomErasing", factor=(1.0, 1.0), scale=(lo, hi),
                          value_range=VR))(x)


def solarize(x, ctx, t):
    """Keras Solarization: pixels at or above a threshold drawn per image from
    U(0, t * 255) are inverted (a lower t inverts more)."""
    return _kop(ctx.layer("Solarization", threshold_factor=(0.0, t), value_range=VR))(x)


def colour_jitter(x, ctx, b, c, s, h):
    return _kop(ctx.layer("RandomColorJitter", value_range=VR, brightness_factor=b,
                          contrast_factor=c, saturation_factor=(0.5 - s, 0.5 + s),
                          hue_factor=h))(x)


def noise(x, ctx, sigma):
    """Keras GaussianNoise (its stddev is on the [0, 1] scale)."""
    layer = ctx.layer("GaussianNoise", stddev=sigma)
    return _np(layer(x / 255.0, training=True)) * 255.0


def rotate_flip(x, ctx, degrees):
    x = _kop(ctx.layer("RandomFlip", mode="horizontal_and_vertical"))(x)
    return _kop(ctx.layer("RandomRotation", factor=degrees / 360.0, fill_mode="reflect"))(x)


def zoom_crop(x, ctx, zoom_in, zoom_out, move):
    x = _kop(ctx.layer("RandomZoom", height_factor=(-zoom_in, zoom_out), fill_mode="reflect"))(x)
    return _kop(ctx.layer("RandomTranslation", height_factor=move, width_factor=move,
                          fill_mode="reflect"))(x)


def shear(x, ctx, s):
    return _kop(ctx.layer("RandomShear", x_factor=s, y_factor=s, fill_mode="reflect"))(x)


# -- numpy: where no library has the op -----------------------------------------------------
def gridmask(x, ctx, ratio):
    """GridMask (Chen et al. 2020): a grid of period U(.25, .5) of the side with a square
    of side ``ratio`` of the period blacked out in each cell, at a random offset."""
    n, h, w, _ = x.shape
    rng = ctx.rng
    d = rng.uniform(0.25, 0.5, n) * min(h, w)
    oy, ox = rng.uniform(0, 1, n) * d, rng.uniform(0, 1, n) * d
    side = (ratio * d)[:, None, None]
    yy, xx = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    my = np.mod(yy + oy[:, None, None], d[:, None, None]) < side
    mx = np.mod(xx + ox[:, None, None], d[:, None, None]) < side
    return np.where((my & mx)[..., None], np.float32(0), x)


def channel_shift(x, ctx, g, o):
    """A per-channel colour cast: gain 1 + U(-g, g) and offset U(-o, o) of the range, per
    image and channel (a white balance or stain batch; Keras 2's ``channel_shift_range``
    moved all channels together)."""
    n, c = len(x), x.shape[-1]
    gain = 1 + ctx.rng.uniform(-g, g, (n, 1, 1, c))
    off = ctx.rng.uniform(-o, o, (n, 1, 1, c)) * 255.0
    return (x * gain + off).astype(np.float32)


_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)


def stain_jitter(x, ctx, alpha, beta):
    """Stain colour jitter in HED optical density (Ruifrok & Johnston 2001; Tellez et al.
    2018): each stain's density s -> s (1 + U(-alpha, alpha)) + U(-beta, beta)."""
    n = len(x)
    od = -np.log(np.clip(x / 255.0, 1 / 255.0, 1.0))
    hed = od @ _HED_FROM_RGB
    a = 1 + ctx.rng.uniform(-alpha, alpha, (n, 1, 1, 3))
    b = ctx.rng.uniform(-beta, beta, (n, 1, 1, 3))
    od = (hed * a + b) @ _RGB_FROM_HED
    return (np.exp(-np.maximum(od, 0)) * 255.0).astype(np.float32)


def _convolve(x: Array, kernels: Array) -> Array:
    """Each image of ``x`` convolved with its kernel (n, k, k), reflected border (OpenCV's
    default, BORDER_REFLECT_101, which MedMNIST-C's cv2.filter2D uses); only the kernel's
    non-zero taps are visited."""
    n, h, w, _ = x.shape
    k = kernels.shape[-1]
    r = k // 2
    p = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    out = np.zeros_like(x)
    for dy, dx in zip(*np.nonzero(np.any(kernels != 0, axis=0))):
        out += _b(kernels[:, dy, dx]) * p[:, dy:dy + h, dx:dx + w]
    return out


def _disk(radius: float, supersample: int = 8) -> Array:
    """A disk kernel, each tap weighted by the share of its pixel inside the circle."""
    r = int(math.ceil(radius))
    s = (np.arange(supersample) + 0.5) / supersample - 0.5
    c = np.arange(-r, r + 1)[:, None] + s[None, :]  # sub-pixel centres per tap
    inside = (c[:, None, :, None] ** 2 + c[None, :, None, :] ** 2) <= radius ** 2
    k = inside.mean(axis=(2, 3)).astype(np.float32)
    return k / k.sum()


def defocus_blur(x, ctx, radius, alias):
    """MedMNIST-C's defocus blur: a disk of ``radius`` pixels at 224x224 (scaled to the
    image; ``alias``, its Gaussian anti-aliasing sigma, is within the disk's supersampled
    edge at these sizes)."""
    k = _disk(max(radius * ctx.scale, 0.5))
    return _convolve(x, np.broadcast_to(k, (len(x),) + k.shape))


def motion_blur(x, ctx, radius, sigma):
    """MedMNIST-C's motion blur (ImageMagick's MotionBlurImage): a one-sided line of
    2 ceil(radius) + 1 taps with Gaussian(sigma) weights, at an angle U(-45, 45) per image
    (in 5-degree steps); radius and sigma in pixels at 224x224, scaled to the image."""
    radius, sigma = radius * ctx.scale, max(sigma * ctx.scale, 1e-3)
    taps = 2 * int(math.ceil(radius)) + 1
    angles = np.deg2rad(ctx.rng.integers(-9, 10, len(x)) * 5.0)
    i = np.arange(taps, dtype=np.float64)
    wt = np.exp(-(i ** 2) / (2 * sigma ** 2))
    wt /= wt.sum()
    size = 2 * taps + 1
    kernels = np.zeros((len(x), size, size), np.float32)
    for j, a in enumerate(angles):  # bilinear splat of each tap at (i cos a, i sin a)
        px, py = taps + i * math.cos(a), taps + i * math.sin(a)
        x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
        fx, fy = px - x0, py - y0
        for ddx, ddy, share in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                                (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            np.add.at(kernels[j], (y0 + ddy, x0 + ddx), wt * share)
    return _convolve(x, kernels)


# -- Pillow: one image at a time --------------------------------------------------------------
def _pil_map(x: Array, fn) -> Array:
    """``fn(PIL image, i)`` over the batch; uint8 RGB or L images in and out."""
    from PIL import Image

    u8 = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    out = np.empty_like(x)
    grey = x.shape[-1] == 1
    for i in range(len(x)):
        im = Image.fromarray(u8[i, ..., 0] if grey else u8[i], "L" if grey else "RGB")
        out[i] = np.asarray(fn(im, i), np.float32).reshape(x.shape[1:])
    return out


def jpeg(x, ctx, quality):
    """Real JPEG: Pillow (libjpeg) encodes at ``quality`` (4:2:0 chroma) and decodes."""
    from PIL import Image

    def enc(im, _):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as out:
            return out.convert(im.mode)

    return _pil_map(x, enc)


def blur(x, ctx, sigma):
    from PIL import ImageFilter

    return _pil_map(x, lambda im, _: im.filter(ImageFilter.GaussianBlur(radius=sigma)))


def pixelate(x, ctx, factor):
    """MedMNIST-C's pixelate: BOX down to ``factor`` of the size, BOX back up (Pillow)."""
    from PIL import Image

    def px(im, _):
        w, h = im.size
        # Image.Resampling.BOX is Image.BOX (Pillow >= 9.1; the module-level alias is made
        # at import time, so type checkers do not see it)
        box = Image.Resampling.BOX
        small = im.resize((max(1, int(w * factor)), max(1, int(h * factor))), box)
        return small.resize((w, h), box)

    return _pil_map(x, px)


def enhance(x, ctx, kind, factor):
    """Pillow ImageEnhance ``Brightness`` or ``Contrast`` at ``factor`` (MedMNIST-C's)."""
    from PIL import ImageEnhance

    cls = getattr(ImageEnhance, kind)
    return _pil_map(x, lambda im, _: cls(im).enhance(factor))


def saturate(x, ctx, delta):
    """MedMNIST-C's saturate: the HSV saturation plus ``delta`` (of its range), clipped."""
    from PIL import Image

    def sat(im, _):
        hsv = np.asarray(im.convert("HSV"), np.int16).copy()
        hsv[..., 1] = np.clip(hsv[..., 1] + round(delta * 255), 0, 255)
        return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")

    return _pil_map(x, sat)


def _blob(rng, size: int):
    """An ink blot: an irregular polygon, softened (Pillow ImageDraw + GaussianBlur), as
    an opacity mask in [0, 1] of shape (size, size)."""
    from PIL import Image, ImageDraw, ImageFilter

    im = Image.new("L", (size, size), 0)
    k = int(rng.integers(10, 18))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = size / 2 * (1 - 0.35 * rng.random(k)) * 0.8
    pts = [(size / 2 + r * math.cos(a), size / 2 + r * math.sin(a)) for a, r in zip(ang, rad)]
    ImageDraw.Draw(im).polygon(pts, fill=int(rng.integers(150, 240)))
    im = im.filter(ImageFilter.GaussianBlur(radius=max(0.6, size / 14)))
    return np.asarray(im, np.float32) / 255.0


def stain_deposit(x, ctx, marks, large):
    """MedMNIST-C's stain deposit: 1 to ``marks`` dark ink blots at random places (at
    least 10 px at 224x224 from the border), each darkening the pixels under it (x (1 -
    ink)). MedMNIST-C draws from its own ink images (``assets/inks.npz``); ours are random
    soft polygons of 10-20% of the side (15-25% when ``large``, its biggest inks)."""
    n, h, w, _ = x.shape
    rng, out = ctx.rng, x.copy()
    lo, hi = (0.15, 0.25) if large else (0.10, 0.20)
    margin = max(1, int(round(10 * ctx.scale)))
    for i in range(n):
        for _ in range(int(rng.integers(1, marks + 1)) if marks > 1 else marks):
            s = max(4, int(rng.uniform(lo, hi) * min(h, w)))
            ink = _blob(rng, s)
            y0 = int(rng.integers(margin, max(margin + 1, h - s - margin)))
            x0 = int(rng.integers(margin, max(margin + 1, w - s - margin)))
            out[i, y0:y0 + s, x0:x0 + s] *= (1 - ink[: h - y0, : w - x0, None])
    return out


def bubble(x, ctx, max_radius, max_bubbles):
    """MedMNIST-C's bubbles: 7 to ``max_bubbles`` translucent white discs of radius
    3..``max_radius`` px at 224x224 (scaled), each with a 2 px brighter rim (alpha 100
    inside, 130 on the rim), composited over the image (Pillow ImageDraw)."""
    from PIL import Image, ImageDraw

    rng, s = ctx.rng, ctx.scale
    rim = max(1, round(2 * s))

    def draw(im, _):
        w, h = im.size
        layer = Image.new("RGBA", im.size, (255, 255, 255, 0))
        d = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(7, max_bubbles + 1))):
            r = max(1, round(int(rng.integers(3, max_radius + 1)) * s))
            cx = int(rng.integers(r, max(r + 1, w - r)))
            cy = int(rng.integers(r, max(r + 1, h - r)))
            d.ellipse((cx - r - rim, cy - r - rim, cx + r + rim, cy + r + rim),
                      fill=(255, 255, 255, 130))
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 255, 255, 100))
        return Image.alpha_composite(im.convert("RGBA"), layer).convert(im.mode)

    return _pil_map(x, draw)


# -- compositions: the reference competition's hypothesis (hidden-2024) -----------------------
def h24_occlusion(x, ctx, lo, hi, ratio):
    """Per image, Cutout (Keras RandomErasing) or GridMask."""
    pick = ctx.rng.random(len(x)) < 0.5
    return np.where(_b(pick), erasing(x, ctx, lo, hi), gridmask(x, ctx, ratio))


def h24_compose(x, ctx, n_ops, f):
    """RandAugment-style compositions over a wider pool: per image ``n_ops`` of Keras'
    11 RandAugment op layers, Cutout (RandomErasing), GridMask, a per-channel cast and
    RandomColorJitter's hue and saturation, at strength ``f``."""
    pool = keras_policy_ops(ctx, f)
    pool += [lambda v: erasing(v, ctx, 0.1 * f, 0.4 * f),
             lambda v: gridmask(v, ctx, 0.3 + 0.4 * f),
             lambda v: channel_shift(v, ctx, f / 2, f / 6),
             _kop(ctx.layer("RandomColorJitter", value_range=VR,
                            saturation_factor=(0.5 - f / 2, 0.5 + f / 2), hue_factor=f / 3))]
    for _ in range(n_ops):
        x = by_image(x, pool, ctx.rng.integers(0, len(pool), len(x)))
    return x


def h24_mix(x, y, ctx, cutmix_factor, mixup_alpha, f):
    """Per image, CutMix or MixUp (Keras layers) with a partner from the same batch, then
    one op of ``h24_compose`` at strength ``f``."""
    xc, yc = cutmix(x, y, ctx, cutmix_factor)
    xm, ym = mixup(x, y, ctx, mixup_alpha)
    pick = ctx.rng.random(len(x)) < 0.5
    x = np.where(_b(pick), xc, xm)
    return h24_compose(x, ctx, 1, f), np.where(pick[:, None], yc, ym)


def h24_layers(x, ctx, p):
    """The winner's recipe as a test set: 15 Keras augmentation layers in a row, each
    applied to each image with probability ``p``."""
    mk = ctx.layer
    layers = [mk("RandomFlip", mode="horizontal_and_vertical"),
              mk("RandomRotation", factor=0.15, fill_mode="reflect"),
              mk("RandomTranslation", height_factor=0.15, width_factor=0.15,
                 fill_mode="reflect"),
              mk("RandomZoom", height_factor=0.25, fill_mode="reflect"),
              mk("RandomShear", x_factor=0.2, y_factor=0.2, fill_mode="reflect"),
              mk("RandomBrightness", factor=0.25, value_range=VR),
              mk("RandomContrast", factor=0.35, value_range=VR),
              mk("RandomSaturation", factor=(0.25, 0.75), value_range=VR),
              mk("RandomHue", factor=0.15, value_range=VR),
              mk("RandomColorDegeneration", factor=0.6, value_range=VR),
              mk("RandomSharpness", factor=(0.2, 0.8), value_range=VR),
              mk("Solarization", threshold_factor=(0.0, 0.9), value_range=VR),
              mk("RandomPosterization", factor=4, value_range=VR),
              mk("RandomErasing", factor=(1.0, 1.0), scale=(0.05, 0.2), value_range=VR),
              mk("Equalization", seeded=False, value_range=VR)]
    for layer in layers:
        on = ctx.rng.random(len(x)) < p
        x = by_image(x, [_kop(layer)], np.where(on, 0, -1))
    return x
