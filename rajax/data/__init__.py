"""From video files to model batches: decoding (``video``), temporal sampling (``sampling``),
spatial regions (``regions``), dataset records (``records``), where a pipeline's videos come from
(``sources``), tf.data pipelines (``pipeline``), the feature store (``features``) and batches
prepared ahead in a background thread (``ahead``).

Nothing is imported here: ``rajax.data.video`` must stay importable without TensorFlow (the
detection process imports torchvision, which crashes after TensorFlow).
"""
