"""CI's oldest-versions environment pins exactly the lower bounds pyproject.toml admits.

``.ci/oldest.txt`` is the pip constraints file of CI's second venv (``.venv-oldest``). If a lower
bound in pyproject.toml moves and the file does not follow (or the reverse), that job would test
versions users never get; these tests fail instead.
"""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CONSTRAINTS = ROOT / ".ci" / "oldest.txt"


def lower_bounds(pyproject_text: str) -> dict[str, Version]:
    """The ``>=`` (or ``==``) version of each runtime and test requirement, by canonical name."""
    project = tomllib.loads(pyproject_text)["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    bounds: dict[str, Version] = {}
    for text in requirements:
        req = Requirement(text)
        floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
        assert len(floors) == 1, f"{text!r} in pyproject.toml needs exactly one >= or == bound"
        name = canonicalize_name(req.name)
        assert name not in bounds, f"{req.name!r} is listed twice in pyproject.toml"
        bounds[name] = floors[0]
    return bounds


def pins(constraints_text: str) -> dict[str, Version]:
    """The ``name==version`` lines of a constraints file, by canonical name."""
    pinned: dict[str, Version] = {}
    for raw in constraints_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{line!r}: pin it with == only"
        pinned[canonicalize_name(req.name)] = Version(specs[0].version)
    return pinned


def drift(pyproject_text: str, constraints_text: str) -> list[str]:
    """Every disagreement between the lower bounds and the pins, as readable lines."""
    bounds, pinned = lower_bounds(pyproject_text), pins(constraints_text)
    out = [f"{n}: pyproject admits >= {v}, no pin" for n, v in bounds.items() if n not in pinned]
    out += [f"{n}: pinned {v}, not in pyproject" for n, v in pinned.items() if n not in bounds]
    out += [
        f"{n}: pyproject admits >= {bounds[n]}, pinned {v}"
        for n, v in pinned.items()
        if n in bounds and v != bounds[n]
    ]
    return out


def test_the_oldest_pins_are_pyprojects_lower_bounds():
    assert drift(PYPROJECT.read_text(), CONSTRAINTS.read_text()) == []


def test_the_pins_cover_the_runtime_dependencies_and_the_test_extra():
    pinned = pins(CONSTRAINTS.read_text())
    for name in ("numpy", "scipy", "numba", "pandas", "matplotlib", "pytest", "torch", "dask"):
        assert name in pinned


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"pandas>=2.1"', '"pandas>=2.2"', "pandas: pyproject admits >= 2.2, pinned 2.1.0"),
        ('    "tqdm>=4.66",\n', "", "tqdm: pinned 4.66.0, not in pyproject"),
        (
            '"numpy>=1.26",',
            '"numpy>=1.26",\n    "rich>=13",',
            "rich: pyproject admits >= 13, no pin",
        ),
        ('"pytest>=8"', '"pytest>=8.1"', "pytest: pyproject admits >= 8.1, pinned 8.0.0"),
    ],
)
def test_a_moved_bound_is_reported(old, new, expected):
    text = PYPROJECT.read_text()
    assert text.count(old) == 1
    assert drift(text.replace(old, new), CONSTRAINTS.read_text()) == [expected]


def test_a_pin_that_is_not_exact_is_rejected():
    loose = CONSTRAINTS.read_text().replace("pandas==2.1.0", "pandas>=2.1.0")
    with pytest.raises(AssertionError, match="pin it with == only"):
        pins(loose)
