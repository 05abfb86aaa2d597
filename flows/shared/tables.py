"""Checks every automation applies to an input table: column mapping, required columns, text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from moltbot.errors import InputError


def named_list(names: Iterable[str], noun: str) -> str:
    """`column 'a'` or `columns 'a', 'b'`: names for a one-line error message."""
    names = list(names)
    return f"{noun if len(names) == 1 else noun + 's'} " + ", ".join(map(repr, names))


def rename_columns(
    raw: pd.DataFrame,
    *,
    source_label: str,
    columns: Mapping[str, str] | None,
    known: Iterable[str],
) -> pd.DataFrame:
    """Strip stray spaces from headers, apply the user's mapping, and refuse ambiguous results.

    Args:
        raw: the table as read; not modified.
        source_label: what to call the source in messages (a file name, never a URL password).
        columns: the user's mapping from the source's names to the canonical ones.
        known: the canonical column names a mapping may target.

    Raises:
        InputError: the mapping names a column the source lacks or targets an unknown one, or a
            column name appears twice after renaming.
    """
    frame = raw.rename(columns=lambda name: str(name).strip())
    found = list(frame.columns)
    if columns:
        known = list(known)
        mapping = {str(k).strip(): str(v).strip() for k, v in columns.items()}
        absent = [name for name in mapping if name not in found]
        if absent:
            raise InputError(
                f"{source_label}: column mapping names {named_list(absent, 'column')} "
                f"not in the source (found: {', '.join(found)})"
            )
        unknown = sorted(set(mapping.values()) - set(known))
        if unknown:
            raise InputError(
                f"{source_label}: column mapping targets {named_list(unknown, 'column')} "
                f"not among {', '.join(known)}"
            )
        frame = frame.rename(columns=mapping)
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise InputError(
            f"{source_label}: {named_list(duplicated, 'column')} appears more than once"
        )
    return frame


def require_columns(frame: pd.DataFrame, required: Iterable[str], *, source_label: str) -> None:
    """Raise `InputError` naming every required column `frame` lacks, and the ones it has."""
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise InputError(
            f"{source_label}: missing {named_list(missing, 'column')} "
            f"(found: {', '.join(map(str, frame.columns))})"
        )


def text_values(series: pd.Series) -> pd.Series:
    """Values as stripped strings; missing and blank cells become NA."""
    if pd.api.types.is_float_dtype(series):
        whole = series.dropna()
        # Ids read as floats because of a blank cell would otherwise print as "1001.0".
        if (whole == np.floor(whole)).all():
            series = series.astype("Int64")
    text = series.astype("str").str.strip()
    return text.mask(text == "")
