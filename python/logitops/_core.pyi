"""The C++ extension (cpp/bind/): kernels, dispatch and thread settings. Its functions are
called only by the package's Python modules, which own the API's types."""

from typing import Any

def __getattr__(name: str) -> Any: ...
