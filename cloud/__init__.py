"""The AWS deployment: the CDK stacks (``cloud/stacks``, entered from ``app.py``), the Lambda
handlers (``cloud/lambdas``) and the workflow (``cloud/statemachine``). The runtime code the Lambdas
and ``spaceport aws ...`` share is :mod:`spaceport.cloud`."""
