"""Code the tests and the benches share and the runtime package never imports.

``synthetic_splats``: seeded splats shaped like trained scenes. ``sfm_evaluate``: camera errors
of an SfM result against known cameras (synthetic scenes, Strecha laser scans, another run).
"""
