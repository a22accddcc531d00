"""How the Shapley values are estimated: every option of the estimator in one object, passed
whole from the run down to ``KernelShapRun``.

One definition serves four readers: the job (``ExplainJob`` inherits these fields, so job files
and the Slicer panel name them the same way), the job check (``check``), the command line (each
field's metadata is its flag's help: ``add_arguments``) and the estimator (``shapley_values``
and ``KernelShapRun`` read ``settings``). Adding an option of the estimator is a field here and
its use in the estimator (``estimator.py`` or a fit's module; docs/extending.md). Torch-free:
the panel imports the job.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace

from ..choices import ESTIMATORS, MIN_UNBIASED, check_choice
from ..errors import ShapSegError


def option(default, help: str, **argparse_kwargs):
    """A settings field with its command-line help (``%(default)s`` as argparse spells it)."""
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass
class ShapleySettings:
    """The estimator's options; defaults are the command line's."""
    threshold: float = option(0.01, "stop when max SE / (max φ - min φ) falls below this (default %(default)s)",
                              type=float)
    estimator: str = option("gp", "gp: posterior mean of a Gaussian-process model of the game (default); wls: "
                            "KernelSHAP's weighted least-squares fit; gp-trees: a tree proxy of the game corrected by "
                            "the GP on its residuals (more accurate at small budgets, slower fit); gp-eig: a GP with one "
                            "length scale per player that chooses its own coalitions (the most accurate on the recorded "
                            "games; games of up to 24 players, gp above)", choices=ESTIMATORS)
    coalition_batch: int | None = option(None, "coalitions per batch (default max(M, 32))", type=int)
    # 6: bench_cost (docs/performance.md)
    residual_coalitions: int = option(6, f"exact coalitions per sampled game that correct the proxy, at least "
                                      f"{MIN_UNBIASED}: ∅, N and complementary pairs with unbiased KernelSHAP (Covert "
                                      "& Lee 2021; default %(default)s); 0 = 2M+2, a determined fit (dearer, less "
                                      "noisy)", type=int)
    cost_candidates: int = option(1, "GP: draw each sampled pair as the cheapest in tile forwards of this many "
                                  "(default %(default)s: uniform)", type=int)

    @classmethod
    def of(cls, source) -> "ShapleySettings":
        """The settings a job (or parsed options) describes: the fields of the same names."""
        return cls(**{f.name: getattr(source, f.name) for f in fields(cls)})

    def replaced(self, **given) -> "ShapleySettings":
        """These settings with the options given (not None) replaced."""
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    def check(self) -> "ShapleySettings":
        check_choice("estimator", self.estimator, ESTIMATORS)
        for name, least in (("cost_candidates", 1), ("residual_coalitions", 0), ("coalition_batch", 1)):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < least):
                raise ShapSegError(f"{name.replace('_', '-')} must be a whole number ≥ {least}, got {v!r}", "bad_option")
        if self.residual_coalitions is None or 0 < self.residual_coalitions < MIN_UNBIASED:
            raise ShapSegError(f"residual-coalitions must be 0 (2M+2) or at least {MIN_UNBIASED}, got "
                               f"{self.residual_coalitions!r}", "bad_option")
        if not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool) or not self.threshold >= 0:
            raise ShapSegError(f"threshold must be zero or positive, got {self.threshold!r}", "bad_option")
        return self


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """One flag per field (``--cost-candidates`` for ``cost_candidates``), help from its metadata."""
    for f in fields(ShapleySettings):
        extra = {k: v for k, v in f.metadata.items() if k != "help"}
        group.add_argument("--" + f.name.replace("_", "-"), default=f.default, help=f.metadata["help"], **extra)
