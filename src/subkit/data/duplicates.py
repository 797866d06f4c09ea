"""Exact and near duplicates, hashed over the whole array at once (numpy only).

Exact duplicates
    Two images are exact duplicates when their bytes are equal. Each image's bytes, read
    as 64-bit words, go through two random linear hashes mod 2**64 (one integer matrix
    product for the whole array); images with equal hashes are then compared byte by byte,
    so a hash collision can never merge two different images.

Near duplicates
    A 64-bit perceptual hash (pHash): luminance, an area-average downscale to 32x32, the
    2-D DCT, its top-left 8x8 coefficients, one bit per coefficient set when it is above
    the median of the 64. Downscale, luminance and DCT are linear, so they fold into two
    small matrices and the whole array is hashed with batched matrix products. Adding a
    constant brightness only moves the DC coefficient and scaling the contrast scales all
    64 alike, so the hash is robust to small brightness and contrast changes.

    Images whose hashes are within a Hamming distance ``d`` are grouped (transitively:
    the groups are connected components). Pairs are never all compared: the 64 bits are
    cut into ``d + 1`` bands, and by pigeonhole two hashes within distance ``d`` agree
    exactly on at least one band, so only hashes sharing a band value (a bucket) are
    compared. Components come from vectorized union-find (min-label hooking and pointer
    jumping).

The bit order of :func:`phash` is imagehash's (row-major 8x8, first bit most significant),
so ``format(h, "016x")`` reads like ``str(imagehash.phash(img))``; the values differ a
little because imagehash resizes with a Lanczos filter and rounds PIL's luminance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from subkit.profile import Profile

HASH_BITS = 64
HASH_SIZE = 8  # 8x8 low-frequency DCT coefficients
DCT_SIZE = 32  # the downscale before the DCT
DEFAULT_NEAR = 4  # Hamming distance for "near duplicate" (see docs/data-tools.md)
DEFAULT_SIMILARITY = 0.98  # cosine of the AC coefficients that confirms a near pair
MAX_NEAR = 12  # beyond this, bands are too short for buckets to stay small

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, what PIL's "L" uses
_SEED = 0x5B1C1D  # fixed: hashes are deterministic across runs and machines


# -- helpers -------------------------------------------------------------------------------
def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64."""
    x = np.asarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], np.int64)
    return table[x.reshape(-1, 1).view(np.uint8)].sum(axis=1).reshape(x.shape)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance between (broadcastable) arrays of 64-bit hashes."""
    return popcount64(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


def _as_batch(images: np.ndarray) -> np.ndarray:
    """(n, H, W, C) view of (n, H, W) or (n, H, W, C) images."""
    images = np.asarray(images)
    if images.ndim == 3:
        return images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (n, H, W) or (n, H, W, C), got {images.shape}")
    return images


def _chunks(n: int, size: int):
    for s in range(0, n, size):
        yield s, min(n, s + size)


# -- exact hashing ---------------------------------------------------------------------------
def exact_hashes(images: np.ndarray, chunk: int = 512) -> np.ndarray:
    """(n, 2) uint64: two random linear hashes mod 2**64 of each image's bytes."""
    images = np.asarray(images)
    n = images.shape[0]
    row_bytes = int(np.prod(images.shape[1:], dtype=np.int64)) * images.dtype.itemsize
    n_words = max(1, -(-row_bytes // 8))
    rng = np.random.default_rng(_SEED)
    keys = rng.integers(0, 2**63, size=(n_words, 2), dtype=np.uint64)
    keys = (keys << np.uint64(1)) | np.uint64(1)  # random odd multipliers
    out = np.empty((n, 2), np.uint64)
    for s, e in _chunks(n, chunk):
        block = np.ascontiguousarray(images[s:e]).reshape(e - s, -1).view(np.uint8)
        if row_bytes % 8:
            padded = np.zeros((e - s, n_words * 8), np.uint8)
            padded[:, :row_bytes] = block
            block = padded
        out[s:e] = block.view(np.uint64) @ keys  # wraps mod 2**64, as intended
    return out


def exact_groups(images: np.ndarray, hashes: np.ndarray | None = None) -> list[np.ndarray]:
    """Groups (size >= 2, sorted indices, ordered by first member) of byte-identical images."""
    images = np.asarray(images)
    h = exact_hashes(images) if hashes is None else hashes
    if len(h) == 0:
        return []
    _, inverse = np.unique(h, axis=0, return_inverse=True)
    groups: list[np.ndarray] = []
    for members in groups_from_labels(inverse.reshape(-1)):
        groups.extend(_verify_bytes(images, members))
    groups.sort(key=lambda m: int(m[0]))
    return groups


def _verify_bytes(images: np.ndarray, members: np.ndarray) -> list[np.ndarray]:
    """Split a candidate group by actual byte equality (guards against hash collisions)."""
    first = images[members[0]]
    same = np.all(images[members].reshape(len(members), -1) == first.reshape(1, -1), axis=1)
    if same.all():
        return [members]
    buckets: dict[bytes, list[int]] = {}
    for i in members.tolist():
        buckets.setdefault(images[i].tobytes(), []).append(i)
    return [np.array(v, np.int64) for v in buckets.values() if len(v) > 1]


# -- perceptual hashing ----------------------------------------------------------------------
def _area_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) area-averaging resize: each output averages the input it covers."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (rows: frequencies)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


def _luma_weights(channels: int) -> np.ndarray:
    if channels == 1:
        return np.ones(1)
    if channels >= 3:
        w = np.zeros(channels)
        w[:3] = _LUMA  # RGB, RGBA, ...: alpha and extra channels ignored
        return w
    return np.full(channels, 1.0 / channels)


def dct_lowfreq(images: np.ndarray, chunk: int = 16) -> np.ndarray:
    """(n, 8, 8) float32: low-frequency DCT of each image's 32x32 luminance."""
    x = _as_batch(images)
    n, h, w, c = x.shape
    d8 = _dct_matrix(DCT_SIZE)[:HASH_SIZE]
    rows = (d8 @ _area_matrix(DCT_SIZE, h)).astype(np.float32)  # (8, H)
    cols = d8 @ _area_matrix(DCT_SIZE, w)  # (8, W)
    # fold luminance into the column matrix: (W*C, 8)
    right = (cols.T[:, None, :] * _luma_weights(c)[None, :, None]).reshape(w * c, HASH_SIZE)
    right = right.astype(np.float32)
    out = np.empty((n, HASH_SIZE, HASH_SIZE), np.float32)
    # small chunks: each (8, H) @ (H, W*C) product stays in cache; measured fastest
    for s, e in _chunks(n, chunk):
        block = x[s:e].reshape(e - s, h, w * c).astype(np.float32)
        out[s:e] = np.matmul(rows, block) @ right
    return out


_BIT_WEIGHTS = (np.uint64(1) << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64))


