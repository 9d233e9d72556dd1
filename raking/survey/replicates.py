r"""Replicate weights for the standard errors of a raked estimate, each replicate re-raked.

A replicate design is a set of ``R`` alternative design weights
:math:`d_{ir} = d_i\, a_r(\mathrm{psu}_i)`, one multiplier per first-stage PSU and replicate (or,
for replicate weights the user already has, per row). Every replicate is raked to the same targets
with the same options (:func:`raking.survey.weights._rake_replicates`, one batched call), giving
:math:`w_{ir}`; an estimate :math:`\hat\theta` is recomputed with each :math:`w_{\cdot r}` as
:math:`\hat\theta_r`, and

.. math::

    \widehat{\operatorname{Var}}(\hat\theta) = s \sum_{r=1}^R s_r\, (\hat\theta_r - c)^2,
    \qquad c = \hat\theta \ (\text{mse}) \ \text{or}\ \operatorname{mean}_{r:\, s_r > 0}
    \hat\theta_r,

R ``survey``'s ``svrVar`` with ``scale`` :math:`s` and ``rscales`` :math:`s_r`. The types, as R's
``as.svrepdesign`` builds them from the first-stage design (strata :math:`h` with :math:`n_h`
PSUs and sampling fraction :math:`f_h`, 0 without fpc):

- ``"jk1"`` (no strata): one replicate per PSU ``j``, :math:`a = 0` for ``j`` and :math:`n/(n-1)`
  for the others; :math:`s = (1 - f)(n - 1)/n`, :math:`s_r = 1`.
- ``"jkn"``: one replicate per PSU ``j`` of stratum ``h``, :math:`a = 0` for ``j``,
  :math:`n_h/(n_h - 1)` for the rest of ``h``, 1 elsewhere; :math:`s = 1`,
  :math:`s_r = (1 - f_h)(n_h - 1)/n_h`. Strata sampled exhaustively (:math:`f_h = 1`) give no
  replicates, as R drops them (``options(survey.drop.replicates = TRUE)``).
- ``"bootstrap"``: the Rao--Wu rescaling bootstrap, R's ``as.svrepdesign(type="subbootstrap")``
  (``subbootweights``): in each stratum draw :math:`n_h - 1` of its PSUs with replacement,
  :math:`a = \text{count} \cdot n_h/(n_h - 1)`; :math:`s = 1/(R - 1)`, :math:`s_r = 1`; no
  finite population correction (R's ``subbootstrap`` ignores fpc too). R's ``type="bootstrap"``
  is another scheme (Canty--Davison: :math:`n_h` draws, scale from the mean PSUs per stratum).
  The draws come from :func:`numpy.random.default_rng` (``seed``), so they differ from R's.
- ``"brr"``: balanced half-samples from R's Hadamard matrix (:func:`hadamard`, as
  ``brrweights``): per replicate and stratum one PSU gets :math:`a = 2`, the other 0;
  :math:`s = 1/R`. Needs exactly two PSUs per stratum.
- ``"fay"``: the same with :math:`2 - \rho` and :math:`\rho`; :math:`s = 1/(R (1 - \rho)^2)`.

BRR and Fay number the strata in the sorted order of their labels as text and, within a stratum,
take its PSUs in order of first appearance, as R's ``brrweights`` (R sorts text in the session's
locale; labels that sort the same in every locale -- ASCII letters and digits of one case, numbers
of one width -- give R's replicates exactly).

Replicates whose estimate is NaN (a domain empty in that replicate) are left out of the variance,
as R's ``svrVar`` does, with a note.

Memory: the re-raked weights are kept as the raking factors of the raked units (:math:`\gamma_r`
per cell of the crossed codes, an ``(R, C)`` array) with the multipliers; the ``n x R`` matrix
:math:`w_{ir} = d_i a_r(\mathrm{psu}_i) \gamma_r(\mathrm{cell}_i)` is formed only when asked for
(``RakeResult.replicate_weights``), and estimates sum it in blocks of rows. When the rows
themselves are raked (more than ``n / 2`` cells), ``C = n`` and the raking holds a few ``R x n``
arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ReplicateDesign",
    "RerakedReplicates",
    "bootstrap",
    "brr",
    "given",
    "hadamard",
    "jackknife",
    "replicate_variance",
]

_ROW_BLOCK = 16_384  # rows per block when replicate estimates sum the n x R weights
# R survey's hadamard.list (0/1): sizes 4, 16, 28, 36. 16 is 4 doubled twice; 28 and 36 are
# copied from R survey 4.1.1 (survey:::hadamard.list), checked against R in the tests.
_H4 = ("1111", "1010", "1100", "1001")
_H28_H36 = (
    (
        "1111111111111111111111111111",
        "1001110001110001110001111000",
        "1000001111001101001101111000",
        "1000001110110010111001100110",
        "1001101000001111100011010110",
        "1001010100101100010110101110",
        "1000110011010010001110011110",
        "0101100010101010011111110000",
        "0100010110110101100111010100",
        "0100011011001011110010101100",
        "0101011000010111011101001010",
        "0100101101100100111010011010",
        "0101100101011001101100100110",
        "0010110100011110101011101000",
        "0011011001100110101100110100",
        "0010101100111011010100011100",
        "0011000111010111010010110010",
        "0011001011111000100111001010",
        "0010110011101101011001000110",
        "1110101001010100010111100100",
        "1111000101100011001011001100",
        "1111000010011100111000011100",
        "1110010101001010110101010010",
        "1110011000111001001010110010",
        "1110100010100111100100101010",
        "1101111111111110000000000000",
        "1011111110000001111110000000",
        "0111111110000000000001111110",
    ),
    (
        "111111111111111111111111111111111111",
        "010111000111110111001000010101100100",
        "101110001111101110010000101011001000",
        "011100011111011100100001010110010010",
        "111000111110111001000010101100100100",
        "110001111101110010000101011001001010",
        "100011111011100100001010110010010110",
        "000111110111001000010101100100101110",
        "001111101110010000101011001001011100",
        "011111011100100001010110010010111000",
        "111110111001000010101100100101110000",
        "111101110010000101011001001011100010",
        "111011100100001010110010010111000110",
        "110111001000010101100100101110001110",
        "101110010000101011001001011100011110",
        "011100100001010110010010111000111110",
        "111001000010101100100101110001111100",
        "110010000101011001001011100011111010",
        "100100001010110010010111000111110110",
        "001000010101100100101110001111101110",
        "010000101011001001011100011111011100",
        "100001010110010010111000111110111000",
        "000010101100100101110001111101110010",
        "000101011001001011100011111011100100",
        "001010110010010111000111110111001000",
        "010101100100101110001111101110010000",
        "101011001001011100011111011100100000",
        "010110010010111000111110111001000010",
        "101100100101110001111101110010000100",
        "011001001011100011111011100100001010",
        "110010010111000111110111001000010100",
        "100100101110001111101110010000101010",
        "001001011100011111011100100001010110",
        "010010111000111110111001000010101100",
        "100101110001111101110010000101011000",
        "001011100011111011100100001010110010",
    ),
)
_HADAMARD_SIZES = (4, 16, 28, 36)
_PALEY_PRIME_MAX = 7919  # R's paley() knows the primes p = 3 (mod 4) up to this one


@dataclass(frozen=True, eq=False)
class ReplicateDesign:
    """Replicate design weights :math:`d_{ir} = d_i a_r(g_i)` of the raked rows, and the scales.

    Attributes
    ----------
    kind : str
        ``"JK1"``, ``"JKn"``, ``"bootstrap"``, ``"BRR"``, ``"Fay"`` or ``"given"``.
    group : numpy.ndarray of int64, shape ``(m,)``
        Group of each raked row: its first-stage PSU (the row itself for given weights).
    multipliers : numpy.ndarray of float64, shape ``(G, R)``
        :math:`a_r` of each group and replicate (>= 0).
    scale : float
        :math:`s` of the variance formula (module notes).
    rscales : numpy.ndarray of float64, shape ``(R,)``
        :math:`s_r`.
    mse : bool
        Centre on the full-sample estimate (True) or on the replicates' mean.
    names : tuple
        Column labels of the replicates.
    detail : str
        What the notes add about how the replicates were made.
    """

    kind: str
    group: np.ndarray
    multipliers: np.ndarray
    scale: float
    rscales: np.ndarray
    mse: bool
    names: tuple
    detail: str = ""

    @property
    def n_replicates(self) -> int:
        """:math:`R`."""
        return int(self.multipliers.shape[1])

    def restrict(self, rows: np.ndarray) -> ReplicateDesign:
        """The same replicates on the rows ``rows`` only (positions)."""
        return ReplicateDesign(
            self.kind,
            self.group[rows],
            self.multipliers,
            self.scale,
            self.rscales,
            self.mse,
            self.names,
            self.detail,
        )


@dataclass(frozen=True, eq=False)
class RerakedReplicates:
    r"""Replicates after raking: :math:`w_{ir} = d_i\, a_r(g_i)\, \gamma_r(u_i)`.

    ``factors`` :math:`\gamma` (shape ``(R, C)``) is the raking factor of unit ``u`` (a cell of
    the crossed codes, or a row) in replicate ``r``, times :math:`2^e` when the design weights
    ``d`` were raked divided by :math:`2^e` with bounds; ``unit_of_row`` maps the raked rows to
    units (``None``: the units are the rows). ``steps``, ``converged``, ``stalled`` and
    ``errors`` (max margin error as a share of the total) per replicate.
    """

    design: ReplicateDesign
    factors: np.ndarray
    unit_of_row: np.ndarray | None
    steps: np.ndarray
    converged: np.ndarray
    stalled: np.ndarray
    errors: np.ndarray

    def weights(self, d: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """The re-raked replicate weights of the raked rows ``rows``, shape ``(rows, R)``.

        ``d``: the design weights the units were raked from (``_Design.design``).
        """
        if rows == slice(None):  # all rows, formed block by block (no n x R temporaries)
            out = np.empty((d.shape[0], self.design.n_replicates))
            for start in range(0, d.shape[0], _ROW_BLOCK):
                block = slice(start, min(start + _ROW_BLOCK, d.shape[0]))
                out[block] = self.weights(d, block)
            return out
        g = self.design.group[rows]
        unit = np.arange(d.shape[0])[rows] if self.unit_of_row is None else self.unit_of_row[rows]
        return d[rows, None] * self.design.multipliers[g] * self._unit_major[unit]

    @functools.cached_property
    def _unit_major(self) -> np.ndarray:
        """``factors`` transposed to ``(C, R)``, C-contiguous: a unit's factors in one row."""
        return np.ascontiguousarray(self.factors.T)

    def totals(self, y: np.ndarray, d: np.ndarray) -> np.ndarray:
        r""":math:`\sum_i w_{ir} y_{ki}` for each row ``k`` of ``y`` (``(K, m)``): ``(K, R)``."""
        m = d.shape[0]
        out = np.zeros((y.shape[0], self.design.n_replicates))
        for start in range(0, m, _ROW_BLOCK):
            block = slice(start, min(start + _ROW_BLOCK, m))
            # einsum's own loops, not a threaded BLAS gemm (which stalls on a busy machine)
            out += np.einsum("km,mr->kr", y[:, block], self.weights(d, block))
        return out

    def note(self) -> str:
        """``"replicate: JK1, R=15, re-raked"``, the variance formula, and non-convergence."""
        spec = self.design
        text = f"replicate: {spec.kind}, R={spec.n_replicates}, re-raked"
        if spec.detail:
            text += f" ({spec.detail})"
        centre = "theta)^2 (mse)" if spec.mse else "mean_r theta_r)^2"
        text += f"; var = {spec.scale:.6g} * sum_r rscale_r (theta_r - {centre}"
        bad = int(np.count_nonzero(~self.converged))
        if bad:
            text += (
                f"; {bad} of {spec.n_replicates} replicates did NOT converge when re-raked "
                f"(max margin error {float(np.nanmax(self.errors)):.3g})"
            )
        return text


