"""The shift families (one kind of shift at several severities) and the suites that group
them, each suite named after the hypothesis it tests. Plain data: importing this module
imports no image library (the ops import Keras and Pillow when they run)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from subkit.shift import ops


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    op: Callable
    severities: tuple  # one dict of keyword parameters per severity, mildest first
    shown: Callable[..., str]  # the parameters in words
    source: str  # the library that does the work
    rgb_only: bool = False
    mixes: bool = False  # the op mixes images: it takes and returns one-hot labels

    def params(self, severity: int) -> dict:
        return dict(self.severities[severity - 1])

    @property
    def needs_keras(self) -> bool:
        return "keras" in self.source.lower()


def _enhance(name: str, title: str, kind: str, values: tuple) -> Family:
    """A MedMNIST-C enhancement: Pillow ImageEnhance ``kind`` at five factors."""
    return Family(name, title, lambda x, ctx, factor: ops.enhance(x, ctx, kind, factor),
                  _five(values, "factor"), lambda factor: f"×{factor:g}",
                  f"Pillow ImageEnhance.{kind}")


def _five(values, key):
    return tuple({key: v} for v in values)


KERAS_RA = "Keras RandAugment's 11 op layers, drawn per image"
_DEFAULT = [
    Family("randaugment", "RandAugment (Keras ops)", ops.randaugment,
           (dict(n_ops=2, factor=.2), dict(n_ops=2, factor=.4), dict(n_ops=3, factor=.6)),
           lambda n_ops, factor: f"{n_ops} ops, factor {factor:g}", KERAS_RA),
    Family("augmix", "AugMix (Keras ops)", ops.augmix,
           (dict(factor=.3, depth=1), dict(factor=.6, depth=2), dict(factor=.9, depth=3)),
           lambda factor, depth: f"3 chains of ≤ {depth} ops, factor {factor:g}",
           KERAS_RA + " in 3 chains"),
    Family("cutmix", "CutMix", ops.cutmix, (dict(factor=.25), dict(factor=.5), dict(factor=1.0)),
           lambda factor: f"Beta({factor:g}, {factor:g})", "keras.layers.CutMix", mixes=True),
    Family("mixup", "MixUp", ops.mixup, (dict(alpha=.2), dict(alpha=.4), dict(alpha=1.0)),
           lambda alpha: f"Beta({alpha:g}, {alpha:g})", "keras.layers.MixUp", mixes=True),
    Family("erasing", "random erasing (Cutout)", ops.erasing,
           (dict(lo=.02, hi=.1), dict(lo=.08, hi=.2), dict(lo=.15, hi=.33)),
           lambda lo, hi: f"patch {lo:g}-{hi:g}", "keras.layers.RandomErasing"),
    Family("gridmask", "GridMask", ops.gridmask, (dict(ratio=.4), dict(ratio=.55), dict(ratio=.7)),
           lambda ratio: f"ratio {ratio:g}", "numpy (no library layer)"),
    Family("solarize", "solarization", ops.solarize, (dict(t=1.0), dict(t=.8), dict(t=.6)),
           lambda t: f"threshold U(0, {t:g}·255)", "keras.layers.Solarization"),
    Family("colour_jitter", "colour jitter", ops.colour_jitter,
           (dict(b=.1, c=.15, s=.15, h=.03), dict(b=.2, c=.3, s=.3, h=.06),
            dict(b=.3, c=.5, s=.45, h=.12)),
           lambda b, c, s, h: f"brightness ±{b:g}, contrast ±{c:g}, saturation ±{s:g}, "
                              f"hue {h:g}",
           "keras.layers.RandomColorJitter", rgb_only=True),
    Family("channel_shift", "per-channel colour cast", ops.channel_shift,
           (dict(g=.1, o=.03), dict(g=.2, o=.06), dict(g=.35, o=.1)),
           lambda g, o: f"gain ±{g:g}, offset ±{o:g}", "numpy"),
    Family("stain_jitter", "stain colour jitter (HED)", ops.stain_jitter,
           (dict(alpha=.05, beta=.02), dict(alpha=.12, beta=.05), dict(alpha=.25, beta=.1)),
           lambda alpha, beta: f"α {alpha:g}, β {beta:g}", "numpy (Ruifrok-Johnston HED)",
           rgb_only=True),
    Family("blur", "Gaussian blur", ops.blur, (dict(sigma=.8), dict(sigma=1.4), dict(sigma=2.2)),
           lambda sigma: f"σ {sigma:g} px", "Pillow ImageFilter.GaussianBlur"),
    Family("noise", "Gaussian noise", ops.noise, (dict(sigma=.03), dict(sigma=.06), dict(sigma=.1)),
           lambda sigma: f"σ {sigma:g}", "keras.layers.GaussianNoise"),
    Family("jpeg", "JPEG compression", ops.jpeg, (dict(quality=40), dict(quality=20),
                                                  dict(quality=8)),
           lambda quality: f"quality {quality}", "Pillow JPEG (libjpeg)"),
    Family("rotate_flip", "rotation and flips", ops.rotate_flip,
           (dict(degrees=15.0), dict(degrees=45.0), dict(degrees=180.0)),
           lambda degrees: f"flips, ±{degrees:g}°", "keras.layers.RandomFlip, RandomRotation"),
    Family("zoom_crop", "zoom and translation", ops.zoom_crop,
           (dict(zoom_in=.1, zoom_out=.15, move=.05), dict(zoom_in=.2, zoom_out=.35, move=.1),
            dict(zoom_in=.3, zoom_out=.6, move=.15)),
           lambda zoom_in, zoom_out, move: f"zoom -{zoom_in:g}/+{zoom_out:g}, move ±{move:g}",
           "keras.layers.RandomZoom, RandomTranslation"),
    Family("shear", "shear", ops.shear, (dict(s=.1), dict(s=.2), dict(s=.35)),
           lambda s: f"±{s:g}", "keras.layers.RandomShear"),
]

_HIDDEN = [
    Family("h24_compose", "RandAugment-style compositions", ops.h24_compose,
           (dict(n_ops=2, f=.3), dict(n_ops=3, f=.5), dict(n_ops=4, f=.7)),
           lambda n_ops, f: f"{n_ops} ops of 15, strength {f:g}",
           "Keras RandAugment's op layers, RandomErasing, RandomColorJitter; numpy GridMask, "
           "cast"),
    Family("h24_layers", "15 augmentation layers at random", ops.h24_layers,
           (dict(p=.2), dict(p=.35), dict(p=.5)), lambda p: f"each layer with p {p:g}",
           "15 keras.layers augmentation layers"),
    Family("h24_mix", "CutMix or MixUp, then one op", ops.h24_mix,
           (dict(cutmix_factor=.3, mixup_alpha=.2, f=.3),
            dict(cutmix_factor=.6, mixup_alpha=.5, f=.5),
            dict(cutmix_factor=1.0, mixup_alpha=1.0, f=.7)),
           lambda cutmix_factor, mixup_alpha, f: f"CutMix {cutmix_factor:g} / MixUp "
                                                 f"{mixup_alpha:g}, one op at {f:g}",
           "keras.layers.CutMix, MixUp and the compositions' ops", mixes=True),
    Family("h24_augmix", "AugMix, strong", ops.augmix,
           (dict(factor=.5, depth=2), dict(factor=.75, depth=3), dict(factor=1.0, depth=4)),
           lambda factor, depth: f"3 chains of ≤ {depth} ops, factor {factor:g}",
           KERAS_RA + " in 3 chains"),
    Family("h24_occlusion", "Cutout or GridMask", ops.h24_occlusion,
           (dict(lo=.05, hi=.15, ratio=.45), dict(lo=.1, hi=.25, ratio=.6),
            dict(lo=.2, hi=.4, ratio=.75)),
           lambda lo, hi, ratio: f"patch {lo:g}-{hi:g} / grid {ratio:g}",
           "keras.layers.RandomErasing; numpy GridMask"),
]

# MedMNIST-C's BloodMNIST corruptions and their five published severities (Di Salvo et al.
# 2024; francescodisalvo05/medmnistc-api, medmnistc/corruptions/registry.py,
# CORRUPTIONS_DS["bloodmnist"]); sizes in pixels are for 224x224 images and scaled.
_MICRO = [
    Family("pixelate", "pixelate", ops.pixelate, _five((.6, .5, .4, .3, .25), "factor"),
           lambda factor: f"×{factor:g} and back", "Pillow BOX resize"),
    Family("jpeg_compression", "JPEG compression", ops.jpeg,
           _five((50, 30, 15, 10, 7), "quality"), lambda quality: f"quality {quality}",
           "Pillow JPEG (libjpeg)"),
    Family("defocus_blur", "defocus blur", ops.defocus_blur,
           tuple(dict(radius=r, alias=a) for r, a in
                 ((2, .01), (3, .1), (4, .1), (5, .1), (6, .1))),
           lambda radius, alias: f"disk r {radius:g} px@224", "numpy disk kernel"),
    Family("motion_blur", "motion blur", ops.motion_blur,
           tuple(dict(radius=r, sigma=s) for r, s in
                 ((3, 3), (5, 5), (10, 5), (10, 7), (10, 9))),
           lambda radius, sigma: f"r {radius:g}, σ {sigma:g} px@224",
           "numpy line kernel (ImageMagick's)"),
    *[_enhance(f"{kind.lower()}_{way}", f"{kind.lower()} {way}", kind, values)
      for kind, way, values in (("Brightness", "up", (1.1, 1.2, 1.3, 1.35, 1.4)),
                                ("Brightness", "down", (.9, .8, .7, .6, .5)),
                                ("Contrast", "up", (1.1, 1.15, 1.2, 1.25, 1.3)),
                                ("Contrast", "down", (.9, .8, .7, .6, .5)))],
    Family("saturate", "saturate", ops.saturate, _five((.05, .1, .15, .17, .2), "delta"),
           lambda delta: f"S +{delta:g}", "Pillow HSV", rgb_only=True),
    Family("stain_deposit", "stain deposit", ops.stain_deposit,
           tuple(dict(marks=m, large=g) for m, g in
                 ((1, False), (2, False), (3, False), (3, False), (3, True))),
           lambda marks, large: (f"1-{marks} blots" if marks > 1 else "1 blot")
           + (", large" if large else ""),
           "Pillow ImageDraw blots"),
    Family("bubble", "bubbles", ops.bubble,
           tuple(dict(max_radius=r, max_bubbles=b) for r, b in
                 ((5, 10), (7, 10), (10, 10), (12, 12), (15, 12))),
           lambda max_radius, max_bubbles: f"7-{max_bubbles}, r ≤ {max_radius} px@224",
           "Pillow ImageDraw"),
]

FAMILIES: dict[str, Family] = {f.name: f for f in _DEFAULT + _HIDDEN + _MICRO}


@dataclass(frozen=True)
class Suite:
    name: str
    hypothesis: str
    pairs: tuple  # (family name, severity) in order


def _all(families) -> tuple:
    return tuple((f.name, s) for f in families for s in range(1, len(f.severities) + 1))


SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("default", "common corruptions and augmentation ops, one at a time, at three "
                     "strengths (Keras layers, Pillow)", _all(_DEFAULT)),
    Suite("quick", "a fast check: six families of the default suite at severity 2",
          tuple((n, 2) for n in ("randaugment", "augmix", "erasing", "colour_jitter", "blur",
                                 "jpeg"))),
    Suite("hidden-2024", "AN2DL 2024-25's hidden test was the clean test through random "
                         "compositions of Keras augmentation layers (RandAugment, CutMix/MixUp, "
                         "Cutout/GridMask, colour, solarize, shear, AugMix) at the strengths "
                         "teams reported in their public write-ups", _all(_HIDDEN)),
    Suite("microscopy", "real blood-smear artefacts: MedMNIST-C's BloodMNIST corruptions at "
                        "its five published severities (Di Salvo et al. 2024)", _all(_MICRO)),
]}


class SuiteError(ValueError):
    pass


def parse_suite(spec: str | None) -> list[tuple[str, int]]:
    """(family, severity) pairs of a suite name or a ``name[:severity],...`` list."""
    spec = (spec or "default").strip()
    if spec in SUITES:
        return list(SUITES[spec].pairs)
    out: list[tuple[str, int]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, sev = part.partition(":")
        fam = FAMILIES.get(name)
        if fam is None:
            raise SuiteError(f"unknown shift or suite {name!r}; suites: {', '.join(SUITES)}; "
                             f"shifts: {', '.join(FAMILIES)}")
        n = len(fam.severities)
        if sev:
            if not sev.isdigit() or not 1 <= int(sev) <= n:
                raise SuiteError(f"severity of {name} must be 1 to {n}, not {sev!r}")
            out.append((name, int(sev)))
        else:
            out.extend((name, s) for s in range(1, n + 1))
    if not out:
        raise SuiteError("empty shift suite")
    return list(dict.fromkeys(out))


def hypothesis(spec: str | None) -> str:
    suite = SUITES.get((spec or "default").strip())
    return suite.hypothesis if suite else "a custom list of shifts"


def key(name: str, severity: int) -> str:
    return f"{name}-{severity}"


def describe(name: str) -> dict:
    f = FAMILIES[name]
    return {"name": name, "title": f.title, "source": f.source,
            "params": [{k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}
                       for d in f.severities],
            "shown": [f.shown(**d) for d in f.severities]}


def n_severities(name: str) -> int:
    return len(FAMILIES[name].severities)

