"""Type aliases shared by the layers."""

from typing import Any

import jax

Array = jax.Array
DType = Any
Initializer = Any
