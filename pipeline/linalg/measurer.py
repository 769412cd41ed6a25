"""How a sketch's measurements H Omega[:, columns] are made.

How a sketch's measurements H Omega[:, columns] are made (the products; what they fill is the
store's measurements, ``pipeline.store``). A ``Measurer`` makes them: ``LocalMeasurer`` generates
the seeded test matrix here, multiplies, and writes the block in the background while the next is
computed; an operator whose products are made elsewhere (the Ray workers) is a ``Measurer`` itself:
it generates Omega where the products are made and writes from there.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.streaming import WriteBehind
from pipeline.store.protocol import ColumnWriter


def split_columns(columns: range, width: int | None) -> list[range]:
    """``columns`` in consecutive parts of at most ``width`` (None: one part)."""
    width = len(columns) if width is None else max(1, width)
    return [
        range(start, min(start + width, columns.stop))
        for start in range(columns.start, columns.stop, width)
    ]


@runtime_checkable
class Measurer(Protocol):
    """Makes a sketch's measurement blocks (see the module docstring)."""

    def measure(
        self,
        kind: str,
        seed: int,
        columns: range,
        writer: ColumnWriter | None = None,
        width: int | None = None,
    ) -> torch.Tensor | None:
        """H Omega[:, columns] (D, len(columns)) for the seeded test matrix ``kind``.

        H Omega[:, columns] (D, len(columns)) for the seeded test matrix ``kind`` (see
        ``random_columns``), in products of at most ``width`` columns (None: the whole block in one;
        a column of Omega is the same whatever the width); with a ``writer`` the block is written
        (in the background) and None returned: call ``wait_for_writes`` before reading.
        """

    def wait_for_writes(self) -> None:
        """Wait until every block handed over with a writer is written.

        Wait until every block handed over with a writer is written (re-raises a failed write).
        """


class LocalMeasurer:
    """``Measurer`` for any operator: Omega generated here, written behind the next product."""

    def __init__(self, op: Operator):
        self.op = op
        self.writes = WriteBehind()

    def measure(
        self,
        kind: str,
        seed: int,
        columns: range,
        writer: ColumnWriter | None = None,
        width: int | None = None,
    ) -> torch.Tensor | None:
        """Generate Omega[:, columns] here, multiply, and write or return the block."""
        op = self.op
        block = torch.cat(
            [
                op @ random_columns(kind, seed, op.shape[0], part, dtype=op.dtype, device=op.device)
                for part in split_columns(columns, width)
            ],
            dim=1,
        )
        if writer is None:
            return block
        self.writes.submit(writer.write, columns, block)
        return None

    def wait_for_writes(self) -> None:
        """Wait until the background writes are done."""
        self.writes.wait()


def measurer_for(op: Operator) -> Measurer:
    """The operator itself where it measures remotely, else a ``LocalMeasurer`` around it."""
    return op if isinstance(op, Measurer) else LocalMeasurer(op)
