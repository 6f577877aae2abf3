"""The Publish stage: the job report (``index.html``) and the browser viewer (``viewer.html``).

Light on import: the heavy work (NumPy, Pillow) happens inside :mod:`spaceport.publish.report`.
"""
