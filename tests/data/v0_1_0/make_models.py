"""Writes the model files in this folder (run once with fastsae 0.1.0, kept as written).

Each model is small and fitted on seeded data; ``expected.npz`` holds the
inputs and what each model returned for them under 0.1.0, so that
``tests/test_compat.py`` can check that later versions load the files and give
the same outputs.

    python tests/data/v0_1_0/make_models.py
"""
import os


def main():
    """Write the files (imports fastsae 0.1.0's module layout: run it with that version)."""
    import warnings

    import numpy as np

    import fastsae
    from fastsae.audio import Spectrogram
    from fastsae.compose import Pipeline
    from fastsae.pipeline import SelfTaughtFeatures, Standardizer

    HERE = os.path.dirname(os.path.abspath(__file__))
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    out = {}

    X = rng.uniform(0.1, 0.9, (120, 12))
    y = rng.integers(0, 3, 120)
    out["X"], out["y"] = X, y

    sae = fastsae.SparseAutoencoder(n_hidden=5, max_iter=20, random_state=0).fit(X)
    fastsae.save(sae, os.path.join(HERE, "sparse_autoencoder.npz"))
    out["sparse_autoencoder.transform"] = sae.transform(X)
    out["sparse_autoencoder.reconstruct"] = sae.reconstruct(X)

    tied = fastsae.SparseAutoencoder(n_hidden=4, tied=True, decoder="linear", max_iter=10,
                                     dtype="float32", random_state=1).fit(X)
    fastsae.save(tied, os.path.join(HERE, "sparse_autoencoder_tied_f32.npz"))
    out["sparse_autoencoder_tied_f32.transform"] = tied.transform(X)

    labels = np.array(["a", "b", "c"])[y]
    clf = fastsae.SoftmaxRegression(weight_decay=1e-3, max_iter=30, random_state=0).fit(X, labels)
    fastsae.save(clf, os.path.join(HERE, "softmax_regression.npz"))
    out["softmax_regression.predict_proba"] = clf.predict_proba(X)
    out["softmax_regression.predict"] = clf.predict(X)

    stack = fastsae.StackedAutoencoder((6, 4), pretrain_iter=10, softmax_iter=10, finetune_iter=10,
                                       random_state=0).fit(X, y)
    fastsae.save(stack, os.path.join(HERE, "stacked_autoencoder.npz"))
    out["stacked_autoencoder.predict_proba"] = stack.predict_proba(X)
    out["stacked_autoencoder.transform"] = stack.transform(X)

    pca = fastsae.PCAWhitening(retain=0.9, epsilon=0.01).fit(X)
    fastsae.save(pca, os.path.join(HERE, "pca_whitening.npz"))
    out["pca_whitening.transform"] = pca.transform(X)

    norm = fastsae.SigmoidNormalizer().fit(X)
    fastsae.save(norm, os.path.join(HERE, "sigmoid_normalizer.npz"))
    out["sigmoid_normalizer.transform"] = norm.transform(X)

    std = Standardizer().fit(X)
    fastsae.save(std, os.path.join(HERE, "standardizer.npz"))
    out["standardizer.transform"] = std.transform(X)

    images = rng.uniform(0.1, 0.9, (6, 10, 14))
    out["images"] = images
    cae = fastsae.ConvolutionalAutoencoder(3, (4, 5), max_iter=10, random_state=0).fit(images)
    fastsae.save(cae, os.path.join(HERE, "convolutional_autoencoder.npz"))
    out["convolutional_autoencoder.transform"] = cae.transform(images)

    img_labels = np.array([0, 1, 0, 1, 0, 1])
    net = fastsae.StackedConvolutionalAutoencoder(
        [dict(n_filters=3, patch_shape=(3, 3), pool_shape=(2, 2)),
         dict(n_filters=2, patch_shape=(2, 2), n_pool_regions=(1, 2), pool="max")],
        pretrain_iter=5, softmax_iter=5, finetune_iter=5, random_state=0).fit(images, img_labels)
    fastsae.save(net, os.path.join(HERE, "stacked_convolutional_autoencoder.npz"))
    out["stacked_convolutional_autoencoder.predict_proba"] = net.predict_proba(images)

    spectra = [rng.normal(-40.0, 5.0, (10, int(n))) for n in rng.integers(12, 30, 12)]
    out.update({f"spectra.{i}": S for i, S in enumerate(spectra)})
    stf = SelfTaughtFeatures(n_hidden=4, n_frames=3, n_windows=300, max_iter=10,
                             random_state=0).fit(spectra)
    fastsae.save(stf, os.path.join(HERE, "self_taught_features.npz"))
    out["self_taught_features.transform"] = stf.transform(spectra)

    conv = fastsae.ConvolutionalFeatures(stf.sae_, (10, 3), preprocessing=stf.preprocessing_,
                                         pool=("mean", "max"), n_pool_regions=(1, 2))
    fastsae.save(conv, os.path.join(HERE, "convolutional_features.npz"))
    out["convolutional_features.transform"] = conv.transform(spectra)

    sr = 8000
    t = np.arange(sr // 4) / sr
    clips = [np.sin(2 * np.pi * f * t).astype(np.float32) for f in (300.0, 500.0, 700.0, 900.0)]
    clip_labels = np.array([0, 1, 0, 1])
    pipe = Pipeline([("spectrogram", Spectrogram(sr=sr, n_bands=8)),
                     ("flat", fastsae.pipeline.SelfTaughtFeatures(
                         n_hidden=3, n_frames=2, n_windows=100, max_iter=5, random_state=0)),
                     ("clf", fastsae.SoftmaxRegression(max_iter=20, random_state=0))])
    pipe.fit(clips, clip_labels)
    fastsae.save(pipe, os.path.join(HERE, "pipeline.npz"))
    out.update({f"clips.{i}": c for i, c in enumerate(clips)})
    out["pipeline.predict_proba"] = pipe.predict_proba(clips)

    np.savez(os.path.join(HERE, "expected.npz"), **out)
    print(f"fastsae {fastsae.__version__}: wrote {len(out)} expected arrays")


if __name__ == "__main__":
    main()
