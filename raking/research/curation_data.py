"""The data and the matching of the curation example (:mod:`raking.research.curation`).

ImageNet-Captions validation captions of 250 classes (the authors' ``imagenet_captions_val_c250``;
Fang et al.'s ImageNet-Captions, Flickr titles of ImageNet images) and the 1,000 ImageNet class
names, both shipped in ``raking/data/imagenet/``; keywords from the class names; MetaCLIP's
substring matching (``theory.md`` §8) as a sparse caption × keyword matrix. SciPy is imported
inside :func:`match_matrix`.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "PUNCTUATION",
    "CaptionData",
    "Synset",
    "class_keywords",
    "load_captions",
    "load_synsets",
    "match_matrix",
    "spacing",
]

PUNCTUATION = (",", ".", ";", ":", "?", "!", "`")
"""Characters MetaCLIP wraps in spaces before matching (``metaclip1/substr_matching.py``)."""

_DATA = ("data", "imagenet")


# --------------------------------------------------------------------------------------------
# Data: ImageNet-Captions (validation, 250 classes) and the ImageNet class names
# --------------------------------------------------------------------------------------------


class Synset(NamedTuple):
    """One ImageNet class: WordNet id, 1-based index and class name (``_`` read as a space)."""

    wnid: str
    index: int
    name: str


@dataclass(frozen=True, slots=True)
class CaptionData:
    """Captions (Flickr titles) and the image path of each; the path holds the class's wnid."""

    captions: tuple[str, ...]
    filepaths: tuple[str, ...]

    @property
    def wnids(self) -> tuple[str, ...]:
        """The class of each image, read from ``imagenet_images_flickr/<wnid>/<file>``."""
        return tuple(path.split("/")[-2] for path in self.filepaths)


def load_synsets() -> list[Synset]:
    """The 1,000 ImageNet classes shipped in ``raking/data/imagenet/imagenet_synsets.txt``.

    Each line is ``wnid index name``; the file holds exactly one name per class (no synonyms).
    """
    text = resources.files("raking").joinpath(*_DATA, "imagenet_synsets.txt").read_text("utf-8")
    out = []
    for line in text.split("\n"):
        if line.strip():
            wnid, index, name = line.split()
            out.append(Synset(wnid, int(index), name.replace("_", " ")))
    return out


def load_captions() -> CaptionData:
    """The 13,635 ImageNet-Captions validation captions of 250 classes (the authors' ``c250``).

    Read from ``raking/data/imagenet/imagenet_captions_val_c250.tsv.gz`` (columns ``title`` and
    ``filepath``, tab-separated, one caption per image; duplicate titles are kept, one per image).
    """
    path = resources.files("raking").joinpath(*_DATA, "imagenet_captions_val_c250.tsv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8", newline="") as f:
        lines = [line for line in f.read().split("\n") if line]
    rows = [line.split("\t") for line in lines[1:]]
    return CaptionData(tuple(r[0] for r in rows), tuple(r[1] for r in rows))


def class_keywords(
    synsets: Sequence[Synset], *, wnids: Sequence[str] | None = None, head_nouns: bool = False
) -> list[str]:
    """Keywords from class names: lowercased, duplicates dropped, in the order of ``synsets``.

    Parameters
    ----------
    synsets : sequence of Synset
        From :func:`load_synsets`.
    wnids : sequence of str, optional
        Keep only these classes (e.g. ``set(load_captions().wnids)``, the 250 classes present).
        Default: every class, a vocabulary fixed independently of the captions, like MetaCLIP's.
    head_nouns : bool
        Also add the last word of each multi-word name ("golden retriever" -> "retriever") [INF].
        Off by default: the file gives one name per class, so no synonyms can be derived. A head
        noun is a broader term, not a synonym, and some are misleading ("Band Aid" -> "aid").

    Notes
    -----
    Names that coincide after lowercasing ("crane" the bird and the machine, "Cardigan" the
    corgi and "cardigan" the sweater, the two "maillot") become one keyword: 997 of 1,000. The
    250 classes of the shipped captions all have one-word names (249 keywords: two are "crane");
    multi-word keywords ("kit fox") come from the other 750 classes.
    """
    keep = None if wnids is None else set(wnids)
    chosen = [s.name.lower() for s in synsets if keep is None or s.wnid in keep]
    if head_nouns:
        chosen += [name.split()[-1] for name in chosen if len(name.split()) > 1]
    return list(dict.fromkeys(chosen))


