import pytest

from tasks import cache


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
  """Points PODZOO_CACHE at a fresh directory, so tests that train never touch ~/.cache."""
  monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
  return tmp_path / "cache"
