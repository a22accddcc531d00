"""The engine's choice fields, in one torch-free place: the command line's ``choices``, the
job check, the Slicer panel's enums and the engine's own dispatch all read them here."""
from __future__ import annotations

PLAYERS = ("organ", "fcc", "hybrid", "slic")            # players.maps: how the support is cut
VALUES = ("tp", "dice", "soft_dice", "fp", "soft_fp")    # shapley.values: what is explained
STRATEGIES = ("memo", "paper", "roi")                    # nnunet.evaluator: tile caching (cost only)
BASELINES = ("constant", "blur", "mean")                 # nnunet.evaluator: what absent voxels become
ESTIMATORS = ("gp", "wls", "gp-trees", "gp-eig")         # shapley.estimator.FITS: the Shapley fit
REFINE_BY = ("volume", "phi")                            # shapley.hierarchy: |φ|·volume or |φ| picks the next
SPLITS = ("proportional", "equal")                       # shapley.hierarchy: how children share a parent's value
DEVICES = ("auto", "cpu", "cuda")                        # nnunet.model (also "cuda:N")
MIN_UNBIASED = 6     # shapley.proxy: a residual of ∅, N and two complementary pairs, the fewest with an SE

BUILT_IN = {"players": PLAYERS, "value": VALUES}
_ADDED: dict[str, list[str]] = {"players": [], "value": []}


def allowed(field: str) -> tuple[str, ...]:
    """The names a choice field takes: the built-ins, then those a plug-in registered
    (``players.maps.register_player_kind``, ``shapley.values.register_value``)."""
    return BUILT_IN[field] + tuple(_ADDED[field])


def add(field: str, name: str) -> None:
    """Accept ``name`` for ``field`` from now on (job check, command line, API)."""
    if name not in allowed(field):
        _ADDED[field].append(name)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise the engine's one-line error when ``value`` is not one of ``allowed``."""
    from .errors import ShapSegError
    if value not in allowed:
        raise ShapSegError(f"{name} must be one of {', '.join(allowed)}; got {value!r}", "bad_option")
