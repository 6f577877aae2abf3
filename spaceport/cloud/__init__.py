"""The AWS side of Spaceport: job records, notifications, submit/status. boto3 only (no sagemaker SDK).

Importable from the Lambdas (bundled with them) and from the CLI; nothing here runs at import time.
"""
