"""TFDS builders for rajax. Importing this package registers ``breakfast`` and ``video_folder``.

Build one with, for example::

    import tensorflow_datasets as tfds
    from rajax.datasets import Breakfast

    builder = Breakfast(config="both", data_dir="~/tensorflow_datasets", actors_file="actors.jsonl")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="/data/BreakfastII_15fps_qvga_sync"))
    train = builder.as_dataset(split="train")

and feed it to the pipelines through ``rajax.data.sources.tfds_videos``.
"""

from rajax.datasets.breakfast import Breakfast
from rajax.datasets.video_folder import VideoFolder

__all__ = ["Breakfast", "VideoFolder"]