def replicate_variance(
    thetas: np.ndarray, estimate: float, design: ReplicateDesign
) -> tuple[float, int]:
    r"""R's ``svrVar``: :math:`s \sum_r s_r (\hat\theta_r - c)^2`, NaN replicates left out.

    ``c`` is ``estimate`` with ``design.mse``, else the mean of the replicates with
    :math:`s_r > 0`. Returns the variance and the number of replicates left out.
    """
    keep = ~np.isnan(thetas)
    t, rs = thetas[keep], design.rscales[keep]
    if t.size == 0 or not np.any(rs > 0):
        return math.nan, int(thetas.size - t.size)
    centre = estimate if design.mse else float(np.mean(t[rs > 0]))
    return float(design.scale * np.sum(rs * (t - centre) ** 2)), int(thetas.size - t.size)


# --------------------------------------------------------------------------------------------
# The replicate types (inputs validated by raking.validation and the front end)
# --------------------------------------------------------------------------------------------


def _psus(strata: np.ndarray | None, cluster: np.ndarray | None, n: int) -> tuple[np.ndarray, ...]:
    """PSU of each row and the stratum of each PSU.

    ``cluster``: PSU codes ``0, ..., G - 1`` numbered in order of first appearance (as
    :func:`pandas.factorize` gives them), each PSU within one stratum; ``None``: rows.
    """
    psu = np.arange(n, dtype=np.int64) if cluster is None else np.asarray(cluster, np.int64)
    h = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata, np.int64)
    stratum_of_psu = np.empty(int(psu.max()) + 1, dtype=np.int64)
    stratum_of_psu[psu] = h
    return psu, stratum_of_psu


