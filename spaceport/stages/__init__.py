"""The stages, one package each, in the order :data:`spaceport.core.graph.PACKAGES` lists them.

Each package's ``__init__`` declares ``STAGE`` and imports nothing heavy (the Lambdas bundle it);
the work is in its other modules."""
