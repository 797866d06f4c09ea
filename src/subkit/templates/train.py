"""Reference training script: the path that worked for AN2DL 2024-25 Homework 1.

Transfer learning: a Keras Applications backbone (EfficientNetV2B0 by default) with its top
replaced by a small head, most backbone layers frozen, class-balanced focal loss, AdamW,
strong Keras augmentation layers (the hidden test set was shifted: RandAugment-style
compositions moved leaderboard scores most), a stratified validation split and early
stopping. Saves `weights.keras`, ready for `subkit build --weights weights.keras`.

    python train.py --data training_set.npz                  # EfficientNetV2B0
    python train.py --data train.npz --quick                 # small CNN, CPU, minutes

Augmentation runs in the input pipeline, not inside the saved model, so the saved file
holds only the inference network (smaller, and it loads in older Keras versions).
Backbone weights: ImageNet when they can be downloaded, else random init (`weights=None`),
which is what happens on an offline machine.
"""

import argparse
import json
import os
import socket
import sys
import time

import numpy as np

import train_data  # beside this file: reading the training set, the time budget

# The competition's file layout, written by `subkit init` from its profile: the arrays'
# keys, and the class names when the labels are stored as names (e.g. 'healthy').
DATA = {"images_key": "images", "labels_key": "labels", "class_names": []}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="npz with 'images' (n,H,W,C) and 'labels'")
    p.add_argument("--out", default="weights.keras", help="where to save the model")
    p.add_argument("--backbone", default=None,
                   help="small | efficientnetv2b0 | efficientnetv2s | convnexttiny "
                        "(default: efficientnetv2b0, or small with --quick)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--val-split", type=float, default=0.1)
    p.add_argument("--unfreeze", type=int, default=60, help="backbone layers left trainable")
    p.add_argument("--loss", choices=["focal", "ce"], default="focal")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--imagenet", choices=["auto", "yes", "no"], default="auto",
                   help="backbone ImageNet weights (auto: try, fall back to random init)")
    p.add_argument("--quick", action="store_true",
                   help="small CNN, few epochs: CPU-friendly (subkit demo uses it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images-key", default=DATA["images_key"])
    p.add_argument("--labels-key", default=DATA["labels_key"])
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="end training after S seconds (default: 150 with --quick, else none)")
    args = p.parse_args(argv)
    if args.time_budget is None:
        args.time_budget = 150.0 if args.quick else 0.0
    if args.backbone is None:
        args.backbone = "small" if args.quick else "efficientnetv2b0"
    if args.epochs is None:
        args.epochs = 10 if args.quick else 40
    return args


def stratified_split(labels, val_fraction, seed):
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * val_fraction))
        if len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        val.extend(idx[:k].tolist())
    val = np.array(sorted(val), dtype=int)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def balanced_weights(labels, n_classes):
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    counts[counts == 0] = 1.0
    return len(labels) / (n_classes * counts)


def augmentation(keras, quick):
    layers = [
        keras.layers.RandomFlip("horizontal_and_vertical"),
        keras.layers.RandomRotation(0.5, fill_mode="reflect"),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect"),
        keras.layers.RandomZoom(0.15, fill_mode="reflect"),
        keras.layers.RandomContrast(0.3),
        keras.layers.RandomBrightness(0.2, value_range=(0, 255)),
    ]
    if not quick:
        # colour and occlusion robustness: what moved the reference leaderboard most
        for name, kwargs in [
                ("RandomColorJitter", dict(value_range=(0, 255), brightness_factor=0.2,
                                           contrast_factor=0.2, saturation_factor=(0.3, 0.7),
                                           hue_factor=0.1)),
                ("RandAugment", dict(value_range=(0, 255), num_ops=2, factor=0.5))]:
            if hasattr(keras.layers, name):
                layers.append(getattr(keras.layers, name)(**kwargs))
    return keras.Sequential(layers, name="augment")


