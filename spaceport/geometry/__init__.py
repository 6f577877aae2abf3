"""Formats and geometry the stages share: COLMAP models, splat PLY files, cameras and PSNR, and the
upright turn of a reconstruction."""
