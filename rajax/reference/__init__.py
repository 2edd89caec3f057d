"""Independent reference implementations used to check and to benchmark rajax.

- ``architecture``: I3D's layer table and its multiply-accumulate count (imports JAX, not PyTorch).
- ``torch_i3d``: a PyTorch InceptionI3d with the parameter names of piergiaj/pytorch-i3d
  (imports torch; import it explicitly, before anything imports TensorFlow).
"""
