"""Red-team variants of issue 11's CLI items: messages show levels as the user wrote them."""

from __future__ import annotations

import pandas as pd
import pytest

from raking.cli import main


@pytest.mark.parametrize(
    ("column", "body", "shown"),
    [
        ("age", "1,0.2\n2,0.3\n1.0,0.5\n", "1"),  # '1' and '1.0' are the same integer level
        ("score", "0.5,0.4\n0.50,0.6\n", "0.5"),
        ("sex", "F,0.5\nF,0.5\n", "'F'"),
    ],
)
def test_a_duplicated_level_is_named_as_a_plain_value(tmp_path, capsys, column, body, shown):
    """Not as ``np.int64(1)`` (NumPy 2's repr of the parsed level)."""
    frame = pd.DataFrame({"sex": ["F", "M"] * 3, "age": [1, 2, 3] * 2, "score": [0.5, 2.5] * 3})
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "t.csv").write_text("level,target\n" + body)
    argv = ["rake", str(tmp_path / "data.csv"), "--target", f"{column}={tmp_path / 't.csv'}"]
    code = main([*argv, "--out", str(tmp_path / "w.csv")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"level(s) {shown} appear more than once" in err
    assert "np." not in err
