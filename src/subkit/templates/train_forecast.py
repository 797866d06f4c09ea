"""Reference training script for time-series forecasting (offline, CPU-friendly).

A small network with two inputs, the last values of a series (X, as predict receives
them) and its category one-hot, and one output per future step: STEPS = the longest
horizon of the competition's phases (18), so one model serves both phases (model.py cuts
its forecast to HORIZON). Mean squared error, AdamW, early stopping on a validation split
made BY SERIES (windows of one series are never on both sides: they overlap). Saves
`weights.keras`, ready for `subkit build --weights weights.keras`.

    python train.py --data train.npz            # X (n, 200), y (n, >= 18), categories, series
    python train.py --data train.npz --quick    # fewer epochs (subkit demo uses it)
"""

import argparse
import json
import os
import time

import numpy as np

import train_data  # beside this file: reading the training set, the time budget

# The competition's layout, written by `subkit init` from its profile.
DATA = {"images_key": "X", "labels_key": "y", "steps": 18,
        "categories": ["A", "B", "C", "D", "E", "F"]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="npz with X, y, categories (and series ids)")
    p.add_argument("--out", default="weights.keras")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-split", type=float, default=0.15)
    p.add_argument("--quick", action="store_true", help="few epochs (subkit demo uses it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="end training after S seconds (default: 150 with --quick, else none)")
    args = p.parse_args(argv)
    if args.time_budget is None:
        args.time_budget = 150.0 if args.quick else 0.0
    if args.epochs is None:
        args.epochs = 40 if args.quick else 200
    return args


def split_by_series(series, val_fraction, seed):
    """Whole series on each side: overlapping windows of one series would leak."""
    ids = np.unique(series)
    rng = np.random.default_rng(seed)
    val_ids = rng.choice(ids, max(1, int(round(len(ids) * val_fraction))), replace=False)
    val = np.isin(series, val_ids)
    return np.flatnonzero(~val), np.flatnonzero(val)


def build_model(keras, history, n_categories, steps):
    x_in = keras.Input((history,), name="history")
    c_in = keras.Input((n_categories,), name="category")
    x = keras.layers.Reshape((history, 1))(x_in)
    x = keras.layers.Conv1D(32, 7, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv1D(32, 5, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Concatenate()([x, c_in, x_in])
    x = keras.layers.Dense(128, activation="relu")(x)
    outputs = keras.layers.Dense(steps, name="forecast")(x)
    return keras.Model([x_in, c_in], outputs, name="forecaster")


def main(argv=None):
    args = parse_args(argv)
    d = train_data.load(args.data, [DATA["images_key"], DATA["labels_key"], "categories"],
                        optional=["series"])
    train_data.check_inputs(d[DATA["images_key"]], what="windows")
    X = d[DATA["images_key"]].astype(np.float32)
    y = train_data.targets(d[DATA["labels_key"]], len(X), DATA["steps"])
    cats = np.asarray(d["categories"]).reshape(-1).astype(str)
    if len(cats) != len(X):
        train_data.fail(f"{len(cats)} categories for {len(X)} windows",
                        "store one category per window")
    series = d["series"] if "series" in d else np.arange(len(X))
    # the data first: a mistake in the file is one error line, before TensorFlow loads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(args.seed)
    onehot = (cats[:, None] == np.asarray(DATA["categories"])[None, :]).astype(np.float32)
    tr, va = split_by_series(series, args.val_split, args.seed)
    print(f"train {len(tr)} windows  val {len(va)}  history {X.shape[1]}  steps {y.shape[1]}")
    model = build_model(keras, X.shape[1], onehot.shape[1], y.shape[1])
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=1e-4), loss="mse",
                  metrics=["mae"])
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=8 if args.quick else 20,
                                               restore_best_weights=True)]
    if args.time_budget:
        callbacks.append(train_data.time_budget(keras, args.time_budget))
    t0 = time.time()
    hist = model.fit([X[tr], onehot[tr]], y[tr], validation_data=([X[va], onehot[va]], y[va]),
                     epochs=args.epochs, batch_size=args.batch_size, callbacks=callbacks, verbose=2)
    model.save(args.out)
    summary = {"out": args.out, "val_mse": float(min(hist.history["val_loss"])),
               "epochs_run": len(hist.history["loss"]), "train_seconds": round(time.time() - t0, 1),
               "keras_version": keras.__version__}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
