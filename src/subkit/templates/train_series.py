"""Reference training script for time-series classification (offline, CPU-friendly).

A small 1-D convolutional network: BatchNormalization on the raw input (the data are not
scaled by the organisers; the saved model scales them itself), three Conv1D blocks,
global average pooling, dropout and a softmax head; class-balanced weights (the classes
are imbalanced: Pirate Pain is about 77/14/8 %), AdamW, early stopping on a stratified
validation split. Saves `weights.keras`, ready for `subkit build --weights weights.keras`.

    python train.py --data train.npz            # X (n, steps, features), labels (n,)
    python train.py --data train.npz --quick    # fewer epochs (subkit demo uses it)
"""

import argparse
import json
import os
import time

import numpy as np

import train_data  # beside this file: reading the training set, the time budget

# The competition's file layout, written by `subkit init` from its profile.
DATA = {"images_key": "X", "labels_key": "labels", "class_names": []}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="npz with the series and their labels")
    p.add_argument("--out", default="weights.keras")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-split", type=float, default=0.15)
    p.add_argument("--quick", action="store_true", help="few epochs (subkit demo uses it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--x-key", default=DATA["images_key"])
    p.add_argument("--labels-key", default=DATA["labels_key"])
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="end training after S seconds (default: 150 with --quick, else none)")
    args = p.parse_args(argv)
    if args.time_budget is None:
        args.time_budget = 150.0 if args.quick else 0.0
    if args.epochs is None:
        args.epochs = 25 if args.quick else 120
    return args


def stratified_split(labels, val_fraction, seed):
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = min(max(int(round(len(idx) * val_fraction)), 1), len(idx) - 1) if len(idx) > 1 else 0
        val.extend(idx[:k].tolist())
    val = np.array(sorted(val), dtype=int)
    return np.setdiff1d(np.arange(len(labels)), val), val


def build_model(keras, input_shape, n_classes):
    inputs = keras.Input(input_shape, name="series")
    x = keras.layers.BatchNormalization(momentum=0.9, name="scale_inputs")(inputs)
    for filters, kernel in ((32, 5), (64, 5), (64, 3)):
        x = keras.layers.Conv1D(filters, kernel, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="series_classifier")


def main(argv=None):
    args = parse_args(argv)
    d = train_data.load(args.data, [args.x_key, args.labels_key])
    train_data.check_inputs(d[args.x_key], what="series")
    X = d[args.x_key].astype(np.float32)
    names = DATA["class_names"]
    labels = train_data.class_ids(d[args.labels_key], names, len(X))  # ids or names (no_pain)
    # the data first: a mistake in the file is one error line, before TensorFlow loads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(args.seed)
    n_classes = max(int(labels.max()) + 1, len(names))
    tr, va = stratified_split(labels, args.val_split, args.seed)
    counts = np.bincount(labels[tr], minlength=n_classes).astype(float)
    class_weight = {i: float(len(tr) / (n_classes * max(c, 1.0))) for i, c in enumerate(counts)}
    print(f"train {len(tr)}  val {len(va)}  classes {n_classes}  series {X.shape[1:]}")
    model = build_model(keras, X.shape[1:], n_classes)
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=1e-4),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_accuracy",
                                               patience=8 if args.quick else 20,
                                               restore_best_weights=True)]
    if args.time_budget:
        callbacks.append(train_data.time_budget(keras, args.time_budget))
    t0 = time.time()
    hist = model.fit(X[tr], labels[tr], validation_data=(X[va], labels[va]), epochs=args.epochs,
                     batch_size=args.batch_size, class_weight=class_weight, callbacks=callbacks,
                     verbose=2)
    model.save(args.out)
    summary = {"out": args.out, "val_accuracy": float(max(hist.history["val_accuracy"])),
               "epochs_run": len(hist.history["loss"]), "train_seconds": round(time.time() - t0, 1),
               "keras_version": keras.__version__}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
