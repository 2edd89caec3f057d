"""Training rajax: the stages of the method and the loop they share.

- ``config``: experiment configs (``configs/*.py``), ``--config.x=y`` overrides, config.json.
- ``steps``: pure, pmapped ``train_step`` / ``eval_step``, parameter freezing, the optimizer.
- ``trainer``: the training loop (resume, checkpoints, metrics, validation, final test).
- ``checkpoints``, ``metrics``, ``evaluation``: Orbax checkpoints, metric logs, evaluation reports.
- ``backbone``: I3D in the stages (fine-tuning model, feature extraction, the fine-tuned export).
- ``stages``: a config and a work directory -> each stage's model and data; ``train``, ``evaluate``.
- ``inputs``: a config's videos (a ``VideoSource`` per split), regions and video pipeline options.
- ``forwards``: the model forwards the stages hand the loop (I3D, head, end-to-end, I3D alone).
- ``layout``: the work directory, and the config each stage was trained with.
- ``extraction``: stage 2, features into the feature store.
- ``inference``: one video through a trained run (``rajax predict``).
- ``distributed``: multi-host set-up.
"""
