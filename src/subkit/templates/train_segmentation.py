"""Reference training script for semantic segmentation (offline, CPU-friendly).

A small U-Net trained from scratch (the Mars competition forbade pretrained models): two
down- and two up-sampling levels with skip connections, a per-pixel softmax over the
classes; inputs divided by 255 (model.py's PREPROCESS = "unit"); sparse categorical
cross-entropy with class weights (Big Rock is rare), horizontal-flip augmentation applied
to images AND masks alike, AdamW, early stopping. Saves `weights.keras`, ready for
`subkit build --weights weights.keras`.

    python train.py --data train.npz            # images (n, H, W), masks (n, H, W)
    python train.py --data train.npz --quick    # a narrower net, fewer epochs (subkit demo)
"""

import argparse
import json
import os
import time

import numpy as np

import train_data  # beside this file: reading the training set, the time budget

# The competition's layout, written by `subkit init` from its profile.
DATA = {"images_key": "images", "labels_key": "masks", "n_classes": 5, "ignore_classes": [0]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="npz with images and masks")
    p.add_argument("--out", default="weights.keras")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-split", type=float, default=0.15)
    p.add_argument("--quick", action="store_true", help="narrow net, few epochs (subkit demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="end training after S seconds (default: 150 with --quick, else none)")
    args = p.parse_args(argv)
    if args.time_budget is None:
        args.time_budget = 150.0 if args.quick else 0.0
    if args.epochs is None:
        args.epochs = 12 if args.quick else 80
    return args


def build_model(keras, input_shape, n_classes, width):
    L = keras.layers
    inputs = keras.Input(input_shape, name="image")

    def block(x, f):
        for _ in range(2):
            x = L.Conv2D(f, 3, padding="same", use_bias=False)(x)
            x = L.BatchNormalization(momentum=0.9)(x)
            x = L.Activation("relu")(x)
        return x

    s1 = block(inputs, width)
    s2 = block(L.MaxPooling2D()(s1), width * 2)
    b = block(L.MaxPooling2D()(s2), width * 4)
    u2 = block(L.Concatenate()([L.UpSampling2D()(b), s2]), width * 2)
    u1 = block(L.Concatenate()([L.UpSampling2D()(u2), s1]), width)
    outputs = L.Conv2D(n_classes, 1, activation="softmax", name="probabilities")(u1)
    return keras.Model(inputs, outputs, name="unet")


def main(argv=None):
    args = parse_args(argv)
    d = train_data.load(args.data, [DATA["images_key"], DATA["labels_key"]])
    train_data.check_inputs(d[DATA["images_key"]], what="images")
    X = d[DATA["images_key"]].astype(np.float32) / 255.0
    Y = train_data.masks(d[DATA["labels_key"]], len(X), DATA["n_classes"])
    # the data first: a mistake in the file is one error line, before TensorFlow loads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(args.seed)
    if X.ndim == 3:
        X = X[..., None]
    k = DATA["n_classes"]
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(X))
    n_val = max(1, int(round(len(X) * args.val_split)))
    va, tr = idx[:n_val], idx[n_val:]
    X_tr, Y_tr = (np.concatenate([X[tr], X[tr][:, :, ::-1]]),
                  np.concatenate([Y[tr], Y[tr][:, :, ::-1]]))
    counts = np.bincount(Y_tr.ravel(), minlength=k).astype(float)
    weights = np.clip(counts.sum() / (k * np.maximum(counts, 1.0)), 0.2, 10.0)
    for c in DATA["ignore_classes"]:  # not scored: learn it, but weigh it little
        weights[c] = min(weights[c], 0.5)
    sample_weight = weights[Y_tr].astype(np.float32)
    print(f"train {len(tr)} (+ flipped)  val {len(va)}  image {X.shape[1:]}  classes {k}")
    model = build_model(keras, X.shape[1:], k, 8 if args.quick else 32)
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=1e-4),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=4 if args.quick else 12,
                                               restore_best_weights=True)]
    if args.time_budget:
        callbacks.append(train_data.time_budget(keras, args.time_budget))
    t0 = time.time()
    hist = model.fit(X_tr, Y_tr, sample_weight=sample_weight, validation_data=(X[va], Y[va]),
                     epochs=args.epochs, batch_size=args.batch_size, callbacks=callbacks, verbose=2)
    model.save(args.out)
    summary = {"out": args.out, "val_accuracy": float(max(hist.history["val_accuracy"])),
               "epochs_run": len(hist.history["loss"]), "train_seconds": round(time.time() - t0, 1),
               "keras_version": keras.__version__}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