def perceptual(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Perceptual hashes and similarity features of (n, H, W[, C]) images, any numeric dtype.

    Returns ``(hashes, features)``: (n,) uint64 pHashes, and (n, 63) float32 unit vectors of
    the AC coefficients (the 8x8 block without DC) whose dot product is the cosine
    similarity of two images' low-frequency content, insensitive to brightness (DC) and
    contrast (scale). A flat image has an all-zero feature vector.
    """
    x = _as_batch(images)
    n = x.shape[0]
    hashes = np.empty(n, np.uint64)
    features = np.zeros((n, HASH_BITS - 1), np.float32)
    for s, e in _chunks(n, chunk):
        coef = dct_lowfreq(x[s:e]).reshape(e - s, HASH_BITS).astype(np.float64)
        med = np.median(coef, axis=1, keepdims=True)
        scale = np.abs(coef).max(axis=1, keepdims=True)
        # a tolerance so that float noise on flat images (AC coefficients ~ 0) gives 0 bits
        bits = coef > med + 1e-5 * (scale + 1e-12)
        hashes[s:e] = (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)
        ac = coef[:, 1:]
        norm = np.linalg.norm(ac, axis=1, keepdims=True)
        textured = norm[:, 0] > 1e-4 * (scale[:, 0] + 1e-12)
        features[s:e][textured] = (ac[textured] / norm[textured]).astype(np.float32)
    return hashes, features


def phash(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(n,) uint64 perceptual hashes of (n, H, W[, C]) images, any numeric dtype."""
    return perceptual(images, chunk)[0]


def similarity(features: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the AC features of images a[i] and b[i]; two flat images: 1."""
    fa, fb = features[a], features[b]
    sim = np.einsum("ij,ij->i", fa, fb)
    flat = ~fa.any(axis=1) & ~fb.any(axis=1)
    return np.where(flat, 1.0, sim)


# -- grouping by Hamming distance ---------------------------------------------------------------
def band_keys(hashes: np.ndarray, n_bands: int) -> list[np.ndarray]:
    """Cut 64-bit hashes into ``n_bands`` interleaved bands (bit i goes to band i % n_bands).

    Interleaving spreads the correlated bits of one DCT row over all bands: measured on
    blood-cell-like images, 2-4x fewer candidate pairs than contiguous bands.
    """
    h = np.asarray(hashes, np.uint64)
    keys = []
    for band in range(n_bands):
        key = np.zeros(len(h), np.uint64)
        for bit in range(band, HASH_BITS, n_bands):
            key = (key << np.uint64(1)) | ((h >> np.uint64(HASH_BITS - 1 - bit)) & np.uint64(1))
        keys.append(key)
    return keys


def candidate_pairs(hashes: np.ndarray, max_distance: int):
    """Yield (a, b) index arrays of pairs sharing a band value, band by band.

    Pigeonhole: with ``max_distance + 1`` bands, two hashes within ``max_distance`` bits
    agree exactly on at least one band, so every such pair is yielded (some more than
    once, and others that are farther apart: the caller checks the distance). The work is
    the number of pairs inside buckets, never all n*(n-1)/2 pairs.
    """
    h = np.asarray(hashes, np.uint64)
    m = len(h)
    for key in band_keys(h, max_distance + 1):
        order = np.argsort(key, kind="stable")
        sk = key[order]
        # runs of equal keys are contiguous: position p pairs with p + k while the run lasts
        active = np.arange(m - 1)
        k = 1
        while len(active):
            active = active[active + k < m]
            active = active[sk[active] == sk[active + k]]
            if len(active):
                yield order[active], order[active + k]
            k += 1


def _components(m: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of an edge list: each node's label is its component's min node."""
    parent = np.arange(m)
    if len(a) == 0:
        return parent
    while True:
        pa, pb = parent[a], parent[b]
        if np.array_equal(pa, pb):
            return parent
        lo = np.minimum(pa, pb)
        np.minimum.at(parent, pa, lo)  # hook roots under the smaller root
        np.minimum.at(parent, pb, lo)
        while True:  # pointer jumping until every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def near_groups(hashes: np.ndarray, max_distance: int = DEFAULT_NEAR, *,
                features: np.ndarray | None = None, min_similarity: float = 0.0,
                same: np.ndarray | None = None) -> list[np.ndarray]:
    """Groups (size >= 2) of images linked by near-duplicate pairs, transitively.

    A pair is near when its hashes differ in at most ``max_distance`` bits and, when
    ``features`` are given, their cosine :func:`similarity` is at least ``min_similarity``.
    Without features, images with equal hashes are always together. ``same`` (n,) marks
    images known to be identical (e.g. exact-duplicate group ids, -1 for none): they are
    grouped unconditionally and compared once. Sorted indices in each group; groups
    ordered by their first member.
    """
    if not 0 <= int(max_distance) <= MAX_NEAR:
        raise ValueError(f"max_distance must be in 0..{MAX_NEAR}")
    h = np.asarray(hashes, np.uint64)
    n = len(h)
    if n == 0:
        return []
    # nodes: one per distinct hash (hash-only), or one per distinct image (with features)
    if features is None:
        node_hash, node_of = np.unique(h, return_inverse=True)
        node_rep = None
    else:
        key = np.arange(n) if same is None else np.where(same >= 0, n + same, np.arange(n))
        _, first, node_of = np.unique(key, return_index=True, return_inverse=True)
        node_rep = first  # representative image of each node
        node_hash = h[first]
    node_of = node_of.reshape(-1)
    m = len(node_hash)
    edges_a, edges_b = [], []
    if m > 1 and (max_distance > 0 or features is not None):
        for a, b in candidate_pairs(node_hash, int(max_distance)):
            close = hamming(node_hash[a], node_hash[b]) <= max_distance
            a, b = a[close], b[close]
            if node_rep is not None and features is not None and len(a):  # one with the other
                ok = similarity(features, node_rep[a], node_rep[b]) >= min_similarity
                a, b = a[ok], b[ok]
            if len(a):
                edges_a.append(a)
                edges_b.append(b)
    if edges_a:
        comp = _components(m, np.concatenate(edges_a), np.concatenate(edges_b))
    else:
        comp = np.arange(m)
    return groups_from_labels(comp[node_of])


def groups_from_labels(labels: np.ndarray) -> list[np.ndarray]:
    """Groups of size >= 2 of equal labels, as sorted index arrays ordered by first member."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return []
    order = np.argsort(labels, kind="stable")
    sl = labels[order]
    starts = np.flatnonzero(np.r_[True, sl[1:] != sl[:-1]])
    ends = np.r_[starts[1:], len(sl)]
    groups = [order[s:e] for s, e in zip(starts, ends) if e - s > 1]
    groups = [np.sort(g) for g in groups]
    groups.sort(key=lambda g: int(g[0]))
    return groups


def group_index(groups: list[np.ndarray], n: int) -> np.ndarray:
    """(n,) group number of each image, -1 for images in no group."""
    gid = np.full(n, -1, np.int64)
    for i, g in enumerate(groups):
        gid[g] = i
    return gid


def label_conflict(labels: np.ndarray | None, members: np.ndarray) -> bool:
    return labels is not None and len(np.unique(labels[members])) > 1


@dataclass
class Duplicates:
    """Exact and near-duplicate groups of one image array."""

    exact: list[np.ndarray]
    near: list[np.ndarray]
    max_distance: int | None  # None: near duplicates were not looked for
    min_similarity: float
    hashes: np.ndarray | None = None  # pHashes when near duplicates were looked for

    def groups(self) -> list[np.ndarray]:
        """The groups that decide: near groups when looked for, else exact groups."""
        return self.near if self.max_distance is not None else self.exact


def find(images: np.ndarray, near: int | None = DEFAULT_NEAR,
         min_similarity: float = DEFAULT_SIMILARITY) -> Duplicates:
    """Exact groups, and near groups (a superset of them) unless ``near`` is None."""
    images = np.asarray(images)
    exact = exact_groups(images)
    if near is None:
        return Duplicates(exact=exact, near=[], max_distance=None, min_similarity=min_similarity)
    hashes, features = perceptual(images)
    same = group_index(exact, len(images))
    groups = near_groups(hashes, near, features=features if min_similarity > 0 else None,
                         min_similarity=min_similarity, same=same)
    return Duplicates(exact=exact, near=groups, max_distance=int(near),
                      min_similarity=float(min_similarity), hashes=hashes)


# -- dedupe: what to drop ----------------------------------------------------------------------
POLICIES = ("keep-one", "conflicting", "all-copies")


def removal_plan(groups: list[np.ndarray], labels: np.ndarray | None, policy: str
                 ) -> tuple[np.ndarray, list[dict]]:
    """Indices to remove, and one record per removed image (index, reason, group).

    ``keep-one``: keep the first member of each group whose labels agree; drop every
    member of a group whose labels disagree (no copy can be trusted). ``conflicting``:
    drop every member of groups whose labels disagree, keep agreeing groups whole.
    ``all-copies``: drop every member of every group.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}")
    removed: list[dict] = []
    for gid, members in enumerate(groups):
        conflict = label_conflict(labels, members)
        if policy == "all-copies":
            drop = members
            reason = "member of a duplicate group"
            if conflict:
                reason += " with conflicting labels"
        elif conflict:
            drop, reason = members, "member of a group with conflicting labels"
        elif policy == "keep-one":
            drop, reason = members[1:], f"duplicate of #{int(members[0])}, which is kept"
        else:
            continue
        for i in drop.tolist():
            removed.append({"index": int(i), "reason": reason, "group": gid,
                            "label": int(labels[i]) if labels is not None else None})
    removed.sort(key=lambda r: r["index"])
    return np.array([r["index"] for r in removed], np.int64), removed


