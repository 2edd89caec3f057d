"""Linear probing before fine-tuning: the new classifier fitted on the frozen backbone's features.

Stage 1 replaces I3D's Kinetics classifier with a new one. Started at random, its large early
gradients flow into the pretrained blocks and distort the features before the classifier knows
anything (Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution", ICLR 2022: linear probing, then fine-tuning). With
``finetune.classifier_init="probe"`` the classifier starts from a multinomial logistic regression
fitted on the Kinetics-400 features (stage 2, already stored by ``rajax run``) of every region of
every training video.

I3D's classifier is a 1x1x1 convolution applied per feature position and averaged over time, which
is linear: on features averaged over time first it gives the same logits. So the probe is fitted on
``[videos x regions, C]`` time-averaged features and its weights are the classifier's exactly.
"""

from __future__ import annotations

import numpy as np

from rajax.errors import RajaxError


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, num_classes: int,
                            l2: float | None = None, iterations: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel [C, K], bias [K])`` minimising the mean cross-entropy plus ``l2 / 2 * |kernel|^2``.

    ``l2`` defaults to ``1 / N``: the objective of scikit-learn's ``LogisticRegression(C=1)`` divided by
    N, a classifier confident on separable data without growing without bound. The problem is
    convex; L-BFGS solves it to float32 precision in a few hundred iterations.
    """
    import jax
    import jax.numpy as jnp
    import optax

    x = jnp.asarray(features, jnp.float32)
    y = jnp.asarray(labels, jnp.int32)
    l2 = 1.0 / len(x) if l2 is None else l2

    def objective(params):
        logits = x @ params["kernel"] + params["bias"]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss + 0.5 * l2 * jnp.sum(params["kernel"] ** 2)

    params = {"kernel": jnp.zeros((x.shape[1], num_classes)), "bias": jnp.zeros(num_classes)}
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            value, grad = value_and_grad(params, state=state)
            updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=objective)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=iterations)
        return params

    fitted = jax.device_get(run(params))
    return np.asarray(fitted["kernel"]), np.asarray(fitted["bias"])


def probe_classifier(config, starting_variables: dict | None) -> dict:
    """The ``Logits`` parameters of stage 1's classifier fitted on ``config.finetune.probe_features``
    (the training videos' ``finetune.regions``), as ``{"Conv3d_0c_1x1": {"kernel", "bias"}}``.

    The store must hold features of these data settings made by the backbone stage 1 starts from.
    """
    from rajax.data.features import FeatureSplit, read_meta, settings_differences
    from rajax.train import backbone as backbone_lib
    from rajax.train.extraction import DATA_SETTINGS, feature_settings

    store = config.finetune.probe_features
    if not store:
        raise RajaxError("config.finetune.classifier_init=probe needs config.finetune.probe_features: the "
                         "feature store of the starting backbone (rajax run sets it to its Kinetics features)")
    meta = read_meta(store)
    stored = meta.get("settings", {})
    digest = backbone_lib.variables_digest(starting_variables) if starting_variables is not None else None
    wanted = feature_settings(config, digest)
    differences = settings_differences(stored, wanted, [*DATA_SETTINGS, "backbone"])
    if meta.get("class_names") != list(config.classes):
        differences.append(f"class_names: {meta.get('class_names')} (store) vs {list(config.classes)}")
    if differences:
        raise RajaxError(f"{store}: its features cannot start stage 1's classifier ("
                         + "; ".join(differences) + "); config.finetune.probe_features must be the starting "
                         "backbone's features of this dataset with these data settings")
    regions = tuple(config.finetune.regions)
    split = FeatureSplit(store, config.data.train_split, regions)
    features, labels = [], []
    for batch in split.batches(64, shard=None):
        keep = batch["mask"] > 0
        features.append(batch["features"][keep].mean(axis=2).reshape(-1, batch["features"].shape[-1]))
        labels.append(np.repeat(batch["label"][keep], len(regions)))
    if not features or not sum(len(f) for f in features):
        raise RajaxError(f"{store}: no features of the training split {config.data.train_split!r} to fit the probe on")
    kernel, bias = fit_logistic_regression(np.concatenate(features), np.concatenate(labels), len(config.classes))
    return {"Conv3d_0c_1x1": {"kernel": kernel.reshape((1, 1, 1) + kernel.shape), "bias": bias}}
