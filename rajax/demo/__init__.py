"""``rajax demo``: the whole method, end to end, on a small generated dataset, in minutes on a CPU.

- ``rajax.demo.generate``: the dataset: videos of one real person (cut out of a photograph that
  Ultralytics ships: ``rajax.demo.people``) doing a sequence of sub-actions in a cluttered scene
  full of distracting motion (drawn by ``rajax.demo.drawing``).
- ``rajax.demo.run``: the stages (generate, detect the actor with YOLO, extract region features with
  the Kinetics-400 I3D, train and test four heads) and the outputs (results table, ``summary.json``,
  pictures).

Nothing is imported here: the generator must run without TensorFlow or torch.
"""
