"""Fixtures for the metrics tests."""

from __future__ import annotations

import pandas as pd
import pytest

from .builders import make_images


@pytest.fixture
def images() -> pd.DataFrame:
    return make_images()
