"""The local executor: `spaceport run` lays out a job folder as SageMaker would and runs each stage's
container command in it (:mod:`spaceport.local.runner`), with resume markers and a live display."""
