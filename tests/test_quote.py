"""One quoting helper (``errors.quote``) for every value a message shows: file contents as Python quotes a
string, spec values as the user wrote them (``fields.shown``), each bounded."""

import pytest

from nnctl.errors import quote
from nnctl.fields import shown


@pytest.mark.parametrize(
    "value,limit,want",
    [
        ("abc", 40, "'abc'"),
        ("it's", 40, '"it\'s"'),
        (1.5, 40, "'1.5'"),
        ("abcdefghij", 10, "'abcdefghij'"),
        ("abcdefghijk", 10, "'abcdefghij'... (11 characters)"),
    ],
)
def test_file_contents_are_quoted_as_python_strings_and_cut_with_their_length(value, limit, want):
    assert quote(value, limit) == want


@pytest.mark.parametrize(
    "value,limit,want",
    [
        ("abc", 40, '"abc"'),
        (1.5, 40, "1.5"),
        (True, 40, "true"),
        (None, 40, "null"),
        ([1, 2], 40, "[1, 2]"),
        ("abcdefghijk", 10, '"abcdef...'),
        (list(range(30)), 40, "a list of 30"),
        ({f"k{i}": i for i in range(9)}, 40, "a table"),
        ({"a": 1}, 40, '{"a": 1}'),
    ],
)
def test_spec_values_are_shown_as_written_and_cut(value, limit, want):
    assert quote(value, limit, as_written=True) == want == shown(value, limit)
