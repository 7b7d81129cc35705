"""Provider fixtures live in the root conftest (tests/conftest.py); they are shared."""

from tests.conftest import API_KEY, AZURE_API_VERSION, AZURE_DEPLOYMENTS

__all__ = ["API_KEY", "AZURE_API_VERSION", "AZURE_DEPLOYMENTS"]
