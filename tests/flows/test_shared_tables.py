"""Input-table checks shared by the automations: mapping, required columns, text cells."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.shared.tables import named_list, rename_columns, require_columns, text_values
from moltbot.errors import InputError

KNOWN = ("sku", "name", "on_hand")


def test_headers_are_stripped_and_the_mapping_applied() -> None:
    raw = pd.DataFrame({" 품번 ": ["A"], "name": ["우유"], "Qty": ["3"]})
    frame = rename_columns(
        raw, source_label="재고.csv", columns={"품번": "sku", "Qty": "on_hand"}, known=KNOWN
    )
    assert list(frame.columns) == ["sku", "name", "on_hand"]
    assert list(raw.columns) == [" 품번 ", "name", "Qty"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"Qty": "on_hand"}, "재고.csv: column mapping names column 'Qty' not in the source"),
        ({"code": "barcode"}, "column mapping targets column 'barcode' not among sku, name"),
        ({"code": "sku"}, "재고.csv: column 'sku' appears more than once"),
    ],
)
def test_ambiguous_or_wrong_mappings_are_bad_input(columns: dict, message: str) -> None:
    raw = pd.DataFrame({"sku": ["A"], "code": ["B"]})
    with pytest.raises(InputError, match=message):
        rename_columns(raw, source_label="재고.csv", columns=columns, known=KNOWN)


def test_missing_required_columns_are_named_with_what_was_found() -> None:
    with pytest.raises(InputError) as raised:
        require_columns(pd.DataFrame({"sku": []}), KNOWN, source_label="s.csv")
    assert str(raised.value) == "s.csv: missing columns 'name', 'on_hand' (found: sku)"


def test_text_values_strip_blank_to_na_and_whole_floats_to_ids() -> None:
    assert text_values(pd.Series([" a ", "", None, "김치"])).tolist()[::3] == ["a", "김치"]
    assert text_values(pd.Series([" a ", "", None])).isna().tolist() == [False, True, True]
    assert text_values(pd.Series([1001.0, None, 1002.0])).tolist()[::2] == ["1001", "1002"]
    assert text_values(pd.Series([1.5])).tolist() == ["1.5"]


def test_named_list_says_one_or_many() -> None:
    assert named_list(["a"], "column") == "column 'a'"
    assert named_list(["a", "b"], "row") == "rows 'a', 'b'"
