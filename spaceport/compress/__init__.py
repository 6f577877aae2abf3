"""Compression stage: a trained splat in, SOG (PlayCanvas) and SPZ (Niantic) files out.

Importing this package is cheap (no numpy/torch): the Lambdas and the plan import
:mod:`spaceport.compress.config`. The encoders live in :mod:`.sog` and :mod:`.spz`, the stage
driver in :mod:`.stage`, the CLI in :mod:`.command`.
"""
