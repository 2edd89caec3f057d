"""Experiment configs: ``base.py`` is the paper's full model; every other file changes only what differs.

Load one with ``rajax.train.config.load_config('configs/NAME.py')`` or ``rajax train NAME``.
"""
