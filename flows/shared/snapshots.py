"""Tables as JSON values for shadow-mode snapshots: pandas' "split" layout, column by column."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def split_json(frame: pd.DataFrame) -> dict[str, Any]:
    """The JSON value `frame.to_json(orient="split", index=False, date_format="iso",
    date_unit="us")` writes, built column by column (rows as tuples: JSON arrays).

    pandas writes that layout through `DataFrame.to_dict`, one Python object per cell and per
    step: about 10 s for a million rows of six columns (a stock file). Here each column of a
    common type becomes its JSON values in one vectorised step (text as it is, numbers with
    NaN and infinities as null, times as ISO 8601 to the microsecond, UTC ones ending in `Z`);
    any other column goes through pandas' own writer. One difference, on purpose: a float keeps
    every digit, where pandas' writer rounds it to 10 decimal places.
    """
    if frame.shape[1] == 0:
        return _pandas_split(frame)
    columns = [_json_values(frame.iloc[:, position]) for position in range(frame.shape[1])]
    return {
        "columns": json.loads(json.dumps(list(frame.columns), default=str)),
        # Tuples: JSON arrays all the same, and a million of them cost a tenth of lists.
        "data": list(zip(*columns, strict=True)),
    }


def _pandas_split(frame: pd.DataFrame) -> dict[str, Any]:
    text = frame.to_json(orient="split", index=False, date_format="iso", date_unit="us")
    return json.loads(text)


def _json_values(column: pd.Series) -> list[Any]:
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
        return _iso_times(column)
    if dtype.kind in "iub" and isinstance(dtype, np.dtype):
        return column.tolist()
    if dtype.kind == "f" and isinstance(dtype, np.dtype):
        values = column.to_numpy()
        finite = np.isfinite(values)
        listed = values.tolist()
        if finite.all():
            return listed
        return [value if ok else None for value, ok in zip(listed, finite.tolist(), strict=True)]
    if isinstance(dtype, pd.StringDtype) or (dtype.kind == "O" and _all_text(column)):
        # Arrow's list of a text column: str values, None where missing (NaN or None).
        return pa.array(column.array, type=pa.large_string(), from_pandas=True).to_pylist()
    return [row[0] for row in _pandas_split(column.to_frame())["data"]]


def _all_text(column: pd.Series) -> bool:
    """True when every value of an object column is a str or missing (None, NaN)."""
    present = column.dropna()
    return bool(present.map(type).eq(str).all())


def _iso_times(column: pd.Series) -> list[Any]:
    """ISO 8601 to the microsecond: UTC instants of a zoned column end in `Z`, naive ones bare."""
    zoned = isinstance(column.dtype, pd.DatetimeTZDtype)
    instants = column.dt.tz_convert("UTC").dt.tz_localize(None) if zoned else column
    values = pa.array(instants.to_numpy(dtype="datetime64[us]"), from_pandas=True)
    # Arrow writes the seconds of a microsecond timestamp with their six decimals.
    return pc.strftime(
        values, format="%Y-%m-%dT%H:%M:%SZ" if zoned else "%Y-%m-%dT%H:%M:%S"
    ).to_pylist()
