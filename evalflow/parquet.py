"""Parquet bytes (a run's results, a history record, a dataset) as a pandas DataFrame.

`pandas.read_parquet(io.BytesIO(data))` hands pyarrow a Python file object. pyarrow's thread
pool can drop its last reference to it after the main thread has finished, while Python shuts
down: that thread then asks for the GIL, the interpreter ends it, and the process aborts with
"terminate called without an active exception" (exit code 134; apache/arrow#34314) after the
command printed everything. Measured here: 5 of 100 read-then-exit processes, and `evalflow
failures` in the test suite. The bytes are copied into memory pyarrow owns instead, so its
threads never hold a Python object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def read_frame(data: bytes) -> pd.DataFrame:
    """The table in `data` (Parquet); pyarrow's errors as raised (OSError, ValueError)."""
    import pandas as pd
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    sink.write(data)
    return pd.read_parquet(pa.BufferReader(sink.getvalue()))
