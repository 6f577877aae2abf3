"""The session-scoped synth fixture (helpers live in infra_support, a uniquely named module)."""

from infra_support import synth  # noqa: F401
