"""Spaceport: photos or a video in, a compressed 3D Gaussian splat out.

The package root imports nothing heavy: the Lambdas and the CDK app import from here.
"""

__version__ = "0.1.0"
