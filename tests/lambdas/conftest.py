"""Fixtures of the Lambda tests (helpers live in lambdas_support, a uniquely named module)."""

from lambdas_support import aws, env, machine, started  # noqa: F401