def jackknife(
    strata: np.ndarray | None,
    cluster: np.ndarray | None,
    fraction: np.ndarray | None,
    n: int,
    *,
    stratified: bool,
    mse: bool,
) -> ReplicateDesign:
    """JK1 (``stratified=False``) or JKn replicates of ``n`` sampled rows (module notes).

    One replicate per PSU, in the order of the strata and, within a stratum, of the PSUs (first
    appearance), as R's ``jk1weights`` / ``jknweights``; strata with sampling fraction 1 give
    none. ``fraction``: per stratum (JK1: one value).
    """
    psu, stratum_of_psu = _psus(strata, cluster, n)
    n_psu = stratum_of_psu.size
    sizes = np.bincount(stratum_of_psu)
    f = np.zeros(sizes.size) if fraction is None else np.asarray(fraction, np.float64)
    order = np.argsort(stratum_of_psu, kind="stable")
    deleted = order[f[stratum_of_psu[order]] < 1]  # the PSU each replicate deletes
    hs = stratum_of_psu[deleted]
    nh = sizes[hs].astype(np.float64)
    a = np.ones((n_psu, deleted.size))
    same = stratum_of_psu[:, None] == hs[None, :]
    a[same] = np.broadcast_to(nh / (nh - 1), a.shape)[same]
    a[deleted, np.arange(deleted.size)] = 0.0
    rscales = (1 - f[hs]) * (nh - 1) / nh
    names = tuple(f"r{j + 1}" for j in range(deleted.size))
    if stratified:
        return ReplicateDesign("JKn", psu, a, 1.0, rscales, mse, names)
    return ReplicateDesign("JK1", psu, a, float(rscales[0]), np.ones(deleted.size), mse, names)