# --------------------------------------------------------------------------------------------
# Substring matching (MetaCLIP's rule)
# --------------------------------------------------------------------------------------------


def spacing(text: str) -> str:
    """Lowercase, pad with spaces, space-wrap :data:`PUNCTUATION`, turn tabs/newlines to spaces."""
    spaced = f" {text.lower()} "
    for punct in PUNCTUATION:
        spaced = spaced.replace(punct, f" {punct} ")
    for char in ("\t", "\n", "\r"):
        spaced = spaced.replace(char, " ")
    return spaced


def _check_texts(texts: object, *, name: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(
            f"{name} must be a sequence of strings, got {type(texts).__name__}. Wrap a single "
            f"text in a list: [{name[:-1]}]."
        )
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name}[{bad[0]}] is {type(texts[bad[0]]).__name__}, not a string.")
    return list(texts)


def match_matrix(captions: Sequence[str], keywords: Sequence[str]) -> Any:
    """The caption × keyword match indicator as a ``scipy.sparse.csr_matrix`` of float64.

    Entry ``(i, j)`` is 1 when keyword ``j`` occurs in caption ``i`` as whole words: MetaCLIP's
    test "space-padded keyword in the space-padded caption" after :func:`spacing` of both
    (lowercased; punctuation wrapped), so "cat" matches "a cat." but not "catalog".

    Notes
    -----
    Each caption is scanned once: every run of 1 to ``max_n`` words (``max_n`` = the longest
    keyword in words) is looked up in a dict from keyword to column, in O(total words × max_n)
    time, never O(captions × keywords). This equals MetaCLIP's substring test except that a run
    of whitespace counts as one separator (tested against the substring test on the shipped
    captions). Lowercasing both sides is our choice [INF]: MetaCLIP matches case-sensitively, but
    class names are mostly lowercase ("tusker") and Flickr titles are often capitalised
    ("Tusker"). As in MetaCLIP, only the characters of :data:`PUNCTUATION` are split off, so
    "(cat)" and "cat-walk" do not match "cat".

    Examples
    --------
    >>> from raking.research.curation_data import match_matrix
    >>> captions = ["A golden retriever.", "catalog", "cat, dog"]
    >>> match_matrix(captions, ["cat", "golden retriever"]).toarray()
    array([[0., 1.],
           [0., 0.],
           [1., 0.]])
    """
    import scipy.sparse as sp

    captions = _check_texts(captions, name="captions")
    keywords = _check_texts(keywords, name="keywords")
    column: dict[str, int] = {}
    max_n = 1
    for j, keyword in enumerate(keywords):
        words = spacing(keyword).split()
        if not words:
            raise ValueError(f"keywords[{j}] is {keyword!r}, which has no words; drop it.")
        key = " ".join(words)
        if key in column:
            raise ValueError(
                f"keywords[{column[key]}] and keywords[{j}] are both {key!r} after lowercasing "
                "and spacing; give each keyword once (class_keywords drops duplicates)."
            )
        column[key] = j
        max_n = max(max_n, len(words))
    indptr = [0]
    indices: list[int] = []
    for caption in captions:
        words = spacing(caption).split()
        found = set()
        for start in range(len(words)):
            for stop in range(start + 1, min(start + max_n, len(words)) + 1):
                j = column.get(" ".join(words[start:stop]))
                if j is not None:
                    found.add(j)
        indices.extend(sorted(found))
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.ones(len(indices)), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(captions), len(keywords)),
    )