def build_model(keras, backbone, input_shape, n_classes, imagenet, unfreeze):
    inputs = keras.Input(input_shape, name="image")
    if backbone == "small":
        # a CPU-sized CNN: a strided stem and a pooling step down to 24x24, then conv
        # blocks halving the resolution (about 20 MFLOPs per 96x96 image)
        x = keras.layers.Rescaling(1.0 / 255)(inputs)
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        for filters in (32, 64, 128):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization(momentum=0.9)(x)
            x = keras.layers.Activation("relu")(x)
            x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
    else:
        apps = {
            "efficientnetv2b0": keras.applications.EfficientNetV2B0,
            "efficientnetv2s": keras.applications.EfficientNetV2S,
            "convnexttiny": keras.applications.ConvNeXtTiny,
        }
        if backbone not in apps:
            sys.exit(f"error: unknown backbone {backbone!r}; "
                     f"choose one of small, {', '.join(apps)}")
        weights = None
        if imagenet in ("auto", "yes"):
            old = socket.getdefaulttimeout()
            socket.setdefaulttimeout(15)
            try:
                apps[backbone](include_top=False, weights="imagenet", input_shape=input_shape)
                weights = "imagenet"
            except Exception as exc:  # offline: random init
                if imagenet == "yes":
                    sys.exit(f"error: ImageNet weights could not be downloaded: {exc}")
                print(f"note: no ImageNet weights ({type(exc).__name__}); "
                      "training from random init")
            finally:
                socket.setdefaulttimeout(old)
        base = apps[backbone](include_top=False, weights=weights, input_shape=input_shape)
        if weights is not None:
            for layer in base.layers[:-unfreeze] if unfreeze > 0 else base.layers:
                layer.trainable = False
            for layer in base.layers:  # keep BatchNorm statistics frozen when fine-tuning
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        x = base(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_classifier")


def main(argv=None):
    args = parse_args(argv)
    d = train_data.load(args.data, [args.images_key, args.labels_key])
    images = d[args.images_key]
    train_data.check_inputs(images, what="images")
    labels = train_data.class_ids(d[args.labels_key], DATA["class_names"], len(images))
    # the data first: a mistake in the file is one error line, before TensorFlow loads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    n_classes = max(int(labels.max()) + 1, len(DATA["class_names"]))
    train_idx, val_idx = stratified_split(labels, args.val_split, args.seed)
    x_tr, y_tr = images[train_idx], labels[train_idx]
    x_va, y_va = images[val_idx], labels[val_idx]
    weights = balanced_weights(y_tr, n_classes)
    print(f"train {len(x_tr)}  val {len(x_va)}  classes {n_classes}  backbone {args.backbone}")

    model = build_model(keras, args.backbone, images.shape[1:], n_classes,
                        args.imagenet, args.unfreeze)
    augment = None if args.no_augment else augmentation(keras, args.quick)

    def to_ds(x, y, training):
        ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, n_classes)))
        if training:
            ds = ds.shuffle(len(x), seed=args.seed, reshuffle_each_iteration=True)
        ds = ds.batch(args.batch_size)
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
        if training and augment is not None:
            ds = ds.map(lambda a, b: (augment(a, training=True), b))
        return ds.prefetch(tf.data.AUTOTUNE)

    if args.loss == "focal":
        alpha = (weights / weights.sum()).tolist()
        loss = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=2.0)
        class_weight = None
    else:
        loss = keras.losses.CategoricalCrossentropy()
        class_weight = {i: float(w) for i, w in enumerate(weights)}
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=args.weight_decay),
                  loss=loss, metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_accuracy",
                                               patience=3 if args.quick else 8,
                                               restore_best_weights=True),
                 keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                   patience=2 if args.quick else 4)]
    if args.time_budget:
        callbacks.append(train_data.time_budget(keras, args.time_budget))
    t0 = time.time()
    hist = model.fit(to_ds(x_tr, y_tr, True), validation_data=to_ds(x_va, y_va, False),
                     epochs=args.epochs, class_weight=class_weight, callbacks=callbacks,
                     verbose=2)
    val_acc = float(max(hist.history.get("val_accuracy", [float("nan")])))
    model.save(args.out)
    summary = {"out": args.out, "val_accuracy": val_acc, "epochs_run": len(hist.history["loss"]),
               "train_seconds": round(time.time() - t0, 1), "backbone": args.backbone,
               "keras_version": keras.__version__}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