def bootstrap(
    strata: np.ndarray | None,
    cluster: np.ndarray | None,
    n: int,
    *,
    n_replicates: int,
    rng: np.random.Generator,
    mse: bool,
) -> ReplicateDesign:
    r"""Rao--Wu rescaling bootstrap (R's ``subbootweights``): :math:`n_h - 1` draws per stratum.

    Replicate ``r`` draws :math:`n_h - 1` PSUs of stratum ``h`` with replacement (uniformly,
    independently across strata and replicates; one multinomial draw per stratum for all
    replicates) and gives each PSU :math:`a = \text{count} \cdot n_h / (n_h - 1)`.
    """
    psu, stratum_of_psu = _psus(strata, cluster, n)
    a = np.empty((stratum_of_psu.size, n_replicates))
    for h in range(int(stratum_of_psu.max()) + 1):
        members = np.flatnonzero(stratum_of_psu == h)
        nh = members.size
        counts = rng.multinomial(nh - 1, np.full(nh, 1.0 / nh), size=n_replicates)
        a[members] = counts.T * (nh / (nh - 1))
    names = tuple(f"r{j + 1}" for j in range(n_replicates))
    return ReplicateDesign(
        "bootstrap",
        psu,
        a,
        1.0 / (n_replicates - 1),
        np.ones(n_replicates),
        mse,
        names,
        "Rao-Wu rescaling bootstrap, R's subbootstrap; no fpc",
    )


def brr(
    strata: np.ndarray,
    cluster: np.ndarray | None,
    labels: Sequence[Hashable],
    n: int,
    *,
    rho: float,
    mse: bool,
) -> ReplicateDesign:
    r"""BRR (``rho = 0``) or Fay's BRR from R's Hadamard matrix, as R's ``brrweights``.

    Stratum ``k`` (1-based, in the sorted order of ``str(labels)``) in replicate ``r`` (a column
    of :math:`H` = :func:`hadamard` of the number of strata): :math:`H_{k+1, r} = 1` gives its
    first PSU (first appearance) :math:`2 - \rho` and its second :math:`\rho`; 0 the reverse.
    Every stratum must have exactly two PSUs (checked by the front end).
    """
    psu, stratum_of_psu = _psus(strata, cluster, n)
    n_strata = len(labels)
    rank = np.empty(n_strata, dtype=np.int64)
    rank[sorted(range(n_strata), key=lambda h: str(labels[h]))] = np.arange(n_strata)
    h = hadamard(n_strata)
    first_psu = np.zeros(stratum_of_psu.size, dtype=bool)
    first_psu[np.unique(stratum_of_psu, return_index=True)[1]] = True
    rows = h[1 + rank[stratum_of_psu]]  # (n_psu, R): 1 where the first PSU is chosen
    chosen = np.where(first_psu[:, None], rows == 1, rows == 0)
    a = np.where(chosen, 2.0 - rho, rho)
    r = a.shape[1]
    names = tuple(f"r{j + 1}" for j in range(r))
    kind = "BRR" if rho == 0 else "Fay"
    detail = f"Hadamard matrix of order {r}" + ("" if rho == 0 else f", rho = {rho:g}")
    return ReplicateDesign(
        kind, psu, a, 1.0 / (r * (1.0 - rho) ** 2), np.ones(r), mse, names, detail
    )


