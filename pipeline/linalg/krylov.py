"""Block Krylov-Schur basis with full reorthogonalisation in float64.

Maintains an orthonormal basis V = [v_1 .. v_nb] (stored as rows, (nb, D), so every vector is
contiguous) and the projected matrix T = V^T H V built from the orthogonalisation
coefficients, with the relation
    H V[:, :n] = V[:, :n] T[:n, :n] + V[:, n:nb] T[n:nb, :n],
where the last nb - n columns are the residual block whose products are not yet computed.
Ritz pair (theta_i, V S_i) then has the exact residual norm ||T[n:nb, :n] S_i||. The one
Lanczos kernel: the eigensolver (``lanczos``) restarts one block basis, stochastic Lanczos
quadrature (``density``) runs one single-vector basis per probe, side by side.
"""

from __future__ import annotations

import torch

from pipeline.linalg.operator import Operator


class KrylovBasis:
    """Expand, Rayleigh-Ritz and thick-restart a block Krylov basis of an operator."""

    def __init__(
        self,
        op: Operator,
        start: torch.Tensor,
        capacity: int,
        seed: int = 0,
        basis_dtype: torch.dtype = torch.float64,
    ):
        """``start`` (D, b): the starting block; ``capacity``.

        Basis vectors to allocate (at most D); ``seed`` draws replacement directions after an
        invariant subspace is found.
        """
        dim = op.shape[0]
        self.op = op
        self.capacity = min(capacity, dim)
        self.rows = torch.zeros(self.capacity, dim, dtype=basis_dtype, device=op.device)
        self.T = torch.zeros(self.capacity, self.capacity, dtype=torch.float64)
        self.n = 0  # vectors whose products are in T
        self.nb = 0  # basis vectors
        self.norm_estimate = 0.0
        self._eps = torch.finfo(op.dtype).eps
        self._gen = torch.Generator().manual_seed(seed)
        self._append(start.to(basis_dtype).T, coupling=None)

    # ---- expansion ---------------------------------------------------------------------------
    def next_block(self, until: int) -> slice | None:
        """The basis vectors whose products come next (at most up to ``until``), None when done.

        Their products go to ``accept`` (several bases can share one block product this way).
        """
        until = min(until, self.capacity)
        return slice(self.n, min(self.nb, until)) if self.n < min(until, self.nb) else None

    def accept(self, columns: slice, products: torch.Tensor) -> None:
        """Take H V[:, columns] (D, b).

        Orthogonalise it against the basis, record the coefficients in T and append the new
        directions.
        """
        W = products.to(self.rows.dtype).T.contiguous()  # (b, D)
        self.norm_estimate = max(self.norm_estimate, float(W.norm(dim=1).max()))
        coeffs = self._orthogonalize(W, self.rows[: self.nb])
        self.T[: self.nb, columns] = coeffs.to(torch.float64).cpu()
        self.n = columns.stop
        self._append(W, coupling=columns)

    @staticmethod
    def _orthogonalize(W: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """W <- (I - B^T B) W in place for the rows W (b, D) and orthonormal rows B.

        Returns the coefficients (nb, b). A second pass runs only where the first cancelled more
        than half the norm (Daniel-Gragg-Kaufman-Stewart), so most steps read the basis twice, not
        four times.
        """
        before = W.norm(dim=1)
        coeffs = basis @ W.T
        W -= coeffs.T @ basis
        if bool((W.norm(dim=1) < 0.5 * before).any()):
            correction = basis @ W.T
            W -= correction.T @ basis
            coeffs += correction
        return coeffs

    def _append(self, W: torch.Tensor, coupling: slice | None) -> None:
        """Orthonormalise the rows of W (b, D) against the basis and append them.

        Orthonormalise the rows of W (b, D), already orthogonal to the basis, against the basis and
        each other, append them, and record W^T = Q R in T[new rows, coupling]. A direction already
        in the span (an invariant subspace) is replaced by a random one, coupling zero.
        """
        R = torch.zeros(W.shape[0], W.shape[0], dtype=torch.float64)
        threshold = 10 * self._eps * self.norm_estimate
        added = 0
        for i in range(W.shape[0]):
            if self.nb + added == self.capacity:
                break  # the basis spans the whole space: what is left lies in it
            w = W[i].clone()[None]
            # W is orthogonal to the old basis already: project out this block's new rows, and
            # the whole basis again only if that cancels (a nearly dependent block)
            R[:added, i] = (
                self._orthogonalize(w, self.rows[self.nb : self.nb + added])[:, 0]
                .to(torch.float64)
                .cpu()
            )
            if float(w.norm()) < 0.5 * float(W[i].norm()):
                R[:added, i] += (
                    self._orthogonalize(w, self.rows[: self.nb + added])[self.nb :, 0]
                    .to(torch.float64)
                    .cpu()
                )
            w = w[0]
            norm = float(w.norm())
            if norm <= threshold:
                w, norm = self._random_orthogonal(self.nb + added), 0.0
            else:
                w /= norm
            R[added, i] = norm
            self.rows[self.nb + added] = w
            added += 1
        if coupling is not None:
            self.T[self.nb : self.nb + added, coupling] = R[:added]
        self.nb += added

    def _random_orthogonal(self, size: int) -> torch.Tensor:
        w = torch.randn(self.rows.shape[1], generator=self._gen, dtype=torch.float64).to(self.rows)
        for _ in range(2):
            basis = self.rows[:size]
            w -= (basis @ w) @ basis
        return w / w.norm()

    # ---- Rayleigh-Ritz and restart -------------------------------------------------------------
    def ritz(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ritz values theta (n,), coordinates S (n, n) and residual norms (n,).

        Ritz values theta (n,), coordinates S (n, n) and residual norms ||H y_i - theta_i y_i||
        (n,).
        """
        n = self.n
        Tn = self.T[:n, :n]
        theta, S = torch.linalg.eigh((Tn + Tn.T) / 2)
        residuals = torch.linalg.vector_norm(self.T[n : self.nb, :n] @ S, dim=0)
        return theta, S, residuals

    def vectors(self, S: torch.Tensor) -> torch.Tensor:
        """Ritz vectors V[:, :n] S, shape (D, len)."""
        return self.rows[: self.n].T @ S.to(self.rows)

    def restart(self, theta: torch.Tensor, S: torch.Tensor) -> None:
        """Thick restart keeping the Ritz pairs (theta, S columns) and the residual block."""
        p, n, nb = S.shape[1], self.n, self.nb
        residual = self.rows[n:nb].clone()
        coupling = self.T[n:nb, :n] @ S
        self.rows[:p] = S.T.to(self.rows) @ self.rows[:n]
        self.rows[p : p + nb - n] = residual
        self.T.zero_()
        self.T[:p, :p] = torch.diag(theta)
        self.T[p : p + nb - n, :p] = coupling
        self.T[:p, p : p + nb - n] = coupling.T
        self.n, self.nb = p, p + nb - n