def dedupe_file(path, profile: Profile, *, out, drop: str = "keep-one", near: int | None = None,
                min_similarity: float = DEFAULT_SIMILARITY, force: bool = False,
                record=None) -> dict:
    """Write a copy of the data set without duplicates, and the record of what was removed.

    The input is never changed; ``out`` and the record (default ``<out>.removed.json``) are
    written atomically together, and neither overwrites a file without ``force``.
    Returns the record's summary (JSON-ready).
    """
    from pathlib import Path

    from subkit import __version__
    from subkit.data import io
    from subkit.data.subsets import (
        check_classification,
        check_outputs,
        read_arrays,
        subset,
        write_all,
    )

    check_classification(profile)
    path, out = Path(path), Path(out)
    record = Path(record) if record else out.with_name(out.name + ".removed.json")
    if drop not in POLICIES:
        from subkit.errors import UsageError

        raise UsageError(f"--drop {drop!r} is not a policy", hint=f"one of: {', '.join(POLICIES)}")
    ds = io.load(path, profile)
    assert ds.labels is not None  # io.load(require_labels=True) refuses a set without labels
    check_outputs(path, [out, record], force, ["--out", "--record"])
    dups = find(ds.images, near=near, min_similarity=min_similarity)
    groups = dups.groups()
    remove, removed = removal_plan(groups, ds.labels, drop)
    n = len(ds)
    keep = np.setdiff1d(np.arange(n), remove)
    if len(keep) == 0:
        from subkit.errors import InputError

        hint = ("try --drop keep-one, which keeps one image of each group whose labels agree"
                if drop == "all-copies" else
                "every image is in a duplicate group whose labels disagree: check that this "
                "is the right file, and its labels")
        if near is not None:
            hint += "; a smaller --near or a higher --similarity matches fewer images"
        raise InputError(f"--drop {drop} would remove all {n} images of {path}", hint=hint)
    names = profile.class_names
    arrays, skipped = read_arrays(ds, profile)
    summary: dict[str, Any] = {
        "input": str(path), "output": str(out), "record": str(record),
        "subkit_version": __version__,
        "match": ("exact bytes" if near is None else
                  f"pHash distance <= {near}, similarity >= {min_similarity}"),
        "near": near, "min_similarity": None if near is None else min_similarity,
        "drop": drop, "n_input": n, "n_output": int(len(keep)), "n_removed": int(len(remove)),
        "n_groups": len(groups),
        "n_conflicting_groups": int(sum(label_conflict(ds.labels, g) for g in groups)),
        "removed_per_class": {names[c]: int(k) for c, k in enumerate(
            np.bincount(ds.labels[remove], minlength=profile.n_classes))},
        "skipped_arrays": skipped,
    }
    full = dict(summary)
    full["groups"] = [
        {"group": gid, "size": int(len(g)), "members": g.tolist(),
         "labels": ds.labels[g].tolist(), "conflicting": label_conflict(ds.labels, g)}
        for gid, g in enumerate(groups)]
    full["removed"] = [dict(r, label_name=names[r["label"]]) for r in removed]
    write_all({out: subset(arrays, keep, n)}, {record: full})
    return summary
