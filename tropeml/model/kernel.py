"""The embedding view as RBF support-vector machines, kept small enough to ship.

One balanced :class:`~sklearn.svm.SVC` per tag ranks real prose better than a logistic
regression on the same embeddings (``benchmarks/results/kernel.md``: core passage AP 0.522 ->
0.585 on the dev set). Fitted SVCs carry their own copies of their support vectors, tens of
MB for 18 tags, so :class:`RbfView` keeps what predicts instead: the training rows that are
any tag's support vector (one shared basis) and a matrix of dual coefficients. Its decision
values are :func:`tropeml.model.head.rbf_view`'s, which the numpy head computes too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.model.head import rbf_view


class RbfView:
    """Per-tag RBF SVM decision values over one shared basis of training rows.

    It stands where the list of per-tag embedding estimators stands: iterating it gives, per
    tag, the view itself where the tag was learned and ``None`` where it was not.

    Args:
        basis: Training rows that are some tag's support vector, shape ``(m, d)``, float32.
        dual: Dual coefficients, shape ``(m, T)`` (zero where a row supports no tag).
        bias: Intercepts, shape ``(T,)``.
        gamma: Each tag's kernel width, shape ``(T,)``: sklearn's ``"scale"``,
            ``1 / (d * variance)`` of the rows labelled for the tag.
        learned: Which tags have an SVM, shape ``(T,)``.
    """

    def __init__(
        self,
        basis: NDArray[np.float32],
        dual: NDArray[np.float64],
        bias: NDArray[np.float64],
        gamma: NDArray[np.float64],
        learned: NDArray[np.bool_],
    ) -> None:
        self.basis = basis
        self.dual = dual
        self.bias = bias
        self.gamma = gamma
        self.learned = learned

    @classmethod
    def fit(
        cls,
        X: NDArray[Any],
        Y: NDArray[np.int8],
        learnable: Sequence[bool],
        C: float,
        class_weight: str | None,
        unknown: int = -1,
        scale: float = 1.0,
    ) -> RbfView:
        """Fit one SVM per learnable tag on its labelled rows, and keep the shared form.

        Args:
            X: Passage embeddings, shape ``(n, d)``.
            Y: Labels, shape ``(n, T)``: 1, 0 or ``unknown``.
            learnable: Whether each tag has enough labels for a view, ``T`` flags.
            C: The SVMs' inverse regularisation strength.
            class_weight: Passed to each SVM (``"balanced"`` by default upstream).
            unknown: The label of rows not judged for a tag.
            scale: Multiplies sklearn's ``"scale"`` kernel width (larger: narrower kernels).
        """
        from sklearn.svm import SVC  # fitting only: tagging reads the arrays

        X64 = np.asarray(X, dtype=np.float64)
        T = Y.shape[1]
        gamma = np.zeros(T)
        rows: list[NDArray[np.intp]] = []
        coefs: list[NDArray[np.float64]] = []
        bias = np.zeros(T)
        for j in range(T):
            if not learnable[j]:
                rows.append(np.zeros(0, dtype=np.intp))
                coefs.append(np.zeros(0))
                continue
            known = np.flatnonzero(Y[:, j] != unknown)
            var = float(X64[known].var())
            gamma[j] = scale / (X64.shape[1] * var) if var > 0 else scale  # sklearn's "scale"
            svm = SVC(C=C, kernel="rbf", gamma=gamma[j], class_weight=class_weight)
            svm.fit(X64[known], Y[known, j])
            rows.append(known[svm.support_])
            coefs.append(np.asarray(svm.dual_coef_[0], dtype=np.float64))
            bias[j] = float(svm.intercept_[0])
        basis_rows = np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.intp)
        dual = np.zeros((len(basis_rows), T))
        for j, (r, c) in enumerate(zip(rows, coefs, strict=True)):
            dual[np.searchsorted(basis_rows, r), j] = c
        basis = np.asarray(X[basis_rows], dtype=np.float32)
        return cls(basis, dual, bias, gamma, np.asarray(learnable, dtype=bool))

    def decision_function(self, X: NDArray[Any]) -> NDArray[np.float64]:
        """Decision values, shape ``(n, T)``; NaN for tags without an SVM."""
        out = rbf_view(X, self.basis, self.dual, self.bias, self.gamma)
        out[:, ~self.learned] = np.nan
        return out

    def __len__(self) -> int:
        return len(self.learned)

    def __iter__(self) -> Iterator[RbfView | None]:
        return iter([self if ok else None for ok in self.learned])

    def __getitem__(self, j: int) -> RbfView | None:
        return self if self.learned[j] else None