def given(
    replicate_weights: np.ndarray,
    design: np.ndarray,
    names: tuple,
    *,
    scale: float,
    rscales: np.ndarray,
    mse: bool,
) -> ReplicateDesign:
    """Replicate design weights the user has (``(m, R)``, rows raked), relative to ``design``."""
    m = design.shape[0]
    return ReplicateDesign(
        "given",
        np.arange(m, dtype=np.int64),
        replicate_weights / design[:, None],
        scale,
        rscales,
        mse,
        names,
        "replicate design weights as given",
    )


# --------------------------------------------------------------------------------------------
# Hadamard matrices, exactly as R survey's hadamard() (so BRR replicates equal R's)
# --------------------------------------------------------------------------------------------


def hadamard(n: int) -> np.ndarray:
    """R ``survey``'s ``hadamard(n)``: a 0/1 Hadamard matrix with more than ``n`` rows.

    Of R's precooked sizes 4, 16, 28, 36 the one just above ``n`` (rounded down to a multiple
    of 4), else the smallest precooked size doubled (Sylvester: ``[[H, H], [H, 1 - H]]``) to
    above ``n``, unless that is more than 4 too big and a Paley construction fits better.

    Examples
    --------
    >>> hadamard(3)
    array([[1, 1, 1, 1],
           [1, 0, 1, 0],
           [1, 1, 0, 0],
           [1, 0, 0, 1]], dtype=int8)
    """
    m = n - n % 4
    precooked = [i for i, s in enumerate(_HADAMARD_SIZES) if m < s <= m + 4]
    if precooked:
        return _precooked(min(precooked))
    sizes = [s * 2 ** max(0, math.ceil(math.log2((n + 1) / s))) for s in _HADAMARD_SIZES]
    best = int(np.argmin([s - n for s in sizes]))
    h = _paley(n, sizes[best]) if sizes[best] - n > 4 else None
    if h is None:
        h = _precooked(best)
        for _ in range(round(math.log2(sizes[best] / _HADAMARD_SIZES[best]))):
            h = _double(h)
    return h


def _precooked(i: int) -> np.ndarray:
    if i <= 1:
        h = _bits(_H4)
        return h if i == 0 else _double(_double(h))
    return _bits(_H28_H36[i - 2])


def _bits(rows: Sequence[str]) -> np.ndarray:
    return np.array([[int(c) for c in row] for row in rows], dtype=np.int8)


def _double(h: np.ndarray) -> np.ndarray:
    return np.block([[h, h], [h, 1 - h]]).astype(np.int8)


def _small_primes() -> list[int]:
    r"""The primes :math:`p \equiv 3 \pmod 4` up to 7919 (R's ``paley``'s ``small.primes``)."""
    sieve = np.ones(_PALEY_PRIME_MAX + 1, dtype=bool)
    sieve[:2] = False
    for i in range(2, int(_PALEY_PRIME_MAX**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    return [int(p) for p in np.flatnonzero(sieve) if p % 4 == 3]


def _paley(n: int, nmax: int | None = None, prime: int | None = None) -> np.ndarray | None:
    """R ``survey``'s ``paley(n, nmax)`` (``None`` where R returns ``NULL``)."""
    nmax = 2 * n if nmax is None else nmax
    if prime is None:
        primes = _small_primes()
        nceil = nn = n + 4 - n % 4
        if n % 4 + 4 == n % 8:
            while nn % 8 == 0:
                nn //= 2
            if nn - 1 in primes:
                h = _paley(nn - 1, prime=nn - 1)
                while nn < nceil:
                    h = _double(h)  # type: ignore[arg-type]
                    nn *= 2
                return h
        if n > primes[-1]:
            return None
        p = min(q for q in primes if q >= n)
        if p + 1 > nceil + 4 and nceil + 4 < nmax:
            return _paley(nceil + 3)
        if p > nmax:
            return None
    else:
        p = prime
    i = np.arange(p)
    table = (i[:, None] + i[None, :]) % p
    residues = {0} | {(k * k) % p for k in range(1, (p - 1) // 2 + 1)}
    core = np.where(np.isin(table, list(residues)), 0, 1)
    h = np.ones((p + 1, p + 1), dtype=np.int8)
    h[1:, 1:] = core
    return h
