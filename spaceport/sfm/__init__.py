"""The SfM stage: photos, a zip of photos or a video in; PINHOLE cameras and a sparse model out.

``spaceport.sfm.pipeline.run_sfm(input, out, config)`` is the entry point; ``ingest`` turns an
upload into a folder of usable images; ``colmap_steps`` holds the pycolmap phases, which only
ever run in a spawned worker process (pycolmap's bundled zlib breaks Pillow's PNG writer in any
process that imported pycolmap first). Nothing heavy is imported here.
"""
